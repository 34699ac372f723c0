#![no_main]
//! AMiner/DBIS directories: the four files from one input (parts separated by 0xFF bytes).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tessera::metapath2vec::data::{read_aminer_with, SameNames};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let files = ["id_author.txt", "id_conf.txt", "paper_author.txt", "paper_conf.txt"];
    for (f, part) in files.iter().zip(common::parts(data, 4)) {
        std::fs::write(dir.path().join(f), part).unwrap();
    }
    for same in [SameNames::Distinct, SameNames::Merged] {
        let _ = read_aminer_with(dir.path(), same);
    }
});
