//! Helpers shared by the integration tests.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `text` to `dir/name` and return the path. Not every test file uses it.
#[allow(dead_code)]
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

/// A JSON array of numbers (a fixture's values) as f32. Not every test file uses it.
#[allow(dead_code)]
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Largest absolute difference of two equally long slices. Not every test file uses it.
#[allow(dead_code)]
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts that a finished command exited with success, showing its stderr when it did not.
/// Not every test file uses it.
#[allow(dead_code)]
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A safetensors tensor (F32, F64 or I64) as f64 values. Not every test file uses it.
#[allow(dead_code)]
pub fn tensor_f64(st: &safetensors::SafeTensors, name: &str) -> Vec<f64> {
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

/// A safetensors tensor as f32 values (see [`tensor_f64`]). Not every test file uses it.
#[allow(dead_code)]
pub fn tensor_f32(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    tensor_f64(st, name).iter().map(|&v| v as f32).collect()
}

/// A tensor's values as f32. Not every test file uses it.
#[allow(dead_code)]
pub fn values(data: burn::tensor::TensorData) -> Vec<f32> {
    data.convert::<f32>().try_to_vec::<f32>().unwrap()
}
