//! `error-feedback` (and its alias `memory-decay`): error feedback with an
//! optional memory decay.
//!
//! Per tensor: the compensated input is `a_t = r_t + γ·e_{t-1}` (with `e_0 = 0`);
//! after coding, the memory becomes `e_t = a_t - â_t`, the part the receiver did
//! not get. The receiver does nothing. `compensate` refuses a NaN or infinite
//! residual entry, tested piece by piece as it reads them (`CHECKS_FINITE`), so
//! the host does not scan the update first.
//!
//! - `error-feedback`, γ = 1 by default: the error feedback of 1-bit SGD (Seide et
//!   al., 2014), EF-SGD / EF-signSGD (Karimireddy et al., "Error Feedback Fixes
//!   SignSGD and other Gradient Compression Schemes", 2019) and sparsified SGD with
//!   memory (Stich, Cordonnier, Jaggi, 2018).
//! - `memory-decay`, γ = 0.7 by default: CO3's "correct" step (Chen, Hernandez,
//!   Huang, Rini, 2022-2023; also 0.9 and 0.5). The same rule under the name the
//!   CO3 pipelines use; its canonical config and state keep their own name and tag.
//!
//! ```yaml
//! - error-correction: { use: error-feedback, params: { gamma: 1.0 } }
//! - error-correction: { use: memory-decay, params: { gamma: 0.7 } }
//! ```

use gradcodec_sdk::floats::all_finite;
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::state;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Entries of the residual checked at a time (a cache-sized piece).
const CHECK_PIECE: usize = 4096;

/// Parameters of `error-feedback` and `memory-decay`: γ, whose default the
/// variant `V` sets.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default, bound = "")]
#[schemars(bound = "")]
pub struct GammaConfig<V: Variant> {
    /// Weight γ of the remembered error, in [0, 1] (1 = classic error feedback).
    pub gamma: f32,
    #[serde(skip)]
    #[schemars(skip)]
    variant: PhantomData<V>,
}

impl<V: Variant> GammaConfig<V> {
    /// The config with weight `gamma`.
    pub fn new(gamma: f32) -> Self {
        Self {
            gamma,
            variant: PhantomData,
        }
    }
}

impl<V: Variant> Default for GammaConfig<V> {
    fn default() -> Self {
        Self::new(V::DEFAULT_GAMMA)
    }
}

impl<V: Variant> Clone for GammaConfig<V> {
    fn clone(&self) -> Self {
        Self::new(self.gamma)
    }
}

impl<V: Variant> std::fmt::Debug for GammaConfig<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(V::INFO.name)
            .field("gamma", &self.gamma)
            .finish()
    }
}

impl<V: Variant> StageConfig for GammaConfig<V> {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (0.0..=1.0).contains(&self.gamma),
            "gamma",
            format!("must be in [0, 1], got {}", self.gamma),
        )
    }
}

/// Parameters of `error-feedback` (γ = 1 by default).
pub type ErrorFeedbackConfig = GammaConfig<Classic>;
/// Parameters of `memory-decay` (γ = 0.7 by default).
pub type MemoryDecayConfig = GammaConfig<Co3MemoryDecay>;

/// What tells the two names of the stage apart.
pub trait Variant: Send + Sync + Sized + 'static {
    /// The default γ.
    const DEFAULT_GAMMA: f32;
    /// The stage's facts.
    const INFO: StageInfo;
    /// The tag of its saved state.
    const STATE_TAG: [u8; 4];
}

/// `error-feedback`: classic error feedback.
pub struct Classic;

impl Variant for Classic {
    const DEFAULT_GAMMA: f32 = 1.0;
    const INFO: StageInfo = StageInfo::new(
        "error-feedback",
        "Classic error feedback (Seide et al. 2014; Stich et al. 2018; Karimireddy et al. \
              2019): a = r + gamma*e, then e = a - a_hat. gamma defaults to 1.",
    )
    .with_example(r#"{"gamma": 1.0}"#)
    .with_flags(StageFlags::STATEFUL.union(StageFlags::CHECKS_FINITE));
    const STATE_TAG: [u8; 4] = *b"EFB1";
}

/// `memory-decay`: CO3's name for error feedback with γ = 0.7 by default.
pub struct Co3MemoryDecay;

impl Variant for Co3MemoryDecay {
    const DEFAULT_GAMMA: f32 = 0.7;
    const INFO: StageInfo = StageInfo::new(
        "memory-decay",
        "Error feedback with memory decay (CO3): a = r + gamma*e, then e = a - a_hat. \
              gamma = 1 is classic error feedback; CO3 uses 0.7.",
    )
    .with_example(r#"{"gamma": 0.7}"#)
    .with_flags(StageFlags::STATEFUL.union(StageFlags::CHECKS_FINITE));
    const STATE_TAG: [u8; 4] = *b"MDE1";
}

/// Error feedback under the name and defaults of `V`.
pub struct ErrorFeedbackWith<V: Variant> {
    gamma: f32,
    len: usize,
    /// e_{t-1}; empty until the first feedback (then it counts as zeros).
    memory: Vec<f32>,
    variant: PhantomData<V>,
}

/// The `error-feedback` stage.
pub type ErrorFeedback = ErrorFeedbackWith<Classic>;
/// The `memory-decay` stage.
pub type MemoryDecay = ErrorFeedbackWith<Co3MemoryDecay>;

impl<V: Variant> Stage for ErrorFeedbackWith<V> {
    type Config = GammaConfig<V>;
    const INFO: StageInfo = V::INFO;

