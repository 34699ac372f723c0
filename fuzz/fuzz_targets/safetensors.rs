#![no_main]
//! safetensors files (checkpoints, model weights, feature inputs).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_dir, path) = common::file("model.safetensors", data);
    let _ = tessera::core::checkpoint::load_safetensors(&path);
});
