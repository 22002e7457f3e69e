//! `threshold`: keep the entries whose magnitude reaches a fixed threshold.
//!
//! Keeps every entry with `|x_i| >= tau` and zeroes the rest, so the number kept
//! varies from round to round; it travels as a u32 of side info. Emits a
//! `positions` stream (strictly increasing, alphabet n) and the kept values (f32
//! bits by default, or f16/bf16/uniform like `topk`; the uniform scale follows the
//! count in the side info). From Strom, "Scalable Distributed DNN Training Using
//! Commodity GPU Cloud Computing", Interspeech 2015 (threshold quantization with
//! residual accumulation); pair it with error feedback.
//!
//! ```yaml
//! - quantizer: { use: threshold, params: { tau: 0.001 } }
//! ```

use crate::sparse::{
    check_indexable, gather, kept_summary, positions_and, received_sparse, scatter,
    validate_value_bits, ValueCodec, ValueFormat,
};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of `threshold`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdConfig {
    /// The threshold τ > 0: entries with |x| >= τ are kept.
    pub tau: f32,
    /// How the kept values are sent.
    pub values: ValueFormat,
    /// Bits of the `uniform` value format, 1..=16.
    pub value_bits: u32,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            tau: 1e-3,
            values: ValueFormat::F32,
            value_bits: 8,
        }
    }
}

impl StageConfig for ThresholdConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            self.tau.is_finite() && self.tau > 0.0,
            "tau",
            format!("must be a positive finite number, got {}", self.tau),
        )?;
        validate_value_bits(self.value_bits)
    }
}

/// The threshold quantizer.
pub struct Threshold {
    tau: f32,
    len: u64,
    codec: ValueCodec,
}

impl Threshold {
    fn read_side_info(&self, side_info: &[u8]) -> SdkResult<(u64, Option<f32>)> {
        let mut reader = SideInfoReader::new(side_info);
        let count = u64::from(reader.u32("count")?);
        ensure_data(count <= self.len, || {
            format!("count {count} larger than the tensor ({})", self.len)
        })?;
        Ok((count, self.codec.finish_side_info(reader)?))
    }

    fn streams(&self) -> [StreamShape; 2] {
        positions_and(self.len, self.codec.shape())
    }
}

impl Stage for Threshold {
    type Config = ThresholdConfig;
    const INFO: StageInfo = StageInfo::new(
        "threshold",
        "Threshold sparsification (Strom 2015): keeps the entries with |x| >= tau; the \
              count (u32) is side info; positions stream (alphabet n) plus the kept values \
              (f32 bits, f16, bf16 or uniform levels).",
    )
    .with_example(r#"{"tau": 0.01, "values": "bf16"}"#);

    fn new(config: ThresholdConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        let len = check_indexable(tensor)?;
        if len > u64::from(u32::MAX) {
            return Err(gradcodec_sdk::unsupported(
                "threshold counts are u32: tensors below 2^32 entries only",
            ));
        }
        Ok(Self {
            tau: config.tau,
            len,
            codec: ValueCodec {
                format: config.values,
                bits: config.value_bits,
            },
        })
    }
}

impl Quantizer for Threshold {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        ensure_finite(input)?;
        out.clear();
        let positions: Vec<u32> = (0..input.len() as u32)
            .filter(|i| input[*i as usize].abs() >= self.tau)
            .collect();
        let values = gather(input, &positions, 1.0);
        SideInfoWriter::new(&mut out.side_info).u32(values.len() as u32);
        self.codec.push_sparse(out, self.len, &positions, &values);
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        self.read_side_info(&out.side_info)?;
        describe(out, &self.streams());
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let (count, scale) = self.read_side_info(&coded.side_info)?;
        let (positions, values) = received_sparse("threshold", coded, &self.streams(), count)?;
        let values = self.codec.decode(scale, values)?;
        scatter(self.len as usize, positions, &values, out);
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        let (count, scale) = self.read_side_info(side_info)?;
        Ok(kept_summary("count", count, scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exactly_the_entries_at_or_above_tau() {
        let tensor = TensorSpec::new("t", &[6]);
        let mut q = Threshold::new(
            ThresholdConfig {
                tau: 0.5,
                ..ThresholdConfig::default()
            },
            &tensor,
        )
        .unwrap();
        let ctx = CallContext::new(0, 0);
        let mut coded = Quantized::default();
        let input = [0.1, -0.5, 0.49, 2.0, 0.0, -7.0];
        q.quantize(&ctx, &input, &mut coded).unwrap();
        assert_eq!(coded.streams[0].symbols.as_slice(), &[1, 3, 5]);
        let mut out = RVec::new();
        q.dequantize(&ctx, &coded, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[0.0, -0.5, 0.0, 2.0, 0.0, -7.0]);
        let error = gradcodec_sdk::parse_config::<ThresholdConfig>(r#"{"tau": 0}"#).unwrap_err();
        assert!(error.message.contains("tau"), "{error}");
    }
}
