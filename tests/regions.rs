//! The regions layer: RoIAlign against torchvision, region files in the three layouts (fixtures
//! written by Python's base64 and numpy), bit-for-bit round trips, bad records, and
//! `tessera regions` / `detect --output`.

mod common;

use common::{floats, max_diff, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera::core::roi_align::RoiAlign;
use tessera::regions::files::{read, write as write_regions, ImageRegions, RegionSet};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn roi_align_matches_torchvision() {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("roi_align_reference.json")).unwrap(),
    )
    .unwrap();
    for case in r["cases"].as_array().unwrap() {
        let shape: Vec<usize> = case["map_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let out: Vec<usize> = case["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let boxes: Vec<[f32; 4]> = case["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let v = floats(b);
                [v[0], v[1], v[2], v[3]]
            })
            .collect();
        let pool = RoiAlign {
            output: (out[0], out[1]),
            spatial_scale: case["spatial_scale"].as_f64().unwrap() as f32,
            sampling_ratio: case["sampling_ratio"].as_u64().unwrap() as usize,
            aligned: case["aligned"].as_bool().unwrap(),
        };
        let ours = pool.pool(&floats(&case["map"]), shape[0], shape[1], shape[2], &boxes);
        let diff = max_diff(&ours, &floats(&case["pooled"]));
        eprintln!(
            "aligned {} sampling {}: max difference {diff:.2e}",
            pool.aligned, pool.sampling_ratio
        );
        assert!(diff < 1e-5, "{diff}");
    }
}

fn fixture_regions() -> Vec<ImageRegions> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("regions/regions.json")).unwrap(),
    )
    .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|im| {
            let b = floats(&im["boxes"]);
            ImageRegions {
                image_id: im["image_id"].as_str().unwrap().to_string(),
                width: im["image_w"].as_f64().unwrap() as f32,
                height: im["image_h"].as_f64().unwrap() as f32,
                boxes: b.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
                features: floats(&im["features"]),
                cls_prob: Some(floats(&im["cls_prob"])),
            }
        })
        .collect()
}

#[test]
fn python_written_tsv_and_npz_read_back_every_value() {
    let expected = fixture_regions();
    let tsv = read(&fixtures().join("regions/regions.tsv")).unwrap();
    assert_eq!(tsv.images, expected);
    let npz = read(&fixtures().join("regions/npz")).unwrap();
    // The npz directory lists files by name.
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    assert_eq!(npz.images, sorted);
}

#[test]
fn region_files_round_trip_bit_for_bit_between_layouts() {
    let d = tempfile::tempdir().unwrap();
    let mut images = fixture_regions();
    // An image without boxes and one without class distributions... all images of a set share
    // cls_prob or none, so a second set covers the other case.
    images.push(ImageRegions {
        image_id: "empty".into(),
        width: 10.0,
        height: 10.0,
        boxes: vec![],
        features: vec![],
        cls_prob: Some(vec![]),
    });
    let set = RegionSet::from_images(images, "test");
    let st = d.path().join("r.safetensors");
    let tsv = d.path().join("r.tsv");
    let npz = d.path().join("npz");
    write_regions(&st, &set).unwrap();
    let from_st = read(&st).unwrap();
    assert_eq!(from_st.images, set.images);
    assert_eq!(from_st.backbone, "test");
    write_regions(&tsv, &from_st).unwrap();
    let from_tsv = read(&tsv).unwrap();
    assert_eq!(from_tsv.images, set.images);
    write_regions(&npz, &from_tsv).unwrap();
    let mut from_npz = read(&npz).unwrap().images;
    let mut want = set.images.clone();
    want.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    from_npz.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    assert_eq!(from_npz, want);
    // Back to safetensors: the same tensors, bit for bit, and the same metadata.
    let st2 = d.path().join("r2.safetensors");
    write_regions(&st2, &RegionSet::from_images(from_tsv.images, "test")).unwrap();
    let (a, ma) = tessera::core::checkpoint::load_safetensors(&st).unwrap();
    let (b, mb) = tessera::core::checkpoint::load_safetensors(&st2).unwrap();
    assert_eq!(ma, mb);
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        let (x, y) = (
            v.as_slice::<f32>().unwrap(),
            b[k].as_slice::<f32>().unwrap(),
        );
        assert!(
            x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "tensor {k}"
        );
    }
}

