//! Mem-AOP-GD (Hernandez, Rini, Huang et al.): approximate outer-product
//! gradient descent with memory, for linear layers.
//!
//! The weight gradient of a linear layer `y = x Wᵀ + b` over a batch is the sum
//! of B outer products `Σ_b δ_b x_bᵀ` (δ = ∂loss/∂y). Mem-AOP-GD keeps only k of
//! them — the top k by `‖x_b‖·‖δ_b‖`, or k at random (seeded) — and folds the ones
//! it dropped into a memory that is added to the next step's gradient (like error
//! feedback): `G_t = Σ_{b∈S} δ_b x_bᵀ + M_{t-1}`, `M_t = Σ_{b∉S} δ_b x_bᵀ`.
//! With `memory: false` (plain AOP-GD, the ablation) the dropped products are
//! discarded: `G_t = Σ_{b∈S} δ_b x_bᵀ` (not rescaled by B/k), and the memory
//! map stays empty.
//!
//! How it is wired: in training with Mem-AOP on, an [`AopLinear`] computes
//! `y = x·detach(W)ᵀ + b + z` where `z` is a zero "probe" leaf; autograd then
//! gives the input and bias gradients as usual, leaves `W.grad` empty, and
//! `z.grad = δ`. After `backward`, [`AopTape::weight_gradients`] builds `G_t` for
//! every layer from the recorded `x` and `δ`.
//!
//! Compute saved is reported as the share of the weight-gradient multiply-adds
//! (`B·in·out` per layer and step) that the applied gradient skips, `1 - k/B`.
//! With memory this simulation still forms the dropped products to keep the
//! memory, so it measures the accuracy side of the trade, not a wall-clock
//! speed-up (without memory only the kept products are formed).

use std::cell::RefCell;
use std::rc::Rc;
use std::str::FromStr;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Which outer products a step keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AopPolicy {
    /// The k largest `‖x_b‖·‖δ_b‖`.
    TopK,
    /// k uniformly at random (seeded per step).
    Random,
}

impl FromStr for AopPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "topk" | "top-k" => Ok(AopPolicy::TopK),
            "random" => Ok(AopPolicy::Random),
            _ => Err(format!(
                "unknown Mem-AOP policy {s:?}; expected top-k or random"
            )),
        }
    }
}

/// Mem-AOP-GD settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AopConfig {
    /// Fraction of the batch's outer products kept, k/B in (0, 1].
    pub keep: f64,
    /// Selection policy.
    pub policy: AopPolicy,
    /// Keep the dropped products in a memory folded into the next step's
    /// gradient (Mem-AOP-GD; default). `false`: discard them (AOP-GD without
    /// memory).
    #[serde(default = "default_memory")]
    pub memory: bool,
}

fn default_memory() -> bool {
    true
}

/// One linear layer's record of a forward pass.
struct TapeEntry {
    layer: String,
    input: Tensor,
    probe: Tensor,
}

/// Records the forward passes of the [`AopLinear`] layers of one model.
#[derive(Default)]
pub struct AopTape {
    entries: Vec<TapeEntry>,
}

/// Multiply-add counts of the weight gradients: exact and applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AopCounts {
    /// `Σ B·in·out` over layers and steps.
    pub exact_macs: f64,
    /// `Σ k·in·out` over layers and steps.
    pub kept_macs: f64,
}

impl AopCounts {
    /// Share of the weight-gradient multiply-adds skipped.
    pub fn saved_fraction(&self) -> f64 {
        if self.exact_macs == 0.0 {
            0.0
        } else {
            1.0 - self.kept_macs / self.exact_macs
        }
    }

    /// Adds another count.
    pub fn add(&mut self, other: AopCounts) {
        self.exact_macs += other.exact_macs;
        self.kept_macs += other.kept_macs;
    }
}

