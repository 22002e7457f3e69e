//! `powersgd`: rank-r PowerSGD compression with a warm-started power iteration.
//!
//! The tensor is viewed as an `m × c` matrix `M` (first dimension × the product of
//! the rest, row-major). With `Q` (`c × r`) kept across rounds, one step of power
//! iteration computes `P = M·Q`, orthonormalizes the columns of `P` (Gram-Schmidt;
//! a column that vanishes is set to zero), then `Q = Mᵀ·P`; the receiver
//! reconstructs `P·Qᵀ`. `P` (`m·r` words) and `Q` (`c·r` words) are sent as two
//! `raw-words` streams of f32 bits; nothing else. The new `Q` is kept for the next
//! round (the warm start); the first `Q` is drawn from a standard normal seeded by
//! (`seed`, round, tensor index) of the first call after creation or `reset`. Only
//! the encoder keeps state; the decoder is stateless.
//!
//! `rank` must not exceed `min(m, c)` (an error naming `rank`). Tensors that are not
//! matrices (one dimension, a scalar, or `m = 1` or `c = 1`) are sent raw: one
//! `raw-words` stream with the f32 bits of every entry, as the paper does for
//! biases. Pair it with error feedback. From Vogels, Karimireddy, Jaggi,
//! "PowerSGD: Practical Low-Rank Gradient Compression for Distributed
//! Optimization", NeurIPS 2019.
//!
//! ```yaml
//! - quantizer: { use: powersgd, params: { rank: 4, seed: 0 } }
//! ```

use gradcodec_sdk::prelude::*;
use gradcodec_sdk::{state, streams::check_count};
use serde::{Deserialize, Serialize};

/// Parameters of `powersgd`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PowerSgdConfig {
    /// Rank r >= 1 of the approximation (at most min(m, c) of every matrix).
    pub rank: u32,
    /// Seed of the initial Q.
    pub seed: u64,
}

impl Default for PowerSgdConfig {
    fn default() -> Self {
        Self { rank: 4, seed: 0 }
    }
}

impl StageConfig for PowerSgdConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            self.rank >= 1,
            "rank",
            format!("must be at least 1, got {}", self.rank),
        )
    }
}

/// The PowerSGD quantizer.
pub struct PowerSgd {
    config: PowerSgdConfig,
    len: u64,
    /// `Some((m, c))` for matrices; `None` sends raw.
    matrix: Option<(usize, usize)>,
    /// Warm-start Q (c × r, row-major); empty before the first call.
    q: Vec<f32>,
}

fn raw_stream() -> SymbolStream {
    SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32)
}

fn words_to_f32(what: &str, words: &[u32]) -> SdkResult<Vec<f32>> {
    words
        .iter()
        .map(|bits| {
            let value = f32::from_bits(*bits);
            ensure_data(value.is_finite(), || {
                format!("{what} word {bits:#010x} is not a finite f32")
            })?;
            Ok(value)
        })
        .collect()
}

/// Orthonormalizes the `r` columns of the row-major `m × r` matrix `p` in place.
fn orthonormalize(p: &mut [f64], m: usize, r: usize) {
    for column in 0..r {
        for previous in 0..column {
            let dot: f64 = (0..m)
                .map(|i| p[i * r + column] * p[i * r + previous])
                .sum();
            for i in 0..m {
                p[i * r + column] -= dot * p[i * r + previous];
            }
        }
        let norm = (0..m)
            .map(|i| p[i * r + column].powi(2))
            .sum::<f64>()
            .sqrt();
        let scale = if norm > 1e-30 { 1.0 / norm } else { 0.0 };
        for i in 0..m {
            p[i * r + column] *= scale;
        }
    }
}

