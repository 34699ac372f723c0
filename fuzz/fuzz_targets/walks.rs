#![no_main]
//! Walk files (ours and the authors' tool's format).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_dir, path) = common::file("walks.txt", data);
    let _ = tessera::metapath2vec::walk::read_walks(&path);
});
