//! VL-BERT against the official code: tests/fixtures/vlbert was made by
//! scripts/make_vlbert_fixtures.py running github jackroos/VL-BERT's `VisualLinguisticBert`
//! (with its heads, coordinate embedding and soft cross-entropy) on small random weights, real
//! text and random regions; the model directory came from scripts/convert_vlbert.py.

mod common;

use burn::tensor::Device;
use common::{assert_success, max_diff, write};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera::core::checkpoint::load_safetensors;
use tessera::regions::files::read;
use tessera::text::embed::read_lines;
use tessera::vlbert::data::{batch, encode_texts, prepare_regions, Example, PreparedRegions};
use tessera::vlbert::load_model_dir;
use tessera::vlbert::train::{pretrain_losses, MaskedPair, MaskedText, Pair, PairCorpus};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vlbert")
}

fn tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let (t, _) = load_safetensors(path).unwrap();
    t.into_iter()
        .map(|(k, v)| {
            let shape = v.shape().to_vec();
            (k, (shape, v.convert::<f32>().try_to_vec::<f32>().unwrap()))
        })
        .collect()
}

fn tessera(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn features_match_the_official_network() {
    let d = fixture();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("features.safetensors");
    let run = tessera(&[
        "vlbert",
        "features",
        "--model",
        d.join("model").to_str().unwrap(),
        "--text",
        d.join("sentences.txt").to_str().unwrap(),
        "--regions",
        d.join("regions.tsv").to_str().unwrap(),
        "--output",
        o.to_str().unwrap(),
        "--batch-size",
        "2",
    ]);
    assert_success(&run);
    let ours = tensors(&o);
    let reference = tensors(&d.join("reference.safetensors"));
    for name in ["text_hidden", "object_hidden", "mlm_logits", "mvrc_logits"] {
        let (s1, a) = &ours[name];
        let (s2, b) = &reference[name];
        assert_eq!(s1, s2, "{name} shape");
        let diff = max_diff(a, b);
        let largest = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        eprintln!("{name}: largest difference {diff} (values up to {largest})");
        assert!(diff < 1e-5, "{name}: max difference {diff}");
        // The output is not trivially small: the comparison can fail.
        assert!(b.iter().any(|x| x.abs() > 0.5), "{name} is all small");
    }
}

#[test]
fn pretraining_losses_on_a_fixed_masking_match_the_official_code() {
    let d = fixture();
    let device = Device::flex();
    let m = load_model_dir(&d.join("model"), &device).unwrap();
    let texts = read_lines(&d.join("sentences.txt")).unwrap();
    let encoded = encode_texts(&m.tokenizer, &texts, &m.config, "sentences").unwrap();
    let set = read(&d.join("regions.tsv")).unwrap();
    let images: Vec<PreparedRegions> = set
        .images
        .iter()
        .map(|im| prepare_regions(im, &m.config).unwrap())
        .collect();
    let targets: Vec<Vec<f32>> = images.iter().map(|p| p.cls_prob.clone().unwrap()).collect();
    let pairs: Vec<Pair> = encoded
        .iter()
        .enumerate()
        .map(|(i, e)| Pair {
            ids: e.ids.clone(),
            word_start: vec![true; e.ids.len()],
            image: i,
        })
        .collect();
    let masking: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("masking.json")).unwrap()).unwrap();
    let mask_id = m.tokenizer.mask_id.unwrap();
    let items: Vec<MaskedPair> = (0..3)
        .map(|i| {
            let mut input = pairs[i].ids.clone();
            let mut mlm_targets = vec![];
            for p in masking["mlm_positions"][i].as_array().unwrap() {
                let p = p.as_u64().unwrap() as usize;
                mlm_targets.push((p, input[p]));
                input[p] = mask_id;
            }
            let ops: Vec<bool> = masking["mvrc_ops"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_u64() == Some(1))
                .collect();
            MaskedPair {
                pair: i,
                input,
                mlm_targets,
                chosen: ops.clone(),
                masked: ops,
                texts: vec![],
            }
        })
        .collect();
    let corpus = PairCorpus {
        images,
        targets,
        pairs,
    };
    let l = pretrain_losses(&m.model, &m.config, &corpus, &items, true, &device);
    let reference = tensors(&d.join("reference.safetensors"));
    let mlm = l.mlm.unwrap().into_scalar::<f32>();
    let mvrc = l.mvrc.unwrap().into_scalar::<f32>();
    assert!(
        (mlm - reference["mlm_loss"].1[0]).abs() < 1e-5,
        "mlm loss {mlm} vs {}",
        reference["mlm_loss"].1[0]
    );
    assert!(
        (mvrc - reference["mvrc_loss"].1[0]).abs() < 1e-5,
        "mvrc loss {mvrc} vs {}",
        reference["mvrc_loss"].1[0]
    );

    // Text-only sequences beside the same pairs (the official multitask network): their
    // masked-LM loss is the reference's, and the pairs' losses do not change.
    let aux: Vec<String> = masking["aux_texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let refs: Vec<&str> = aux.iter().map(String::as_str).collect();
    let texts: Vec<MaskedText> = m
        .tokenizer
        .encode_plain(&refs)
        .unwrap()
        .into_iter()
        .zip(masking["aux_positions"].as_array().unwrap())
        .map(|(ids, pos)| {
            let mut input = ids.clone();
            let mut mlm_targets = vec![];
            for p in pos.as_array().unwrap() {
                let p = p.as_u64().unwrap() as usize;
                mlm_targets.push((p, ids[p]));
                input[p] = mask_id;
            }
            MaskedText { input, mlm_targets }
        })
        .collect();
    let mut with_texts = items.clone();
    with_texts[0].texts = vec![texts[0].clone()];
    with_texts[2].texts = vec![texts[1].clone()];
    let l = pretrain_losses(&m.model, &m.config, &corpus, &with_texts, true, &device);
    for (name, got) in [
        ("mlm_loss_aux", l.mlm_aux.unwrap().into_scalar::<f32>()),
        ("mlm_loss", l.mlm.unwrap().into_scalar::<f32>()),
        ("mvrc_loss", l.mvrc.unwrap().into_scalar::<f32>()),
    ] {
        let want = reference[name].1[0];
        eprintln!("{name}: {got} (official {want})");
        assert!((got - want).abs() < 1e-5, "{name} {got} vs {want}");
    }

    // The text-only rows' hidden states and masked-LM scores, in a batch of them alone.
    let none = PreparedRegions::none();
    let zeros = vec![0u32; 64];
    let examples: Vec<Example> = texts
        .iter()
        .map(|x| Example {
            ids: &x.input,
            type_ids: &zeros[..x.input.len()],
            regions: &none,
            masked: &[],
        })
        .collect();
    let b = batch(&examples, &m.config);
    let out = m.model.forward(&b, &device);
    let [n, t, h] = out.text.dims();
    let hidden: Vec<f32> = out.text.clone().into_data().try_to_vec::<f32>().unwrap();
    let logits: Vec<f32> = m
        .model
        .mlm_logits(out.text.reshape([n * t, h]))
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    for (name, ours, width) in [
        ("aux_text_hidden", &hidden, h),
        ("aux_mlm_logits", &logits, logits.len() / (n * t)),
    ] {
        let (shape, want) = &reference[name];
        let tr = shape[1];
        let mut worst = 0f32;
        for (i, x) in texts.iter().enumerate() {
            for p in 0..x.input.len() {
                let a = &ours[(i * t + p) * width..(i * t + p + 1) * width];
                let w = &want[(i * tr + p) * width..(i * tr + p + 1) * width];
                worst = worst.max(max_diff(a, w));
            }
        }
        eprintln!("{name}: largest difference {worst}");
        assert!(worst < 1e-5, "{name}: largest difference {worst}");
        assert!(want.iter().any(|x| x.abs() > 0.5), "{name} is all small");
    }
}

