//! `uniform`: b-bit uniform scalar quantizer with a per-tensor scale.
//!
//! Levels are `-s + k·Δ` for `k = 0..2^b`, with `s = max|x|` of the tensor and
//! `Δ = 2s / (2^b - 1)`; each entry goes to the nearest level (ties away from
//! zero) or, with `stochastic: true`, to one of its two neighbours with the
//! probability that makes the result unbiased (QSGD-style), drawn from a
//! generator seeded by `seed`, the round and the tensor index. The scale `s`
//! travels as side info (one f32). The textbook uniform quantizer; see e.g.
//! Gersho & Gray, "Vector Quantization and Signal Compression", ch. 5.
//!
//! ```yaml
//! - quantizer: { use: uniform, params: { bits: 4, stochastic: true, seed: 7 } }
//! ```

use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of `uniform`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UniformConfig {
    /// Bits per entry, 1..=16 (2^bits levels).
    pub bits: u32,
    /// Unbiased stochastic rounding instead of rounding to nearest.
    pub stochastic: bool,
    /// Seed of the stochastic rounding.
    pub seed: u64,
}

impl Default for UniformConfig {
    fn default() -> Self {
        Self {
            bits: 8,
            stochastic: false,
            seed: 0,
        }
    }
}

impl StageConfig for UniformConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (1..=16).contains(&self.bits),
            "bits",
            format!("must be in 1..=16, got {}", self.bits),
        )
    }
}

/// The uniform quantizer.
pub struct Uniform {
    config: UniformConfig,
    len: u64,
}

impl Uniform {
    fn levels(&self) -> u32 {
        1u32 << self.config.bits
    }

    /// One values stream of 2^bits levels.
    fn streams(&self) -> [StreamShape; 1] {
        [StreamShape::values(u64::from(self.levels()))]
    }
}

fn read_scale(side_info: &[u8]) -> SdkResult<f32> {
    SideInfoReader::single_non_negative_f32(side_info, "scale")
}

impl Stage for Uniform {
    type Config = UniformConfig;
    const INFO: StageInfo = StageInfo::new("uniform", "Uniform scalar quantizer: 2^bits levels spanning [-max|x|, max|x|] of the tensor, \
              round to nearest or seeded unbiased stochastic rounding; the scale is sent as one f32.")
        .with_example(r#"{"bits": 4, "stochastic": true, "seed": 7}"#)
        .with_flags(StageFlags::RANDOMIZED);

    fn new(config: UniformConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            config,
            len: tensor.len(),
        })
    }
}

impl Quantizer for Uniform {
    fn quantize(&mut self, ctx: &CallContext, input: &[f32], out: &mut Quantized) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        begin_streams(out, &self.streams());
        let scale = input.iter().fold(0.0f32, |acc, value| acc.max(value.abs()));
        SideInfoWriter::new(&mut out.side_info).f32(scale);
        let top = (self.levels() - 1) as f32;
        let symbols = &mut out.streams[0].symbols;
        if scale == 0.0 {
            symbols.resize(input.len(), 0);
        } else {
            let inverse_step = top / (2.0 * scale);
            if self.config.stochastic {
                let mut rng = call_rng(self.config.seed, ctx);
                symbols.extend_mapped(input, |value| {
                    let position = ((value + scale) * inverse_step).clamp(0.0, top);
                    // `position` is in [0, top]: truncation is the floor.
                    let floor = position as u32;
                    let up = rng.uniform01_f32() < position - floor as f32;
                    (floor + u32::from(up)).min(top as u32)
                });
            } else {
                symbols.extend_mapped(input, |value| {
                    ((value + scale) * inverse_step).clamp(0.0, top).round() as u32
                });
            }
        }
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        read_scale(&out.side_info)?;
        describe(out, &self.streams());
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let scale = read_scale(&coded.side_info)?;
        let [symbols] = received_streams("uniform", coded, &self.streams(), [self.len])?;
        let levels = self.levels();
        let step = if levels > 1 {
            2.0 * scale / (levels - 1) as f32
        } else {
            0.0
        };
        out.clear();
        if scale == 0.0 {
            out.resize(out.len() + symbols.len(), 0.0);
        } else {
            out.extend_mapped(symbols, |s| s as f32 * step - scale);
        }
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        Ok(format!("{{\"scale\":{}}}", read_scale(side_info)?))
    }
}
