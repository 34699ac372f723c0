//! ViT and DINOv2 backbones against Hugging Face transformers (tiny random models saved by
//! `scripts/make_vit_fixtures.py`).

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{floats, max_diff};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tessera::vit::config::VitConfig;
use tessera::vit::model::load_hf;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("vit_reference.json")).unwrap())
        .unwrap()
}

fn pixels(r: &Value, dev: &Device) -> Tensor<4> {
    pixels_of(r, "pixel_values", dev)
}

fn pixels_of(r: &Value, key: &str, dev: &Device) -> Tensor<4> {
    let shape: Vec<usize> = r[key]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    Tensor::from_data(TensorData::new(floats(&r[key]["data"]), shape), dev)
}

fn check(name: &str, dir: &str) {
    let dev = Device::flex();
    let r = reference();
    let cfg = VitConfig::from_json_file(&fixtures().join(dir).join("config.json")).unwrap();
    let model = load_hf(&cfg, &fixtures().join(dir).join("model.safetensors"), &dev).unwrap();
    let out = model.forward(pixels(&r, &dev)).unwrap();
    let last: Vec<f32> = out.last_hidden_state.into_data().try_to_vec().unwrap();
    let d = max_diff(&last, &floats(&r[name]["last_hidden_state"]));
    eprintln!("{name}: last hidden state max abs diff {d:.2e}");
    assert!(d < 1e-4, "{name}: last hidden state max abs diff {d}");
    let pooled: Vec<f32> = out.pooler_output.into_data().try_to_vec().unwrap();
    let d = max_diff(&pooled, &floats(&r[name]["pooler_output"]));
    assert!(d < 1e-4, "{name}: pooled max abs diff {d}");
    // 56 x 40 pixels: a 7 x 5 grid, positions interpolated from the checkpoint's 4 x 4 (bicubic).
    let out = model
        .forward(pixels_of(&r, "pixel_values_56x40", &dev))
        .unwrap();
    let last: Vec<f32> = out.last_hidden_state.into_data().try_to_vec().unwrap();
    let d = max_diff(
        &last,
        &floats(&r[&format!("{name}_56x40")]["last_hidden_state"]),
    );
    eprintln!("{name}: 56x40 (interpolated positions) max abs diff {d:.2e}");
    assert!(d < 1e-4, "{name}: interpolated positions max abs diff {d}");
    if let Some(logits) = r[name].get("logits") {
        let got: Vec<f32> = model
            .logits(pixels(&r, &dev))
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let d = max_diff(&got, &floats(logits));
        assert!(d < 1e-4, "{name}: logits max abs diff {d}");
    }
}

#[test]
fn vit_matches_transformers_vit_for_image_classification() {
    check("vit", "vit-tiny");
}

#[test]
fn dinov2_with_layer_scale_matches_transformers() {
    check("dinov2", "dinov2-tiny");
}

#[test]
fn wrong_inputs_and_checkpoints_give_clear_errors() {
    let dev = Device::flex();
    let dir = fixtures().join("vit-tiny");
    let cfg = VitConfig::from_json_file(&dir.join("config.json")).unwrap();
    assert_eq!(cfg.num_labels, 5);
    let model = load_hf(&cfg, &dir.join("model.safetensors"), &dev).unwrap();
    let err = model
        .forward(Tensor::zeros([1, 3, 30, 32], &dev))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a multiple of the patch size"), "{err}");
    let err = model
        .forward(Tensor::zeros([1, 1, 32, 32], &dev))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("channels"), "{err}");
    // A config that does not fit the weights names the tensor.
    let wrong = VitConfig {
        intermediate_size: Some(48),
        ..cfg.clone()
    };
    let err = format!(
        "{:#}",
        load_hf(&wrong, &dir.join("model.safetensors"), &dev)
            .err()
            .unwrap()
    );
    assert!(err.contains("intermediate.dense.weight"), "{err}");
    // Presets.
    assert_eq!(VitConfig::preset("b16").unwrap().mlp_size(), 3072);
    assert_eq!(VitConfig::preset("s14").unwrap().grid(), 16);
    assert!(VitConfig::preset("x16").is_err());
}

