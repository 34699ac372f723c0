//! darknet `.cfg` files: `[section]` headers followed by `key=value` lines (`#` and `;` start
//! comments, whitespace is ignored as darknet strips it), parsed into layer specifications with
//! the shapes they produce. Layer kinds: `convolutional` (batch norm; leaky, linear, relu,
//! logistic, mish), `maxpool`, `upsample`, `route` (with `groups`/`group_id`), `shortcut`, `yolo`
//! (with `scale_x_y`). Any other kind or setting that changes the computation is refused by name.

use crate::core::error::InputError;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Leaky,
    Relu,
    Logistic,
    Mish,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    Convolutional {
        filters: usize,
        size: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        batch_normalize: bool,
        activation: Activation,
    },
    Maxpool {
        size: usize,
        stride: usize,
        /// darknet's `padding` (default `size - 1`): `padding / 2` before, the rest after.
        padding: usize,
    },
    Upsample {
        stride: usize,
    },
    /// Channels of earlier layers (absolute indices), concatenated; with `groups`, only the
    /// `group_id`-th of `groups` equal channel slices of each.
    Route {
        layers: Vec<usize>,
        groups: usize,
        group_id: usize,
    },
    Shortcut {
        from: usize,
        activation: Activation,
    },
    Yolo {
        /// The anchors (width, height in network pixels) this layer predicts with.
        anchors: Vec<(f32, f32)>,
        classes: usize,
        scale_x_y: f32,
    },
}

/// A layer and the shape it outputs (channels, height, width).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub kind: LayerKind,
    /// The line of its `[section]` header in the file.
    pub line: usize,
    pub out: (usize, usize, usize),
}

/// A parsed network: input size and layers (indices as darknet counts them, from 0 after
/// `[net]`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub layers: Vec<LayerSpec>,
}

struct Section {
    name: String,
    line: usize,
    options: BTreeMap<String, (String, usize)>,
}

/// Keys that are read (or known not to change inference) per section; anything else is refused
/// so that a setting we would silently ignore never changes what darknet computes.
fn known_keys(section: &str) -> &'static [&'static str] {
    match section {
        "net" | "network" => &[
            "batch",
            "subdivisions",
            "width",
            "height",
            "channels",
            "momentum",
            "decay",
            "angle",
            "saturation",
            "exposure",
            "hue",
            "learning_rate",
            "burn_in",
            "max_batches",
            "policy",
            "steps",
            "scales",
            "mosaic",
            "flip",
            "max_chart_loss",
            "letter_box",
            "mixup",
            "cutmix",
            "blur",
            "gaussian_noise",
            "label_smooth_eps",
            "adam",
            "B1",
            "B2",
            "eps",
            "power",
            "aspect",
            "min_crop",
            "max_crop",
            "track",
            "time_steps",
            "random",
        ],
        "convolutional" => &[
            "batch_normalize",
            "filters",
            "size",
            "stride",
            "pad",
            "padding",
            "activation",
            "groups",
        ],
        "maxpool" => &["size", "stride", "padding"],
        "upsample" => &["stride"],
        "route" => &["layers", "groups", "group_id"],
        "shortcut" => &["from", "activation"],
        "yolo" => &[
            "mask",
            "anchors",
            "classes",
            "num",
            "jitter",
            "ignore_thresh",
            "truth_thresh",
            "random",
            "scale_x_y",
            "iou_thresh",
            "cls_normalizer",
            "iou_normalizer",
            "iou_loss",
            "nms_kind",
            "beta_nms",
            "max_delta",
            "resize",
            "counters_per_class",
            "label_smooth_eps",
            "obj_normalizer",
            "max",
        ],
        _ => &[],
    }
}