#[test]
fn bad_region_records_name_file_line_and_field() {
    let d = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(fixtures().join("regions/regions.tsv")).unwrap();
    let first = good.lines().next().unwrap();
    let cols: Vec<&str> = first.split('\t').collect();
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{}\n{}\n", first, cols[..4].join("\t")),
            "r.tsv:2: field `num_boxes`",
        ),
        (
            first.replacen("\t640\t", "\tabc\t", 1) + "\n",
            "r.tsv:1: field `image_w`",
        ),
        (
            [cols[0], cols[1], cols[2], "4", cols[4], cols[5], cols[6]].join("\t") + "\n",
            "r.tsv:1: field `boxes`",
        ),
        (
            [
                cols[0],
                cols[1],
                cols[2],
                cols[3],
                "!!notbase64",
                cols[5],
                cols[6],
            ]
            .join("\t")
                + "\n",
            "r.tsv:1: field `boxes`: not base64",
        ),
        // A box past the image's edge: the image is 640 wide, the box is moved far right.
        (
            {
                let mut im = fixture_regions().remove(0);
                im.boxes[0] = [600.0, 10.0, 900.0, 20.0];
                let set = RegionSet::from_images(vec![im], "x");
                let p = d.path().join("tmp.tsv");
                write_regions(&p, &set).unwrap();
                std::fs::read_to_string(p).unwrap()
            },
            "r.tsv:1: field `boxes`: box 0 [600, 10, 900, 20] lies outside the 640x480 image",
        ),
    ];
    let p = d.path().join("r.tsv");
    for (text, words) in cases {
        std::fs::write(&p, text).unwrap();
        let e = format!("{:#}", read(&p).unwrap_err());
        assert!(e.contains(words), "{e}\nexpected: {words}");
    }
    // safetensors that is no region file; an npz without boxes.
    let st = d.path().join("x.safetensors");
    std::fs::write(&st, b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ").unwrap();
    let e = format!("{:#}", read(&st).unwrap_err());
    assert!(
        e.contains("x.safetensors") && e.contains("field `features` is missing"),
        "{e}"
    );
    let npz = d.path().join("npz");
    std::fs::create_dir_all(&npz).unwrap();
    std::fs::copy(
        fixtures().join("regions/npz/img7.npz"),
        npz.join("img7.npz"),
    )
    .unwrap();
    write(&npz, "broken.npz", "PK not really");
    let e = format!("{:#}", read(&npz).unwrap_err());
    assert!(
        e.contains("broken.npz") && e.contains("not an .npz archive"),
        "{e}"
    );
}

#[test]
fn regions_cli_pools_detector_grid_and_given_boxes() {
    let tiny = fixtures().join("darknet-tiny");
    let d = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tessera");
    let image = tiny.join("image.png");
    // Detector boxes, written as safetensors; the class distributions sum to one.
    let st = d.path().join("r.safetensors");
    let out = Command::new(bin)
        .args(["regions", "--max-boxes", "5", "--backbone"])
        .arg(&tiny)
        .arg("--input")
        .arg(&image)
        .arg("--output")
        .arg(&st)
        .output()
        .unwrap();
    common::assert_success(&out);
    let set = read(&st).unwrap();
    let im = &set.images[0];
    assert_eq!(im.image_id, "image");
    assert_eq!((im.width, im.height), (37.0, 29.0));
    assert!(im.num_boxes() > 0 && im.num_boxes() <= 5);
    // The tiny net's widest convolution has 21 channels (its first yolo head's input).
    assert_eq!(set.feature_size().unwrap(), 21);
    let c = 2;
    for row in im.cls_prob.as_ref().unwrap().chunks(c) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // A 2 x 2 grid plus the whole image, as TSV.
    let tsv = d.path().join("g.tsv");
    let out = Command::new(bin)
        .args(["regions", "--grid", "2", "--backbone"])
        .arg(&tiny)
        .arg("--input")
        .arg(&image)
        .arg("--output")
        .arg(&tsv)
        .output()
        .unwrap();
    common::assert_success(&out);
    let g = read(&tsv).unwrap();
    assert_eq!(g.images[0].boxes[0], [0.0, 0.0, 37.0, 29.0]);
    assert_eq!(g.images[0].num_boxes(), 5);
    // Given boxes from an annotated corpus; one outside its image is refused.
    let corpus = d.path().join("corpus");
    std::fs::create_dir_all(corpus.join("images")).unwrap();
    std::fs::copy(&image, corpus.join("images/a.png")).unwrap();
    write(
        &corpus,
        "annotations.jsonl",
        "{\"image\": \"images/a.png\", \"width\": 37, \"height\": 29, \"boxes\": [[1, 2, 20, 28], [0, 0, 37, 29]], \"labels\": [\"x\", \"y\"]}\n",
    );
    let npz = d.path().join("npz");
    let out = Command::new(bin)
        .args(["regions", "--backbone"])
        .arg(&tiny)
        .arg("--boxes")
        .arg(&corpus)
        .arg("--output")
        .arg(&npz)
        .output()
        .unwrap();
    common::assert_success(&out);
    let n = read(&npz).unwrap();
    assert_eq!(
        n.images[0].boxes,
        vec![[1.0, 2.0, 20.0, 28.0], [0.0, 0.0, 37.0, 29.0]]
    );
    write(
        &corpus,
        "annotations.jsonl",
        "{\"image\": \"images/a.png\", \"width\": 37, \"height\": 29, \"boxes\": [[1, 2, 50, 28]]}\n",
    );
    let out = Command::new(bin)
        .args(["regions", "--backbone"])
        .arg(&tiny)
        .arg("--boxes")
        .arg(&corpus)
        .arg("--output")
        .arg(&npz)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("annotations.jsonl:1: field `boxes`") && e.contains("outside"),
        "{e}"
    );
    // detect --output writes the detected boxes as a region file.
    let det = d.path().join("det.safetensors");
    let out = Command::new(bin)
        .args(["detect", "--json", "--model"])
        .arg(&tiny)
        .arg("--input")
        .arg(&image)
        .arg("--output")
        .arg(&det)
        .output()
        .unwrap();
    common::assert_success(&out);
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let mut boxes: Vec<Vec<f32>> = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| floats(&d["box"]))
        .collect();
    boxes.dedup();
    let r = read(&det).unwrap();
    assert!(r.images[0].num_boxes() > 0);
    for b in &r.images[0].boxes {
        assert!(boxes.iter().any(|x| max_diff(x, b) == 0.0));
    }
}
