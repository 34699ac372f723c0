#![no_main]
//! darknet `.cfg` files, and `.weights` for the ones that parse (cfg and weights split at 0xFF).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = common::parts(data, 2);
    let text = String::from_utf8_lossy(p[0]);
    let path = std::path::Path::new("fuzz.cfg");
    if let Ok(spec) = tessera::detect::config::parse_cfg(path, &text) {
        let params: usize = spec.layers.iter().map(|l| l.out.0 * 9).sum();
        if params < 1 << 20 && spec.width * spec.height < 1 << 16 {
            let (_dir, w) = common::file("fuzz.weights", p[1]);
            let _ = tessera::detect::model::Darknet::load(spec, &w, &burn::tensor::Device::flex());
        }
    }
});
