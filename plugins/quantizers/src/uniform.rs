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

use gradcodec_sdk::buffers::RVecExt;
use gradcodec_sdk::{
    ensure, ensure_data, ensure_len, random::call_rng, CallContext, JsonSchema, Quantized,
    Quantizer, RVec, SdkResult, Stage, StageConfig, StageFlags, StageInfo, StreamRole,
    SymbolStream, TensorSpec,
};
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
}

fn read_scale(side_info: &[u8]) -> SdkResult<f32> {
    ensure_data(side_info.len() == 4, || {
        format!("uniform side info must be 4 bytes, got {}", side_info.len())
    })?;
    let scale = f32::from_le_bytes([side_info[0], side_info[1], side_info[2], side_info[3]]);
    ensure_data(scale.is_finite() && scale >= 0.0, || {
        format!("invalid scale {scale}")
    })?;
    Ok(scale)
}

impl Stage for Uniform {
    type Config = UniformConfig;
    const INFO: StageInfo = StageInfo {
        name: "uniform",
        version: 1,
        format_version: 1,
        doc: "Uniform scalar quantizer: 2^bits levels spanning [-max|x|, max|x|] of the tensor, \
              round to nearest or seeded unbiased stochastic rounding; the scale is sent as one f32.",
        example_params: r#"{"bits": 4, "stochastic": true, "seed": 7}"#,
        flags: StageFlags::RANDOMIZED,
    };

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
        out.clear();
        let scale = input.iter().fold(0.0f32, |acc, value| acc.max(value.abs()));
        out.side_info.extend_from_slice(&scale.to_le_bytes());
        let top = (self.levels() - 1) as f32;
        let mut stream = SymbolStream::new(StreamRole::VALUES, u64::from(self.levels()));
        stream.symbols.reserve(input.len());
        if scale == 0.0 {
            stream.symbols.resize(stream.symbols.len() + input.len(), 0);
        } else {
            let inverse_step = top / (2.0 * scale);
            if self.config.stochastic {
                let mut rng = call_rng(self.config.seed, ctx);
                stream.symbols.extend_mapped(input, |value| {
                    let position = ((value + scale) * inverse_step).clamp(0.0, top);
                    // `position` is in [0, top]: truncation is the floor.
                    let floor = position as u32;
                    let up = rng.uniform01_f32() < position - floor as f32;
                    (floor + u32::from(up)).min(top as u32)
                });
            } else {
                stream.symbols.extend_mapped(input, |value| {
                    ((value + scale) * inverse_step).clamp(0.0, top).round() as u32
                });
            }
        }
        out.streams.push(stream);
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        read_scale(&out.side_info)?;
        out.streams.clear();
        out.streams.push(SymbolStream::new(
            StreamRole::VALUES,
            u64::from(self.levels()),
        ));
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let scale = read_scale(&coded.side_info)?;
        ensure_data(coded.streams.len() == 1, || {
            "uniform expects one stream".into()
        })?;
        let symbols = &coded.streams[0].symbols;
        ensure_data(symbols.len() as u64 == self.len, || {
            format!(
                "uniform stream has {} symbols, the tensor has {}",
                symbols.len(),
                self.len
            )
        })?;
        let levels = self.levels();
        ensure_data(symbols.iter().all(|s| *s < levels), || {
            format!("uniform symbol outside 0..{levels}")
        })?;
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
