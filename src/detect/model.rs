//! A darknet network in burn, built from a [`NetSpec`] and a `.weights` file.
//!
//! Weights are read as darknet reads them (`load_weights_upto`): a header of three i32 (major,
//! minor, revision) and the count of images seen (u64 when `major * 10 + minor >= 2`, else
//! i32), then, for every convolutional layer in file order, its biases, and with batch norm its
//! scales, rolling means and rolling variances, then its weights `[filters, c / groups, size,
//! size]`. A file shorter or longer than the network needs is refused (darknet reads short files
//! silently).
//!
//! Batch norm is folded into the convolution for inference, with darknet's own epsilon placement:
//! `(x - mean) / (sqrt(var) + 1e-6) * scale + bias` (darknet's `normalize_cpu`).

use super::config::{Activation, LayerKind, NetSpec};
use crate::core::fused_ops::{conv2d, max_pool2d, ConvActivation};
use anyhow::{bail, Result};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;

/// One layer's parameters (convolutions only; the others have none).
#[derive(Debug, Clone)]
enum Params {
    Conv {
        weight: Box<Tensor<4>>,
        bias: Box<Tensor<1>>,
    },
    None,
}

/// A loaded darknet detector.
#[derive(Debug, Clone)]
pub struct Darknet {
    pub spec: NetSpec,
    params: Vec<Params>,
    /// The weights file's header: (major, minor, revision, images seen in training).
    pub header: (i32, i32, i32, u64),
}

/// The raw output of one `[yolo]` layer: `[anchors * (5 + classes), h, w]` after darknet's
/// logistic on x, y, objectness and class scores (w and h stay raw).
#[derive(Debug, Clone)]
pub struct YoloOutput {
    pub layer: usize,
    pub values: Vec<f32>,
    pub h: usize,
    pub w: usize,
    pub anchors: Vec<(f32, f32)>,
    pub classes: usize,
    pub scale_x_y: f32,
}

/// What one forward pass gives: every `[yolo]` output and, when asked, the map of other layers.
pub struct Forward {
    pub yolo: Vec<YoloOutput>,
    pub maps: Vec<(usize, Tensor<4>)>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn floats(&mut self, n: usize, what: &str, layer: usize) -> Result<Vec<f32>> {
        let end = n
            .checked_mul(4)
            .and_then(|b| b.checked_add(self.pos))
            .unwrap_or(usize::MAX);
        if end > self.bytes.len() {
            bail!(
                "{}: truncated: layer {layer} needs {n} {what} at byte {}, the file has {} bytes",
                self.path.display(),
                self.pos,
                self.bytes.len()
            );
        }
        let v: Vec<f32> = self.bytes[self.pos..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
            bail!(
                "{}: layer {layer}: {what} value {} at byte {} is not finite",
                self.path.display(),
                v[bad],
                self.pos + 4 * bad
            );
        }
        self.pos = end;
        Ok(v)
    }
}

impl Darknet {
    /// Build the network of `spec` with the weights in `weights`, on `device`.
    pub fn load(spec: NetSpec, weights: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(weights)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", weights.display()))?;
        if bytes.len() < 16 {
            bail!("{}: truncated: no darknet header", weights.display());
        }
        let i32_at = |i: usize| i32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let (major, minor, revision) = (i32_at(0), i32_at(4), i32_at(8));
        let long_seen = (major as i64 * 10 + minor as i64) >= 2 && major < 1000 && minor < 1000;
        let (seen, start) = if long_seen {
            if bytes.len() < 20 {
                bail!("{}: truncated header", weights.display());
            }
            (
                u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")),
                20,
            )
        } else {
            (i32_at(12) as u32 as u64, 16)
        };
        let mut r = Reader {
            bytes: &bytes,
            pos: start,
            path: weights,
        };
        let mut params = Vec::with_capacity(spec.layers.len());
        let mut in_c = spec.channels;
        for (i, l) in spec.layers.iter().enumerate() {
            let p = match &l.kind {
                LayerKind::Convolutional {
                    filters,
                    size,
                    groups,
                    batch_normalize,
                    ..
                } => {
                    let n = *filters;
                    let per = in_c / groups * size * size;
                    let mut bias = r.floats(n, "biases", i)?;
                    let mut weight = if *batch_normalize {
                        let scales = r.floats(n, "scales", i)?;
                        let mean = r.floats(n, "rolling means", i)?;
                        let var = r.floats(n, "rolling variances", i)?;
                        let mut w = r.floats(n * per, "weights", i)?;
                        for f in 0..n {
                            if var[f] < 0.0 {
                                bail!(
                                    "{}: layer {i}: rolling variance {} of filter {f} is negative",
                                    weights.display(),
                                    var[f]
                                );
                            }
                            let k = scales[f] / (var[f].sqrt() + 1e-6);
                            for x in &mut w[f * per..(f + 1) * per] {
                                *x *= k;
                            }
                            bias[f] -= mean[f] * k;
                        }
                        w
                    } else {
                        r.floats(n * per, "weights", i)?
                    };
                    let shape = [n, in_c / groups, *size, *size];
                    let weight = Tensor::from_data(
                        TensorData::new(std::mem::take(&mut weight), shape),
                        device,
                    );
                    let bias =
                        Tensor::from_data(TensorData::new(std::mem::take(&mut bias), [n]), device);
                    Params::Conv {
                        weight: Box::new(weight),
                        bias: Box::new(bias),
                    }
                }
                _ => Params::None,
            };
            params.push(p);
            in_c = l.out.0;
        }
        if r.pos != bytes.len() {
            bail!(
                "{}: {} bytes left after the last layer: the weights do not belong to this .cfg \
                 (it needs {} bytes)",
                weights.display(),
                bytes.len() - r.pos,
                r.pos
            );
        }
        Ok(Self {
            spec,
            params,
            header: (major, minor, revision, seen),
        })
    }

