//! Image–text corpora: the generated scenes (every caption true, every negative false, every
//! answer unique, deterministic, train and test from different images), easy-VQA and COCO
//! readers, and `tessera data`.

mod common;

use common::write;
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera::corpora::annotated::read_corpus;
use tessera::corpora::scenes::{
    caption_true, generate, load_sources, relation, unique_answer, Object, SceneConfig, Split,
    DIGIT_LABELS, FASHION_LABELS, RELATIONS,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn sources_present() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let d = root.join("mnist-5k/mnist_5k.csv.gz");
    let f = root.join("fashion-mnist");
    if d.exists() && f.join("train-images-idx3-ubyte.gz").exists() {
        Some((d, f))
    } else {
        eprintln!("skipped: run scripts/fetch-data.sh mnist-5k fashion-mnist");
        None
    }
}

/// Parses `a|an A <relation> a|an B` back into (A, relation, B), checking the grammar.
fn parse_caption(c: &str) -> (String, usize, String) {
    let labels: Vec<&str> = DIGIT_LABELS
        .iter()
        .chain(FASHION_LABELS.iter())
        .copied()
        .collect();
    for a in &labels {
        for r in 0..RELATIONS.len() {
            for b in &labels {
                if c == tessera::corpora::scenes::caption(a, r, b) {
                    return (a.to_string(), r, b.to_string());
                }
            }
        }
    }
    panic!("caption `{c}` is outside the grammar");
}

#[test]
fn scenes_hold_true_captions_false_negatives_and_unique_answers() {
    let Some((digits, fashion)) = sources_present() else {
        return;
    };
    let src = load_sources(&digits, &fashion, Split::Train).unwrap();
    let cfg = SceneConfig::default();
    let (mut captions, mut questions) = (0, 0);
    for i in 0..400 {
        let (img, ann, objects) = generate(&src, &cfg, 7, i);
        assert_eq!((img.width(), img.height()), (96, 96));
        assert!((2..=4).contains(&objects.len()));
        assert_eq!(ann.boxes.len(), objects.len());
        // Boxes hold ink and do not overlap.
        for (k, a) in objects.iter().enumerate() {
            let [x1, y1, x2, y2] = a.bbox;
            assert!(x1 < x2 && y1 < y2 && x2 <= 96.0 && y2 <= 96.0);
            let inked = (y1 as u32..y2 as u32)
                .any(|y| (x1 as u32..x2 as u32).any(|x| img.get_pixel(x, y)[0] > 25));
            assert!(inked);
            for b in &objects[k + 1..] {
                assert!(
                    (0..4).any(|r| relation(r, &a.bbox, &b.bbox)),
                    "overlapping boxes"
                );
            }
        }
        assert_eq!(ann.captions.len(), ann.negatives.len());
        for (c, n) in ann.captions.iter().zip(&ann.negatives) {
            let (a, r, b) = parse_caption(c);
            let (na, nr, nb) = parse_caption(n);
            assert_eq!(
                (na.as_str(), nr, nb.as_str()),
                (b.as_str(), r, a.as_str()),
                "the negative swaps the objects"
            );
            assert!(
                caption_true(&objects, &a, r, &b),
                "scene {i}: `{c}` is false"
            );
            assert!(
                !caption_true(&objects, &b, r, &a),
                "scene {i}: negative `{n}` is true"
            );
            // Same words, other meaning: no bag of words tells them apart.
            let mut wc: Vec<&str> = c.split(' ').collect();
            let mut wn: Vec<&str> = n.split(' ').collect();
            wc.sort();
            wn.sort();
            assert_eq!(wc, wn);
            captions += 1;
        }
        for q in &ann.qa {
            if let Some(rest) = q.question.strip_prefix("how many ") {
                let count: usize = q.answer.parse().unwrap();
                let plural = rest.strip_suffix(" are there?").unwrap();
                let n = objects
                    .iter()
                    .filter(|o| tessera::corpora::scenes::plural(o.label) == plural)
                    .count();
                assert_eq!(count, n, "{}", q.question);
            } else {
                let rest = q
                    .question
                    .strip_prefix("what is ")
                    .unwrap()
                    .strip_suffix('?')
                    .unwrap();
                let (r, label) = RELATIONS
                    .iter()
                    .enumerate()
                    .find_map(|(r, rel)| rest.strip_prefix(&format!("{rel} the ")).map(|l| (r, l)))
                    .unwrap();
                // Recomputed from the boxes: one target, one object in the relation.
                let target: Vec<&Object> = objects.iter().filter(|o| o.label == label).collect();
                assert_eq!(target.len(), 1, "{}", q.question);
                let hits: Vec<&Object> = objects
                    .iter()
                    .filter(|o| {
                        !std::ptr::eq(*o, target[0]) && relation(r, &o.bbox, &target[0].bbox)
                    })
                    .collect();
                assert_eq!(hits.len(), 1, "{}", q.question);
                assert_eq!(hits[0].label, q.answer);
                assert_eq!(unique_answer(&objects, r, label), Some(hits[0].label));
            }
            questions += 1;
        }
    }
    assert!(
        captions > 400 && questions > 1000,
        "{captions} captions, {questions} questions"
    );
    // Deterministic for a seed, different for another.
    let (a, ann_a, _) = generate(&src, &cfg, 7, 5);
    let (b, ann_b, _) = generate(&src, &cfg, 7, 5);
    assert_eq!((a.as_raw(), &ann_a), (b.as_raw(), &ann_b));
    let (c, _, _) = generate(&src, &cfg, 8, 5);
    assert_ne!(a.as_raw(), c.as_raw());
}

