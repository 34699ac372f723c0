#![no_main]
//! BERT4Rec interaction files: RecBole `.inter`, MovieLens `ratings.dat`, CSV (by name).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = ["u.inter", "ratings.dat", "ratings.csv", "plain.txt"];
    let name = names[data.first().map_or(0, |&b| b as usize % names.len())];
    let (_dir, path) = common::file(name, data.get(1..).unwrap_or(&[]));
    if let Ok(inter) = tessera::bert4rec::data::read_interactions(&path) {
        let _ = tessera::bert4rec::data::SequenceData::build(&inter, &Default::default());
    }
});