fn sections(path: &Path, text: &str) -> Result<Vec<Section>> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
                bail!(InputError::new(
                    path,
                    i + 1,
                    None,
                    format!("`{line}` is not a [section] header")
                ));
            };
            out.push(Section {
                name: name.to_string(),
                line: i + 1,
                options: BTreeMap::new(),
            });
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!(InputError::new(
                path,
                i + 1,
                None,
                format!("expected key=value, found `{line}`")
            ));
        };
        let Some(s) = out.last_mut() else {
            bail!(InputError::new(
                path,
                i + 1,
                Some(k),
                "a setting before the first [section]"
            ));
        };
        s.options.insert(k.to_string(), (v.to_string(), i + 1));
    }
    Ok(out)
}

impl Section {
    fn int(&self, path: &Path, key: &str, default: Option<i64>) -> Result<i64> {
        match self.options.get(key) {
            Some((v, line)) => v.parse().map_err(|_| {
                InputError::new(path, *line, Some(key), format!("`{v}` is not an integer")).into()
            }),
            None => default.ok_or_else(|| {
                InputError::new(
                    path,
                    self.line,
                    Some(key),
                    format!("[{}] needs `{key}`", self.name),
                )
                .into()
            }),
        }
    }

    /// A count in `lo..=hi`.
    fn count(
        &self,
        path: &Path,
        key: &str,
        default: Option<i64>,
        lo: i64,
        hi: i64,
    ) -> Result<usize> {
        let v = self.int(path, key, default)?;
        if v < lo || v > hi {
            let line = self.options.get(key).map_or(self.line, |o| o.1);
            bail!(InputError::new(
                path,
                line,
                Some(key),
                format!("{v} is outside {lo}..={hi}")
            ));
        }
        Ok(v as usize)
    }

    fn float(&self, path: &Path, key: &str, default: f32) -> Result<f32> {
        match self.options.get(key) {
            Some((v, line)) => match v.parse::<f32>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => bail!(InputError::new(
                    path,
                    *line,
                    Some(key),
                    format!("`{v}` is not a finite number")
                )),
            },
            None => Ok(default),
        }
    }

    fn ints(&self, path: &Path, key: &str) -> Result<Option<Vec<i64>>> {
        let Some((v, line)) = self.options.get(key) else {
            return Ok(None);
        };
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|_| {
                    InputError::new(path, *line, Some(key), format!("`{s}` is not an integer"))
                        .into()
                })
            })
            .collect::<Result<Vec<i64>>>()
            .map(Some)
    }

    fn activation(&self, path: &Path, default: Activation) -> Result<Activation> {
        let Some((v, line)) = self.options.get("activation") else {
            return Ok(default);
        };
        Ok(match v.as_str() {
            "linear" => Activation::Linear,
            "leaky" => Activation::Leaky,
            "relu" => Activation::Relu,
            "logistic" => Activation::Logistic,
            "mish" => Activation::Mish,
            other => bail!(InputError::new(
                path,
                *line,
                Some("activation"),
                format!(
                    "activation `{other}` is not supported (linear, leaky, relu, logistic, mish)"
                )
            )),
        })
    }
}

/// Largest channel count, kernel size or spatial size accepted from a file.
const MAX_DIM: i64 = 1 << 16;

/// Parse a darknet `.cfg` file.
pub fn read_cfg(path: &Path) -> Result<NetSpec> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    parse_cfg(path, &text)
}

