#![no_main]
//! Region files: bottom-up TSV, Tessera's safetensors, .npz archives (by the first byte).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = data.get(1..).unwrap_or(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = match data.first().map_or(0, |b| b % 3) {
        0 => {
            let p = dir.path().join("r.tsv");
            std::fs::write(&p, body).unwrap();
            p
        }
        1 => {
            let p = dir.path().join("r.safetensors");
            std::fs::write(&p, body).unwrap();
            p
        }
        _ => {
            let p = dir.path().join("npz");
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("img.npz"), body).unwrap();
            p
        }
    };
    if let Ok(mut r) = tessera::regions::files::open(&path) {
        for _ in 0..64 {
            match r.next_image() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
});