#[test]
fn train_and_test_scenes_take_different_source_images() {
    let Some((digits, fashion)) = sources_present() else {
        return;
    };
    let train = load_sources(&digits, &fashion, Split::Train).unwrap();
    let test = load_sources(&digits, &fashion, Split::Test).unwrap();
    assert_eq!((train.digits.len(), test.digits.len()), (4000, 1000));
    assert_eq!((train.fashion.len(), test.fashion.len()), (60_000, 10_000));
    // The digits' split: every image on one side only (compared by pixels).
    let key = |set: &tessera::core::images::ImageSet, i: usize| -> Vec<u8> {
        set.image(i)
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect()
    };
    let train_digits: std::collections::HashSet<Vec<u8>> = (0..train.digits.len())
        .map(|i| key(&train.digits, i))
        .collect();
    let shared = (0..test.digits.len())
        .filter(|&i| train_digits.contains(&key(&test.digits, i)))
        .count();
    assert_eq!(shared, 0);
}

#[test]
fn data_cli_generates_shows_and_imports() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let d = tempfile::tempdir().unwrap();
    if let Some((digits, fashion)) = sources_present() {
        let out = d.path().join("scenes");
        let run = |seed: &str| {
            Command::new(bin)
                .args([
                    "data", "scenes", "--json", "--count", "30", "--seed", seed, "--output",
                ])
                .arg(&out)
                .arg("--digits")
                .arg(&digits)
                .arg("--fashion")
                .arg(&fashion)
                .output()
                .unwrap()
        };
        let first = run("3");
        common::assert_success(&first);
        let summary: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
        assert_eq!(summary["scenes"], 30);
        let text = std::fs::read_to_string(out.join("annotations.jsonl")).unwrap();
        common::assert_success(&run("3"));
        assert_eq!(
            text,
            std::fs::read_to_string(out.join("annotations.jsonl")).unwrap()
        );
        let corpus = read_corpus(&out).unwrap();
        assert_eq!(corpus.images.len(), 30);
        let png = d.path().join("scene.png");
        let o = Command::new(bin)
            .args(["data", "show", "--index", "2", "--output"])
            .arg(&png)
            .arg(&out)
            .output()
            .unwrap();
        common::assert_success(&o);
        let img = image::open(&png).unwrap();
        assert!(img.width() >= 384 && img.height() > 384);
        let o = Command::new(bin)
            .args(["data", "show", "--index", "99", "--output"])
            .arg(&png)
            .arg(&out)
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--index 99"));
    }
    // COCO: captions and instances into the annotated format.
    let images = d.path().join("val2014");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::new(40, 30)
        .save(images.join("COCO_val2014_000000000001.jpg"))
        .unwrap();
    let caps = write(
        d.path(),
        "captions_val2014.json",
        r#"{"images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "width": 40, "height": 30}],
            "annotations": [{"image_id": 1, "id": 9, "caption": "A black square. "}, {"image_id": 1, "id": 10, "caption": "Nothing at all"}]}"#,
    );
    let inst = write(
        d.path(),
        "instances_val2014.json",
        r#"{"images": [], "annotations": [{"image_id": 1, "bbox": [2.5, 3, 10, 20], "category_id": 18, "id": 1}],
            "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}]}"#,
    );
    let out = d.path().join("coco");
    let o = Command::new(bin)
        .args(["data", "import", "--format", "coco", "--input"])
        .arg(&caps)
        .arg("--instances")
        .arg(&inst)
        .arg("--images")
        .arg(&images)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    common::assert_success(&o);
    let c = read_corpus(&out).unwrap();
    assert_eq!(
        c.images[0].captions,
        vec!["A black square.", "Nothing at all"]
    );
    assert_eq!(c.images[0].boxes, vec![[2.5, 3.0, 12.5, 23.0]]);
    assert_eq!(c.images[0].labels, vec!["dog"]);
    assert!(c.image_path(&c.images[0]).exists());
    let bad = write(d.path(), "bad.json", "{\"images\": [1]}");
    let o = Command::new(bin)
        .args([
            "data", "import", "--format", "coco", "--images", "x", "--output", "y", "--input",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.json:1"));
}

#[test]
fn easy_vqa_reads_with_its_published_counts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/easy-vqa");
    if !dir.exists() {
        eprintln!("skipped: run scripts/fetch-data.sh easy-vqa");
        return;
    }
    let mut answers = std::collections::BTreeSet::new();
    for (split, images, questions) in [("train", 4000, 38_575), ("test", 1000, 9_673)] {
        let c = tessera::corpora::easy_vqa::read_easy_vqa(&dir, split).unwrap();
        assert_eq!(c.images.len(), images);
        assert_eq!(
            c.images.iter().map(|i| i.qa.len()).sum::<usize>(),
            questions
        );
        assert!(c.images.iter().all(|i| (i.width, i.height) == (64, 64)));
        answers.extend(
            c.images
                .iter()
                .flat_map(|i| i.qa.iter().map(|q| q.answer.clone())),
        );
    }
    assert_eq!(answers.len(), 13);
}