#[test]
fn bad_inputs_are_refused_with_their_place() {
    let d = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let model = d.join("model");
    let text = d.join("sentences.txt");
    let regions = d.join("regions.tsv");
    let out = tmp.path().join("o.safetensors");
    let run = |text: &Path, regions: &Path| {
        tessera(&[
            "vlbert",
            "features",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
            "--regions",
            regions.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
    };
    let refused = |o: std::process::Output, want: &str| {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "accepted; stderr: {err}");
        assert!(err.contains(want), "`{want}` not in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // A caption longer than the 64 positions allow.
    let long = write(
        tmp.path(),
        "long.txt",
        &format!("{}\nb\nc\n", "dog ".repeat(70)),
    );
    refused(run(&long, &regions), "long.txt:1");
    // Fewer lines than images.
    let two = write(tmp.path(), "two.txt", "a dog\na cat\n");
    refused(run(&two, &regions), "line i goes with image i");
    // Features of another size than the model reads.
    let tsv = std::fs::read_to_string(&regions).unwrap();
    let small = tsv
        .lines()
        .map(|l| {
            let mut f: Vec<String> = l.split('\t').map(String::from).collect();
            use base64::Engine;
            let e = base64::engine::general_purpose::STANDARD;
            let n: usize = f[3].parse().unwrap();
            f[5] = e.encode(vec![0u8; n * 5 * 4]);
            f.join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let small = write(tmp.path(), "small.tsv", &small);
    refused(run(&text, &small), "object_feature_size");
    // An image without regions.
    let none = tsv
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 1 {
                let f: Vec<&str> = l.split('\t').collect();
                format!("{}\t{}\t{}\t0\t\t\t", f[0], f[1], f[2])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let none = write(tmp.path(), "none.tsv", &none);
    refused(run(&text, &none), "no regions");
    // A config of another vocabulary size than the vocabulary.
    let bad_model = tmp.path().join("model");
    std::fs::create_dir(&bad_model).unwrap();
    for f in ["model.safetensors", "vocab.txt"] {
        std::fs::copy(model.join(f), bad_model.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(model.join("config.json"))
        .unwrap()
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 0");
    std::fs::write(bad_model.join("config.json"), cfg).unwrap();
    let o = tessera(&[
        "vlbert",
        "features",
        "--model",
        bad_model.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--regions",
        regions.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    refused(o, "num_attention_heads");
    assert!(!out.exists(), "no output after an error");
}

#[test]
fn pretraining_on_generated_scenes_learns_words_and_regions_and_grounding_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    for (name, count, seed, split) in [("train", "600", "0", "train"), ("test", "150", "1", "test")]
    {
        assert_success(&tessera(&[
            "data",
            "scenes",
            "--count",
            count,
            "--seed",
            seed,
            "--split",
            split,
            "--output",
            &p(name),
        ]));
        assert_success(&tessera(&[
            "regions",
            "--backbone",
            "pixels",
            "--boxes",
            &p(name),
            "--output",
            &p(&format!("{name}.safetensors")),
        ]));
    }
    let out = tessera(&[
        "vlbert",
        "pretrain",
        "--data",
        &p("train"),
        "--regions",
        &p("train.safetensors"),
        "--valid-data",
        &p("test"),
        "--valid-regions",
        &p("test.safetensors"),
        "--vocab",
        "data/minilm",
        "--preset",
        "tiny",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--lr",
        "1e-3",
        "--seed",
        "3",
        "--run-dir",
        &p("run"),
        "--json",
    ]);
    assert_success(&out);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let first = &records[0];
    let last = records.last().unwrap();
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    assert!(f(last, "loss") < 0.8 * f(first, "loss"), "{records:?}");
    // Masked-RoI accuracy against the most frequent label of the test boxes.
    let ann = std::fs::read_to_string(tmp.path().join("test/annotations.jsonl")).unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in ann.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for l in v["labels"].as_array().unwrap() {
            *counts.entry(l.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    let majority = *counts.values().max().unwrap() as f64 / total as f64;
    let roi = f(last, "valid_roi_accuracy");
    assert!(
        roi > majority + 0.1,
        "masked-RoI accuracy {roi} vs majority {majority}"
    );
    let words = f(last, "valid_word_accuracy");
    assert!(
        words > f(first, "valid_word_accuracy") + 0.05,
        "{records:?}"
    );

    // Grounding from the pretrained model: the best-scored RoI of a referring caption hits the
    // referent (IoU >= 0.5) far more often than a random RoI.
    let out = tessera(&[
        "vlbert",
        "ground",
        "--model",
        &p("run"),
        "--data",
        &p("train"),
        "--regions",
        &p("train.safetensors"),
        "--valid-data",
        &p("test"),
        "--valid-regions",
        &p("test.safetensors"),
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--lr",
        "1e-3",
        "--seed",
        "3",
        "--run-dir",
        &p("ground"),
        "--json",
    ]);
    assert_success(&out);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let (first, last) = (&records[0], records.last().unwrap());
    assert!(f(last, "loss") < f(first, "loss"), "{records:?}");
    let (acc, random) = (f(last, "valid_accuracy"), f(last, "valid_random_box"));
    assert!(
        acc > random + 0.2,
        "grounding accuracy {acc} vs random RoI {random}"
    );
}

#[test]
fn box_overlap_counts_pixels_as_the_official_code() {
    use tessera::vlbert::train::iou;
    // bbox_iou_py_vectorized: widths and heights are x2 - x1 + 1.
    let a = [0.0, 0.0, 9.0, 9.0];
    let b = [5.0, 5.0, 14.0, 14.0];
    assert!((iou(&a, &b) - 25.0 / 175.0).abs() < 1e-6);
    assert_eq!(iou(&a, &a), 1.0);
    assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
}

#[test]
fn predict_fills_masks_from_the_model_and_its_image() {
    let d = fixture();
    let out = tessera(&[
        "vlbert",
        "predict",
        "--model",
        d.join("model").to_str().unwrap(),
        "--regions",
        d.join("regions.tsv").to_str().unwrap(),
        "--image-id",
        "img1",
        "--text",
        "a black [MASK] runs",
        "--top-k",
        "3",
        "--json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let words = v["words"].as_array().unwrap();
    assert_eq!(words.len(), 3);
    let scores: Vec<f64> = words.iter().map(|w| w["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores.iter().all(|&s| s > 0.0 && s < 1.0), "{scores:?}");
}

/// `count` generated scenes in `dir/sc` and their `pixels` regions in `dir/sc.safetensors`.
fn scenes_with_regions(dir: &Path, count: &str) {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    assert_success(&tessera(&[
        "data",
        "scenes",
        "--count",
        count,
        "--seed",
        "5",
        "--output",
        &p("sc"),
    ]));
    assert_success(&tessera(&[
        "regions",
        "--backbone",
        "pixels",
        "--boxes",
        &p("sc"),
        "--output",
        &p("sc.safetensors"),
    ]));
}

#[test]
fn pretraining_steps_whose_micro_batches_predict_nothing_do_not_fail() {
    // Batches of 2 pairs are cut into micro-batches of one; many single captions draw no masked
    // word and no masked region (a zero loss without a graph used to panic in backward).
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    scenes_with_regions(tmp.path(), "12");
    let out = tessera(&[
        "vlbert",
        "pretrain",
        "--data",
        &p("sc"),
        "--regions",
        &p("sc.safetensors"),
        "--vocab",
        "data/minilm",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--run-dir",
        &p("run"),
        "--json",
    ]);
    assert_success(&out);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| r["loss"].as_f64().unwrap().is_finite()));
}

#[test]
fn text_only_sequences_train_beside_the_pairs_and_stay_in_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    scenes_with_regions(tmp.path(), "40");
    let days = "monday tuesday wednesday thursday friday saturday sunday";
    let corpus: String = (0..50).map(|i| format!("{days} {i}\n\n")).collect();
    write(tmp.path(), "corpus.txt", &corpus);
    write(
        tmp.path(),
        "texts.toml",
        "text_per_pair = 2\ntext_seq_len = 12\n",
    );
    let out = tessera(&[
        "vlbert",
        "pretrain",
        "--data",
        &p("sc"),
        "--regions",
        &p("sc.safetensors"),
        "--text-corpus",
        &p("corpus.txt"),
        "--config",
        &p("texts.toml"),
        "--vocab",
        "data/minilm",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--run-dir",
        &p("run"),
        "--json",
    ]);
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("50 text-only lines (2 per pair)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let loss = |r: &serde_json::Value| r["loss"].as_f64().unwrap();
    assert!(
        loss(records.last().unwrap()) < 0.9 * loss(&records[0]),
        "{records:?}"
    );
    // The multitask network's embedding is saved under its official name and loads again.
    let run = tmp.path().join("run");
    let t = tensors(&run.join("model.safetensors"));
    assert_eq!(t["aux_text_visual_embedding.weight"].0, vec![1, 64]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["WITH_TEXT_ONLY"], serde_json::json!(true));
    assert_success(&tessera(&[
        "vlbert",
        "eval",
        "--model",
        &p("run"),
        "--data",
        &p("sc"),
        "--regions",
        &p("sc.safetensors"),
    ]));
    // A task network fine-tuned from it drops the embedding, as the official VQA network.
    assert_success(&tessera(&[
        "vlbert",
        "vqa",
        "--model",
        &p("run"),
        "--data",
        &p("sc"),
        "--regions",
        &p("sc.safetensors"),
        "--epochs",
        "1",
        "--run-dir",
        &p("vqa"),
    ]));
    let t = tensors(&tmp.path().join("vqa/model.safetensors"));
    assert!(!t.contains_key("aux_text_visual_embedding.weight"));
    assert!(t.contains_key("final_mlp.2.weight"));
}