impl AopTape {
    /// Forgets the recorded passes.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// After `backward`: the Mem-AOP weight gradient of every recorded layer
    /// (`(layer, G_t)`), updating `memory` (one tensor per layer name) in place.
    pub fn weight_gradients(
        &mut self,
        config: &AopConfig,
        memory: &mut std::collections::BTreeMap<String, Tensor>,
        step_seed: u64,
        counts: &mut AopCounts,
    ) -> Vec<(String, Tensor)> {
        let _guard = tch::no_grad_guard();
        let mut out = Vec::with_capacity(self.entries.len());
        for (li, e) in self.entries.drain(..).enumerate() {
            let delta = e.probe.grad();
            let x = e.input;
            let b = x.size()[0];
            let (d_in, d_out) = (x.size()[1], delta.size()[1]);
            let k = ((config.keep * b as f64).round() as i64).clamp(1, b);
            let full = config.memory.then(|| delta.tr().matmul(&x));
            let kept = if k == b {
                match &full {
                    Some(f) => f.shallow_clone(),
                    None => delta.tr().matmul(&x),
                }
            } else {
                let idx = match config.policy {
                    AopPolicy::TopK => {
                        let score = x.norm_scalaropt_dim(2, [1i64].as_slice(), false)
                            * delta.norm_scalaropt_dim(2, [1i64].as_slice(), false);
                        score.topk(k, 0, true, true).1
                    }
                    AopPolicy::Random => {
                        let mut rng = ChaCha8Rng::seed_from_u64(
                            step_seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ li as u64,
                        );
                        let picked: Vec<i64> = sample(&mut rng, b as usize, k as usize)
                            .into_iter()
                            .map(|i| i as i64)
                            .collect();
                        Tensor::from_slice(&picked).to_device(x.device())
                    }
                };
                delta
                    .index_select(0, &idx)
                    .tr()
                    .matmul(&x.index_select(0, &idx))
            };
            let grad = match full {
                Some(full) => {
                    let dropped = &full - &kept;
                    let grad = match memory.get(&e.layer) {
                        Some(m) => &kept + m,
                        None => kept,
                    };
                    memory.insert(e.layer.clone(), dropped);
                    grad
                }
                None => kept,
            };
            counts.exact_macs += (b * d_in * d_out) as f64;
            counts.kept_macs += (k * d_in * d_out) as f64;
            out.push((e.layer, grad));
        }
        out
    }
}

/// A linear layer that can run in Mem-AOP mode.
pub struct AopLinear {
    /// Weight, `out × in`.
    pub ws: Tensor,
    /// Optional bias, `out`.
    pub bs: Option<Tensor>,
    /// The weight's variable name (e.g. `fc1.weight`).
    pub weight_name: String,
    tape: Rc<RefCell<Option<AopTape>>>,
}

impl AopLinear {
    /// Creates the layer under `path` (variables `weight` and `bias`), sharing the
    /// model's tape.
    pub fn new(
        path: &nn::Path,
        in_dim: i64,
        out_dim: i64,
        bias: bool,
        tape: &Rc<RefCell<Option<AopTape>>>,
    ) -> Self {
        let lin = nn::linear(
            path,
            in_dim,
            out_dim,
            nn::LinearConfig {
                bias,
                ..Default::default()
            },
        );
        AopLinear {
            ws: lin.ws,
            bs: lin.bs,
            weight_name: format!("{}.weight", path.components().collect::<Vec<_>>().join(".")),
            tape: Rc::clone(tape),
        }
    }