impl Stage for PowerSgd {
    type Config = PowerSgdConfig;
    const INFO: StageInfo = StageInfo::new(
        "powersgd",
        "PowerSGD (Vogels et al. 2019): rank-r approximation P*Q^T of the tensor viewed as \
              (first dim) x (rest), one power-iteration step with Q warm-started across rounds \
              (seeded normal init); P and Q sent as f32 words. Non-matrix tensors are sent raw.",
    )
    .with_example(r#"{"rank": 3, "seed": 1}"#)
    .with_flags(StageFlags::STATEFUL.union(StageFlags::RANDOMIZED));

    fn new(config: PowerSgdConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        let len = tensor.len();
        let matrix = if tensor.shape.len() >= 2 {
            let m = tensor.shape[0] as usize;
            let c = (len / tensor.shape[0].max(1)) as usize;
            (m > 1 && c > 1).then_some((m, c))
        } else {
            None
        };
        if let Some((m, c)) = matrix {
            let rank = config.rank as usize;
            if rank > m.min(c) {
                return Err(invalid_config(format!(
                    "field `rank`: {rank} exceeds min(m, c) = {} of tensor `{}` viewed as {m} x {c}",
                    m.min(c),
                    tensor.name
                )));
            }
        }
        Ok(Self {
            config,
            len,
            matrix,
            q: Vec::new(),
        })
    }
}

impl Quantizer for PowerSgd {
    fn quantize(&mut self, ctx: &CallContext, input: &[f32], out: &mut Quantized) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        ensure_finite(input)?;
        out.clear();
        let Some((m, c)) = self.matrix else {
            let mut stream = raw_stream();
            stream.symbols.extend_mapped(input, |v| v.to_bits());
            out.streams.push(stream);
            return Ok(());
        };
        let r = self.config.rank as usize;
        if self.q.is_empty() {
            let mut rng = call_rng(self.config.seed, ctx);
            self.q = (0..c * r).map(|_| rng.normal() as f32).collect();
        }
        // P = M Q (m × r).
        let mut p = vec![0.0f64; m * r];
        for i in 0..m {
            let row = &input[i * c..(i + 1) * c];
            let target = &mut p[i * r..(i + 1) * r];
            for (j, value) in row.iter().enumerate() {
                let value = f64::from(*value);
                for (t, q) in target.iter_mut().zip(&self.q[j * r..(j + 1) * r]) {
                    *t += value * f64::from(*q);
                }
            }
        }
        orthonormalize(&mut p, m, r);
        let p: Vec<f32> = p.iter().map(|v| *v as f32).collect();
        // Q = Mᵀ P (c × r), with the P that is sent.
        let mut q = vec![0.0f64; c * r];
        for i in 0..m {
            let row = &input[i * c..(i + 1) * c];
            let weights = &p[i * r..(i + 1) * r];
            for (j, value) in row.iter().enumerate() {
                let value = f64::from(*value);
                for (t, w) in q[j * r..(j + 1) * r].iter_mut().zip(weights) {
                    *t += value * f64::from(*w);
                }
            }
        }
        self.q = q.iter().map(|v| *v as f32).collect();
        let mut p_stream = raw_stream();
        p_stream.symbols.extend_mapped(&p, |v| v.to_bits());
        let mut q_stream = raw_stream();
        q_stream.symbols.extend_mapped(&self.q, |v| v.to_bits());
        out.streams.push(p_stream);
        out.streams.push(q_stream);
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        expect_no_side_info("powersgd", &out.side_info)?;
        out.streams.clear();
        out.streams.push(raw_stream());
        if self.matrix.is_some() {
            out.streams.push(raw_stream());
        }
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        expect_no_side_info("powersgd", &coded.side_info)?;
        out.clear();
        let Some((m, c)) = self.matrix else {
            ensure_data(coded.streams.len() == 1, || {
                "powersgd (raw fallback) expects one stream".into()
            })?;
            let words = &coded.streams[0].symbols;
            check_count("powersgd raw", words, self.len)?;
            out.extend(words_to_f32("raw", words)?);
            return Ok(());
        };
        let r = self.config.rank as usize;
        ensure_data(coded.streams.len() == 2, || {
            "powersgd expects two streams (P and Q)".into()
        })?;
        check_count("powersgd P", &coded.streams[0].symbols, (m * r) as u64)?;
        check_count("powersgd Q", &coded.streams[1].symbols, (c * r) as u64)?;
        let p = words_to_f32("P", &coded.streams[0].symbols)?;
        let q = words_to_f32("Q", &coded.streams[1].symbols)?;
        out.reserve(m * c);
        for i in 0..m {
            let left = &p[i * r..(i + 1) * r];
            for j in 0..c {
                let right = &q[j * r..(j + 1) * r];
                let value: f64 = left
                    .iter()
                    .zip(right)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                out.push(value as f32);
            }
        }
        ensure_data(out.iter().all(|v| v.is_finite()), || {
            "powersgd reconstruction overflows f32".into()
        })?;
        Ok(())
    }

