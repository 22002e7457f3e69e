//! `terngrad`: TernGrad stochastic ternary quantization.
//!
//! With scale `s = max|x|` of the tensor, each entry becomes `s·sign(x_i)·b_i` where
//! `b_i` is 1 with probability `|x_i|/s` and 0 otherwise, so the result is an
//! unbiased estimate of `x`. With `clip_sigma: c`, entries are first clipped to
//! `[-cσ, cσ]` with σ the standard deviation of the tensor (the paper's gradient
//! clipping, c = 2.5), which shrinks `s` (the estimate is then unbiased for the
//! clipped tensor). Draws are seeded by `seed`, the round and the tensor index. The
//! scale is one f32 of side info; symbols are `0` (zero), `1` (+s) and `2` (-s).
//! From Wen, Xu, Yan, Wu, Wang, Chen, Li, "TernGrad: Ternary Gradients to Reduce
//! Communication in Distributed Deep Learning", NeurIPS 2017.
//!
//! ```yaml
//! - quantizer: { use: terngrad, params: { clip_sigma: 2.5, seed: 0 } }
//! ```

use gradcodec_sdk::prelude::*;
use gradcodec_sdk::random::unit_interval_lanes;
use serde::{Deserialize, Serialize};

/// Parameters of `terngrad`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TernGradConfig {
    /// Clip entries at `clip_sigma` standard deviations before quantizing (null: no
    /// clipping; the paper uses 2.5).
    pub clip_sigma: Option<f32>,
    /// Seed of the stochastic rounding.
    pub seed: u64,
}

impl StageConfig for TernGradConfig {
    fn validate(&self) -> Result<(), String> {
        match self.clip_sigma {
            None => Ok(()),
            Some(c) => ensure(
                c.is_finite() && c > 0.0,
                "clip_sigma",
                format!("must be a positive number or null, got {c}"),
            ),
        }
    }
}

/// The TernGrad quantizer.
pub struct TernGrad {
    config: TernGradConfig,
    len: u64,
}

const STREAMS: [StreamShape; 1] = [StreamShape::values(3)];

pub(crate) fn read_scale(side_info: &[u8]) -> SdkResult<f32> {
    SideInfoReader::single_non_negative_f32(side_info, "scale")
}

impl TernGrad {
    /// Entries of the tensor.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

impl Stage for TernGrad {
    type Config = TernGradConfig;
    const INFO: StageInfo = StageInfo::new(
        "terngrad",
        "TernGrad (Wen et al. 2017): scale s = max|x| (optionally after clipping at \
              c*sigma), each entry becomes s*sign(x)*Bernoulli(|x|/s), seeded and unbiased; \
              s sent as one f32, symbols 0/+1/-1 as 0/1/2.",
    )
    .with_example(r#"{"clip_sigma": 2.5, "seed": 11}"#)
    .with_flags(StageFlags::RANDOMIZED.union(StageFlags::CHECKS_FINITE));

    fn new(config: TernGradConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            config,
            len: tensor.len(),
        })
    }
}

/// Random draws generated at once.
const DRAWS: usize = 1024;

/// TernGrad's symbols of one part: entry `value` with draw `word` is kept with
/// probability `p = min(|value|, limit) / scale` (`unit(word) < p`), as 1 when
/// positive and 2 when negative, else 0. Lane arithmetic
/// ([`unit_interval_lanes`]), so it vectorizes with the scalar rule's results.
fn ternary_symbols_kernel(part: &[f32], words: &[u64], limit: f32, inverse: f64, out: &mut [u32]) {
    for ((symbol, &value), &word) in out.iter_mut().zip(part).zip(words) {
        let p = f64::from(value.abs().min(limit)) * inverse;
        let keep = unit_interval_lanes(word) < p;
        let sign = if value < 0.0 { 2 } else { 1 };
        *symbol = if keep { sign } else { 0 };
    }
}

gradcodec_sdk::simd_dispatch! {
    /// [`ternary_symbols_kernel`], AVX2 where the CPU has it.
    fn ternary_symbols(part: &[f32], words: &[u64], limit: f32, inverse: f64, out: &mut [u32]) => ternary_symbols_kernel
}