/// Parse the text of a darknet `.cfg` file (`path` names it in errors).
pub fn parse_cfg(path: &Path, text: &str) -> Result<NetSpec> {
    let secs = sections(path, text)?;
    let Some(first) = secs.first() else {
        bail!("{}: no [net] section", path.display());
    };
    if first.name != "net" && first.name != "network" {
        bail!(InputError::new(
            path,
            first.line,
            None,
            "the first section must be [net]"
        ));
    }
    for s in &secs {
        let known = known_keys(&s.name);
        for (k, (_, line)) in &s.options {
            if !known.contains(&k.as_str()) && !known.is_empty() {
                bail!(InputError::new(
                    path,
                    *line,
                    Some(k),
                    format!("setting `{k}` of [{}] is not supported", s.name)
                ));
            }
        }
    }
    let net = first;
    let width = net.count(path, "width", None, 1, MAX_DIM)?;
    let height = net.count(path, "height", None, 1, MAX_DIM)?;
    let channels = net.count(path, "channels", Some(3), 1, 64)?;
    let mut layers: Vec<LayerSpec> = Vec::new();
    let mut shape = (channels, height, width);
    for s in &secs[1..] {
        let index = layers.len();
        let err = |line: usize, field: Option<&str>, msg: String| -> anyhow::Error {
            InputError::new(
                path,
                line,
                field,
                format!("layer {index} [{}]: {msg}", s.name),
            )
            .into()
        };
        let (c, h, w) = shape;
        let (kind, out) = match s.name.as_str() {
            "convolutional" | "conv" => {
                let filters = s.count(path, "filters", Some(1), 1, MAX_DIM)?;
                let size = s.count(path, "size", Some(1), 1, 64)?;
                let stride = s.count(path, "stride", Some(1), 1, 64)?;
                let pad = s.count(path, "pad", Some(0), 0, 1)?;
                let mut padding = s.count(path, "padding", Some(0), 0, 64)?;
                if pad == 1 {
                    padding = size / 2;
                }
                let groups = s.count(path, "groups", Some(1), 1, MAX_DIM)?;
                if c % groups != 0 || filters % groups != 0 {
                    return Err(err(s.line, Some("groups"), format!("{groups} groups do not divide {c} input channels and {filters} filters")));
                }
                let batch_normalize = s.count(path, "batch_normalize", Some(0), 0, 1)? == 1;
                let activation = s.activation(path, Activation::Logistic)?;
                let oh = (h + 2 * padding).checked_sub(size).map(|v| v / stride + 1);
                let ow = (w + 2 * padding).checked_sub(size).map(|v| v / stride + 1);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return Err(err(
                        s.line,
                        Some("size"),
                        format!("a {size}x{size} kernel does not fit a {h}x{w} input"),
                    ));
                };
                (
                    LayerKind::Convolutional {
                        filters,
                        size,
                        stride,
                        padding,
                        groups,
                        batch_normalize,
                        activation,
                    },
                    (filters, oh, ow),
                )
            }
            "maxpool" | "max" => {
                let stride = s.count(path, "stride", Some(1), 1, 64)?;
                let size = s.count(path, "size", Some(stride as i64), 1, 64)?;
                let padding = s.count(path, "padding", Some(size as i64 - 1), 0, 64)?;
                let oh = (h + padding).checked_sub(size).map(|v| v / stride + 1);
                let ow = (w + padding).checked_sub(size).map(|v| v / stride + 1);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return Err(err(
                        s.line,
                        Some("size"),
                        format!("a {size}x{size} window does not fit a {h}x{w} input"),
                    ));
                };
                (
                    LayerKind::Maxpool {
                        size,
                        stride,
                        padding,
                    },
                    (c, oh, ow),
                )
            }
            "upsample" => {
                let stride = s.count(path, "stride", Some(2), 1, 64)?;
                (LayerKind::Upsample { stride }, (c, h * stride, w * stride))
            }
            "route" => {
                let Some(rel) = s.ints(path, "layers")? else {
                    return Err(err(s.line, Some("layers"), "needs `layers`".into()));
                };
                if rel.is_empty() {
                    return Err(err(s.line, Some("layers"), "lists no layer".into()));
                }
                let groups = s.count(path, "groups", Some(1), 1, MAX_DIM)?;
                let group_id = s.count(path, "group_id", Some(0), 0, MAX_DIM)?;
                if group_id >= groups {
                    return Err(err(
                        s.line,
                        Some("group_id"),
                        format!("{group_id} is not below groups {groups}"),
                    ));
                }
                let mut abs = Vec::new();
                let mut channels = 0;
                let mut hw = None;
                for r in rel {
                    let i = if r < 0 { index as i64 + r } else { r };
                    if i < 0 || i as usize >= index {
                        return Err(err(
                            s.line,
                            Some("layers"),
                            format!("{r} names no earlier layer"),
                        ));
                    }
                    let (lc, lh, lw) = layers[i as usize].out;
                    if lc % groups != 0 {
                        return Err(err(
                            s.line,
                            Some("groups"),
                            format!("{groups} groups do not divide layer {i}'s {lc} channels"),
                        ));
                    }
                    if *hw.get_or_insert((lh, lw)) != (lh, lw) {
                        return Err(err(
                            s.line,
                            Some("layers"),
                            "the layers have different sizes".into(),
                        ));
                    }
                    channels += lc / groups;
                    abs.push(i as usize);
                }
                let (oh, ow) = hw.expect("at least one layer");
                (
                    LayerKind::Route {
                        layers: abs,
                        groups,
                        group_id,
                    },
                    (channels, oh, ow),
                )
            }
            "shortcut" => {
                let from = s.int(path, "from", None)?;
                let i = if from < 0 { index as i64 + from } else { from };
                if i < 0 || i as usize >= index {
                    return Err(err(
                        s.line,
                        Some("from"),
                        format!("{from} names no earlier layer"),
                    ));
                }
                if layers[i as usize].out != shape {
                    return Err(err(s.line, Some("from"), format!("layer {i} has shape {:?}, the previous {:?}; only equal shapes are supported", layers[i as usize].out, shape)));
                }
                let activation = s.activation(path, Activation::Linear)?;
                (
                    LayerKind::Shortcut {
                        from: i as usize,
                        activation,
                    },
                    shape,
                )
            }
            "yolo" => {
                let classes = s.count(path, "classes", Some(20), 1, 100_000)?;
                let all: Vec<i64> = s.ints(path, "anchors")?.unwrap_or_default();
                if !all.len().is_multiple_of(2) || all.is_empty() {
                    return Err(err(
                        s.line,
                        Some("anchors"),
                        "needs an even, non-zero count of numbers".into(),
                    ));
                }
                let total = all.len() / 2;
                let num = s.count(path, "num", Some(total as i64), 1, 1000)?;
                if num != total {
                    return Err(err(
                        s.line,
                        Some("num"),
                        format!("{num} but `anchors` holds {total} pairs"),
                    ));
                }
                let mask: Vec<i64> = s
                    .ints(path, "mask")?
                    .unwrap_or_else(|| (0..num as i64).collect());
                let mut anchors = Vec::new();
                for m in mask {
                    if m < 0 || m as usize >= num {
                        return Err(err(s.line, Some("mask"), format!("{m} names no anchor")));
                    }
                    anchors.push((all[2 * m as usize] as f32, all[2 * m as usize + 1] as f32));
                }
                if c != anchors.len() * (5 + classes) {
                    return Err(err(s.line, None, format!("its input has {c} channels, {} anchors x (5 + {classes} classes) need {}", anchors.len(), anchors.len() * (5 + classes))));
                }
                let scale_x_y = s.float(path, "scale_x_y", 1.0)?;
                (
                    LayerKind::Yolo {
                        anchors,
                        classes,
                        scale_x_y,
                    },
                    shape,
                )
            }
            other => {
                return Err(err(s.line, None, format!("layer kind [{other}] is not supported (convolutional, maxpool, upsample, route, shortcut, yolo)")));
            }
        };
        if out.0 == 0 || out.1 == 0 || out.2 == 0 {
            return Err(err(s.line, None, format!("outputs an empty {out:?} map")));
        }
        shape = out;
        layers.push(LayerSpec {
            kind,
            line: s.line,
            out,
        });
    }
    if !layers
        .iter()
        .any(|l| matches!(l.kind, LayerKind::Yolo { .. }))
    {
        bail!("{}: no [yolo] layer: not a YOLO detector", path.display());
    }
    Ok(NetSpec {
        width,
        height,
        channels,
        layers,
    })
}
