//! The darknet detector against the independent numpy reference (scripts/yolo_reference.py via
//! scripts/make_detect_fixtures.py), the readers' errors, and `tessera detect`.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{floats, max_diff, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera::detect::config::{parse_cfg, read_cfg};
use tessera::detect::data::{letterbox, Image};
use tessera::detect::model::Darknet;
use tessera::detect::Detector;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny() -> (PathBuf, Value) {
    let d = fixtures().join("darknet-tiny");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("reference.json")).unwrap()).unwrap();
    (d, r)
}

#[test]
fn every_layer_kind_matches_the_numpy_reference() {
    let (d, r) = tiny();
    let dev = Device::flex();
    let img = tessera::detect::data::read_rgb(&d.join("image.png")).unwrap();
    let boxed = letterbox(&Image::from_rgb8(&img), 32, 32);
    let input_diff = max_diff(&boxed.data, &floats(&r["input"]));
    assert!(
        input_diff < 1e-6,
        "letterboxed input differs by {input_diff}"
    );
    let spec = read_cfg(&d.join("tiny.cfg")).unwrap();
    let net = Darknet::load(spec, &d.join("tiny.weights"), &dev).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(boxed.data, [1, 3, 32, 32]), &dev);
    let out = net.forward(x, &[]).unwrap();
    let expected = r["yolo"].as_array().unwrap();
    assert_eq!(out.yolo.len(), expected.len());
    for (o, e) in out.yolo.iter().zip(expected) {
        let diff = max_diff(&o.values, &floats(e));
        eprintln!(
            "yolo layer {}: {}x{}, max difference {diff:.2e}",
            o.layer, o.h, o.w
        );
        assert!(diff < 1e-5, "yolo layer {} differs by {diff}", o.layer);
    }
}

fn same_detections(
    ours: &[tessera::detect::Detection],
    theirs: &Value,
    what: &str,
    px: f32,
    score: f32,
) {
    let theirs = theirs.as_array().unwrap();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: {} detections, the reference {}",
        ours.len(),
        theirs.len()
    );
    // Matched one to one by class, box and score: the order of equal scores may differ.
    let mut used = vec![false; ours.len()];
    for t in theirs {
        let tb = floats(&t["box"]);
        let ts = t["score"].as_f64().unwrap() as f32;
        let class = t["class_id"].as_u64().unwrap() as usize;
        let best = (0..ours.len())
            .filter(|&i| !used[i] && ours[i].class_id == class)
            .map(|i| (i, max_diff(&ours[i].bbox, &tb), (ours[i].score - ts).abs()))
            .min_by(|a, b| {
                (a.1 / px)
                    .max(a.2 / score)
                    .total_cmp(&(b.1 / px).max(b.2 / score))
            });
        let Some((i, db, ds)) = best else {
            panic!(
                "{what}: no detection of class {class} left for {} {ts} {tb:?}",
                t["label"]
            );
        };
        used[i] = true;
        assert!(
            db <= px && ds <= score,
            "{what}: {} {ts} {tb:?}: the closest of ours is {db} px and {ds} in score off",
            t["label"]
        );
    }
}

#[test]
fn tiny_network_detections_match_the_reference() {
    let (d, r) = tiny();
    let det = Detector::load(&d, &Device::flex()).unwrap();
    let img = tessera::detect::data::read_rgb(&d.join("image.png")).unwrap();
    let out = det.detect(&img, 0.25, 0.45, &[]).unwrap();
    same_detections(
        &out.detections,
        &r["detections"]["detections"],
        "tiny network",
        1.0,
        1e-3,
    );
}

#[test]
fn yolov3_tiny_on_darknets_photos_matches_the_reference() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/yolov3-tiny");
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/darknet-photos");
    if !model.exists() || !photos.exists() {
        eprintln!("skipped: run scripts/fetch-data.sh yolov3-tiny darknet-photos");
        return;
    }
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("yolov3_tiny_reference.json")).unwrap(),
    )
    .unwrap();
    let det = Detector::load(&model, &Device::flex()).unwrap();
    let mut total = 0;
    for im in r.as_array().unwrap() {
        let name = im["image"].as_str().unwrap();
        // On the pixels the reference saw (PNG copies of Pillow's decoding): boxes within a pixel,
        // scores within 1e-3.
        let png = photos.join("png").join(name.replace(".jpg", ".png"));
        let img = tessera::detect::data::read_rgb(&png).unwrap();
        let out = det.detect(&img, 0.25, 0.45, &[]).unwrap();
        assert_eq!(
            (out.width as u64, out.height as u64),
            (
                im["width"].as_u64().unwrap(),
                im["height"].as_u64().unwrap()
            )
        );
        same_detections(&out.detections, &im["detections"], name, 1.0, 1e-3);
        // On the JPEG as our decoder reads it (JPEG decoders differ by a few levels): the same
        // detections, within 2 pixels and 0.02.
        let img = tessera::detect::data::read_rgb(&photos.join(name)).unwrap();
        let out = det.detect(&img, 0.25, 0.45, &[]).unwrap();
        same_detections(&out.detections, &im["detections"], name, 2.0, 0.02);
        total += out.detections.len();
    }
    assert_eq!(total, 24);
}

