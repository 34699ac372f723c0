//! WordPiece tokenisation with Hugging Face's `tokenizers` crate: a checkpoint's
//! `tokenizer.json`, or a `vocab.txt` assembled into BERT's pipeline (BERT normaliser with
//! lower-casing per `tokenizer_config.json`, BERT pre-tokeniser, `[CLS] A [SEP] B [SEP]`).
//!
//! The tokenizer's own padding and truncation settings are switched off: truncation is ours
//! (documented, to the model's positions) and padding is done here with a separate attention
//! mask, so padding never leaks into pooling.

use super::model::TokenBatch;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, EncodeInput, Model, ModelWrapper, NormalizerWrapper,
    PostProcessorWrapper, PreTokenizerWrapper, Tokenizer, TokenizerImpl, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

pub struct TextTokenizer {
    inner: Tokenizer,
    pub pad_id: u32,
    pub mask_id: Option<u32>,
    pub max_len: usize,
}

/// One tokenised text (or pair), before padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Whether the input was cut to `max_len` tokens.
    pub truncated: bool,
}

fn bert_pipeline(vocab: &Path, lowercase: bool) -> Result<Tokenizer> {
    let wp = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow!("{}: not a WordPiece vocabulary: {e}", vocab.display()))?;
    let id = |t: &str| {
        wp.token_to_id(t)
            .with_context(|| format!("{}: the vocabulary lacks {t}", vocab.display()))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tk: TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerImpl::new(ModelWrapper::from(wp));
    tk.with_normalizer(Some(NormalizerWrapper::from(BertNormalizer::new(
        true, true, None, lowercase,
    ))));
    tk.with_pre_tokenizer(Some(PreTokenizerWrapper::from(BertPreTokenizer)));
    tk.with_post_processor(Some(PostProcessorWrapper::from(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    ))));
    tk.with_decoder(Some(DecoderWrapper::from(
        tokenizers::decoders::wordpiece::WordPiece::default(),
    )));
    // BERT's special tokens stay whole in text ("a [MASK] here"), as Hugging Face's tokenizer
    // built from the same vocab.txt keeps them.
    let specials: Vec<tokenizers::AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .filter(|t| tk.get_model().token_to_id(t).is_some())
        .map(|t| tokenizers::AddedToken::from(t.to_string(), true))
        .collect();
    tk.add_special_tokens(&specials);
    Ok(Tokenizer::from(tk))
}

/// `do_lower_case` from a `tokenizer_config.json` beside the vocabulary (default: true, as
/// BERT's uncased checkpoints).
fn lowercase_setting(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}

impl TextTokenizer {
    /// From a model directory: `tokenizer.json` if present, else `vocab.txt`.
    /// The tokenizer of a model directory whose config says `vocab_size`: a vocabulary of
    /// another size is an error naming the directory.
    pub fn for_model(dir: &Path, max_len: usize, vocab_size: usize) -> Result<Self> {
        let tok = Self::from_dir(dir, max_len)?;
        if tok.vocab_size() != vocab_size {
            anyhow::bail!(
                "{}: the vocabulary has {} tokens but config.json says vocab_size {vocab_size}",
                dir.display(),
                tok.vocab_size()
            );
        }
        Ok(tok)
    }

