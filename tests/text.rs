//! BERT text encoder: parity with PyTorch + transformers + sentence-transformers and Python
//! `tokenizers` on all-MiniLM-L6-v2, the masked-LM objective on a generated corpus, bad input.

mod common;

use burn::tensor::Device;
use common::{floats, max_diff, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera::core::run::RunDir;
use tessera::text::config::BertConfig;
use tessera::text::embed::{embed, read_lines, Pooling};
use tessera::text::load_model_dir;
use tessera::text::model::Bert;
use tessera::text::tokenize::train_wordpiece;
use tessera::text::train::{evaluate_mlm, train_mlm, MlmConfig, MlmRunOptions, CHECKPOINT};

fn minilm() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/minilm");
    if p.join("model.safetensors").exists() {
        Some(p)
    } else {
        eprintln!("skipped: run scripts/fetch-data.sh minilm");
        None
    }
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn minilm_matches_pytorch_transformers_and_python_tokenizers() {
    let Some(dir) = minilm() else { return };
    let dev = Device::flex();
    let tm = load_model_dir(&dir, None, &dev).unwrap();
    assert!(!tm.loaded.has_mlm_head && tm.loaded.has_pooler);
    let f = fixture();
    let mut singles = Vec::new();
    for case in f["cases"].as_array().unwrap() {
        let (a, b) = match &case["text"] {
            Value::String(s) => (s.clone(), None),
            Value::Array(p) => (
                p[0].as_str().unwrap().to_string(),
                Some(p[1].as_str().unwrap().to_string()),
            ),
            _ => unreachable!(),
        };
        let enc = tm.tokenizer.encode(&[(a.as_str(), b.as_deref())]).unwrap();
        let want_ids: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let want_types: Vec<u32> = case["type_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(enc[0].ids, want_ids, "token ids of {a:?}");
        assert_eq!(enc[0].type_ids, want_types, "segment ids of {a:?}");
        let batch = tm.tokenizer.pad(&enc);
        let hidden = tm.model.forward(&batch, &dev);
        let pooled: Vec<f32> = tm
            .model
            .pool(hidden.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let hidden: Vec<f32> = hidden.into_data().try_to_vec::<f32>().unwrap();
        let d = max_diff(&hidden, &floats(&case["last_hidden_state"]));
        eprintln!(
            "{a:?}: {} tokens, last hidden state max abs diff {d:.2e}",
            want_ids.len()
        );
        assert!(d < 1e-4, "{a:?}: last hidden state max abs diff {d}");
        let d = max_diff(&pooled, &floats(&case["pooler_output"]));
        assert!(d < 1e-4, "{a:?}: pooler output max abs diff {d}");
        if b.is_none() {
            singles.push((a, floats(&case["sentence_embedding"])));
        }
    }
    // Sentence embeddings, all in one padded batch: padding must not leak into mean pooling.
    let texts: Vec<String> = singles.iter().map(|(t, _)| t.clone()).collect();
    let e = embed(
        &tm.model,
        &tm.tokenizer,
        &texts,
        Pooling::Mean,
        true,
        8,
        &dev,
        true,
    )
    .unwrap();
    for (i, (t, want)) in singles.iter().enumerate() {
        let d = max_diff(&e.vectors[i * e.dim..(i + 1) * e.dim], want);
        eprintln!("{t:?}: sentence embedding max abs diff {d:.2e}");
        assert!(d < 1e-4, "{t:?}: sentence embedding max abs diff {d}");
    }
}

#[test]
fn over_long_inputs_are_cut_to_max_len_and_counted() {
    let Some(dir) = minilm() else { return };
    let dev = Device::flex();
    let tm = load_model_dir(&dir, Some(16), &dev).unwrap();
    let long = "word ".repeat(100);
    let enc = tm.tokenizer.encode(&[(long.as_str(), None)]).unwrap();
    assert_eq!(enc[0].ids.len(), 16);
    assert!(enc[0].truncated);
    assert_eq!(enc[0].ids[15], tm.tokenizer.token_to_id("[SEP]").unwrap());
    let e = embed(
        &tm.model,
        &tm.tokenizer,
        &[long, "short".into()],
        Pooling::Cls,
        false,
        4,
        &dev,
        true,
    )
    .unwrap();
    assert_eq!(e.truncated, 1);
    // Beyond the model's positions: a clear error.
    let err = load_model_dir(&dir, Some(513), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("512 positions"), "{err}");
}

#[test]
fn bad_checkpoints_and_inputs_give_clear_errors() {
    let Some(dir) = minilm() else { return };
    let dev = Device::flex();
    let d = tempfile::tempdir().unwrap();
    // A config that does not fit the weights.
    let wrong = d.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "vocab.txt"] {
        std::fs::copy(dir.join(f), wrong.join(f)).unwrap();
    }
    let cfg = BertConfig {
        intermediate_size: 1000,
        ..BertConfig::minilm_l6()
    };
    std::fs::write(
        wrong.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let err = format!("{:#}", load_model_dir(&wrong, None, &dev).err().unwrap());
    assert!(err.contains("intermediate.dense.weight"), "{err}");
    // No vocabulary.
    std::fs::copy(dir.join("config.json"), wrong.join("config.json")).unwrap();
    std::fs::remove_file(wrong.join("tokenizer.json")).unwrap();
    std::fs::remove_file(wrong.join("vocab.txt")).unwrap();
    let err = format!("{:#}", load_model_dir(&wrong, None, &dev).err().unwrap());
    assert!(err.contains("no vocabulary"), "{err}");
    // Empty lines name file and line.
    let p = write(d.path(), "in.txt", "one\n\nthree\n");
    let err = format!("{:#}", read_lines(&p).err().unwrap());
    assert!(err.contains("in.txt:2: empty line"), "{err}");
}

/// Lines of consecutive number words ("seven eight nine ten ..."), so that a masked word is
/// determined by its neighbours.
fn counting_corpus(lines: usize, seed: u64) -> String {
    const WORDS: [&str; 20] = [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut out = String::new();
    for _ in 0..lines {
        let start = next(20) as usize;
        let len = 6 + next(5) as usize;
        let words: Vec<&str> = (0..len).map(|k| WORDS[(start + k) % 20]).collect();
        out += &words.join(" ");
        out.push('\n');
    }
    out
}

#[test]
fn masked_lm_training_learns_a_counting_rule() {
    let d = tempfile::tempdir().unwrap();
    let corpus = write(d.path(), "corpus.txt", &counting_corpus(1200, 1));
    let tok = train_wordpiece(&[corpus.to_string_lossy().into_owned()], 100, 1, true, 16).unwrap();
    // Every number word is one token, so chance is 1 in 20 words (5%).
    for w in ["seventeen", "three", "twenty"] {
        let e = tok.encode(&[(w, None)]).unwrap();
        assert_eq!(e[0].ids.len(), 3, "{w} should be a single token");
    }
    let lines = read_lines(&corpus).unwrap();
    let inputs: Vec<(&str, Option<&str>)> = lines.iter().map(|t| (t.as_str(), None)).collect();
    let encoded = tok.encode(&inputs).unwrap();
    let (train, valid) = encoded.split_at(1000);
    let bert_cfg = BertConfig {
        max_position_embeddings: 16,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..BertConfig::tiny(tok.vocab_size())
    };
    let cfg = MlmConfig {
        lr: 2e-3,
        warmup_steps: 20,
        epochs: 8,
        ..MlmConfig::default()
    };
    let dev = Device::flex();
    dev.seed(0);
    let model = Bert::new(&bert_cfg, &dev);
    let (_, before) = evaluate_mlm(&model, &tok, valid, &cfg, &dev).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(run_dir.path()).unwrap();
    let quiet = MlmRunOptions {
        quiet: true,
        ..Default::default()
    };
    let records = train_mlm(
        model, &bert_cfg, &tok, train, valid, &cfg, &run, &dev, &quiet,
    )
    .unwrap();
    let first = records.first().unwrap();
    let last = records.last().unwrap();
    eprintln!(
        "masked accuracy before {before:.3}, after {:?}; loss {:.3} -> {:.3}",
        last.valid_accuracy, first.loss, last.loss
    );
    assert!(
        last.loss < first.loss - 0.5,
        "loss {} -> {}",
        first.loss,
        last.loss
    );
    let acc = last.valid_accuracy.unwrap();
    assert!(before < 0.15, "untrained accuracy {before}");
    assert!(acc > 0.6, "masked-token accuracy {acc} (chance 0.05)");
    // The run directory is a model directory that loads back and predicts the same.
    let tm = load_model_dir(run_dir.path(), None, &dev).unwrap();
    assert!(tm.loaded.has_mlm_head);
    let (_, again) = evaluate_mlm(&tm.model, &tm.tokenizer, valid, &cfg, &dev).unwrap();
    assert!(
        (again - acc).abs() < 1e-9,
        "reloaded accuracy {again} vs {acc}"
    );
}

#[test]
fn cli_embeds_trains_a_vocabulary_and_fills_masks() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let d = tempfile::tempdir().unwrap();
    let corpus = write(d.path(), "corpus.txt", &counting_corpus(600, 2));
    let vocab = d.path().join("vocab");
    let out = Command::new(bin)
        .args([
            "text",
            "vocab",
            "--vocab-size",
            "100",
            "--min-frequency",
            "1",
            "--input",
        ])
        .arg(&corpus)
        .arg("--output")
        .arg(&vocab)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    assert!(vocab.join("vocab.txt").exists() && vocab.join("tokenizer.json").exists());
    let run = d.path().join("run");
    let out = Command::new(bin)
        .args([
            "text",
            "train",
            "--epochs",
            "1",
            "--max-len",
            "16",
            "--json",
            "--input",
        ])
        .arg(&corpus)
        .arg("--vocab")
        .arg(&vocab)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let out = Command::new(bin)
        .args([
            "text",
            "fill-mask",
            "--json",
            "--text",
            "four five [MASK] seven",
            "--model",
        ])
        .arg(&run)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["masks"][0].as_array().unwrap().len(), 5);

    // Embeddings to safetensors; a text without [MASK] and an empty line are errors.
    let sentences = write(d.path(), "s.txt", "four five six\nten eleven\n");
    let emb = d.path().join("e.safetensors");
    let out = Command::new(bin)
        .args(["text", "embed", "--json", "--normalize", "--model"])
        .arg(&run)
        .arg("--input")
        .arg(&sentences)
        .arg("--output")
        .arg(&emb)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let (t, _) = tessera::core::checkpoint::load_safetensors(&emb).unwrap();
    assert_eq!(t["embeddings"].shape().to_vec(), vec![2, 64]);
    let out = Command::new(bin)
        .args(["text", "fill-mask", "--text", "four five six", "--model"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [MASK]"));
    let bad = write(d.path(), "bad.txt", "four\n\nsix\n");
    let out = Command::new(bin)
        .args(["text", "embed", "--model"])
        .arg(&run)
        .arg("--input")
        .arg(&bad)
        .arg("--output")
        .arg(&emb)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.txt:2: empty line"));
}

#[test]
fn interrupted_and_resumed_mlm_training_equals_uninterrupted() {
    let d = tempfile::tempdir().unwrap();
    let corpus = write(d.path(), "corpus.txt", &counting_corpus(200, 3));
    let tok = train_wordpiece(&[corpus.to_string_lossy().into_owned()], 100, 1, true, 16).unwrap();
    let lines = read_lines(&corpus).unwrap();
    let inputs: Vec<(&str, Option<&str>)> = lines.iter().map(|t| (t.as_str(), None)).collect();
    let encoded = tok.encode(&inputs).unwrap();
    let bert_cfg = BertConfig {
        max_position_embeddings: 16,
        ..BertConfig::tiny(tok.vocab_size())
    };
    let cfg = MlmConfig {
        lr: 1e-3,
        epochs: 3,
        ..MlmConfig::default()
    };
    let dev = Device::flex();
    let fresh = || {
        dev.seed(0);
        Bert::new(&bert_cfg, &dev)
    };
    let opts = |resume: bool, stop: Option<usize>| MlmRunOptions {
        quiet: true,
        resume,
        stop_after_epochs: stop,
    };
    let full_dir = tempfile::tempdir().unwrap();
    let full = RunDir::create(full_dir.path()).unwrap();
    train_mlm(
        fresh(),
        &bert_cfg,
        &tok,
        &encoded,
        &[],
        &cfg,
        &full,
        &dev,
        &opts(false, None),
    )
    .unwrap();
    let part_dir = tempfile::tempdir().unwrap();
    let part = RunDir::create(part_dir.path()).unwrap();
    train_mlm(
        fresh(),
        &bert_cfg,
        &tok,
        &encoded,
        &[],
        &cfg,
        &part,
        &dev,
        &opts(false, Some(1)),
    )
    .unwrap();
    let r = train_mlm(
        fresh(),
        &bert_cfg,
        &tok,
        &encoded,
        &[],
        &cfg,
        &part,
        &dev,
        &opts(true, None),
    )
    .unwrap();
    assert_eq!(r.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![2, 3]);
    let (a, ma) = tessera::core::checkpoint::load_safetensors(&full.file(CHECKPOINT)).unwrap();
    let (b, mb) = tessera::core::checkpoint::load_safetensors(&part.file(CHECKPOINT)).unwrap();
    assert_eq!((ma["epoch"].as_str(), mb["epoch"].as_str()), ("3", "3"));
    assert!(a.keys().any(|k| k.starts_with("optimizer.")));
    for (k, v) in &a {
        assert_eq!(
            v, &b[k],
            "tensor {k} differs between resumed and uninterrupted runs"
        );
    }
    // A different configuration refuses to resume.
    let other = MlmConfig {
        lr: 5e-4,
        ..cfg.clone()
    };
    let err = train_mlm(
        fresh(),
        &bert_cfg,
        &tok,
        &encoded,
        &[],
        &other,
        &part,
        &dev,
        &opts(true, None),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("differs"), "{err}");
}
