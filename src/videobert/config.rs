//! VideoBERT's pretraining data settings (Sun et al., 2019, §3.3-3.4; MODELS.md §6). The paper
//! leaves several choices open; each is a key here with its choice named.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Most consecutive sentences concatenated into one text (the paper: "randomly concatenate
    /// neighboring sentences"; how many is not said). Each text takes 1..=max_concat.
    pub max_concat: usize,
    /// Visual words are subsampled with a stride drawn from min_stride..=max_stride clips (the
    /// paper: 1 to 3), starting at a random offset below the stride.
    pub min_stride: usize,
    pub max_stride: usize,
    /// Text tokens kept per sequence (longer texts are cut at the end).
    pub max_text_tokens: usize,
    /// Visual words kept per sequence (more are cut at the end).
    pub max_visual_words: usize,
    /// Proportions of joint, text-only and video-only sequences (not given by the paper; named
    /// choice: half joint, a quarter each of the others). Normalised to sum to 1.
    pub joint: f64,
    pub text_only: f64,
    pub video_only: f64,
    /// Probability a joint sequence's text is swapped for the text of another video (the
    /// linguistic-visual alignment negatives; BERT's next-sentence 50%).
    pub misaligned_prob: f64,
    /// Share of text tokens / visual words masked (BERT: 0.15; 80/10/10 replacement).
    pub mlm_prob: f64,
    pub mfm_prob: f64,
    /// Whether the masked text and visual words of a misaligned joint sequence (text of another
    /// video) are predicted as an aligned one's. The paper does not say. BERT predicts the masked
    /// tokens of its next-sentence negatives, hence the default true. There the other video's
    /// words tell nothing of the masked text, which teaches the network to read past the video;
    /// false still masks those sequences (a sequence left whole would tell the alignment head
    /// its label by the absence of `[MASK]`) but predicts nothing there, leaving them to the
    /// alignment objective alone.
    pub predict_misaligned: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            max_concat: 3,
            min_stride: 1,
            max_stride: 3,
            max_text_tokens: 48,
            max_visual_words: 48,
            joint: 0.5,
            text_only: 0.25,
            video_only: 0.25,
            misaligned_prob: 0.5,
            mlm_prob: 0.15,
            mfm_prob: 0.15,
            predict_misaligned: true,
        }
    }
}

impl DataConfig {
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        int_in("max_concat", self.max_concat, 1, 64)?;
        int_in("min_stride", self.min_stride, 1, 64)?;
        int_in("max_stride", self.max_stride, self.min_stride, 64)?;
        int_in("max_text_tokens", self.max_text_tokens, 1, 4096)?;
        int_in("max_visual_words", self.max_visual_words, 1, 4096)?;
        for (k, v) in [
            ("joint", self.joint),
            ("text_only", self.text_only),
            ("video_only", self.video_only),
        ] {
            if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
                bail!("{k} = {v}: give a non-negative proportion");
            }
        }
        if self.joint + self.text_only + self.video_only <= 0.0 {
            bail!("joint, text_only and video_only are all 0: no sequence to train on");
        }
        // 0 goes with alignment_weight = 0 (no mismatched pairs); the pretraining config refuses
        // it while the alignment objective is on.
        probability("misaligned_prob", self.misaligned_prob)?;
        probability_below_one("mlm_prob", self.mlm_prob)?;
        probability_below_one("mfm_prob", self.mfm_prob)?;
        Ok(())
    }
}
