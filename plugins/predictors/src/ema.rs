//! `ema`: exponential moving average of the committed reconstructions.
//!
//! `m_1 = x̂_1`, then `m_t = d·m_{t-1} + (1 - d)·x̂_t` for decay `d`; the prediction
//! is `m` (zeros before the first commit). `d = 0` is ResFed's Res-0 (`last-sent`);
//! larger `d` smooths noisy updates, trading lag for variance. A common smoothing
//! predictor for DPCM-style residual coding (see e.g. Jayant & Noll, "Digital
//! Coding of Waveforms", 1984); used here as a ResFed predictor variant.
//!
//! ```yaml
//! - predictor: { use: ema, params: { decay: 0.9 } }
//! ```

use gradcodec_sdk::prelude::*;
use gradcodec_sdk::state;
use serde::{Deserialize, Serialize};

/// Parameters of `ema`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EmaConfig {
    /// Decay d in [0, 1): weight of the old average.
    pub decay: f32,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self { decay: 0.9 }
    }
}

impl StageConfig for EmaConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (0.0..1.0).contains(&self.decay),
            "decay",
            format!("must be in [0, 1), got {}", self.decay),
        )
    }
}

/// The moving-average predictor.
pub struct Ema {
    decay: f32,
    len: usize,
    /// The average; empty before the first commit.
    average: Vec<f32>,
}

impl Stage for Ema {
    type Config = EmaConfig;
    const INFO: StageInfo = StageInfo::new(
        "ema",
        "Exponential moving average of the committed reconstructions: m = d*m + (1-d)*x_hat \
              (m = x_hat at the first commit); predicts m, zeros before any commit.",
    )
    .with_example(r#"{"decay": 0.9}"#)
    .with_flags(StageFlags::STATEFUL);

    fn new(config: EmaConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            decay: config.decay,
            len: tensor.len() as usize,
            average: Vec::new(),
        })
    }
}

impl Predictor for Ema {
    fn predict(&mut self, _ctx: &CallContext, out: &mut RVec<f32>) -> SdkResult<()> {
        out.clear();
        if self.average.is_empty() {
            out.resize(self.len, 0.0);
        } else {
            out.extend_from_slice(&self.average);
        }
        Ok(())
    }

    fn commit(&mut self, _ctx: &CallContext, reconstruction: &[f32]) -> SdkResult<()> {
        ensure_len("reconstruction", reconstruction.len(), self.len as u64)?;
        if self.average.is_empty() {
            self.average.extend_from_slice(reconstruction);
        } else {
            let d = self.decay;
            for (m, x) in self.average.iter_mut().zip(reconstruction) {
                *m = d * *m + (1.0 - d) * x;
            }
        }
        Ok(())
    }

    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()> {
        state::write_vectors(b"EMA1", &[&self.average], out);
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        self.average = state::read_one(b"EMA1", bytes, self.len)?;
        Ok(())
    }

    fn reset(&mut self) {
        self.average.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_commits() {
        let tensor = TensorSpec::new("t", &[1]);
        let ctx = CallContext::new(0, 0);
        let mut ema = Ema::new(EmaConfig { decay: 0.75 }, &tensor).unwrap();
        let mut out = RVec::new();
        ema.predict(&ctx, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[0.0]);
        ema.commit(&ctx, &[4.0]).unwrap();
        ema.predict(&ctx, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[4.0]);
        ema.commit(&ctx, &[8.0]).unwrap();
        ema.predict(&ctx, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[5.0]);
        assert!(
            gradcodec_sdk::parse_config::<EmaConfig>(r#"{"decay": -0.1}"#)
                .unwrap_err()
                .message
                .contains("decay")
        );
    }
}
