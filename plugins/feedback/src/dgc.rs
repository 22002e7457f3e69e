//! `dgc`: momentum correction and factor masking of Deep Gradient Compression.
//!
//! DGC (Lin, Han, Mao, Wang, Dally, "Deep Gradient Compression", ICLR 2018) keeps
//! two per-tensor accumulators: the momentum `u` and the accumulated velocity `v`.
//! For a residual `r`: `u ← m·u + r`, `v ← v + u`, and `v` is handed to the
//! quantizer (usually top-k). After coding, both accumulators are cleared where
//! the entry was sent (`â_i != 0`, "momentum factor masking") and kept elsewhere,
//! so unsent gradient keeps accumulating locally. Use it with plain SGD on the
//! receiver (the momentum is applied here). State before the first round: zeros.
//!
//! `compensate` does not change the state by itself: it computes `u` and `v` from
//! the state left by the last `feedback`, so calling it twice gives the same result.
//!
//! ```yaml
//! - error-correction: { use: dgc, params: { momentum: 0.9 } }
//! ```

use gradcodec_sdk::prelude::*;
use gradcodec_sdk::state;
use serde::{Deserialize, Serialize};

/// Parameters of `dgc`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DgcConfig {
    /// Momentum m in [0, 1).
    pub momentum: f32,
}

impl Default for DgcConfig {
    fn default() -> Self {
        Self { momentum: 0.9 }
    }
}

impl StageConfig for DgcConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (0.0..1.0).contains(&self.momentum),
            "momentum",
            format!("must be in [0, 1), got {}", self.momentum),
        )
    }
}

/// DGC momentum correction.
pub struct Dgc {
    momentum: f32,
    len: usize,
    /// Momentum after the last feedback; empty means zeros.
    u: Vec<f32>,
    /// Velocity after the last feedback; empty means zeros.
    v: Vec<f32>,
    /// `u` computed by the last `compensate`, consumed by `feedback`.
    pending_u: Vec<f32>,
}

impl Stage for Dgc {
    type Config = DgcConfig;
    const INFO: StageInfo = StageInfo::new(
        "dgc",
        "Deep Gradient Compression momentum correction (Lin et al. 2018): u = m*u + r, \
              v = v + u, v is quantized; then u and v are zeroed where the entry was sent \
              (a_hat != 0) and kept elsewhere.",
    )
    .with_example(r#"{"momentum": 0.9}"#)
    .with_flags(StageFlags::STATEFUL);

    fn new(config: DgcConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            momentum: config.momentum,
            len: tensor.len() as usize,
            u: Vec::new(),
            v: Vec::new(),
            pending_u: Vec::new(),
        })
    }
}

impl ErrorCorrection for Dgc {
    fn compensate(
        &mut self,
        _ctx: &CallContext,
        residual: &[f32],
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        ensure_len("residual", residual.len(), self.len as u64)?;
        self.pending_u.clear();
        if self.u.is_empty() {
            self.pending_u.extend_from_slice(residual);
        } else {
            let m = self.momentum;
            self.pending_u
                .extend(self.u.iter().zip(residual).map(|(u, r)| m * u + r));
        }
        out.clear();
        if self.v.is_empty() {
            out.extend_copied(&self.pending_u);
        } else {
            out.extend_zipped(&self.v, &self.pending_u, |v, u| v + u);
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
        let mut u = std::mem::take(&mut self.pending_u);
        if u.len() != self.len {
            // No compensate since the last feedback (e.g. after load_state):
            // recover u from v_new = v_old + u.
            u.clear();
            if self.v.is_empty() {
                u.extend_from_slice(compensated);
            } else {
                u.extend(compensated.iter().zip(&self.v).map(|(a, v)| a - v));
            }
        }
        for (value, sent) in u.iter_mut().zip(reconstructed) {
            if *sent != 0.0 {
                *value = 0.0;
            }
        }
        self.v.clear();
        self.v
            .extend(
                compensated
                    .iter()
                    .zip(reconstructed)
                    .map(|(a, sent)| if *sent != 0.0 { 0.0 } else { *a }),
            );
        self.u = u;
        Ok(())
    }

    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()> {
        state::write_vectors(b"DGC1", &[&self.u, &self.v], out);
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        let [u, v] = state::read_exact(b"DGC1", bytes, self.len)?;
        self.u = u;
        self.v = v;
        self.pending_u.clear();
        Ok(())
    }

    fn reset(&mut self) {
        self.u.clear();
        self.v.clear();
        self.pending_u.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(momentum: f32, len: u64) -> Dgc {
        let tensor = TensorSpec::new("t", &[len]);
        Dgc::new(DgcConfig { momentum }, &tensor).unwrap()
    }

    #[test]
    fn accumulates_momentum_and_masks_sent_entries() {
        let ctx = CallContext::new(0, 0);
        let mut dgc = stage(0.5, 3);
        let mut a = RVec::new();
        dgc.compensate(&ctx, &[1.0, 2.0, 4.0], &mut a).unwrap();
        // u = r, v = u.
        assert_eq!(a.as_slice(), &[1.0, 2.0, 4.0]);
        // Calling it again does not accumulate twice.
        dgc.compensate(&ctx, &[1.0, 2.0, 4.0], &mut a).unwrap();
        assert_eq!(a.as_slice(), &[1.0, 2.0, 4.0]);
        // Only the last entry was sent.
        dgc.feedback(&ctx, &a, &[0.0, 0.0, 4.0]).unwrap();
        dgc.compensate(&ctx, &[2.0, 2.0, 2.0], &mut a).unwrap();
        // u = 0.5*[1,2,0] + 2 = [2.5, 3, 2]; v = [1,2,0] + u = [3.5, 5, 2].
        assert_eq!(a.as_slice(), &[3.5, 5.0, 2.0]);
        // Save/load after feedback keeps the behaviour.
        dgc.feedback(&ctx, &a, &[3.5, 0.0, 0.0]).unwrap();
        let mut saved = Vec::new();
        dgc.save_state(&mut saved).unwrap();
        let mut restored = stage(0.5, 3);
        restored.load_state(&saved).unwrap();
        let (mut x, mut y) = (RVec::new(), RVec::new());
        dgc.compensate(&ctx, &[1.0, 1.0, 1.0], &mut x).unwrap();
        restored.compensate(&ctx, &[1.0, 1.0, 1.0], &mut y).unwrap();
        // u = 0.5*[0, 3, 2] + 1 = [1, 2.5, 2]; v = [0, 5, 2] + u = [1, 7.5, 4].
        assert_eq!(x.as_slice(), &[1.0, 7.5, 4.0]);
        assert_eq!(x, y);
    }

    #[test]
    fn momentum_range_is_checked() {
        let error = gradcodec_sdk::parse_config::<DgcConfig>(r#"{"momentum": 1.0}"#).unwrap_err();
        assert!(error.message.contains("momentum"), "{error}");
    }
}
