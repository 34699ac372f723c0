#![no_main]
//! ViT pixel CSV files (plain and gzip, by name).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = if data.first().is_some_and(|b| b % 2 == 0) { "px.csv" } else { "px.csv.gz" };
    let (_dir, path) = common::file(name, data.get(1..).unwrap_or(&[]));
    let _ = tessera::vit::data::read_images(&path, false);
});
