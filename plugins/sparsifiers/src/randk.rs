//! `randk`: random-k sparsification with indices regenerated, not sent.
//!
//! Keeps `k = ⌊n·(1 - sparsity)⌋` entries (at least `min_keep`) chosen uniformly at
//! random without replacement (Floyd's algorithm) by a generator seeded from
//! (`seed`, round, tensor index). The receiver draws the same indices from the same seed, so only the
//! values travel: one stream of the kept values in increasing index order (f32
//! bits by default, or f16/bf16/uniform like `topk`). With `rescale: true` the
//! values are multiplied by n/k, which makes the estimate unbiased; leave it off
//! when using error feedback. From Stich, Cordonnier, Jaggi, "Sparsified SGD with
//! Memory", NeurIPS 2018 (rand-k with memory); Wangni et al., "Gradient
//! Sparsification for Communication-Efficient Distributed Optimization", 2018.
//!
//! ```yaml
//! - quantizer: { use: randk, params: { sparsity: 0.99, seed: 42 } }
//! ```

use crate::sparse::{
    check_indexable, gather, keep_count, kept_summary, scatter, validate_sparsity,
    validate_value_bits, ValueCodec, ValueFormat,
};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of `randk`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RandKConfig {
    /// Fraction of entries dropped, in (0, 1).
    pub sparsity: f64,
    /// Keep at least this many entries.
    pub min_keep: u64,
    /// Seed of the index draws (both ends use it).
    pub seed: u64,
    /// Multiply kept values by n/k (unbiased estimate).
    pub rescale: bool,
    /// How the kept values are sent.
    pub values: ValueFormat,
    /// Bits of the `uniform` value format, 1..=16.
    pub value_bits: u32,
}

impl Default for RandKConfig {
    fn default() -> Self {
        Self {
            sparsity: 0.99,
            min_keep: 1,
            seed: 0,
            rescale: false,
            values: ValueFormat::F32,
            value_bits: 8,
        }
    }
}

impl StageConfig for RandKConfig {
    fn validate(&self) -> Result<(), String> {
        validate_sparsity(self.sparsity)?;
        validate_value_bits(self.value_bits)
    }
}

/// The rand-k quantizer.
pub struct RandK {
    config: RandKConfig,
    len: u64,
    k: u64,
    codec: ValueCodec,
}

impl RandK {
    /// The kept indices for a call, in increasing order (both ends).
    pub fn indices(&self, ctx: &CallContext) -> Vec<u32> {
        let mut rng = call_rng(self.config.seed, ctx);
        rng.sample_indices(self.len, self.k)
    }

    fn read_side_info(&self, side_info: &[u8]) -> SdkResult<Option<f32>> {
        self.codec.finish_side_info(SideInfoReader::new(side_info))
    }

    fn factor(&self) -> f32 {
        if self.config.rescale && self.k > 0 {
            (self.len as f64 / self.k as f64) as f32
        } else {
            1.0
        }
    }
}

impl Stage for RandK {
    type Config = RandKConfig;
    const INFO: StageInfo = StageInfo::new(
        "randk",
        "Random-k sparsification (Stich et al. 2018; Wangni et al. 2018): k = \
              floor(n*(1-sparsity)) indices drawn from (seed, round, tensor index) on both \
              ends, so only the values are sent; optional n/k rescaling for unbiasedness.",
    )
    .with_example(r#"{"sparsity": 0.9, "seed": 5}"#)
    .with_flags(StageFlags::RANDOMIZED);

    fn new(config: RandKConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        let len = check_indexable(tensor)?;
        Ok(Self {
            len,
            k: keep_count(len, config.sparsity, config.min_keep),
            codec: ValueCodec {
                format: config.values,
                bits: config.value_bits,
            },
            config,
        })
    }
}

impl Quantizer for RandK {
    fn quantize(&mut self, ctx: &CallContext, input: &[f32], out: &mut Quantized) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        ensure_finite(input)?;
        out.clear();
        let values = gather(input, &self.indices(ctx), self.factor());
        let stream = self.codec.encode(&values, &mut out.side_info);
        out.streams.push(stream);
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        self.read_side_info(&out.side_info)?;
        describe(out, &[self.codec.shape()]);
        Ok(())
    }

    fn dequantize(
        &mut self,
        ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let scale = self.read_side_info(&coded.side_info)?;
        let [symbols] = received_streams("randk", coded, &[self.codec.shape()], [self.k])?;
        let values = self.codec.decode(scale, symbols)?;
        scatter(self.len as usize, &self.indices(ctx), &values, out);
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        Ok(kept_summary("k", self.k, self.read_side_info(side_info)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::conformance::sample_tensor;

    fn make(config: RandKConfig, len: u64) -> RandK {
        let tensor = TensorSpec::new("t", &[len]);
        RandK::new(config, &tensor).unwrap()
    }

    #[test]
    fn both_ends_draw_the_same_indices() {
        let n = 5000u64;
        let config = RandKConfig {
            sparsity: 0.98,
            seed: 77,
            ..RandKConfig::default()
        };
        let input: Vec<f32> = sample_tensor(n as usize, 3)
            .iter()
            .map(|v| if *v == 0.0 { 1.0 } else { *v })
            .collect();
        let mut sender = make(config.clone(), n);
        let mut receiver = make(config.clone(), n);
        for round in 0..3u64 {
            let ctx = CallContext::new(round, 4);
            let mut coded = Quantized::default();
            sender.quantize(&ctx, &input, &mut coded).unwrap();
            assert_eq!(coded.streams.len(), 1, "only values are sent");
            assert_eq!(coded.streams[0].symbols.len(), 100);
            let mut out = RVec::new();
            receiver.dequantize(&ctx, &coded, &mut out).unwrap();
            let kept: Vec<u32> = (0..n as u32).filter(|i| out[*i as usize] != 0.0).collect();
            assert_eq!(kept, sender.indices(&ctx));
            assert_eq!(kept, receiver.indices(&ctx));
            for i in kept {
                assert_eq!(out[i as usize], input[i as usize]);
            }
        }
        // Different rounds and tensors draw different indices.
        let a = sender.indices(&CallContext::new(0, 0));
        assert_ne!(a, sender.indices(&CallContext::new(1, 0)));
        assert_ne!(a, sender.indices(&CallContext::new(0, 1)));
    }

    #[test]
    fn rescaled_randk_is_unbiased_over_rounds() {
        let n = 50u64;
        let input = sample_tensor(n as usize, 12);
        let mut q = make(
            RandKConfig {
                sparsity: 0.8,
                rescale: true,
                ..RandKConfig::default()
            },
            n,
        );
        let trials = 20_000u64;
        let mut sum = vec![0.0f64; n as usize];
        for round in 0..trials {
            let ctx = CallContext::new(round, 0);
            let mut coded = Quantized::default();
            q.quantize(&ctx, &input, &mut coded).unwrap();
            let mut out = RVec::new();
            q.dequantize(&ctx, &coded, &mut out).unwrap();
            for (acc, v) in sum.iter_mut().zip(out.iter()) {
                *acc += f64::from(*v);
            }
        }
        for (acc, x) in sum.iter().zip(&input) {
            // Each entry is x*n/k with probability k/n: std = |x|*sqrt(n/k - 1).
            let tolerance = 5.0 * f64::from(x.abs()) * 2.0 / (trials as f64).sqrt() + 1e-9;
            assert!((acc / trials as f64 - f64::from(*x)).abs() <= tolerance);
        }
    }
}
