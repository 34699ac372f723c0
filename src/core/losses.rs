//! Losses shared by models (beside [`super::fused::cross_entropy`] for hard targets).

use anyhow::{bail, Result};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};

/// Mean over rows of `-(log_softmax(logits) * targets).sum()`: cross-entropy against a soft
/// target distribution per row (VL-BERT's masked-RoI classification against the detector's
/// class scores). `logits` [M, C], `targets` M x C row-major; no rows gives 0.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: &[f32]) -> Tensor<1> {
    let [m, c] = logits.dims();
    assert_eq!(targets.len(), m * c, "one target distribution per row");
    let device = logits.device();
    if m == 0 {
        return Tensor::<1>::zeros([1], &device);
    }
    let t: Tensor<2> = Tensor::from_data(TensorData::new(targets.to_vec(), [m, c]), &device);
    (log_softmax(logits, 1) * t)
        .sum()
        .reshape([1])
        .div_scalar(m as f64)
        .neg()
}

/// Mean over rows of `KL(targets || softmax(logits))` = `sum targets * (log targets -
/// log_softmax(logits))`, with `0 log 0 = 0` (PyTorch's `KLDivLoss` on `log_softmax`): ViLBERT's
/// masked-region loss against the detector's class distribution. The entropy term is a constant
/// of the targets, computed on the host; no rows gives 0.
pub fn kl_divergence(logits: Tensor<2>, targets: &[f32]) -> Tensor<1> {
    let [m, _] = logits.dims();
    let neg_entropy: f64 = targets
        .iter()
        .filter(|&&t| t > 0.0)
        .map(|&t| t as f64 * (t as f64).ln())
        .sum();
    let ce = soft_cross_entropy(logits, targets);
    if m == 0 {
        return ce;
    }
    ce.add_scalar(neg_entropy / m as f64)
}

/// Binary cross-entropy with logits against 0/1 targets, summed over classes and averaged over
/// rows: the official VQA loss of VL-BERT and ViLBERT
/// (`binary_cross_entropy_with_logits(logits, labels) * labels.size(1)`). `answers[i]` is row
/// i's positive class (none: every class negative).
pub fn multi_label_bce(logits: Tensor<2>, answers: &[Option<usize>]) -> Tensor<1> {
    let [n, a] = logits.dims();
    let mut y = vec![0f32; n * a];
    for (i, ans) in answers.iter().enumerate() {
        if let Some(k) = ans {
            y[i * a + k] = 1.0;
        }
    }
    let y: Tensor<2> = Tensor::from_data(TensorData::new(y, [n, a]), &logits.device());
    // softplus(x) - y x, with softplus(x) = max(x, 0) + log(1 + exp(-|x|)).
    let softplus =
        logits.clone().clamp_min(0.0) + logits.clone().abs().neg().exp().add_scalar(1.0).log();
    (softplus - y * logits)
        .sum()
        .reshape([1])
        .div_scalar(n.max(1) as f64)
}

/// Noise-contrastive estimation in its softmax form (InfoNCE): for every row i of `scores` [M, N]
/// (a query against N candidates), `-log exp(s[i, p_i]) / sum_j exp(s[i, j])` with `p_i =
/// positives[i]`, averaged over the rows. The other candidates are the negatives; one equal to the
/// positive is just another term of the sum. CBT's visual and cross-modal losses are this, and
/// masked-region variants of ViLBERT can score regions the same way. No rows gives 0.
///
/// Fewer than two candidates is an error, not a fallback: with the positive alone the loss is 0
/// whatever the network does, and a contrastive loss with no negatives teaches nothing (CBT draws
/// its negatives from the rest of the batch, so a batch of one has none).
pub fn contrastive_nce(scores: Tensor<2>, positives: &[usize]) -> Result<Tensor<1>> {
    let [m, n] = scores.dims();
    if positives.len() != m {
        bail!("{} positives for {m} rows of scores", positives.len());
    }
    if m == 0 {
        return Ok(Tensor::<1>::zeros([1], &scores.device()));
    }
    if n < 2 {
        bail!(
            "a contrastive loss over {n} candidate: no negatives (the negatives are the other \
             items of the batch: give batches of at least 2)"
        );
    }
    if let Some(p) = positives.iter().find(|&&p| p >= n) {
        bail!("positive {p} out of range: {n} candidates");
    }
    let targets: Vec<u32> = positives.iter().map(|&p| p as u32).collect();
    Ok(super::fused::cross_entropy(scores, &targets))
}

/// CBT's visual loss (Sun et al., 2019; MODELS.md §7): for a masked position t with context output
/// `predictions[t]` (ŷ_t) and the embedding `keys[positives[t]]` (e_t) of its true feature,
/// `-log exp(e_t . ŷ_t / tau) / sum_j exp(e_j . ŷ_t / tau)` over every key j: the negatives are
/// the other clip features of the mini-batch. `predictions` [M, D], `keys` [N, D]; `temperature`
/// tau (the paper: 1, no temperature). Errors as [`contrastive_nce`], and for a temperature that
/// is not a positive number.
pub fn info_nce(
    predictions: Tensor<2>,
    keys: Tensor<2>,
    positives: &[usize],
    temperature: f64,
) -> Result<Tensor<1>> {
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!("temperature = {temperature}: give a positive number (CBT: 1)");
    }
    let [_, d] = predictions.dims();
    let [_, dk] = keys.dims();
    if d != dk {
        bail!("predictions of width {d} against keys of width {dk}");
    }
    let scores = predictions.matmul(keys.transpose());
    let scores = if temperature == 1.0 {
        scores
    } else {
        scores.div_scalar(temperature)
    };
    contrastive_nce(scores, positives)
}

/// CBT's cross-modal loss: `scores[i, j]` is the score `s(x_j, y_i)` of video j with text i (an
/// MLP on the first output of the cross-modal transformer), `MI(x, y) = exp(s(x, y))`, and the
/// loss `-log MI(x_i, y_i) / (MI(x_i, y_i) + sum_{j != i} MI(x_j, y_i))` averaged over the texts:
/// the mismatched videos of the batch are the negatives, the positive is on the diagonal.
/// `scores` [B, B]; a batch of one is an error (no mismatched video).
pub fn cross_modal_nce(scores: Tensor<2>) -> Result<Tensor<1>> {
    let [b, n] = scores.dims();
    if b != n {
        bail!("cross-modal scores of {b} texts against {n} videos: one video per text");
    }
    let positives: Vec<usize> = (0..b).collect();
    contrastive_nce(scores, &positives)
}