    /// Forward pass; records on the tape when the model is in Mem-AOP training.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut tape = self.tape.borrow_mut();
        match (train, tape.as_mut()) {
            (true, Some(tape)) => {
                let size = xs.size();
                let probe = Tensor::zeros([size[0], self.ws.size()[0]], (xs.kind(), xs.device()))
                    .set_requires_grad(true);
                let mut y = xs.matmul(&self.ws.detach().tr()) + &probe;
                if let Some(b) = &self.bs {
                    y += b;
                }
                tape.entries.push(TapeEntry {
                    layer: self.weight_name.clone(),
                    input: xs.detach(),
                    probe,
                });
                y
            }
            _ => xs.linear(&self.ws, self.bs.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tch::{Device, Kind};

    fn setup() -> (
        nn::VarStore,
        AopLinear,
        Rc<RefCell<Option<AopTape>>>,
        Tensor,
        Tensor,
    ) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let tape = Rc::new(RefCell::new(None));
        let lin = AopLinear::new(&(vs.root() / "fc"), 5, 3, true, &tape);
        let x = Tensor::randn([8, 5], (Kind::Float, Device::Cpu));
        let c = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        (vs, lin, tape, x, c)
    }

    fn exact_grad(lin: &AopLinear, x: &Tensor, c: &Tensor) -> Tensor {
        let mut w = lin.ws.shallow_clone();
        w.zero_grad();
        (lin.forward(x, false) * c).sum(Kind::Float).backward();
        lin.ws.grad().copy()
    }

    fn aop_grad(
        lin: &AopLinear,
        tape: &Rc<RefCell<Option<AopTape>>>,
        x: &Tensor,
        c: &Tensor,
        cfg: &AopConfig,
        memory: &mut BTreeMap<String, Tensor>,
        counts: &mut AopCounts,
    ) -> Tensor {
        *tape.borrow_mut() = Some(AopTape::default());
        (lin.forward(x, true) * c).sum(Kind::Float).backward();
        let mut g = tape
            .borrow_mut()
            .as_mut()
            .unwrap()
            .weight_gradients(cfg, memory, 11, counts);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].0, "fc.weight");
        g.remove(0).1
    }

    #[test]
    fn keeping_everything_is_the_exact_gradient() {
        let (_vs, lin, tape, x, c) = setup();
        let exact = exact_grad(&lin, &x, &c);
        let cfg = AopConfig {
            keep: 1.0,
            policy: AopPolicy::TopK,
            memory: true,
        };
        let (mut mem, mut counts) = (BTreeMap::new(), AopCounts::default());
        let g = aop_grad(&lin, &tape, &x, &c, &cfg, &mut mem, &mut counts);
        assert!(g.allclose(&exact, 1e-5, 1e-6, false));
        assert_eq!(counts.saved_fraction(), 0.0);
        assert_eq!(mem["fc.weight"].abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn dropped_products_come_back_through_the_memory() {
        let (_vs, lin, tape, x, c) = setup();
        let exact = exact_grad(&lin, &x, &c);
        for policy in [AopPolicy::TopK, AopPolicy::Random] {
            let cfg = AopConfig {
                keep: 0.25,
                policy,
                memory: true,
            };
            let (mut mem, mut counts) = (BTreeMap::new(), AopCounts::default());
            let g1 = aop_grad(&lin, &tape, &x, &c, &cfg, &mut mem, &mut counts);
            let g2 = aop_grad(&lin, &tape, &x, &c, &cfg, &mut mem, &mut counts);
            // Applied gradients plus what is still in memory = the exact sum.
            let total = &g1 + &g2 + &mem["fc.weight"];
            assert!(
                total.allclose(&(&exact * 2.0), 1e-4, 1e-5, false),
                "{policy:?}"
            );
            assert!(!g1.allclose(&exact, 1e-3, 1e-4, false), "{policy:?}");
            assert!((counts.saved_fraction() - 0.75).abs() < 1e-12);
        }
    }
    #[test]
    fn without_memory_the_gradient_is_the_kept_products_only() {
        let (_vs, lin, tape, x, c) = setup();
        let exact = exact_grad(&lin, &x, &c);
        for policy in [AopPolicy::TopK, AopPolicy::Random] {
            let with = AopConfig {
                keep: 0.25,
                policy,
                memory: true,
            };
            let without = AopConfig {
                memory: false,
                ..with
            };
            let (mut mem_on, mut counts_on) = (BTreeMap::new(), AopCounts::default());
            let on1 = aop_grad(&lin, &tape, &x, &c, &with, &mut mem_on, &mut counts_on);
            let on2 = aop_grad(&lin, &tape, &x, &c, &with, &mut mem_on, &mut counts_on);
            let (mut mem_off, mut counts_off) = (BTreeMap::new(), AopCounts::default());
            let off1 = aop_grad(&lin, &tape, &x, &c, &without, &mut mem_off, &mut counts_off);
            let off2 = aop_grad(&lin, &tape, &x, &c, &without, &mut mem_off, &mut counts_off);
            // Nothing is remembered: every step applies exactly the kept
            // products (the first step of the memory variant), and the
            // dropped ones are lost.
            assert!(mem_off.is_empty(), "{policy:?}");
            assert!(off1.allclose(&on1, 1e-6, 1e-7, false), "{policy:?}");
            assert!(off2.allclose(&on1, 1e-6, 1e-7, false), "{policy:?}");
            assert!(!off2.allclose(&on2, 1e-3, 1e-4, false), "{policy:?}");
            assert!(!(&off1 + &off2).allclose(&(&exact * 2.0), 1e-3, 1e-4, false));
            assert_eq!(counts_off, counts_on);
        }
        // Keeping everything without memory is still the exact gradient.
        let all = AopConfig {
            keep: 1.0,
            policy: AopPolicy::TopK,
            memory: false,
        };
        let (mut mem, mut counts) = (BTreeMap::new(), AopCounts::default());
        let g = aop_grad(&lin, &tape, &x, &c, &all, &mut mem, &mut counts);
        assert!(g.allclose(&exact, 1e-5, 1e-6, false));
        assert!(mem.is_empty());
    }

    #[test]
    fn memory_defaults_to_on_in_configurations() {
        let cfg: AopConfig = serde_json::from_str(r#"{"keep": 0.5, "policy": "random"}"#).unwrap();
        assert!(cfg.memory);
        let cfg: AopConfig =
            serde_json::from_str(r#"{"keep": 0.5, "policy": "top-k", "memory": false}"#).unwrap();
        assert!(!cfg.memory);
    }
}
