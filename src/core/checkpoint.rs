//! Safetensors checkpoints with Hugging Face parameter names.
//!
//! Parameters are collected by walking the module. burn's `Linear` stores its weight as
//! [in, out]; checkpoints store [out, in] as PyTorch does, and LayerNorm's `gamma`/`beta` become
//! `weight`/`bias`, so files read the same as the published ones. A model passes a list of path
//! renames (first match wins) to finish the mapping to its Hugging Face names.
//!
//! Files are written to a temporary sibling and renamed, so a crash never leaves a half-written
//! checkpoint.

use super::optim::Adam;
use super::run::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Rename a parameter path with the first matching (from, to) substring rule.
pub fn rename(path: &str, renames: &[(&str, &str)]) -> String {
    let dotted = format!(".{path}.");
    for (from, to) in renames {
        if dotted.contains(from) {
            let r = dotted.replacen(from, to, 1);
            return r[1..r.len() - 1].to_string();
        }
    }
    path.to_string()
}

/// The checkpoint name of the parameter at `path` inside a container of type `container`
/// (burn's derive reports `Struct:Name`), and whether its layout is transposed.
fn storage_name(path: &[String], container: &str, renames: &[(&str, &str)]) -> (String, bool) {
    let mut parts: Vec<String> = path.to_vec();
    let mut transpose = false;
    if let Some(last) = parts.last_mut() {
        match (container, last.as_str()) {
            ("Struct:LayerNorm", "gamma") => *last = "weight".into(),
            ("Struct:LayerNorm", "beta") => *last = "bias".into(),
            ("Struct:Linear", "weight") => transpose = true,
            _ => {}
        }
    }
    (rename(&parts.join("."), renames), transpose)
}

struct Collector<'a> {
    path: Vec<String>,
    containers: Vec<String>,
    renames: &'a [(&'a str, &'a str)],
    /// Collect these gradients instead of the parameters (parameters without one are left out).
    grads: Option<&'a burn::optim::GradientsParams>,
    out: Vec<(String, TensorData)>,
}

impl ModuleVisitor for Collector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let container = self.containers.last().cloned().unwrap_or_default();
        let (name, transpose) = storage_name(&self.path, &container, self.renames);
        let t = match self.grads {
            None => param.val(),
            Some(g) => match g.get::<D>(param.id) {
                Some(t) => t,
                None => return,
            },
        };
        let data = if transpose && D == 2 {
            t.transpose().into_data()
        } else {
            t.into_data()
        };
        self.out.push((name, data));
    }
}

/// Every float parameter of `module` under its checkpoint name, in storage layout.
pub fn named_tensors<M: Module>(module: &M, renames: &[(&str, &str)]) -> Vec<(String, TensorData)> {
    let mut c = Collector {
        path: vec![],
        containers: vec![],
        renames,
        grads: None,
        out: vec![],
    };
    module.visit(&mut c);
    c.out
}

/// The gradient of every float parameter of `module` that has one, under the parameter's
/// checkpoint name and in its storage layout (gradient parity against PyTorch's state dict).
pub fn named_gradients<M: Module>(
    module: &M,
    grads: &burn::optim::GradientsParams,
    renames: &[(&str, &str)],
) -> Vec<(String, TensorData)> {
    let mut c = Collector {
        path: vec![],
        containers: vec![],
        renames,
        grads: Some(grads),
        out: vec![],
    };
    module.visit(&mut c);
    c.out
}