    /// Write a model directory: `model.safetensors` (PyTorch-style metadata), `config.json`,
    /// and this tokenizer's files; each file atomically.
    pub fn save_model_dir(
        &self,
        dir: &Path,
        tensors: &[(String, burn::tensor::TensorData)],
        config_json: &str,
    ) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        crate::core::checkpoint::save_safetensors(&dir.join("model.safetensors"), tensors, meta)?;
        crate::core::run::write_atomic(&dir.join("config.json"), config_json.as_bytes())?;
        self.save(dir)
    }

    pub fn from_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let inner = if json.exists() {
            Tokenizer::from_file(&json)
                .map_err(|e| anyhow!("{}: cannot read the tokenizer: {e}", json.display()))?
        } else if vocab.exists() {
            bert_pipeline(&vocab, lowercase_setting(dir))?
        } else {
            bail!(
                "{}: no vocabulary (neither tokenizer.json nor vocab.txt)",
                dir.display()
            );
        };
        Self::new(inner, max_len)
    }

    pub fn new(mut inner: Tokenizer, max_len: usize) -> Result<Self> {
        if max_len < 3 {
            bail!(
                "--max-len {max_len} leaves no room for text besides [CLS] and [SEP] (give at least 3)"
            );
        }
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| anyhow!("truncation: {e}"))?;
        let pad_id = inner
            .token_to_id("[PAD]")
            .context("the vocabulary lacks [PAD]")?;
        let mask_id = inner.token_to_id("[MASK]");
        Ok(Self {
            inner,
            pad_id,
            mask_id,
            max_len,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Tokenise single texts or (first, second) pairs, with `[CLS]`/`[SEP]`, cut to `max_len`.
    pub fn encode(&self, texts: &[(&str, Option<&str>)]) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = texts
            .iter()
            .map(|(a, b)| match b {
                Some(b) => EncodeInput::from((*a, *b)),
                None => EncodeInput::from(*a),
            })
            .collect();
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| anyhow!("tokenisation failed: {e}"))?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                truncated: !e.get_overflowing().is_empty(),
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }

    /// Tokenise lines of `source` as `[CLS] text [SEP]`, each within `max_tokens`: a longer one
    /// is an error naming its line (1-based) and the model's `positions`, never a silent cut.
    pub fn encode_lines(
        &self,
        texts: &[String],
        max_tokens: usize,
        positions: usize,
        source: &str,
    ) -> Result<Vec<Encoded>> {
        let pairs: Vec<(&str, Option<&str>)> = texts.iter().map(|t| (t.as_str(), None)).collect();
        let encoded = self.encode(&pairs)?;
        for (i, e) in encoded.iter().enumerate() {
            if e.truncated || e.ids.len() > max_tokens {
                bail!(
                    "{source}:{}: the text is longer than the model's {positions} positions \
                     allow ({max_tokens} tokens with [CLS] and [SEP] at most)",
                    i + 1
                );
            }
        }
        Ok(encoded)
    }

    /// Tokenise texts whole: no `[CLS]`/`[SEP]`, no cut (text-only corpora that are cut after
    /// their lines are joined).
    pub fn encode_plain(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let mut inner = self.inner.clone();
        inner
            .with_truncation(None)
            .map_err(|e| anyhow!("truncation: {e}"))?;
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| EncodeInput::from(*t)).collect();
        let encodings = inner
            .encode_batch(inputs, false)
            .map_err(|e| anyhow!("tokenisation failed: {e}"))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Pad to the longest sequence; the mask is 1 on real tokens.
    pub fn pad(&self, encoded: &[Encoded]) -> TokenBatch {
        let len = encoded
            .iter()
            .map(|e| e.ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let b = encoded.len();
        let mut batch = TokenBatch {
            batch: b,
            len,
            ids: vec![self.pad_id; b * len],
            type_ids: vec![0; b * len],
            mask: vec![0; b * len],
        };
        for (r, e) in encoded.iter().enumerate() {
            let row = r * len;
            batch.ids[row..row + e.ids.len()].copy_from_slice(&e.ids);
            batch.type_ids[row..row + e.ids.len()].copy_from_slice(&e.type_ids);
            batch.mask[row..row + e.ids.len()].fill(1);
        }
        batch
    }

    /// Save as `tokenizer.json` and `vocab.txt` in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        self.inner
            .save(dir.join("tokenizer.json"), true)
            .map_err(|e| anyhow!("cannot save the tokenizer: {e}"))?;
        let mut vocab: Vec<(String, u32)> = self.inner.get_vocab(true).into_iter().collect();
        vocab.sort_by_key(|(_, id)| *id);
        let text: String = vocab.into_iter().map(|(t, _)| t + "\n").collect();
        crate::core::run::write_atomic(&dir.join("vocab.txt"), text.as_bytes())
    }
}

