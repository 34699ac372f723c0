//! Losses shared by models (beside [`super::fused::cross_entropy`] for hard targets).

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
