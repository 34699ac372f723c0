//! ViT and DINOv2 backbones against Hugging Face transformers (tiny random models saved by
//! `scripts/make_vit_fixtures.py`).

use burn::tensor::{Device, Tensor, TensorData};
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

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
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