#[test]
fn bad_cfg_and_weights_files_are_refused_with_their_place() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.cfg");
    let base = std::fs::read_to_string(tiny().0.join("tiny.cfg")).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            base.replace("[upsample]", "[reorg]"),
            "layer kind [reorg] is not supported",
        ),
        (
            base.replace("activation=leaky", "activation=swish"),
            "activation `swish`",
        ),
        (
            base.replace("stride=2\npad=1", "stride=2\npad=1\nbinary=1"),
            "setting `binary`",
        ),
        (base.replace("filters=21", "filters=20"), "21"),
        (
            base.replace("layers = -3", "layers = -30"),
            "-30 names no earlier layer",
        ),
        (
            base.replace("size=3\nstride=1", "size=x\nstride=1"),
            "`x` is not an integer",
        ),
        ("width=3\n[net]\n".into(), "before the first [section]"),
    ];
    for (text, words) in cases {
        std::fs::write(&p, &text).unwrap();
        let e = format!("{:#}", parse_cfg(&p, &text).unwrap_err());
        assert!(e.contains("x.cfg") && e.contains(words), "{e}");
    }
    // A truncated .weights names the layer it ran out in; extra bytes are refused too.
    let spec = read_cfg(&tiny().0.join("tiny.cfg")).unwrap();
    let w = std::fs::read(tiny().0.join("tiny.weights")).unwrap();
    let cut = d.path().join("cut.weights");
    std::fs::write(&cut, &w[..w.len() - 10]).unwrap();
    let e = format!(
        "{:#}",
        Darknet::load(spec.clone(), &cut, &Device::flex()).unwrap_err()
    );
    assert!(
        e.contains("cut.weights") && e.contains("truncated") && e.contains("layer 12"),
        "{e}"
    );
    let long = d.path().join("long.weights");
    std::fs::write(&long, [w.as_slice(), &[0u8; 8]].concat()).unwrap();
    let e = format!(
        "{:#}",
        Darknet::load(spec.clone(), &long, &Device::flex()).unwrap_err()
    );
    assert!(e.contains("8 bytes left"), "{e}");
    let nan = d.path().join("nan.weights");
    let mut bad = w.clone();
    bad[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&nan, bad).unwrap();
    let e = format!(
        "{:#}",
        Darknet::load(spec, &nan, &Device::flex()).unwrap_err()
    );
    assert!(e.contains("not finite"), "{e}");
    // Found by fuzzing (fuzz/fuzz_targets/darknet.rs): a version field near i32::MAX overflowed
    // while deciding the header's width.
    let huge = d.path().join("huge.weights");
    let mut bad = w.clone();
    bad[0..4].copy_from_slice(&i32::MAX.to_le_bytes());
    std::fs::write(&huge, bad).unwrap();
    let spec = read_cfg(&tiny().0.join("tiny.cfg")).unwrap();
    assert!(Darknet::load(spec, &huge, &Device::flex()).is_err());
}

#[test]
fn detect_cli_prints_json_draws_and_refuses_unreadable_images() {
    let (d, r) = tiny();
    let t = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tessera");
    let png = t.path().join("drawn.png");
    let out = Command::new(bin)
        .args(["detect", "--json", "--model"])
        .arg(&d)
        .arg("--input")
        .arg(d.join("image.png"))
        .arg("--draw")
        .arg(&png)
        .output()
        .unwrap();
    common::assert_success(&out);
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(37), Some(29))
    );
    let dets = v["detections"].as_array().unwrap();
    assert_eq!(
        dets.len(),
        r["detections"]["detections"].as_array().unwrap().len()
    );
    for k in ["box", "label", "class_id", "score"] {
        assert!(dets[0].get(k).is_some(), "detection lacks {k}");
    }
    let drawn = image::open(&png).unwrap();
    assert_eq!((drawn.width(), drawn.height()), (37, 29));
    let not_image = write(t.path(), "not.jpg", "hello");
    let out = Command::new(bin)
        .args(["detect", "--model"])
        .arg(&d)
        .arg("--input")
        .arg(&not_image)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not.jpg"));
    let out = Command::new(bin)
        .args(["detect", "--model"])
        .arg(t.path())
        .arg("--input")
        .arg(d.join("image.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .cfg file"));
}
