//! Running a VL-BERT model in evaluation mode: the outputs `tessera vlbert features` writes.

use super::config::VlBertConfig;
use super::data::{batch, Example, PreparedRegions};
use super::model::VlBert;
use crate::text::tokenize::Encoded;
use anyhow::Result;
use burn::tensor::{Device, Tensor};

/// Outputs of the pretraining network on image-text pairs, padded over the whole set: row-major
/// [B, T, H], [B, R, H], [B, T, V], [B, R, C]; zeros at padded positions.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub batch: usize,
    pub text_len: usize,
    pub regions: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub classes: usize,
    pub text_hidden: Vec<f32>,
    pub object_hidden: Vec<f32>,
    pub mlm_logits: Vec<f32>,
    pub mvrc_logits: Vec<f32>,
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// Copy rows of a [b, len, width] block into a [B, total_len, width] array at sample `first`.
fn place(dst: &mut [f32], src: &[f32], first: usize, b: usize, len: usize, total: usize, w: usize) {
    for i in 0..b {
        for p in 0..len {
            let s = (i * len + p) * w;
            let d = ((first + i) * total + p) * w;
            dst[d..d + w].copy_from_slice(&src[s..s + w]);
        }
    }
}

/// Run `model` on pairs (text i with regions i), `batch_size` at a time; `progress` is told how
/// many pairs are done.
pub fn features(
    model: &VlBert,
    cfg: &VlBertConfig,
    texts: &[Encoded],
    regions: &[PreparedRegions],
    batch_size: usize,
    device: &Device,
    progress: &dyn Fn(usize),
) -> Result<Features> {
    let n = texts.len();
    let t = texts.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let r = regions.iter().map(|p| p.len()).max().unwrap_or(0);
    let h = cfg.hidden_size;
    let v = if cfg.with_mlm_loss { cfg.vocab_size } else { 0 };
    let c = if cfg.with_mvrc_loss {
        cfg.visual_region_classes
    } else {
        0
    };
    let mut out = Features {
        batch: n,
        text_len: t,
        regions: r,
        hidden: h,
        vocab: v,
        classes: c,
        text_hidden: vec![0.0; n * t * h],
        object_hidden: vec![0.0; n * r * h],
        mlm_logits: vec![0.0; n * t * v],
        mvrc_logits: vec![0.0; n * r * c],
    };
    let mut done = 0;
    for (chunk_t, chunk_r) in texts
        .chunks(batch_size.max(1))
        .zip(regions.chunks(batch_size.max(1)))
    {
        let examples: Vec<Example> = chunk_t
            .iter()
            .zip(chunk_r)
            .map(|(e, p)| Example {
                ids: &e.ids,
                type_ids: &e.type_ids,
                regions: p,
                masked: &[],
            })
            .collect();
        let b = batch(&examples, cfg);
        let (bn, bt, br) = (b.batch, b.text_len, b.regions);
        let o = model.forward(&b, device);
        let text_mask: Vec<f32> = (0..bn)
            .flat_map(|i| {
                let l = b.text_lens[i];
                (0..bt).map(move |p| if p < l { 1.0 } else { 0.0 })
            })
            .collect();
        let obj_mask: Vec<f32> = (0..bn)
            .flat_map(|i| {
                let k = b.region_counts[i];
                (0..br).map(move |p| if p < k { 1.0 } else { 0.0 })
            })
            .collect();
        let th = o.text.clone().reshape([bn * bt, h]);
        let oh = o.objects.clone().reshape([bn * br, h]);
        let zero_rows = |x: Vec<f32>, mask: &[f32], w: usize| -> Vec<f32> {
            let mut x = x;
            for (row, &m) in x.chunks_mut(w).zip(mask) {
                if m == 0.0 {
                    row.fill(0.0);
                }
            }
            x
        };
        place(&mut out.text_hidden, &floats(o.text), done, bn, bt, t, h);
        place(
            &mut out.object_hidden,
            &floats(o.objects),
            done,
            bn,
            br,
            r,
            h,
        );
        if let Some(l) = model.mlm_logits(th) {
            let l = zero_rows(floats(l), &text_mask, v);
            place(&mut out.mlm_logits, &l, done, bn, bt, t, v);
        }
        if let Some(l) = model.mvrc_logits(oh) {
            let l = zero_rows(floats(l), &obj_mask, c);
            place(&mut out.mvrc_logits, &l, done, bn, br, r, c);
        }
        done += bn;
        progress(done);
    }
    Ok(out)
}

/// Masked label words: for a pair, the token positions of one object label in its caption.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelWord {
    pub pair: usize,
    pub positions: Vec<usize>,
}

/// Where each label's tokens occur in `ids` (the first occurrence after `[CLS]`), one entry per
/// label found.
pub fn find_label_words(ids: &[u32], labels: &[Vec<u32>]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for l in labels {
        if l.is_empty() || l.len() >= ids.len() {
            continue;
        }
        if let Some(start) = (1..=ids.len() - l.len()).find(|&s| ids[s..s + l.len()] == l[..]) {
            out.push((start..start + l.len()).collect());
        }
    }
    out
}

/// Token accuracy of the masked-LM head on label words masked one at a time (every piece
/// `[MASK]`), the image's region features as given or all zeros (`zero_features`, boxes kept):
/// how much the words depend on the visual clues.
#[allow(clippy::too_many_arguments)]
pub fn label_word_accuracy(
    model: &VlBert,
    cfg: &VlBertConfig,
    corpus: &super::train::PairCorpus,
    words: &[LabelWord],
    mask_id: u32,
    zero_features: bool,
    batch_size: usize,
    device: &Device,
) -> f64 {
    use super::train::{pretrain_losses, MaskedPair, PairCorpus};
    let zeroed;
    let corpus = if zero_features {
        zeroed = PairCorpus {
            images: corpus
                .images
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    p.features.iter_mut().for_each(|x| *x = 0.0);
                    p
                })
                .collect(),
            targets: corpus.targets.clone(),
            pairs: corpus.pairs.clone(),
        };
        &zeroed
    } else {
        corpus
    };
    let items: Vec<MaskedPair> = words
        .iter()
        .map(|w| {
            let ids = &corpus.pairs[w.pair].ids;
            let mut input = ids.clone();
            let mut targets = Vec::new();
            for &p in &w.positions {
                targets.push((p, ids[p]));
                input[p] = mask_id;
            }
            let r = corpus.images[corpus.pairs[w.pair].image].len();
            MaskedPair {
                pair: w.pair,
                input,
                mlm_targets: targets,
                chosen: vec![false; r],
                masked: vec![false; r],
                texts: vec![],
            }
        })
        .collect();
    let (mut hits, mut total) = (0usize, 0usize);
    for chunk in items.chunks(batch_size.max(1)) {
        let l = pretrain_losses(model, cfg, corpus, chunk, true, device);
        hits += l.hits.map_or(0, |h| h.0);
        total += l.words;
    }
    if total == 0 {
        f64::NAN
    } else {
        hits as f64 / total as f64
    }
}
