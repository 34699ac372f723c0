//! Adam with decoupled weight decay, global-norm gradient clipping and warm-up/decay schedules.
//!
//! Written here rather than taken from burn so that the optimiser state is keyed by parameter
//! path (not by burn's random parameter ids) and can be saved beside the model in a safetensors
//! checkpoint and restored exactly on resume.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Decoupled weight decay (AdamW), applied to matrices only, never to biases or LayerNorm.
    pub weight_decay: f64,
    /// Adam's bias correction of the moments. BERT's (and BERT4Rec's) `AdamWeightDecayOptimizer`
    /// leaves it out.
    pub bias_correction: bool,
    /// Clip the global L2 norm of all gradients to this value; none when absent.
    pub clip_grad_norm: Option<f64>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            bias_correction: true,
            clip_grad_norm: None,
        }
    }
}

/// First and second moments of every parameter, by path.
pub struct Adam {
    pub config: AdamConfig,
    pub step: u64,
    pub moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
}

impl Adam {
    pub fn new(config: AdamConfig) -> Self {
        Self {
            config,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Apply one update with learning rate `lr` and return the updated module.
    pub fn step<M: Module>(&mut self, module: M, mut grads: GradientsParams, lr: f64) -> M {
        self.step += 1;
        let scale = match self.config.clip_grad_norm {
            Some(max_norm) => {
                let mut v = SquaredNorm {
                    grads: &grads,
                    total: None,
                };
                module.visit(&mut v);
                let norm = v
                    .total
                    .map(|t| t.into_scalar::<f32>() as f64)
                    .unwrap_or(0.0)
                    .sqrt();
                if norm > max_norm {
                    max_norm / (norm + 1e-6)
                } else {
                    1.0
                }
            }
            None => 1.0,
        };
        let mut mapper = AdamMapper {
            adam: self,
            grads: &mut grads,
            path: Vec::new(),
            lr,
            scale,
        };
        module.map(&mut mapper)
    }

    /// Moments as named tensors (`{path}.exp_avg`, `{path}.exp_avg_sq`) for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, TensorData)> {
        let mut out = Vec::new();
        for (path, (m, v)) in &self.moments {
            out.push((format!("{path}.exp_avg"), m.clone().into_data()));
            out.push((format!("{path}.exp_avg_sq"), v.clone().into_data()));
        }
        out
    }

    /// Restore moments saved by [`Adam::state_tensors`].
    pub fn load_state(
        &mut self,
        step: u64,
        tensors: &BTreeMap<String, TensorData>,
        device: &burn::tensor::Device,
    ) {
        self.step = step;
        self.moments.clear();
        for (name, data) in tensors {
            if let Some(path) = name.strip_suffix(".exp_avg") {
                if let Some(v) = tensors.get(&format!("{path}.exp_avg_sq")) {
                    self.moments.insert(
                        path.to_string(),
                        (
                            Tensor::from_data(data.clone(), device),
                            Tensor::from_data(v.clone(), device),
                        ),
                    );
                }
            }
        }
    }
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.clone().mul(g).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct AdamMapper<'a> {
    adam: &'a mut Adam,
    grads: &'a mut GradientsParams,
    path: Vec<String>,
    lr: f64,
    scale: f64,
}

impl AdamMapper<'_> {
    fn update<const D: usize>(&mut self, id: ParamId, tensor: Tensor<D>) -> Tensor<D> {
        let Some(grad) = self.grads.remove::<D>(id) else {
            return tensor;
        };
        let c = &self.adam.config;
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let require_grad = tensor.is_require_grad();
        let p = tensor.inner().reshape([n]);
        let mut g = grad.reshape([n]);
        if self.scale != 1.0 {
            g = g.mul_scalar(self.scale);
        }
        let path = self.path.join(".");
        let (m, v) = match self.adam.moments.remove(&path) {
            Some((m, v)) => (
                m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1),
                v.mul_scalar(c.beta2) + g.clone().mul(g).mul_scalar(1.0 - c.beta2),
            ),
            None => (
                g.clone().mul_scalar(1.0 - c.beta1),
                g.clone().mul(g).mul_scalar(1.0 - c.beta2),
            ),
        };
        let t = self.adam.step as i32;
        let (m_hat, v_hat) = if c.bias_correction {
            (
                m.clone().mul_scalar(1.0 / (1.0 - c.beta1.powi(t))),
                v.clone().mul_scalar(1.0 / (1.0 - c.beta2.powi(t))),
            )
        } else {
            (m.clone(), v.clone())
        };
        let delta = m_hat.div(v_hat.sqrt().add_scalar(c.epsilon));
        let mut p = p;
        if c.weight_decay > 0.0 && D >= 2 {
            p = p.mul_scalar(1.0 - self.lr * c.weight_decay);
        }
        let p = p - delta.mul_scalar(self.lr);
        self.adam.moments.insert(path, (m, v));
        let out = Tensor::from_inner(p.reshape(dims));
        if require_grad {
            out.require_grad()
        } else {
            out
        }
    }
}

impl ModuleMapper for AdamMapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = self.update(id, tensor);
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Learning-rate schedule: linear warm-up then constant, linear decay to zero, or cosine decay.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Schedule {
    pub lr: f64,
    pub warmup_steps: u64,
    pub decay: Decay,
    /// Steps over which decay runs (after which the rate stays at its floor of 0).
    pub total_steps: u64,
}

impl Schedule {
    /// Learning rate for 1-based step `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps > 0 && step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step.saturating_sub(self.warmup_steps)) as f64 / span).min(1.0);
        match self.decay {
            Decay::Constant => self.lr,
            Decay::Linear => self.lr * (1.0 - progress),
            Decay::Cosine => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}
