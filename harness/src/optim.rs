//! SGD with momentum, PyTorch's convention (no dampening, no Nesterov):
//! `d = g + λ·p`; `v = d` on the first step, then `v = μ·v + d`; `p -= lr·v`.
//!
//! Gradients are passed in explicitly, so the same optimizer applies autograd
//! gradients, Mem-AOP-GD gradients, or decoded gradients (dsgd server).

use tch::Tensor;

/// SGD with momentum over a fixed list of parameters.
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ.
    pub momentum: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    velocity: Vec<Option<Tensor>>,
}

impl Sgd {
    /// A fresh optimizer for `n` parameters.
    pub fn new(lr: f64, momentum: f64, weight_decay: f64, n: usize) -> Sgd {
        Sgd {
            lr,
            momentum,
            weight_decay,
            velocity: (0..n).map(|_| None).collect(),
        }
    }

    /// One step: `params[i] -= lr · v_i` with `grads[i]`.
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor]) {
        let _guard = tch::no_grad_guard();
        for ((p, g), v) in params.iter().zip(grads).zip(self.velocity.iter_mut()) {
            let mut d = g.shallow_clone();
            if self.weight_decay != 0.0 {
                d += p * self.weight_decay;
            }
            if self.momentum != 0.0 {
                let buf = match v.take() {
                    None => d.copy(),
                    Some(mut buf) => {
                        let _ = buf.g_mul_scalar_(self.momentum);
                        let _ = buf.g_add_(&d);
                        buf
                    }
                };
                d = buf.shallow_clone();
                *v = Some(buf);
            }
            let mut p = p.shallow_clone();
            let _ = p.g_sub_(&(d * self.lr));
        }
    }

    /// The momentum buffers as host vectors (None before the first step).
    pub fn velocity_host(&self) -> Vec<Option<Vec<f32>>> {
        self.velocity
            .iter()
            .map(|v| v.as_ref().map(crate::params::tensor_to_vec))
            .collect()
    }

    /// Restores momentum buffers shaped like `params`.
    pub fn load_velocity(&mut self, params: &[Tensor], host: &[Option<Vec<f32>>]) {
        for ((v, p), h) in self.velocity.iter_mut().zip(params).zip(host) {
            *v = h.as_ref().map(|values| {
                tch::Tensor::from_slice(values)
                    .view(p.size().as_slice())
                    .to_device(p.device())
            });
        }
    }
}
