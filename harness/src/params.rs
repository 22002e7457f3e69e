//! Model state on the host: copying variables out of and into a model, and
//! building the [`gradcodec::Update`]s that go through the codecs.
//!
//! The update of a model holds its trainable parameters, in the model's sorted
//! variable order. Non-trainable buffers (batch-norm running statistics) are kept
//! apart ([`HostState::buffers`]): a lossy codec must not turn a running variance
//! negative, so they travel as raw f32 and their bytes are counted separately.

use gradcodec::{NamedTensor, Update};
use ndarray::{ArrayD, IxDyn};
use tch::{Device, Kind, Tensor};

use crate::models::Model;

/// Name, shape and role of one model variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarSpec {
    /// Variable name (e.g. `fc1.weight`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Trainable parameter (true) or buffer (false).
    pub trainable: bool,
}

impl VarSpec {
    /// Number of entries.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The variables of a model, in its order.
pub fn var_specs(model: &Model) -> Vec<VarSpec> {
    model
        .variables()
        .iter()
        .map(|(name, t)| VarSpec {
            name: name.clone(),
            shape: t.size().iter().map(|&d| d as usize).collect(),
            trainable: t.requires_grad(),
        })
        .collect()
}

/// A model's state as host vectors: parameters and buffers separately, each in
/// the model's variable order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    /// Trainable parameters.
    pub params: Vec<Vec<f32>>,
    /// Buffers (batch-norm statistics).
    pub buffers: Vec<Vec<f32>>,
}

/// Copies a tensor's values to a host vector.
pub fn tensor_to_vec(t: &Tensor) -> Vec<f32> {
    let flat = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .flatten(0, -1);
    let n = flat.numel();
    let mut out = vec![0f32; n];
    flat.copy_data(&mut out, n);
    out
}

/// Overwrites a tensor's values from a host slice (same number of entries).
pub fn copy_into(t: &Tensor, values: &[f32]) {
    let _guard = tch::no_grad_guard();
    let src = Tensor::from_slice(values)
        .view(t.size().as_slice())
        .to_device(t.device());
    let mut dst = t.shallow_clone();
    dst.copy_(&src);
}

impl HostState {
    /// Reads a model's variables.
    pub fn read(model: &Model) -> HostState {
        let mut params = Vec::new();
        let mut buffers = Vec::new();
        for (_, t) in model.variables() {
            if t.requires_grad() {
                params.push(tensor_to_vec(t));
            } else {
                buffers.push(tensor_to_vec(t));
            }
        }
        HostState { params, buffers }
    }

    /// Writes this state into a model's variables.
    pub fn write(&self, model: &Model) {
        let (mut p, mut b) = (self.params.iter(), self.buffers.iter());
        for (name, t) in model.variables() {
            let src = if t.requires_grad() {
                p.next()
            } else {
                b.next()
            };
            copy_into(
                t,
                src.unwrap_or_else(|| panic!("no host values for {name}")),
            );
        }
    }

    /// Number of parameter entries.
    pub fn param_entries(&self) -> usize {
        self.params.iter().map(Vec::len).sum()
    }

    /// Number of buffer entries.
    pub fn buffer_entries(&self) -> usize {
        self.buffers.iter().map(Vec::len).sum()
    }
}

/// Element-wise `a - b` of two lists of vectors.
pub fn sub(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p - q).collect())
        .collect()
}

/// `acc += w · x`, element-wise.
pub fn add_scaled(acc: &mut [Vec<f32>], x: &[Vec<f32>], w: f32) {
    for (a, b) in acc.iter_mut().zip(x) {
        for (p, q) in a.iter_mut().zip(b) {
            *p += w * q;
        }
    }
}

/// Zeros shaped like `x`.
pub fn zeros_like(x: &[Vec<f32>]) -> Vec<Vec<f32>> {
    x.iter().map(|v| vec![0f32; v.len()]).collect()
}

/// Builds an update from the trainable variables' specs and host values.
pub fn to_update(specs: &[VarSpec], values: &[Vec<f32>]) -> Update {
    Update::new(
        specs
            .iter()
            .filter(|s| s.trainable)
            .zip(values)
            .map(|(s, v)| {
                NamedTensor::new(
                    s.name.clone(),
                    ArrayD::from_shape_vec(IxDyn(&s.shape), v.clone())
                        .expect("host values match the variable's shape"),
                )
            })
            .collect(),
    )
}

/// Host vectors of an update's tensors, in order (checking them against the
/// trainable specs).
pub fn from_update(specs: &[VarSpec], update: &Update) -> Result<Vec<Vec<f32>>, String> {
    let trainable: Vec<&VarSpec> = specs.iter().filter(|s| s.trainable).collect();
    if trainable.len() != update.tensors.len() {
        return Err(format!(
            "decoded update has {} tensors, the model {}",
            update.tensors.len(),
            trainable.len()
        ));
    }
    trainable
        .iter()
        .zip(&update.tensors)
        .map(|(s, t)| {
            if s.name != t.name || s.shape != t.data.shape() {
                return Err(format!(
                    "decoded tensor {} {:?} does not match model variable {} {:?}",
                    t.name,
                    t.data.shape(),
                    s.name,
                    s.shape
                ));
            }
            Ok(t.data.iter().copied().collect())
        })
        .collect()
}