impl Quantizer for TernGrad {
    fn quantize(&mut self, ctx: &CallContext, input: &[f32], out: &mut Quantized) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        // max |v| rides along the mean's pass (a second, independent chain),
        // and so does the finiteness check: f32 entries cannot overflow an f64
        // sum, so the sum is finite exactly when every entry is.
        let (sum, max_abs) = input.iter().fold((0.0f64, 0.0f32), |(sum, max), v| {
            (sum + f64::from(*v), max.max(v.abs()))
        });
        if !sum.is_finite() {
            ensure_finite(input)?;
            return Err(invalid_input("input is not finite"));
        }
        begin_streams(out, &STREAMS);
        let limit = match self.config.clip_sigma {
            Some(c) if !input.is_empty() => {
                let n = input.len() as f64;
                let mean = sum / n;
                let variance = input
                    .iter()
                    .map(|v| (f64::from(*v) - mean).powi(2))
                    .sum::<f64>()
                    / n;
                (f64::from(c) * variance.sqrt()) as f32
            }
            _ => f32::INFINITY,
        };
        // max_i min(|v_i|, limit) = min(max_i |v_i|, limit) (min is monotone;
        // both exact on finite values), and the fold started at 0.
        let scale = 0.0f32.max(max_abs.min(limit));
        SideInfoWriter::new(&mut out.side_info).f32(scale);
        let symbols = &mut out.streams[0].symbols;
        if scale == 0.0 {
            symbols.resize(input.len(), 0);
        } else {
            let mut rng = call_rng(self.config.seed, ctx);
            let inverse = 1.0 / f64::from(scale);
            // One draw per entry, in order, drawn in bulk.
            let mut draws = vec![0u64; DRAWS.min(input.len())];
            symbols.extend_filled(input.len(), |out| {
                for (part, out) in input.chunks(DRAWS).zip(out.chunks_mut(DRAWS)) {
                    let words = &mut draws[..part.len()];
                    rng.fill_u64(words);
                    ternary_symbols(part, words, limit, inverse, out);
                }
            });
        }
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        read_scale(&out.side_info)?;
        describe(out, &STREAMS);
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let scale = read_scale(&coded.side_info)?;
        let [symbols] = received_streams("terngrad", coded, &STREAMS, [self.len])?;
        out.clear();
        out.extend_mapped(symbols, |s| match s {
            1 => scale,
            2 => -scale,
            _ => 0.0,
        });
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        Ok(format!("{{\"scale\":{}}}", read_scale(side_info)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::{conformance::sample_tensor, parse_config, random::unit_interval};

    #[test]
    fn the_lane_kernel_is_the_scalar_rule() {
        let mut rng = call_rng(3, &CallContext::new(0, 0));
        let values: Vec<f32> = (0..3001)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 => -0.0,
                _ => (rng.uniform01() * 6.0 - 3.0) as f32,
            })
            .collect();
        let words: Vec<u64> = (0..values.len()).map(|_| rng.next_u64()).collect();
        for (limit, inverse) in [(f32::INFINITY, 1.0 / 3.0), (1.5, 1.0 / 1.5), (0.0, 1.0)] {
            let mut fast = vec![0u32; values.len()];
            ternary_symbols(&values, &words, limit, inverse, &mut fast);
            let scalar: Vec<u32> = values
                .iter()
                .zip(&words)
                .map(|(&value, &word)| {
                    let p = f64::from(value.abs().min(limit)) * inverse;
                    match (unit_interval(word) < p, value < 0.0) {
                        (false, _) => 0,
                        (true, false) => 1,
                        (true, true) => 2,
                    }
                })
                .collect();
            assert_eq!(fast, scalar, "limit {limit}");
        }
    }

    fn run(config: TernGradConfig, input: &[f32], round: u64) -> Vec<f32> {
        let tensor = TensorSpec::new("t", &[input.len() as u64]);
        let mut q = TernGrad::new(config, &tensor).unwrap();
        let ctx = CallContext::new(round, 0);
        let mut coded = Quantized::default();
        q.quantize(&ctx, input, &mut coded).unwrap();
        let mut out = RVec::new();
        q.dequantize(&ctx, &coded, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn unbiased_in_expectation_over_seeds() {
        let input = sample_tensor(64, 4);
        let scale = input.iter().fold(0.0f64, |a, v| a.max(f64::from(v.abs())));
        let trials = 20_000u64;
        let mut sum = vec![0.0f64; input.len()];
        for seed in 0..trials {
            let out = run(
                TernGradConfig {
                    clip_sigma: None,
                    seed,
                },
                &input,
                0,
            );
            for (acc, v) in sum.iter_mut().zip(&out) {
                *acc += f64::from(*v);
            }
        }
        // Per-entry standard deviation <= scale/2; allow 5 sigma of the mean.
        let tolerance = 5.0 * scale / 2.0 / (trials as f64).sqrt();
        let mut worst = 0.0f64;
        for (acc, x) in sum.iter().zip(&input) {
            let error = (acc / trials as f64 - f64::from(*x)).abs();
            worst = worst.max(error);
            assert!(error < tolerance, "mean off by {error} > {tolerance}");
        }
        eprintln!("terngrad: worst |E[Q(x)] - x| = {worst:.2e} (tolerance {tolerance:.2e})");
    }

    #[test]
    fn clipping_bounds_the_scale_and_output_is_ternary() {
        let mut input = sample_tensor(2000, 8);
        input[17] = 100.0;
        let out = run(
            TernGradConfig {
                clip_sigma: Some(2.5),
                seed: 1,
            },
            &input,
            3,
        );
        let scale = out.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(scale > 0.0 && scale < 100.0, "clipped scale {scale}");
        assert!(out.iter().all(|v| *v == 0.0 || v.abs() == scale));
        let error = parse_config::<TernGradConfig>(r#"{"clip_sigma": -1}"#).unwrap_err();
        assert!(error.message.contains("clip_sigma"), "{error}");
    }
}