/// Train a WordPiece vocabulary of at most `vocab_size` tokens on text files (one text per
/// line), with BERT's special tokens and pipeline.
/// WordPiece's `max_input_chars_per_word` (BERT's and Hugging Face's default): a longer word
/// tokenises to `[UNK]`, so it can teach a vocabulary nothing.
pub const MAX_WORD_CHARS: usize = 100;

/// Fails naming the file and line of the first line that is not UTF-8.
fn check_utf8_lines(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    for (i, line) in std::io::BufRead::split(std::io::BufReader::new(f), b'\n').enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if let Err(e) = std::str::from_utf8(&line) {
            bail!(
                "{}:{}: not UTF-8 text (invalid byte at column {})",
                path.display(),
                i + 1,
                e.valid_up_to() + 1
            );
        }
    }
    Ok(())
}

/// `line` without the words (runs between spaces and punctuation, as BERT's pre-tokeniser cuts
/// them) longer than [`MAX_WORD_CHARS`], which are counted in `skipped`. Vocabulary training on a
/// word of millions of characters would otherwise take hours.
fn without_overlong_words(line: &str, skipped: &std::sync::atomic::AtomicU64) -> String {
    let mut out = String::with_capacity(line.len());
    for token in line.split_whitespace() {
        if token.chars().count() <= MAX_WORD_CHARS {
            out.push_str(token);
            out.push(' ');
            continue;
        }
        for piece in token.split(|c: char| c.is_ascii_punctuation() || c.is_ascii_whitespace()) {
            if piece.chars().count() > MAX_WORD_CHARS {
                skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else if !piece.is_empty() {
                out.push_str(piece);
                out.push(' ');
            }
        }
    }
    out
}

pub fn train_wordpiece(
    files: &[String],
    vocab_size: usize,
    min_frequency: u64,
    lowercase: bool,
    max_len: usize,
) -> Result<TextTokenizer> {
    for f in files {
        if !Path::new(f).is_file() {
            bail!("{f}: no such file");
        }
        check_utf8_lines(Path::new(f))?;
    }
    let mut tk: TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerImpl::new(ModelWrapper::from(WordPiece::default()));
    tk.with_normalizer(Some(NormalizerWrapper::from(BertNormalizer::new(
        true, true, None, lowercase,
    ))));
    tk.with_pre_tokenizer(Some(PreTokenizerWrapper::from(BertPreTokenizer)));
    let mut trainer = TrainerWrapper::from(
        WordPieceTrainerBuilder::default()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|t| AddedToken::from(*t, true))
                    .collect(),
            )
            .build(),
    );
    let skipped = std::sync::atomic::AtomicU64::new(0);
    // The files were just read whole by the UTF-8 check; one that vanished since reads empty.
    let lines = files.iter().flat_map(|f| {
        std::fs::File::open(f)
            .ok()
            .into_iter()
            .flat_map(|file| std::io::BufRead::split(std::io::BufReader::new(file), b'\n'))
            .map_while(Result::ok)
    });
    let texts = lines.map(|bytes| {
        let line = String::from_utf8(bytes).unwrap_or_default();
        without_overlong_words(&line, &skipped)
    });
    tk.train(&mut trainer, texts)
        .map_err(|e| anyhow!("vocabulary training failed: {e}"))?;
    let skipped = skipped.into_inner();
    if skipped > 0 {
        eprintln!(
            "note: {skipped} words longer than {MAX_WORD_CHARS} characters were left out \
             (WordPiece reads such a word as [UNK])"
        );
    }
    let id = |t: &str| {
        tk.token_to_id(t)
            .context("special token missing after training")
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tk.with_post_processor(Some(PostProcessorWrapper::from(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    ))));
    tk.with_decoder(Some(DecoderWrapper::from(
        tokenizers::decoders::wordpiece::WordPiece::default(),
    )));
    TextTokenizer::new(Tokenizer::from(tk), max_len)
}
