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
