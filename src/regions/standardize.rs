//! Per-dimension standardisation of region features (a z-score, as scikit-learn's
//! `StandardScaler`): each feature dimension less the mean of a *training* region file, divided
//! by its standard deviation there (population form), so the held-out images are scaled by the
//! statistics of the training images, never their own.
//!
//! Why: the official VL-BERT and ViLBERT read raw bottom-up features through `Linear ->
//! LayerNorm`. A backbone whose features have a few large dimensions (DINOv2's) hides the small
//! ones a task turns on: on easy-VQA a tiny ViLBERT learns to match a question's colour against
//! the image several times faster on standardised DINOv2 features than on the raw ones
//! (`docs/results.md`). It is a step of the data, not of the network: the models are unchanged
//! and read either file.
//!
//! A dimension that does not vary in the training file (standard deviation below 1e-6) is only
//! centred. Boxes, image sizes and class scores are kept as they are.

use super::files::RegionSet;
use anyhow::{bail, Result};

/// Mean and standard deviation of every feature dimension over all boxes of a region set.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Boxes the statistics were taken over.
    pub boxes: usize,
}

/// Below this a dimension counts as constant: centred, not scaled.
pub const MIN_STD: f64 = 1e-6;

impl FeatureStats {
    /// The statistics of `set` (two passes in f64: mean, then squared deviations).
    pub fn of(set: &RegionSet) -> Result<Self> {
        let f = set.feature_size()?;
        let boxes: usize = set.images.iter().map(|im| im.num_boxes()).sum();
        if boxes == 0 || f == 0 {
            bail!("the region set has no boxes to take statistics over");
        }
        let mut mean = vec![0.0f64; f];
        for im in &set.images {
            for r in 0..im.num_boxes() {
                for (m, &v) in mean.iter_mut().zip(im.feature(r)) {
                    *m += v as f64;
                }
            }
        }
        mean.iter_mut().for_each(|m| *m /= boxes as f64);
        let mut var = vec![0.0f64; f];
        for im in &set.images {
            for r in 0..im.num_boxes() {
                for ((s, &v), m) in var.iter_mut().zip(im.feature(r)).zip(&mean) {
                    let d = v as f64 - m;
                    *s += d * d;
                }
            }
        }
        let std = var.iter().map(|s| (s / boxes as f64).sqrt()).collect();
        Ok(Self { mean, std, boxes })
    }

    /// Dimensions that are only centred (constant in the training file).
    pub fn constant_dimensions(&self) -> usize {
        self.std.iter().filter(|&&s| s < MIN_STD).count()
    }

    /// Standardise every box of `set` in place; its feature size must be the statistics'.
    pub fn apply(&self, set: &mut RegionSet) -> Result<()> {
        let f = set.feature_size()?;
        if set.images.iter().any(|im| im.num_boxes() > 0) && f != self.mean.len() {
            bail!(
                "features of {f} values, but the statistics are of {} (another backbone?)",
                self.mean.len()
            );
        }
        for im in &mut set.images {
            for row in im.features.chunks_exact_mut(f.max(1)) {
                for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                    let centred = *v as f64 - m;
                    *v = if *s < MIN_STD { centred } else { centred / s } as f32;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regions::files::ImageRegions;

    fn image(id: &str, features: Vec<f32>, boxes: usize) -> ImageRegions {
        ImageRegions {
            image_id: id.into(),
            width: 10.0,
            height: 10.0,
            boxes: vec![[0.0, 0.0, 5.0, 5.0]; boxes],
            features,
            cls_prob: None,
        }
    }

    #[test]
    fn training_boxes_get_mean_zero_and_std_one_and_held_out_ones_the_training_scale() {
        // Dimension 0 varies (1, 3, 5), dimension 1 is constant (7).
        let train = RegionSet::from_images(
            vec![
                image("a", vec![1.0, 7.0, 3.0, 7.0], 2),
                image("b", vec![5.0, 7.0], 1),
                image("empty", vec![], 0),
            ],
            "test",
        );
        let stats = FeatureStats::of(&train).unwrap();
        assert_eq!(stats.boxes, 3);
        assert_eq!(stats.mean, vec![3.0, 7.0]);
        let sd = (8.0f64 / 3.0).sqrt();
        assert!((stats.std[0] - sd).abs() < 1e-12);
        assert_eq!(stats.constant_dimensions(), 1);
        let mut t = train.clone();
        stats.apply(&mut t).unwrap();
        let got: Vec<f32> = t.images.iter().flat_map(|im| im.features.clone()).collect();
        let want = [-2.0 / sd, 0.0, 0.0, 0.0, 2.0 / sd, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?}");
        }
        let mut held_out = RegionSet::from_images(vec![image("c", vec![9.0, 8.0], 1)], "test");
        stats.apply(&mut held_out).unwrap();
        assert!((held_out.images[0].features[0] as f64 - 6.0 / sd).abs() < 1e-6);
        assert_eq!(held_out.images[0].features[1], 1.0);
    }

    #[test]
    fn a_set_without_boxes_or_of_another_size_is_an_error() {
        let empty = RegionSet::from_images(vec![image("e", vec![], 0)], "test");
        assert!(FeatureStats::of(&empty).is_err());
        let stats = FeatureStats::of(&RegionSet::from_images(
            vec![image("a", vec![1.0, 2.0], 1)],
            "test",
        ))
        .unwrap();
        let mut other = RegionSet::from_images(vec![image("b", vec![1.0, 2.0, 3.0], 1)], "test");
        let e = stats.apply(&mut other).unwrap_err().to_string();
        assert!(e.contains("3 values") && e.contains("of 2"), "{e}");
    }
}
