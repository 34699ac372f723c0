//! Cloze masking for masked-token objectives.

use rand::seq::SliceRandom;
use rand::Rng;

/// One masked sequence: the input with masks applied, and the (position, original token) pairs
/// the model must predict.
#[derive(Debug, Clone, PartialEq)]
pub struct Masked {
    pub input: Vec<u32>,
    pub targets: Vec<(usize, u32)>,
}

/// How masked positions are filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskStyle {
    /// Probability a chosen position becomes `[mask]`; BERT uses 0.8, BERT4Rec's code 1.0.
    pub mask_token_prob: f64,
    /// Probability it becomes a random token (the rest keep the original); BERT uses 0.1.
    pub random_token_prob: f64,
}

impl MaskStyle {
    pub const ALWAYS_MASK: MaskStyle = MaskStyle {
        mask_token_prob: 1.0,
        random_token_prob: 0.0,
    };
    pub const BERT_80_10_10: MaskStyle = MaskStyle {
        mask_token_prob: 0.8,
        random_token_prob: 0.1,
    };
}

/// Cloze masking settings for one vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct ClozeMasker {
    pub pad: u32,
    pub mask_token: u32,
    /// Proportion of non-padding positions to mask.
    pub p: f64,
    pub max_predictions: usize,
    pub style: MaskStyle,
    /// Where random replacement tokens are drawn from.
    pub random_range: std::ops::RangeInclusive<u32>,
    /// Tokens never chosen besides padding (BERT's `[CLS]` and `[SEP]`).
    pub never_mask: Vec<u32>,
}

impl ClozeMasker {
    /// Choose `max(1, round(p * n))` of the `n` non-padding, non-special positions (capped by
    /// `max_predictions`) uniformly without replacement, as BERT's
    /// `create_masked_lm_predictions` does. Padding is never chosen.
    pub fn mask<R: Rng>(&self, seq: &[u32], rng: &mut R) -> Masked {
        let mut candidates: Vec<usize> = (0..seq.len())
            .filter(|&i| seq[i] != self.pad && !self.never_mask.contains(&seq[i]))
            .collect();
        let mut input = seq.to_vec();
        if candidates.is_empty() {
            return Masked {
                input,
                targets: vec![],
            };
        }
        let n = ((self.p * candidates.len() as f64).round() as usize)
            .max(1)
            .min(self.max_predictions.max(1))
            .min(candidates.len());
        candidates.shuffle(rng);
        let mut chosen: Vec<usize> = candidates[..n].to_vec();
        chosen.sort_unstable();
        let mut targets = Vec::with_capacity(n);
        for i in chosen {
            targets.push((i, seq[i]));
            let u: f64 = rng.random();
            if u < self.style.mask_token_prob {
                input[i] = self.mask_token;
            } else if u < self.style.mask_token_prob + self.style.random_token_prob {
                input[i] = rng.random_range(self.random_range.clone());
            }
        }
        Masked { input, targets }
    }
}

/// Mask only the last non-padding position (BERT4Rec's extra training sequences that match the
/// test-time setting).
pub fn mask_last(seq: &[u32], pad: u32, mask_token: u32) -> Masked {
    let mut input = seq.to_vec();
    match (0..seq.len()).rev().find(|&i| seq[i] != pad) {
        Some(i) => {
            input[i] = mask_token;
            Masked {
                input,
                targets: vec![(i, seq[i])],
            }
        }
        None => Masked {
            input,
            targets: vec![],
        },
    }
}

impl ClozeMasker {
    /// Whole-word masking as VL-BERT's pretraining data side (`random_word_wwm`): each word (a
    /// token and the `##` pieces after it; `word_start[i]` marks where a word begins) is chosen
    /// with probability `p` independently (no `max_predictions` cap); a chosen word has all its
    /// pieces predicted and, with the style's probabilities, all replaced by `[mask]`, each by a
    /// random token, or kept. Padding and `never_mask` tokens are never chosen.
    pub fn mask_whole_words<R: Rng>(
        &self,
        seq: &[u32],
        word_start: &[bool],
        rng: &mut R,
    ) -> Masked {
        let mut input = seq.to_vec();
        let mut targets = Vec::new();
        let mut i = 0;
        while i < seq.len() {
            let mut end = i + 1;
            while end < seq.len() && !word_start[end] {
                end += 1;
            }
            let eligible = seq[i] != self.pad && !self.never_mask.contains(&seq[i]);
            if eligible && rng.random::<f64>() < self.p {
                let u: f64 = rng.random();
                for j in i..end {
                    targets.push((j, seq[j]));
                    if u < self.style.mask_token_prob {
                        input[j] = self.mask_token;
                    } else if u < self.style.mask_token_prob + self.style.random_token_prob {
                        input[j] = rng.random_range(self.random_range.clone());
                    }
                }
            }
            i = end;
        }
        Masked { input, targets }
    }
}
