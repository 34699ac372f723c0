//! ViT configuration: Hugging Face's `ViTConfig` / `Dinov2Config` fields, with presets.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which published layout the parameter names follow.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `ViTModel` / `ViTForImageClassification` (Dosovitskiy et al.).
    Vit,
    /// `Dinov2Model`: LayerScale, `norm1`/`mlp.fc1` names, a mask token.
    Dinov2,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VitConfig {
    /// `model_type` in `config.json`: "vit" or "dinov2".
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// ViT's MLP width; DINOv2 gives `mlp_ratio` instead.
    pub intermediate_size: Option<usize>,
    pub mlp_ratio: Option<f64>,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub qkv_bias: bool,
    /// DINOv2's LayerScale initial value; present means LayerScale is on.
    pub layerscale_value: Option<f64>,
    /// Classes of the head on the class token; 0: no head (a backbone).
    pub num_labels: usize,
}

impl Default for VitConfig {
    /// ViT-B/16 at 224 x 224 (HF `google/vit-base-patch16-224-in21k` layout).
    fn default() -> Self {
        Self {
            model_type: "vit".into(),
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: Some(3072),
            mlp_ratio: None,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            layerscale_value: None,
            num_labels: 0,
        }
    }
}

impl VitConfig {
    fn sized(hidden: usize, layers: usize, heads: usize, patch: usize) -> Self {
        Self {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: Some(4 * hidden),
            patch_size: patch,
            ..Self::default()
        }
    }

    /// Named presets: `ti16 s16 b16 l16 ti14 s14 b14 l14` (224 x 224), `mnist` (28 x 28, patch 4,
    /// 1 channel) and `cifar` (32 x 32, patch 4).
    pub fn preset(name: &str) -> Result<Self> {
        let (size, patch) = match name.len() {
            3 | 4 if name.ends_with("16") || name.ends_with("14") => (
                &name[..name.len() - 2],
                name[name.len() - 2..].parse().unwrap(),
            ),
            _ => (name, 0),
        };
        Ok(match (size, patch) {
            ("ti", p) if p > 0 => Self::sized(192, 12, 3, p),
            ("s", p) if p > 0 => Self::sized(384, 12, 6, p),
            ("b", p) if p > 0 => Self::sized(768, 12, 12, p),
            ("l", p) if p > 0 => Self::sized(1024, 24, 16, p),
            ("mnist", 0) => Self {
                image_size: 28,
                num_channels: 1,
                num_labels: 10,
                ..Self::sized(192, 6, 3, 4)
            },
            ("cifar", 0) => Self {
                image_size: 32,
                num_labels: 10,
                ..Self::sized(192, 6, 3, 4)
            },
            _ => bail!(
                "unknown ViT preset `{name}` (ti16, s16, b16, l16, ti14, s14, b14, l14, mnist, cifar)"
            ),
        })
    }

    pub fn layout(&self) -> Layout {
        if self.model_type == "dinov2" {
            Layout::Dinov2
        } else {
            Layout::Vit
        }
    }

    pub fn mlp_size(&self) -> usize {
        match (self.intermediate_size, self.mlp_ratio) {
            (_, Some(r)) if self.layout() == Layout::Dinov2 => {
                (self.hidden_size as f64 * r).round() as usize
            }
            (Some(i), _) => i,
            (None, Some(r)) => (self.hidden_size as f64 * r).round() as usize,
            (None, None) => 4 * self.hidden_size,
        }
    }

    /// Patches per side at the configured image size.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        // HF gives the head's classes as an `id2label` map.
        if v.get("num_labels").is_none() {
            if let Some(m) = v.get("id2label").and_then(|m| m.as_object()) {
                let n = m.len();
                v["num_labels"] = n.into();
            }
        }
        let cfg: Self = serde_json::from_value(v)
            .with_context(|| format!("{}: not a ViT/DINOv2 config.json", path.display()))?;
        cfg.validate()
            .with_context(|| format!("{}: unsupported configuration", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if !matches!(self.model_type.as_str(), "vit" | "dinov2") {
            bail!("model_type `{}` is not vit or dinov2", self.model_type);
        }
        if !self.qkv_bias {
            bail!("qkv_bias = false is not supported");
        }
        if self.hidden_act != "gelu" {
            bail!(
                "hidden_act `{}` is not supported (only \"gelu\")",
                self.hidden_act
            );
        }
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            bail!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size,
                self.patch_size
            );
        }
        use crate::core::validate::*;
        at_least_one("hidden_size (--hidden)", self.hidden_size)?;
        at_least_one("num_attention_heads (--heads)", self.num_attention_heads)?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not divisible by {} heads",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        at_least_one("num_channels", self.num_channels)?;
        at_least_one(
            "the feed-forward size (intermediate_size or mlp_ratio)",
            self.mlp_size(),
        )?;
        if let Some(r) = self.mlp_ratio {
            positive("mlp_ratio", r)?;
        }
        probability_below_one("hidden_dropout_prob", self.hidden_dropout_prob)?;
        probability_below_one(
            "attention_probs_dropout_prob",
            self.attention_probs_dropout_prob,
        )?;
        positive("layer_norm_eps", self.layer_norm_eps)?;
        positive("initializer_range", self.initializer_range)?;
        if let Some(v) = self.layerscale_value {
            anyhow::ensure!(v.is_finite(), "layerscale_value must be finite, got {v}");
        }
        // One class token plus the patch grid: the attention matrices grow with its square.
        int_in(
            "image_size / patch_size (patches per side)",
            self.grid(),
            1,
            1024,
        )?;
        int_in(
            "num_hidden_layers (--layers)",
            self.num_hidden_layers,
            0,
            1024,
        )?;
        fits_in_memory(
            &format!(
                "a ViT of width {} with {} layers",
                self.hidden_size, self.num_hidden_layers
            ),
            4.0 * 4.0
                * (self.num_hidden_layers as f64
                    * (4.0 * product(&[self.hidden_size, self.hidden_size])
                        + 2.0 * product(&[self.hidden_size, self.mlp_size()]))
                    + product(&[self.grid() * self.grid() + 1, self.hidden_size])),
        )?;
        Ok(())
    }
}
