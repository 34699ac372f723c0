#![no_main]
//! Annotated-image corpora (`annotations.jsonl`).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (dir, _) = common::file("annotations.jsonl", data);
    let _ = tessera::corpora::annotated::read_corpus(dir.path());
});
