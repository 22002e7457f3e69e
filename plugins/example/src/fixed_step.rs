//! `fixed-step`: scalar quantization on a fixed grid `k·Δ`.
//!
//! Each entry becomes the integer `k = round(x / Δ)`, clamped to `[-K, K]`, and
//! is reconstructed as `k·Δ`. The symbol is `k + K` (alphabet `2K + 1`). Unlike
//! `uniform`, the step does not adapt to the tensor, so there is no side info
//! and the error bound `|x - x̂| <= Δ/2` holds for every `|x| <= (K + ½)Δ`.
//! Paired with an entropy coder this is entropy-coded scalar quantization, the
//! classic near-optimal high-rate scheme (Gish & Pierce, 1968).
//!
//! ```yaml
//! - quantizer: { use: fixed-step, params: { step: 0.001, max_level: 127 } }
//! ```

// The prelude: the stage traits, the ABI's data types, error helpers, stream
// and side-info helpers, `RVecExt`'s fast appends and the seeded generator.
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters. `deny_unknown_fields` makes typos errors; `default` fills in
/// missing fields, and the filled-in config is the stage's canonical config.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FixedStepConfig {
    /// Grid step Δ (> 0).
    pub step: f32,
    /// Largest level K (1..=32767); larger magnitudes saturate.
    pub max_level: u32,
}

impl Default for FixedStepConfig {
    fn default() -> Self {
        Self {
            step: 1e-3,
            max_level: 127,
        }
    }
}

impl StageConfig for FixedStepConfig {
    /// Range checks; each message names its field so users can fix the spec.
    fn validate(&self) -> Result<(), String> {
        ensure(
            self.step.is_finite() && self.step > 0.0,
            "step",
            format!("must be a positive number, got {}", self.step),
        )?;
        ensure(
            (1..=32_767).contains(&self.max_level),
            "max_level",
            format!("must be in 1..=32767, got {}", self.max_level),
        )
    }
}

/// One instance per tensor and stream (the host creates it with the tensor's spec).
pub struct FixedStep {
    config: FixedStepConfig,
    len: u64,
}

impl FixedStep {
    /// The stream's shape, stated once for `quantize`, `describe_streams` and
    /// `dequantize`: one values stream of `2K + 1` levels.
    fn streams(&self) -> [StreamShape; 1] {
        [StreamShape::values(
            2 * u64::from(self.config.max_level) + 1,
        )]
    }
}

impl Stage for FixedStep {
    type Config = FixedStepConfig;

    /// Published in the manifest (`gradcodec plugins --verbose` shows it).
    /// Versions start at 1: bump the stage version with `.with_versions(v, f)`
    /// when the config or behaviour changes, the format version when the bytes
    /// it writes change.
    const INFO: StageInfo = StageInfo::new(
        "fixed-step",
        "Scalar quantization on a fixed grid k*step, |k| <= max_level, no side info; \
         the error is at most step/2 inside the range (Gish & Pierce 1968).",
    )
    .with_example(r#"{"step": 0.001, "max_level": 127}"#);

    fn new(config: FixedStepConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            config,
            len: tensor.len(),
        })
    }
}

impl Quantizer for FixedStep {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        // Inputs are finite (the host checks); their length is the tensor's.
        ensure_len("input", input.len(), self.len)?;
        // `out` is reused across rounds: `begin_streams` clears it (keeping its
        // allocations) and adds the empty streams this quantizer fills.
        begin_streams(out, &self.streams());
        let max = self.config.max_level as f32;
        let inverse_step = 1.0 / self.config.step;
        // `extend_mapped`, not `extend`: one resize, then a loop that vectorizes.
        out.streams[0].symbols.extend_mapped(input, |x| {
            ((x * inverse_step).round().clamp(-max, max) + max) as u32
        });
        Ok(())
    }

    /// The decoder calls this first: it must rebuild the same stream
    /// descriptors from the side info alone (here there is none).
    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        expect_no_side_info("fixed-step", &out.side_info)?;
        describe(out, &self.streams());
        Ok(())
    }

    /// Untrusted data: `received_streams` checks the stream count, each
    /// stream's length and every symbol against its alphabet.
    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let [symbols] = received_streams("fixed-step", coded, &self.streams(), [self.len])?;
        let max = self.config.max_level as i64;
        out.clear();
        out.extend_mapped(symbols, |s| (i64::from(s) - max) as f32 * self.config.step);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantizer() -> FixedStep {
        let tensor = TensorSpec::new("t", &[5u64]);
        FixedStep::new(
            FixedStepConfig {
                step: 0.5,
                max_level: 4,
            },
            &tensor,
        )
        .unwrap()
    }

    #[test]
    fn error_is_at_most_half_a_step_inside_the_range_and_saturates_outside() {
        let mut q = quantizer();
        let ctx = CallContext::new(0, 0);
        let input = [0.0, 0.26, -0.74, 2.2, -9.0];
        let mut coded = Quantized::default();
        q.quantize(&ctx, &input, &mut coded).unwrap();
        let mut out = RVec::new();
        q.dequantize(&ctx, &coded, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[0.0, 0.5, -0.5, 2.0, -2.0]);
        for (x, y) in input.iter().zip(out.iter()).take(4) {
            assert!((x - y).abs() <= 0.25);
        }
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let error = gradcodec_sdk::parse_config::<FixedStepConfig>(r#"{"step": -1}"#).unwrap_err();
        assert!(error.message.contains("`step`"), "{error}");
        let error =
            gradcodec_sdk::parse_config::<FixedStepConfig>(r#"{"max_level": 0}"#).unwrap_err();
        assert!(error.message.contains("`max_level`"), "{error}");
    }
}