struct Loader<'a> {
    path: Vec<String>,
    containers: Vec<String>,
    renames: &'a [(&'a str, &'a str)],
    tensors: &'a BTreeMap<String, TensorData>,
    device: &'a Device,
    used: Vec<String>,
    errors: Vec<String>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let container = self.containers.last().cloned().unwrap_or_default();
        let (name, transpose) = storage_name(&self.path, &container, self.renames);
        let Some(data) = self.tensors.get(&name) else {
            self.errors.push(format!("missing tensor `{name}`"));
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let expected: Vec<usize> = if transpose && D == 2 {
            let d = tensor.dims();
            vec![d[1], d[0]]
        } else {
            tensor.dims().to_vec()
        };
        if data.shape().as_slice() != expected.as_slice() {
            self.errors.push(format!(
                "tensor `{name}` has shape {:?}, the model expects {:?}",
                data.shape(),
                expected
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        if let Ok(values) = data.as_slice::<f32>() {
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                self.errors.push(format!(
                    "tensor `{name}` holds a non-finite value ({bad}): the model this \
                     checkpoint holds cannot give meaningful outputs"
                ));
                return Param::from_mapped_value(id, tensor, mapper);
            }
        }
        self.used.push(name.clone());
        let require_grad = tensor.is_require_grad();
        let dev = if tensor.device().is_autodiff() {
            self.device.clone().autodiff()
        } else {
            self.device.clone()
        };
        // Transposed on the host so that the parameter is contiguous, exactly as a freshly
        // initialised one: a strided view would change matmul rounding after a resume.
        let data = if transpose && D == 2 {
            let shape = data.shape().to_vec();
            let (rows, cols) = (shape[0], shape[1]);
            match data.clone().convert::<f32>().try_to_vec::<f32>() {
                Ok(v) => {
                    let mut t = vec![0f32; v.len()];
                    for r in 0..rows {
                        for c in 0..cols {
                            t[c * rows + r] = v[r * cols + c];
                        }
                    }
                    TensorData::new(t, [cols, rows])
                }
                Err(e) => {
                    self.errors.push(format!("tensor `{name}`: {e:?}"));
                    return Param::from_mapped_value(id, tensor, mapper);
                }
            }
        } else {
            data.clone()
        };
        let mut loaded: Tensor<D> = Tensor::from_data(data, &dev);
        if require_grad {
            loaded = loaded.require_grad();
        }
        Param::from_mapped_value(id, loaded, mapper)
    }
}

/// Replace every parameter of `module` by the tensor of the same checkpoint name. Fails, listing
/// every problem, when a tensor is missing or its shape does not fit.
pub fn load_named<M: Module>(
    module: M,
    tensors: &BTreeMap<String, TensorData>,
    renames: &[(&str, &str)],
    device: &Device,
    source: &Path,
) -> Result<M> {
    let mut l = Loader {
        path: vec![],
        containers: vec![],
        renames,
        tensors,
        device,
        used: vec![],
        errors: vec![],
    };
    let module = module.map(&mut l);
    l.errors.extend(extra_layers(tensors, &l.used));
    if !l.errors.is_empty() {
        bail!(
            "checkpoint {} does not fit the model:\n  {}",
            source.display(),
            l.errors.join("\n  ")
        );
    }
    Ok(module)
}

/// Layers a checkpoint holds beyond those the model has: a checkpoint with more encoder layers
/// than its config says would otherwise load and silently run fewer. Layers are recognised as
/// `...layer.N.` (Hugging Face) or `...layers.N.` in names.
fn extra_layers(tensors: &BTreeMap<String, TensorData>, used: &[String]) -> Vec<String> {
    fn split(name: &str) -> Option<(&str, usize)> {
        for marker in [".layer.", ".layers."] {
            if let Some(i) = name.find(marker) {
                let rest = &name[i + marker.len()..];
                let digits: &str = rest.split('.').next()?;
                return Some((&name[..i + marker.len()], digits.parse().ok()?));
            }
        }
        None
    }
    let mut have: BTreeMap<&str, usize> = BTreeMap::new();
    for name in used {
        if let Some((prefix, i)) = split(name) {
            let e = have.entry(prefix).or_insert(0);
            *e = (*e).max(i + 1);
        }
    }
    let mut extra: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for name in tensors.keys() {
        if let Some((prefix, i)) = split(name) {
            if let Some(&n) = have.get(prefix) {
                if i >= n {
                    let e = extra.entry(prefix).or_insert((n, i + 1));
                    e.1 = e.1.max(i + 1);
                }
            }
        }
    }
    extra
        .into_iter()
        .map(|(prefix, (model, file))| {
            format!(
                "the checkpoint holds {file} layers under `{prefix}` but the model (its config) has \
                 {model}: fix the configuration's layer count"
            )
        })
        .collect()
}

/// Serialise f32 tensors and string metadata to safetensors bytes.
pub fn to_safetensors_bytes(
    tensors: &[(String, TensorData)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, data) in tensors {
        let values: Vec<f32> = data
            .clone()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow!("tensor `{name}`: {e:?}"))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bufs.push((name.clone(), data.shape().to_vec(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| anyhow!("tensor `{n}`: {e:?}"))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| anyhow!("safetensors: {e:?}"))
}

/// Write tensors and metadata to `path` atomically.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, TensorData)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_atomic(path, &to_safetensors_bytes(tensors, metadata)?)
}

/// Write a training checkpoint atomically: the model's tensors, the optimiser's moments under
/// `optimizer.` and its step count as `adam_step` in the metadata, beside `meta`.
pub fn save_training_checkpoint(
    path: &Path,
    mut tensors: Vec<(String, TensorData)>,
    adam: &Adam,
    mut meta: HashMap<String, String>,
) -> Result<()> {
    for (k, v) in adam.state_tensors() {
        tensors.push((format!("optimizer.{k}"), v));
    }
    meta.insert("adam_step".into(), adam.step.to_string());
    save_safetensors(path, &tensors, meta)
}

/// A checkpoint read back by [`load_training_checkpoint`]: the model's tensors and the metadata.
pub struct TrainingCheckpoint {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, TensorData>,
    pub meta: HashMap<String, String>,
}

impl TrainingCheckpoint {
    /// A metadata value; a missing one is an error naming the file.
    pub fn get(&self, key: &str) -> Result<String> {
        self.meta
            .get(key)
            .cloned()
            .with_context(|| format!("{}: metadata lacks `{key}`", self.path.display()))
    }

    /// The epoch to continue with and the optimiser step reached (metadata `epoch`, `step`).
    pub fn next_epoch_and_step(&self) -> Result<(usize, u64)> {
        Ok((
            self.get("epoch")?.parse::<usize>()? + 1,
            self.get("step")?.parse()?,
        ))
    }

    /// Fails unless the training settings stored under `key` (TOML) equal `settings`: a run
    /// resumes only with the settings it was started with.
    pub fn ensure_same_settings<C: serde::de::DeserializeOwned + PartialEq>(
        &self,
        key: &str,
        settings: &C,
    ) -> Result<()> {
        let saved: C = toml::from_str(&self.get(key)?)?;
        anyhow::ensure!(
            &saved == settings,
            "cannot resume {}: its training configuration differs from the one given",
            self.path.display()
        );
        Ok(())
    }

    /// Takes the model's tensors out, with a leading `prefix` (a head model's wrapper such as
    /// `bert.` or `vit.`) removed from their names.
    pub fn take_model_tensors(&mut self, prefix: &str) -> BTreeMap<String, TensorData> {
        std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(prefix).unwrap_or(&k).to_string(), v))
            .collect()
    }
}

