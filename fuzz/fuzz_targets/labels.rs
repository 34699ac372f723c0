#![no_main]
//! Node label files: `name label` lines, or a RecBole `.item` file (by name).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = if data.first().is_some_and(|b| b % 2 == 0) { "labels.txt" } else { "ml.item" };
    let (_dir, path) = common::file(name, data.get(1..).unwrap_or(&[]));
    let _ = tessera::metapath2vec::eval::read_labels(&path);
});