    fn summarize_side_info(&self, _side_info: &[u8]) -> SdkResult<String> {
        Ok(match self.matrix {
            Some((m, c)) => format!(
                "{{\"rank\":{},\"rows\":{m},\"cols\":{c}}}",
                self.config.rank
            ),
            None => "{\"raw\":true}".to_string(),
        })
    }

    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()> {
        state::write_vectors(b"PSG1", &[&self.q], out);
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        let expected = self
            .matrix
            .map_or(0, |(_, c)| c * self.config.rank as usize);
        let mut vectors = state::read_vectors(b"PSG1", bytes, expected)?;
        ensure_data(vectors.len() == 1, || "state: expected one vector".into())?;
        let q = vectors.pop().unwrap_or_default();
        ensure_data(q.iter().all(|v| v.is_finite()), || {
            "state: non-finite Q".into()
        })?;
        self.q = q;
        Ok(())
    }

    fn reset(&mut self) {
        self.q.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::parse_config;

    fn make(rank: u32, shape: &[u64]) -> SdkResult<PowerSgd> {
        let tensor = TensorSpec {
            name: "w".into(),
            shape: shape.to_vec().into(),
        };
        PowerSgd::new(PowerSgdConfig { rank, seed: 9 }, &tensor)
    }

    fn round_trip(q: &mut PowerSgd, input: &[f32], round: u64) -> Vec<f32> {
        let ctx = CallContext::new(round, 0);
        let mut coded = Quantized::default();
        q.quantize(&ctx, input, &mut coded).unwrap();
        let mut out = RVec::new();
        q.dequantize(&ctx, &coded, &mut out).unwrap();
        out.to_vec()
    }

    fn relative_error(input: &[f32], out: &[f32]) -> f64 {
        let norm: f64 = input
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        let error: f64 = input
            .iter()
            .zip(out)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        error / norm
    }

    #[test]
    fn recovers_a_low_rank_matrix_and_warm_start_converges() {
        // M = 3 a bᵀ + u vᵀ, exactly rank 2 (30 × 20).
        let (m, c) = (30usize, 20usize);
        let input: Vec<f32> = (0..m * c)
            .map(|k| {
                let (i, j) = ((k / c) as f32, (k % c) as f32);
                3.0 * (i * 0.1 + 1.0) * (j * 0.05 - 0.3) + (i * 0.7).sin() * (j * 1.3).cos()
            })
            .collect();
        // Rank 2 recovers it exactly.
        let mut exact = make(2, &[m as u64, c as u64]).unwrap();
        let error = relative_error(&input, &round_trip(&mut exact, &input, 0));
        assert!(error < 1e-5, "rank-2 error {error}");
        // Rank 1: warm-started rounds converge towards the best rank-1 approximation.
        let mut q = make(1, &[m as u64, c as u64]).unwrap();
        let errors: Vec<f64> = (0..6)
            .map(|round| relative_error(&input, &round_trip(&mut q, &input, round)))
            .collect();
        eprintln!("powersgd rank-1 relative errors over warm-started rounds: {errors:?}");
        for pair in errors.windows(2) {
            assert!(pair[1] <= pair[0] + 1e-6, "{errors:?}");
        }
        assert!(errors[5] < errors[0] || errors[0] - errors[5] < 1e-6);
        assert!(errors[5] < 0.5, "{errors:?}");
    }

    #[test]
    fn rank_checks_and_raw_fallback() {
        let error = make(5, &[4, 10]).err().unwrap();
        assert!(error.message.contains("rank"), "{error}");
        let error = parse_config::<PowerSgdConfig>(r#"{"rank": 0}"#).unwrap_err();
        assert!(error.message.contains("rank"), "{error}");
        let mut bias = make(4, &[7]).unwrap();
        let input = [1.0, -2.0, 3.5, 0.0, 1e-3, 7.0, -0.25];
        assert_eq!(round_trip(&mut bias, &input, 0), input.to_vec());
    }
}