    fn new(config: GammaConfig<V>, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            gamma: config.gamma,
            len: tensor.len() as usize,
            memory: Vec::new(),
            variant: PhantomData,
        })
    }
}

impl<V: Variant> ErrorCorrection for ErrorFeedbackWith<V> {
    fn compensate(
        &mut self,
        _ctx: &CallContext,
        residual: &[f32],
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        ensure_len("residual", residual.len(), self.len as u64)?;
        // CHECKS_FINITE: each piece of the residual is tested right after the
        // pass reads it (still in L1), so the host need not scan the input.
        let mut finite = true;
        if self.memory.is_empty() {
            out.clear();
            for piece in residual.chunks(CHECK_PIECE) {
                out.extend_copied(piece);
                finite &= all_finite(piece);
            }
        } else {
            if out.len() != residual.len() {
                // Every entry is overwritten below; a reused buffer needs no clearing.
                out.clear();
                out.resize(residual.len(), 0.0);
            }
            let gamma = self.gamma;
            for ((out, residual), memory) in out
                .as_mut_slice()
                .chunks_mut(CHECK_PIECE)
                .zip(residual.chunks(CHECK_PIECE))
                .zip(self.memory.chunks(CHECK_PIECE))
            {
                for ((o, r), e) in out.iter_mut().zip(residual).zip(memory) {
                    *o = r + gamma * e;
                }
                finite &= all_finite(residual);
            }
        }
        if !finite {
            out.clear();
            ensure_finite(residual)?;
        }
        Ok(())
    }

    fn feedback(
        &mut self,
        _ctx: &CallContext,
        compensated: &[f32],
        reconstructed: &[f32],
    ) -> SdkResult<()> {
        ensure_len("compensated", compensated.len(), self.len as u64)?;
        ensure_len("reconstructed", reconstructed.len(), self.len as u64)?;
        self.memory.clear();
        self.memory
            .extend(compensated.iter().zip(reconstructed).map(|(a, q)| a - q));
        Ok(())
    }

    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()> {
        state::write_vectors(&V::STATE_TAG, &[&self.memory], out);
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        self.memory = state::read_one(&V::STATE_TAG, bytes, self.len)?;
        Ok(())
    }

    fn reset(&mut self) {
        self.memory.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::parse_config;

    fn stage(gamma: f32, len: u64) -> ErrorFeedback {
        let tensor = TensorSpec::new("t", &[len]);
        ErrorFeedback::new(ErrorFeedbackConfig::new(gamma), &tensor).unwrap()
    }

    #[test]
    fn remembers_and_adds_back_the_error() {
        let ctx = CallContext::new(0, 0);
        let mut ef = stage(1.0, 3);
        let mut a = RVec::new();
        ef.compensate(&ctx, &[1.0, 2.0, 3.0], &mut a).unwrap();
        assert_eq!(a.as_slice(), &[1.0, 2.0, 3.0]);
        // The quantizer kept only the middle entry.
        ef.feedback(&ctx, &a, &[0.0, 2.0, 0.0]).unwrap();
        ef.compensate(&ctx, &[0.5, 0.5, 0.5], &mut a).unwrap();
        assert_eq!(a.as_slice(), &[1.5, 0.5, 3.5]);
        // Over rounds, what was sent plus the memory equals what came in.
        let mut half = stage(0.5, 3);
        half.compensate(&ctx, &[1.0, 2.0, 3.0], &mut a).unwrap();
        half.feedback(&ctx, &a, &[0.0, 0.0, 0.0]).unwrap();
        half.compensate(&ctx, &[0.0, 0.0, 0.0], &mut a).unwrap();
        assert_eq!(a.as_slice(), &[0.5, 1.0, 1.5]);
    }

    #[test]
    fn default_gamma_is_one_and_range_is_checked() {
        let config: ErrorFeedbackConfig = parse_config("{}").unwrap();
        assert_eq!(config.gamma, 1.0);
        let error = parse_config::<ErrorFeedbackConfig>(r#"{"gamma": 1.5}"#).unwrap_err();
        assert!(error.message.contains("gamma"), "{error}");
        let decay: MemoryDecayConfig = parse_config("{}").unwrap();
        assert_eq!(decay.gamma, 0.7);
    }
}
