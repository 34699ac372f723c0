#![no_main]
//! metapath2vec typed edge lists, then a walk over them.
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tessera::metapath2vec::walk::{generate, parse_metapath, WalkConfig};

fuzz_target!(|data: &[u8]| {
    let (_dir, path) = common::file("graph.tsv", data);
    if let Ok(g) = tessera::metapath2vec::data::read_edge_list(&path) {
        let codes: String = g.type_codes.iter().collect();
        if let Some(c) = codes.chars().next() {
            let scheme = format!("{c}{codes}{c}");
            if let Ok(mp) = parse_metapath(&g, &scheme) {
                let cfg = WalkConfig { walks_per_node: 2, walk_length: 6, seed: 1 };
                let _ = generate(&g, &[mp], &cfg);
            }
        }
    }
});