/// Names in a Hugging Face head model's layout: `prefix` (the wrapped base model, e.g. `bert.`)
/// before every name except the head's, which start with `head` (e.g. `cls.`). The inverse of
/// [`TrainingCheckpoint::take_model_tensors`].
pub fn with_base_prefix(
    tensors: Vec<(String, TensorData)>,
    prefix: &str,
    head: &str,
) -> Vec<(String, TensorData)> {
    tensors
        .into_iter()
        .map(|(k, v)| {
            if k.starts_with(head) {
                (k, v)
            } else {
                (format!("{prefix}{k}"), v)
            }
        })
        .collect()
}

/// Metadata of a training checkpoint: its `format`, the training settings as TOML under
/// `settings_key`, and the epoch and optimiser step reached.
pub fn training_meta<C: serde::Serialize>(
    format: &str,
    settings_key: &str,
    settings: &C,
    epoch: usize,
    step: u64,
) -> Result<HashMap<String, String>> {
    Ok(HashMap::from([
        ("format".to_string(), format.to_string()),
        (settings_key.to_string(), toml::to_string(settings)?),
        ("epoch".to_string(), epoch.to_string()),
        ("step".to_string(), step.to_string()),
    ]))
}

/// Read a checkpoint written by [`save_training_checkpoint`] and restore `adam` from it.
pub fn load_training_checkpoint(
    path: &Path,
    adam: &mut Adam,
    device: &Device,
) -> Result<TrainingCheckpoint> {
    let (tensors, meta) = load_safetensors(path).with_context(|| {
        format!(
            "cannot resume: no readable checkpoint at {}",
            path.display()
        )
    })?;
    let (model, optimizer): (BTreeMap<_, _>, BTreeMap<_, _>) = tensors
        .into_iter()
        .partition(|(k, _)| !k.starts_with("optimizer."));
    let optimizer: BTreeMap<String, TensorData> = optimizer
        .into_iter()
        .map(|(k, v)| (k["optimizer.".len()..].to_string(), v))
        .collect();
    let checkpoint = TrainingCheckpoint {
        path: path.to_path_buf(),
        tensors: model,
        meta,
    };
    for (name, data) in &optimizer {
        if let Ok(values) = data.as_slice::<f32>() {
            anyhow::ensure!(
                values.iter().all(|v| v.is_finite()),
                "{}: optimiser state `{name}` holds a non-finite value; this checkpoint cannot \
                 be resumed",
                path.display()
            );
        }
    }
    let step = checkpoint.get("adam_step")?;
    let step = step.parse().map_err(|_| {
        anyhow!(
            "{}: metadata `adam_step` is `{step}`, not a step count",
            path.display()
        )
    })?;
    adam.load_state(step, &optimizer, device);
    Ok(checkpoint)
}

/// Read every tensor (F32, F16, BF16, F64 or integer, converted to f32) and the metadata.
pub fn load_safetensors(
    path: &Path,
) -> Result<(BTreeMap<String, TensorData>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::I32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            other => bail!(
                "{}: tensor `{name}` has unsupported dtype {other:?}",
                path.display()
            ),
        };
        out.insert(name, TensorData::new(values, view.shape().to_vec()));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: renormalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}