#[test]
fn imported_dinov2_s14_matches_onnxruntime_at_224_with_interpolated_positions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dinov2-s14");
    if !dir.join("model.safetensors").exists() {
        eprintln!("skipped: run scripts/fetch-data.sh dinov2-s14");
        return;
    }
    let dev = Device::flex();
    let cfg = VitConfig::from_json_file(&dir.join("config.json")).unwrap();
    assert_eq!((cfg.grid(), cfg.mlp_size()), (37, 1536));
    let model = load_hf(&cfg, &dir.join("model.safetensors"), &dev).unwrap();
    let (f, _) = tessera::core::checkpoint::load_safetensors(
        &fixtures().join("dinov2_s14_onnxruntime.safetensors"),
    )
    .unwrap();
    let out = model
        .forward(Tensor::from_data(f["pixel_values"].clone(), &dev))
        .unwrap();
    assert_eq!(out.last_hidden_state.dims(), [1, 257, 384]);
    let got: Vec<f32> = out.last_hidden_state.into_data().try_to_vec().unwrap();
    let want: Vec<f32> = f["last_hidden_state"].clone().try_to_vec().unwrap();
    let d = max_diff(&got, &want);
    eprintln!("DINOv2-S/14 at 224x224 vs onnxruntime: max abs diff {d:.2e}");
    assert!(d < 1e-4, "max abs diff {d}");
}

mod data_and_training {
    use super::*;
    use tessera::core::run::RunDir;
    use tessera::vit::data::{
        random_shift, read_cifar, read_idx, read_images, read_pixel_csv, stratified_split,
    };
    use tessera::vit::model::Vit;
    use tessera::vit::train::{train_vit, VitRunOptions, VitTrainConfig, CHECKPOINT};

    #[test]
    fn readers_parse_and_name_file_line_and_field_on_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("px.csv");
        std::fs::write(&csv, "0,16,8,4,3\n16,0,0,0,1\n").unwrap();
        let set = read_pixel_csv(&csv, 2, 16.0).unwrap();
        assert_eq!((set.len(), set.classes, set.height), (2, 4, 2));
        assert_eq!(set.image(0), &[0.0, 1.0, 0.5, 0.25]);
        std::fs::write(&csv, "0,16,8,4,3\n16,0,99,0,1\n").unwrap();
        let err = read_pixel_csv(&csv, 2, 16.0).err().unwrap().to_string();
        assert!(err.contains("px.csv:2") && err.contains("pixel 3"), "{err}");
        std::fs::write(&csv, "0,16,8,3\n").unwrap();
        let err = read_images(&csv, false).err().unwrap().to_string();
        assert!(err.contains("px.csv:1"), "{err}");

        // IDX: two 2x3 images.
        let mut im = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        im.extend([0, 51, 102, 153, 204, 255, 255, 0, 0, 0, 0, 0]);
        let lb = vec![0, 0, 8, 1, 0, 0, 0, 2, 7, 1];
        std::fs::write(d.path().join("train-images-idx3-ubyte"), &im).unwrap();
        std::fs::write(d.path().join("train-labels-idx1-ubyte"), &lb).unwrap();
        let set = read_images(d.path(), false).unwrap();
        assert_eq!(
            (set.len(), set.height, set.width, set.labels.clone()),
            (2, 2, 3, vec![7, 1])
        );
        assert!((set.image(0)[1] - 0.2).abs() < 1e-6);
        std::fs::write(
            d.path().join("bad-labels"),
            [0u8, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3],
        )
        .unwrap();
        let err = read_idx(
            &d.path().join("train-images-idx3-ubyte"),
            &d.path().join("bad-labels"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("3 labels for 2 images"), "{err}");
        // Found by fuzzing: a header whose count x height x width overflows usize.
        let huge = d.path().join("huge-images");
        let mut head = vec![0u8, 0, 8, 3];
        for _ in 0..3 {
            head.extend(0x4000_0000u32.to_be_bytes());
        }
        std::fs::write(&huge, head).unwrap();
        let err = read_idx(&huge, &d.path().join("bad-labels")).err().unwrap();
        assert!(err.to_string().contains("huge-images"), "{err}");

        // CIFAR-10: label byte + 3072 pixels; a truncated file is refused.
        let mut rec = vec![9u8];
        rec.extend(std::iter::repeat_n(255u8, 3072));
        let c = d.path().join("data_batch_1.bin");
        std::fs::write(&c, [rec.clone(), rec].concat()).unwrap();
        let set = read_cifar(&[c.as_path()], 1).unwrap();
        assert_eq!((set.len(), set.channels, set.labels[1]), (2, 3, 9));
        std::fs::write(&c, vec![0u8; 3000]).unwrap();
        assert!(read_cifar(&[c.as_path()], 1).is_err());
    }

