//! `topk`: global top-k sparsification by magnitude.
//!
//! Keeps the `k = ⌊n·(1 - sparsity)⌋` entries of largest magnitude of the tensor
//! (at least `min_keep`, at most n; ties go to the lower index) and zeroes the
//! rest. It emits a `positions` stream (the kept indices, strictly increasing,
//! alphabet n) and the kept values in the order of their positions: by default
//! their exact f32 bits (a `raw-words` stream), or cast to f16/bf16, or uniformly
//! quantized with `value_bits` bits (`values` streams). k follows from the config
//! and the tensor size, so no count is sent; only the `uniform` value format has
//! side info (its scale, one f32). Use with error feedback: Stich, Cordonnier,
//! Jaggi, "Sparsified SGD with Memory", NeurIPS 2018; Aji & Heafield, "Sparse
//! Communication for Distributed Gradient Descent", 2017; Lin et al., "Deep
//! Gradient Compression", ICLR 2018.
//!
//! ```yaml
//! - quantizer: { use: topk, params: { sparsity: 0.99, values: f32 } }
//! ```

use crate::sparse::{
    check_indexable, gather, keep_count, kept_summary, positions_and, received_sparse, scatter,
    top_k_indices, validate_sparsity, validate_value_bits, ValueCodec, ValueFormat,
};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of `topk`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TopKConfig {
    /// Fraction of entries dropped, in (0, 1): 0.99 keeps 1%.
    pub sparsity: f64,
    /// Keep at least this many entries (so small tensors are not silenced).
    pub min_keep: u64,
    /// How the kept values are sent.
    pub values: ValueFormat,
    /// Bits of the `uniform` value format, 1..=16.
    pub value_bits: u32,
}

impl Default for TopKConfig {
    fn default() -> Self {
        Self {
            sparsity: 0.99,
            min_keep: 1,
            values: ValueFormat::F32,
            value_bits: 8,
        }
    }
}

impl StageConfig for TopKConfig {
    fn validate(&self) -> Result<(), String> {
        validate_sparsity(self.sparsity)?;
        validate_value_bits(self.value_bits)
    }
}

/// The top-k quantizer.
pub struct TopK {
    len: u64,
    k: u64,
    codec: ValueCodec,
}

impl TopK {
    fn read_side_info(&self, side_info: &[u8]) -> SdkResult<Option<f32>> {
        self.codec.finish_side_info(SideInfoReader::new(side_info))
    }

    fn streams(&self) -> [StreamShape; 2] {
        positions_and(self.len, self.codec.shape())
    }
}

impl Stage for TopK {
    type Config = TopKConfig;
    const INFO: StageInfo = StageInfo::new(
        "topk",
        "Global top-k sparsification (Stich et al. 2018; Aji & Heafield 2017; DGC 2018): \
              keeps the floor(n*(1-sparsity)) largest magnitudes; sends a positions stream \
              (strictly increasing, alphabet n) and the kept values (f32 bits, f16, bf16 or \
              uniform levels).",
    )
    .with_example(r#"{"sparsity": 0.9, "values": "f32"}"#)
    .with_flags(StageFlags::CHECKS_FINITE);

    fn new(config: TopKConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        let len = check_indexable(tensor)?;
        Ok(Self {
            len,
            k: keep_count(len, config.sparsity, config.min_keep),
            codec: ValueCodec {
                format: config.values,
                bits: config.value_bits,
            },
        })
    }
}

impl Quantizer for TopK {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        // CHECKS_FINITE: one vectorized pass, the scalar search only to name
        // the entry.
        if !gradcodec_sdk::floats::all_finite(input) {
            ensure_finite(input)?;
        }
        out.clear();
        let indices = top_k_indices(input, self.k as usize);
        let values = gather(input, &indices, 1.0);
        self.codec.push_sparse(out, self.len, &indices, &values);
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
        let scale = self.read_side_info(&coded.side_info)?;
        let (positions, values) = received_sparse("topk", coded, &self.streams(), self.k)?;
        let values = self.codec.decode(scale, values)?;
        scatter(self.len as usize, positions, &values, out);
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        Ok(kept_summary("k", self.k, self.read_side_info(side_info)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::{conformance::sample_tensor, parse_config};

    fn make(config: TopKConfig, len: u64) -> TopK {
        let tensor = TensorSpec::new("t", &[len]);
        TopK::new(config, &tensor).unwrap()
    }

    #[test]
    fn keeps_exactly_k_largest() {
        let n = 10_000u64;
        let input = sample_tensor(n as usize, 2);
        for (sparsity, k) in [(0.99, 100usize), (0.999, 10), (0.9, 1000), (0.5, 5000)] {
            let mut q = make(
                TopKConfig {
                    sparsity,
                    ..TopKConfig::default()
                },
                n,
            );
            let ctx = CallContext::new(0, 0);
            let mut coded = Quantized::default();
            q.quantize(&ctx, &input, &mut coded).unwrap();
            assert_eq!(coded.streams[0].symbols.len(), k);
            let mut out = RVec::new();
            q.dequantize(&ctx, &coded, &mut out).unwrap();
            let kept: Vec<usize> = (0..n as usize).filter(|i| out[*i] != 0.0).collect();
            assert!(kept.len() <= k);
            // Kept values are exact and every dropped magnitude is <= every kept one.
            let smallest_kept = coded.streams[0]
                .symbols
                .iter()
                .map(|i| input[*i as usize].abs())
                .fold(f32::INFINITY, f32::min);
            for i in 0..n as usize {
                if coded.streams[0].symbols.contains(&(i as u32)) {
                    assert_eq!(out[i], input[i]);
                } else {
                    assert_eq!(out[i], 0.0);
                    assert!(input[i].abs() <= smallest_kept);
                }
            }
        }
    }

    #[test]
    fn value_formats_round_trip_close() {
        let input = sample_tensor(4000, 6);
        for values in [ValueFormat::F16, ValueFormat::Bf16, ValueFormat::Uniform] {
            let mut q = make(
                TopKConfig {
                    sparsity: 0.95,
                    values,
                    value_bits: 10,
                    ..TopKConfig::default()
                },
                4000,
            );
            let ctx = CallContext::new(0, 0);
            let mut coded = Quantized::default();
            q.quantize(&ctx, &input, &mut coded).unwrap();
            let mut out = RVec::new();
            q.dequantize(&ctx, &coded, &mut out).unwrap();
            for &i in coded.streams[0].symbols.iter() {
                let (x, y) = (input[i as usize], out[i as usize]);
                assert!(
                    (x - y).abs() <= 0.01 * x.abs() + 1e-3,
                    "{values:?}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn bad_sparsity_names_the_field() {
        for bad in ["0", "1", "1.5", "-0.1"] {
            let error =
                parse_config::<TopKConfig>(&format!("{{\"sparsity\": {bad}}}")).unwrap_err();
            assert!(error.message.contains("sparsity"), "{error}");
        }
    }
}
