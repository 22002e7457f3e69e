//! `memory-decay`: error feedback with memory decay (CO3's "correct" step).
//!
//! Per tensor: `a_t = r_t + γ·e_{t-1}` (with `e_0 = 0`) is quantized, and the
//! memory becomes `e_t = a_t - â_t`. γ = 1 is classic error feedback (Seide et
//! al. 2014; Karimireddy et al. 2019); CO3 (Chen, Hernandez, Huang, Rini,
//! 2022-2023) uses γ = 0.7 (also 0.9 and 0.5). The receiver does nothing.
//!
//! ```yaml
//! - error-correction: { use: memory-decay, params: { gamma: 0.7 } }
//! ```

use gradcodec_sdk::buffers::RVecExt;
use gradcodec_sdk::{
    ensure, ensure_len, state, CallContext, ErrorCorrection, JsonSchema, RVec, SdkResult, Stage,
    StageConfig, StageFlags, StageInfo, TensorSpec,
};
use serde::{Deserialize, Serialize};

/// Parameters of `memory-decay`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryDecayConfig {
    /// Memory decay coefficient γ in [0, 1].
    pub gamma: f32,
}

impl Default for MemoryDecayConfig {
    fn default() -> Self {
        Self { gamma: 0.7 }
    }
}

impl StageConfig for MemoryDecayConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (0.0..=1.0).contains(&self.gamma),
            "gamma",
            format!("must be in [0, 1], got {}", self.gamma),
        )
    }
}

/// Error feedback with decay.
pub struct MemoryDecay {
    gamma: f32,
    len: usize,
    /// e_{t-1}; empty until the first feedback.
    memory: Vec<f32>,
}

impl Stage for MemoryDecay {
    type Config = MemoryDecayConfig;
    const INFO: StageInfo = StageInfo {
        name: "memory-decay",
        version: 1,
        format_version: 1,
        doc: "Error feedback with memory decay (CO3): a = r + gamma*e, then e = a - a_hat. \
              gamma = 1 is classic error feedback; CO3 uses 0.7.",
        example_params: r#"{"gamma": 0.7}"#,
        flags: StageFlags::STATEFUL,
    };

    fn new(config: MemoryDecayConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            gamma: config.gamma,
            len: tensor.len() as usize,
            memory: Vec::new(),
        })
    }
}

impl ErrorCorrection for MemoryDecay {
    fn compensate(
        &mut self,
        _ctx: &CallContext,
        residual: &[f32],
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        ensure_len("residual", residual.len(), self.len as u64)?;
        out.clear();
        if self.memory.is_empty() {
            out.extend_copied(residual);
        } else {
            let gamma = self.gamma;
            let memory = &self.memory;
            out.extend_filled(residual.len(), |out| {
                for ((o, r), e) in out.iter_mut().zip(residual).zip(memory) {
                    *o = r + gamma * e;
                }
            });
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
        state::write_vectors(b"MDE1", &[&self.memory], out);
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        let mut vectors = state::read_vectors(b"MDE1", bytes, self.len)?;
        if vectors.len() != 1 {
            return Err(gradcodec_sdk::corrupt("state: expected one vector"));
        }
        self.memory = vectors.pop().unwrap_or_default();
        Ok(())
    }

    fn reset(&mut self) {
        self.memory.clear();
    }
}
