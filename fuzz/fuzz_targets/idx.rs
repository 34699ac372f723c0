#![no_main]
//! IDX image and label files (MNIST layout), one input split in two at a 0xFF byte.
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let p = common::parts(data, 2);
    let (images, labels) = (dir.path().join("train-images-idx3-ubyte"), dir.path().join("train-labels-idx1-ubyte"));
    std::fs::write(&images, p[0]).unwrap();
    std::fs::write(&labels, p[1]).unwrap();
    let _ = tessera::vit::data::read_idx(&images, &labels);
});
