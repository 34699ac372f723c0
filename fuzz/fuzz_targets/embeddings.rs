#![no_main]
//! Embedding files: word2vec text or safetensors (by name).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = if data.first().is_some_and(|b| b % 2 == 0) { "emb.txt" } else { "emb.safetensors" };
    let (_dir, path) = common::file(name, data.get(1..).unwrap_or(&[]));
    if let Ok(e) = tessera::metapath2vec::io::load(&path) {
        if !e.names.is_empty() {
            let _ = tessera::metapath2vec::eval::most_similar(&e, 0, 3, None);
        }
    }
});