    #[test]
    fn split_is_stratified_and_seeded_and_shift_moves_pixels() {
        let labels: Vec<u32> = (0..1000).map(|i| (i % 10) as u32).collect();
        let (train, test) = stratified_split(&labels, 0.1, 0);
        assert_eq!((train.len(), test.len()), (900, 100));
        for c in 0..10 {
            assert_eq!(test.iter().filter(|&&i| labels[i] == c).count(), 10);
        }
        assert_eq!(stratified_split(&labels, 0.1, 0).1, test);
        assert_ne!(stratified_split(&labels, 0.1, 1).1, test);

        let mut img = vec![0f32; 25];
        img[12] = 1.0; // centre of 5x5
        let mut out = vec![0f32; 25];
        let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(3);
        for _ in 0..20 {
            random_shift(&img, 1, 5, 5, 2, &mut rng, &mut out);
            assert_eq!(
                out.iter().sum::<f32>(),
                1.0,
                "a shift of at most 2 keeps the centre pixel"
            );
        }
    }

    fn digits() -> Option<tessera::vit::data::ImageSet> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits/digits.csv.gz");
        if !p.exists() {
            eprintln!("skipped: run scripts/fetch-data.sh digits");
            return None;
        }
        Some(read_images(&p, false).unwrap())
    }

    fn tiny(set: &tessera::vit::data::ImageSet) -> VitConfig {
        VitConfig {
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: Some(64),
            image_size: 8,
            patch_size: 2,
            num_channels: 1,
            num_labels: set.classes,
            ..VitConfig::default()
        }
    }

    #[test]
    fn short_training_on_real_digits_learns_far_above_chance() {
        let Some(all) = digits() else { return };
        assert_eq!((all.len(), all.classes), (1797, 10));
        let (tr, te) = stratified_split(&all.labels, 0.2, 0);
        let (train, test) = (all.subset(&tr), all.subset(&te));
        let mc = tiny(&train);
        let dev = Device::flex();
        dev.seed(0);
        let cfg = VitTrainConfig {
            epochs: 15,
            batch_size: 64,
            micro_batch: 32,
            warmup_steps: 20,
            lr: 2e-3,
            max_shift: 0,
            ..VitTrainConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        let quiet = VitRunOptions {
            quiet: true,
            ..Default::default()
        };
        let r = train_vit(
            Vit::new(&mc, &dev),
            &mc,
            &train,
            &test,
            &cfg,
            &run,
            &dev,
            &quiet,
        )
        .unwrap();
        let (first, last) = (r.first().unwrap(), r.last().unwrap());
        eprintln!(
            "digits: loss {:.3} -> {:.3}, test top-1 {:.3}",
            first.loss, last.loss, last.test_top1
        );
        assert!(
            last.loss < first.loss - 0.5,
            "loss {} -> {}",
            first.loss,
            last.loss
        );
        // Chance is 0.1 (ten balanced classes).
        assert!(last.test_top1 > 0.6, "test top-1 {}", last.test_top1);
        // The run directory loads back as a Hugging Face ViT with the same predictions.
        let cfg_back = VitConfig::from_json_file(&run.file("config.json")).unwrap();
        let back = load_hf(&cfg_back, &run.file("model.safetensors"), &dev).unwrap();
        let m = tessera::vit::train::evaluate(&back, &test, &cfg, &dev).unwrap();
        assert!((m.top1 - last.test_top1).abs() < 1e-9);
        assert_eq!(
            m.confusion.iter().flatten().sum::<u32>() as usize,
            test.len()
        );
    }

    #[test]
    fn interrupted_and_resumed_vit_training_equals_uninterrupted() {
        let Some(all) = digits() else { return };
        let (tr, te) = stratified_split(&all.labels, 0.8, 1);
        let (train, test) = (all.subset(&tr[..200]), all.subset(&te[..100]));
        let mc = tiny(&all);
        let dev = Device::flex();
        let cfg = VitTrainConfig {
            epochs: 2,
            batch_size: 50,
            micro_batch: 25,
            warmup_steps: 2,
            ..VitTrainConfig::default()
        };
        let fresh = || {
            dev.seed(0);
            Vit::new(&mc, &dev)
        };
        let opts = |resume, stop| VitRunOptions {
            quiet: true,
            resume,
            stop_after_epochs: stop,
        };
        let a_dir = tempfile::tempdir().unwrap();
        let a = RunDir::create(a_dir.path()).unwrap();
        train_vit(
            fresh(),
            &mc,
            &train,
            &test,
            &cfg,
            &a,
            &dev,
            &opts(false, None),
        )
        .unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let b = RunDir::create(b_dir.path()).unwrap();
        train_vit(
            fresh(),
            &mc,
            &train,
            &test,
            &cfg,
            &b,
            &dev,
            &opts(false, Some(1)),
        )
        .unwrap();
        train_vit(
            fresh(),
            &mc,
            &train,
            &test,
            &cfg,
            &b,
            &dev,
            &opts(true, None),
        )
        .unwrap();
        let (ta, _) = tessera::core::checkpoint::load_safetensors(&a.file(CHECKPOINT)).unwrap();
        let (tb, mb) = tessera::core::checkpoint::load_safetensors(&b.file(CHECKPOINT)).unwrap();
        assert_eq!(mb["epoch"], "2");
        for (k, v) in &ta {
            assert_eq!(v, &tb[k], "tensor {k} differs after resuming");
        }
    }

    #[test]
    fn features_cli_writes_hidden_states_and_refuses_bad_inputs() {
        let bin = env!("CARGO_BIN_EXE_tessera");
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("px.safetensors");
        let r = reference();
        let px = TensorData::new(floats(&r["pixel_values"]["data"]), [2, 3, 32, 32]);
        tessera::core::checkpoint::save_safetensors(
            &input,
            &[("pixel_values".to_string(), px)],
            Default::default(),
        )
        .unwrap();
        let out = d.path().join("f.safetensors");
        let run = std::process::Command::new(bin)
            .args(["vit", "features", "--model"])
            .arg(fixtures().join("vit-tiny"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        crate::common::assert_success(&run);
        let (t, _) = tessera::core::checkpoint::load_safetensors(&out).unwrap();
        assert_eq!(t["last_hidden_state"].shape().to_vec(), vec![2, 17, 32]);
        assert_eq!(t["pooler_output"].shape().to_vec(), vec![2, 32]);
        let got: Vec<f32> = t["last_hidden_state"].clone().try_to_vec().unwrap();
        assert!(max_diff(&got, &floats(&r["vit"]["last_hidden_state"])) < 1e-4);
        // A file without `pixel_values`.
        tessera::core::checkpoint::save_safetensors(
            &input,
            &[(
                "images".to_string(),
                TensorData::new(vec![0f32; 4], [1, 1, 2, 2]),
            )],
            Default::default(),
        )
        .unwrap();
        let run = std::process::Command::new(bin)
            .args(["vit", "features", "--model"])
            .arg(fixtures().join("vit-tiny"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!run.status.success());
        assert!(String::from_utf8_lossy(&run.stderr).contains("no tensor `pixel_values`"));
    }

    #[test]
    fn image_folders_read_by_class_and_features_take_image_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("imgs");
        for (class, name, rgb) in [
            ("a", "1.png", [255u8, 0, 0]),
            ("a", "2.png", [255, 0, 0]),
            ("b", "1.png", [0, 255, 0]),
        ] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            image::RgbImage::from_pixel(4, 4, image::Rgb(rgb))
                .save(root.join(class).join(name))
                .unwrap();
        }
        std::fs::write(root.join("b").join("notes.txt"), "not an image").unwrap();
        let set = read_images(&root, false).unwrap();
        assert_eq!(
            (set.len(), set.classes, set.labels.clone()),
            (3, 2, vec![0, 0, 1])
        );
        assert_eq!((set.channels, set.height, set.width), (3, 4, 4));
        // Channel-first: image 2 (class b, green) has 0 in the red plane and 1 in the green.
        assert_eq!((set.image(2)[0], set.image(2)[16]), (0.0, 1.0));
        // Another size without resizing, and a broken file: errors naming the file.
        image::RgbImage::from_pixel(5, 4, image::Rgb([0, 0, 255]))
            .save(root.join("b").join("2.png"))
            .unwrap();
        let err = format!("{:#}", read_images(&root, false).err().unwrap());
        assert!(err.contains("2.png") && err.contains("5x4"), "{err}");
        std::fs::write(root.join("b").join("2.png"), "garbage").unwrap();
        let err = format!("{:#}", read_images(&root, false).err().unwrap());
        assert!(err.contains("2.png"), "{err}");

        // Features from image files: resized to the model's 32x32 and normalised.
        let png = d.path().join("x.png");
        image::RgbImage::from_fn(20, 20, |x, y| {
            image::Rgb([(x * 12) as u8, (y * 12) as u8, 0])
        })
        .save(&png)
        .unwrap();
        let out = d.path().join("f.safetensors");
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["vit", "features", "--model"])
            .arg(fixtures().join("dinov2-tiny"))
            .arg("--input")
            .arg(&png)
            .arg(&png)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        crate::common::assert_success(&run);
        let (t, _) = tessera::core::checkpoint::load_safetensors(&out).unwrap();
        assert_eq!(t["last_hidden_state"].shape().to_vec(), vec![2, 17, 32]);
        let v: Vec<f32> = t["pooler_output"].clone().try_to_vec().unwrap();
        assert_eq!(
            &v[..32],
            &v[32..],
            "the same image twice gives the same features"
        );
    }

    #[test]
    fn cli_trains_evaluates_and_draws_the_confusion_matrix() {
        let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits/digits.csv.gz");
        if !digits.exists() {
            eprintln!("skipped: run scripts/fetch-data.sh digits");
            return;
        }
        let bin = env!("CARGO_BIN_EXE_tessera");
        let d = tempfile::tempdir().unwrap();
        let run_dir = d.path().join("run");
        let out = std::process::Command::new(bin)
            .args([
                "vit", "train", "--json", "--preset", "mnist", "--hidden", "32", "--layers", "1",
            ])
            .args(["--heads", "2", "--epochs", "1", "--data"])
            .arg(&digits)
            .arg("--run-dir")
            .arg(&run_dir)
            .output()
            .unwrap();
        crate::common::assert_success(&out);
        let png = d.path().join("confusion.png");
        let out = std::process::Command::new(bin)
            .args(["vit", "eval", "--json", "--run-dir"])
            .arg(&run_dir)
            .arg("--confusion-png")
            .arg(&png)
            .output()
            .unwrap();
        crate::common::assert_success(&out);
        let m: Value = serde_json::from_slice(&out.stdout).unwrap();
        // The held-out 10% of 1,797 digits, rounded per class (class 8 has 174 images: 17;
        // every other class 18): 179 images.
        assert_eq!(m["images"].as_u64(), Some(179));
        assert_eq!(m["confusion"].as_array().unwrap().len(), 10);
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (241, 241));
        // The preset's patch size must divide the image: 8x8 digits with patch 4 work, a bad
        // preset does not.
        let out = std::process::Command::new(bin)
            .args(["vit", "train", "--preset", "x99", "--data"])
            .arg(&digits)
            .arg("--run-dir")
            .arg(d.path().join("bad"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown ViT preset"));
    }

    #[test]
    fn fine_tuning_grey_images_uses_the_checkpoints_normalisation_and_records_it() {
        let bin = env!("CARGO_BIN_EXE_tessera");
        let d = tempfile::tempdir().unwrap();
        // A 3-channel checkpoint with its own normalisation (patch 8, 4x4 position grid).
        let model = d.path().join("dinov2");
        std::fs::create_dir_all(&model).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fixtures().join("dinov2-tiny").join(f), model.join(f)).unwrap();
        }
        std::fs::write(
            model.join("preprocessor_config.json"),
            r#"{"image_mean": [0.25, 0.5, 0.75], "image_std": [0.5, 0.25, 0.125]}"#,
        )
        .unwrap();
        // 40 grey 16x16 images in two classes (bright left half or bright right half).
        let mut csv = String::new();
        for i in 0..40 {
            let label = i % 2;
            let px: Vec<String> = (0..256)
                .map(|p| {
                    if (p % 16 < 8) == (label == 0) {
                        "200"
                    } else {
                        "10"
                    }
                    .to_string()
                })
                .collect();
            csv.push_str(&format!("{},{label}\n", px.join(",")));
        }
        let data = d.path().join("grey.csv");
        std::fs::write(&data, csv).unwrap();
        let train = |run: &Path, config: Option<&Path>| {
            let mut cmd = std::process::Command::new(bin);
            cmd.args(["vit", "train", "--json", "--epochs", "1", "--model"])
                .arg(&model)
                .arg("--data")
                .arg(&data)
                .arg("--run-dir")
                .arg(run);
            if let Some(c) = config {
                cmd.arg("--config").arg(c);
            }
            let out = cmd.output().unwrap();
            crate::common::assert_success(&out);
            let toml: toml::Table =
                toml::from_str(&std::fs::read_to_string(run.join("train.toml")).unwrap()).unwrap();
            let pre: Value = serde_json::from_str(
                &std::fs::read_to_string(run.join("preprocessor_config.json")).unwrap(),
            )
            .unwrap();
            (toml["mean"].clone(), toml["std"].clone(), pre)
        };
        let (mean, std, pre) = train(&d.path().join("run"), None);
        assert_eq!(mean, toml::Value::try_from(vec![0.25, 0.5, 0.75]).unwrap());
        assert_eq!(std, toml::Value::try_from(vec![0.5, 0.25, 0.125]).unwrap());
        assert_eq!(pre["image_mean"], serde_json::json!([0.25, 0.5, 0.75]));
        assert_eq!(pre["image_std"], serde_json::json!([0.5, 0.25, 0.125]));
        // Trained at 16x16 (positions interpolated from the checkpoint's 4x4 grid of 32x32): image
        // files given to the run directory are resized to 16x16, not to the config's 32x32.
        assert_eq!(pre["size"], serde_json::json!({"height": 16, "width": 16}));
        let png = d.path().join("left.png");
        image::GrayImage::from_fn(40, 40, |x, _| image::Luma([if x < 20 { 200 } else { 10 }]))
            .save(&png)
            .unwrap();
        let feats = d.path().join("f.safetensors");
        let out = std::process::Command::new(bin)
            .args(["vit", "features", "--model"])
            .arg(d.path().join("run"))
            .arg("--input")
            .arg(&png)
            .arg("--output")
            .arg(&feats)
            .output()
            .unwrap();
        crate::common::assert_success(&out);
        let (t, _) = tessera::core::checkpoint::load_safetensors(&feats).unwrap();
        // 16 / 8 = 2x2 patches plus the class token.
        assert_eq!(t["last_hidden_state"].shape().to_vec(), vec![1, 5, 32]);
        // A config file that sets the normalisation wins over the checkpoint's.
        let cfg = d.path().join("train.toml");
        std::fs::write(&cfg, "mean = [0.5]\nstd = [0.5]\n").unwrap();
        let (mean, _, pre) = train(&d.path().join("run2"), Some(&cfg));
        assert_eq!(mean, toml::Value::try_from(vec![0.5]).unwrap());
        assert_eq!(pre["image_mean"], serde_json::json!([0.5, 0.5, 0.5]));
        // A normalisation with the wrong number of channels is refused.
        std::fs::write(&cfg, "mean = [0.5, 0.5]\nstd = [0.5, 0.5]\n").unwrap();
        let out = std::process::Command::new(bin)
            .args(["vit", "train", "--epochs", "1", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg("--run-dir")
            .arg(d.path().join("run3"))
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("mean has 2 values"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn training_gives_the_same_weights_on_one_and_two_threads() {
        let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits/digits.csv.gz");
        if !digits.exists() {
            eprintln!("skipped: run scripts/fetch-data.sh digits");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let weights = |threads: &str| {
            let run_dir = d.path().join(format!("run{threads}"));
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
                .args([
                    "vit", "train", "--json", "--preset", "mnist", "--hidden", "32",
                ])
                .args([
                    "--layers",
                    "2",
                    "--heads",
                    "2",
                    "--epochs",
                    "1",
                    "--threads",
                    threads,
                ])
                .arg("--data")
                .arg(&digits)
                .arg("--run-dir")
                .arg(&run_dir)
                .output()
                .unwrap();
            crate::common::assert_success(&out);
            std::fs::read(run_dir.join("model.safetensors")).unwrap()
        };
        // Every fused kernel splits its work in fixed chunks and adds partial sums in order, and
        // micro-batch gradients are added in micro-batch order: the thread count cannot show.
        assert!(
            weights("1") == weights("2"),
            "weights differ between 1 and 2 threads"
        );
    }
}