    /// Run `x` [1, C, H, W] (the network's input size) through the network. `keep` lists layers
    /// whose output maps are returned too (for region features).
    pub fn forward(&self, x: Tensor<4>, keep: &[usize]) -> Result<Forward> {
        let [_, c, h, w] = x.dims();
        if (c, h, w) != (self.spec.channels, self.spec.height, self.spec.width) {
            bail!(
                "input of {c}x{h}x{w}, the network takes {}x{}x{}",
                self.spec.channels,
                self.spec.height,
                self.spec.width
            );
        }
        // Outputs are kept only as long as a later route or shortcut needs them.
        let mut last_use = vec![0usize; self.spec.layers.len()];
        for (i, l) in self.spec.layers.iter().enumerate() {
            match &l.kind {
                LayerKind::Route { layers, .. } => layers.iter().for_each(|&j| last_use[j] = i),
                LayerKind::Shortcut { from, .. } => last_use[*from] = i,
                _ => {}
            }
        }
        let mut outputs: Vec<Option<Tensor<4>>> = vec![None; self.spec.layers.len()];
        let mut cur = x;
        let mut yolo = Vec::new();
        let mut maps = Vec::new();
        for (i, l) in self.spec.layers.iter().enumerate() {
            cur = match (&l.kind, &self.params[i]) {
                (
                    LayerKind::Convolutional {
                        stride,
                        padding,
                        groups,
                        activation,
                        ..
                    },
                    Params::Conv { weight, bias },
                ) => {
                    // Leaky and linear fuse into the convolution; the others follow it.
                    let fused = match activation {
                        Activation::Leaky => ConvActivation::Leaky(0.1),
                        _ => ConvActivation::Identity,
                    };
                    let y = conv2d(cur, weight, bias, *stride, *padding, *groups, fused);
                    match activation {
                        Activation::Leaky | Activation::Linear => y,
                        other => activate(y, *other),
                    }
                }
                (
                    LayerKind::Maxpool {
                        size,
                        stride,
                        padding,
                    },
                    _,
                ) => {
                    // darknet starts its windows `padding / 2` before the input.
                    max_pool2d(cur, *size, *stride, padding / 2, (l.out.1, l.out.2))
                }
                (LayerKind::Upsample { stride }, _) => {
                    let [b, c, h, w] = cur.dims();
                    let s = *stride;
                    cur.reshape([b, c, h, 1, w, 1])
                        .expand([b, c, h, s, w, s])
                        .reshape([b, c, h * s, w * s])
                }
                (
                    LayerKind::Route {
                        layers,
                        groups,
                        group_id,
                    },
                    _,
                ) => {
                    let parts: Vec<Tensor<4>> = layers
                        .iter()
                        .map(|&j| {
                            let t = outputs[j].clone().expect("kept until its last use");
                            if *groups == 1 {
                                t
                            } else {
                                let cj = self.spec.layers[j].out.0 / groups;
                                t.narrow(1, group_id * cj, cj)
                            }
                        })
                        .collect();
                    if parts.len() == 1 {
                        parts.into_iter().next().expect("one part")
                    } else {
                        Tensor::cat(parts, 1)
                    }
                }
                (LayerKind::Shortcut { from, activation }, _) => {
                    let other = outputs[*from].clone().expect("kept until its last use");
                    activate(cur + other, *activation)
                }
                (
                    LayerKind::Yolo {
                        anchors,
                        classes,
                        scale_x_y,
                    },
                    _,
                ) => {
                    let [_, _, h, w] = cur.dims();
                    let mut values: Vec<f32> = cur
                        .clone()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec()
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    let plane = h * w;
                    let entries = 5 + classes;
                    for a in 0..anchors.len() {
                        let base = a * entries * plane;
                        for e in 0..entries {
                            if e == 2 || e == 3 {
                                continue;
                            }
                            for v in &mut values[base + e * plane..base + (e + 1) * plane] {
                                *v = 1.0 / (1.0 + (-*v).exp());
                            }
                        }
                    }
                    yolo.push(YoloOutput {
                        layer: i,
                        values,
                        h,
                        w,
                        anchors: anchors.clone(),
                        classes: *classes,
                        scale_x_y: *scale_x_y,
                    });
                    cur
                }
                (LayerKind::Convolutional { .. }, Params::None) => {
                    unreachable!("convolutions are built with their parameters")
                }
            };
            if keep.contains(&i) {
                maps.push((i, cur.clone()));
            }
            if last_use[i] > i {
                outputs[i] = Some(cur.clone());
            }
            for (j, slot) in outputs.iter_mut().enumerate().take(i) {
                if last_use[j] <= i {
                    *slot = None;
                }
            }
        }
        Ok(Forward { yolo, maps })
    }
}

fn activate(x: Tensor<4>, a: Activation) -> Tensor<4> {
    match a {
        Activation::Linear => x,
        Activation::Leaky => {
            // darknet's leaky: x > 0 ? x : 0.1 x
            let neg = x.clone().lower_elem(0.0);
            x.clone().mask_where(neg, x.mul_scalar(0.1))
        }
        Activation::Relu => relu(x),
        Activation::Logistic => sigmoid(x),
        Activation::Mish => {
            // x * tanh(softplus(x))
            let sp = burn::tensor::activation::softplus(x.clone(), 1.0);
            x * sp.tanh()
        }
    }
}
