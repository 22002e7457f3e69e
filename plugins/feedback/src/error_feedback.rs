//! `error-feedback`: classic error feedback (error compensation).
//!
//! Per tensor: the compensated input is `a_t = r_t + γ·e_{t-1}` (with `e_0 = 0`);
//! after coding, the memory becomes `e_t = a_t - â_t`, the part the receiver did
//! not get. With γ = 1 (the default) this is the error feedback of 1-bit SGD
//! (Seide et al., 2014), EF-SGD / EF-signSGD (Karimireddy et al., "Error Feedback
//! Fixes SignSGD and other Gradient Compression Schemes", 2019) and sparsified SGD
//! with memory (Stich, Cordonnier, Jaggi, 2018). γ < 1 decays the memory (CO3's
//! `memory-decay` in the basic plugin is the same rule with default 0.7). The
//! receiver does nothing.
//!
//! ```yaml
//! - error-correction: { use: error-feedback, params: { gamma: 1.0 } }
//! ```

use gradcodec_sdk::buffers::RVecExt;
use gradcodec_sdk::{
    corrupt, ensure, ensure_len, state, CallContext, ErrorCorrection, JsonSchema, RVec, SdkResult,
    Stage, StageConfig, StageFlags, StageInfo, TensorSpec,
};
use serde::{Deserialize, Serialize};

/// Parameters of `error-feedback`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorFeedbackConfig {
    /// Weight γ of the remembered error, in [0, 1] (1 = classic error feedback).
    pub gamma: f32,
}

impl Default for ErrorFeedbackConfig {
    fn default() -> Self {
        Self { gamma: 1.0 }
    }
}

impl StageConfig for ErrorFeedbackConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (0.0..=1.0).contains(&self.gamma),
            "gamma",
            format!("must be in [0, 1], got {}", self.gamma),
        )
    }
}

/// Classic error feedback.
pub struct ErrorFeedback {
    gamma: f32,
    len: usize,
    /// e_{t-1}; empty until the first feedback (then it counts as zeros).
    memory: Vec<f32>,
}

impl Stage for ErrorFeedback {
    type Config = ErrorFeedbackConfig;
    const INFO: StageInfo = StageInfo {
        name: "error-feedback",
        version: 1,
        format_version: 1,
        doc: "Classic error feedback (Seide et al. 2014; Stich et al. 2018; Karimireddy et al. \
              2019): a = r + gamma*e, then e = a - a_hat. gamma defaults to 1.",
        example_params: r#"{"gamma": 1.0}"#,
        flags: StageFlags::STATEFUL,
    };

    fn new(config: ErrorFeedbackConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            gamma: config.gamma,
            len: tensor.len() as usize,
            memory: Vec::new(),
        })
    }
}

impl ErrorCorrection for ErrorFeedback {
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
        state::write_vectors(b"EFB1", &[&self.memory], out);
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        let mut vectors = state::read_vectors(b"EFB1", bytes, self.len)?;
        if vectors.len() != 1 {
            return Err(corrupt("state: expected one vector"));
        }
        self.memory = vectors.pop().unwrap_or_default();
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
        let tensor = TensorSpec {
            name: "t".into(),
            shape: vec![len].into(),
        };
        ErrorFeedback::new(ErrorFeedbackConfig { gamma }, &tensor).unwrap()
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
    }
}
