#![no_main]
//! `--config` TOML files of every trainer, and the `config.json` of model directories, parsed and
//! checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = toml::from_str::<tessera::bert4rec::Bert4RecConfig>(text) {
        if c.validate().is_ok() {
            let _ = c.check_memory(1000);
        }
    }
    if let Ok(c) = toml::from_str::<tessera::text::train::MlmConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<tessera::vit::train::VitTrainConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<tessera::metapath2vec::config::Metapath2VecConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = serde_json::from_str::<tessera::vit::config::VitConfig>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = serde_json::from_str::<tessera::text::config::BertConfig>(text) {
        let _ = c.validate();
    }
});
