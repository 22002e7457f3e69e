//! `qsgd`: QSGD stochastic quantization with `s` levels per sign.
//!
//! The tensor is split into buckets of `bucket_size` consecutive entries (0: one
//! bucket, the whole tensor). For a bucket `x` with norm `‖x‖` (L2 by default, or
//! the max norm), each entry becomes `‖x‖·sign(x_i)·l_i/s`, where
//! `l_i ∈ {⌊s|x_i|/‖x‖⌋, ⌊s|x_i|/‖x‖⌋ + 1}` is drawn so that the result is unbiased:
//! the upper level with probability `s|x_i|/‖x‖ - ⌊s|x_i|/‖x‖⌋`. The draws come from
//! a generator seeded by `seed`, the round and the tensor index, so the same input
//! gives the same bytes. The norms are side info (one f32 per bucket, in order);
//! the signed level `±l_i` becomes a symbol of an alphabet of `2s + 1` by the
//! zigzag map `0, 1, -1, 2, -2, … → 0, 1, 2, 3, 4, …` (small levels get small
//! symbols, which suits Elias and Golomb codes). The variance grows with the bucket
//! length (up to `min(d/s², √d/s)·‖x‖²` for d entries), which is why the paper
//! quantizes in buckets. From Alistarh, Grubic, Li, Tomioka, Vojnovic, "QSGD:
//! Communication-Efficient SGD via Gradient Quantization and Encoding", NeurIPS 2017.
//!
//! ```yaml
//! - quantizer: { use: qsgd, params: { levels: 16, norm: l2, bucket_size: 512, seed: 0 } }
//! ```

use gradcodec_sdk::prelude::*;
use gradcodec_sdk::{
    random::unit_interval_lanes, side_info::SideInfoReader, side_info::SideInfoWriter,
    streams::check_alphabet, streams::check_count,
};
use serde::{Deserialize, Serialize};

/// The norm QSGD scales by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QsgdNorm {
    /// Euclidean norm (the paper's choice).
    L2,
    /// Largest magnitude (lower variance, as in many implementations).
    Max,
}

/// Parameters of `qsgd`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QsgdConfig {
    /// Number of levels s per sign, 1..=2^20 (alphabet 2s + 1).
    pub levels: u32,
    /// Norm that scales the levels.
    pub norm: QsgdNorm,
    /// Entries per bucket (one norm each); 0 means the whole tensor.
    pub bucket_size: u64,
    /// Seed of the stochastic rounding.
    pub seed: u64,
}

impl Default for QsgdConfig {
    fn default() -> Self {
        Self {
            levels: 16,
            norm: QsgdNorm::L2,
            bucket_size: 0,
            seed: 0,
        }
    }
}

impl StageConfig for QsgdConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (1..=1 << 20).contains(&self.levels),
            "levels",
            format!("must be in 1..=1048576, got {}", self.levels),
        )
    }
}

/// The QSGD quantizer.
pub struct Qsgd {
    config: QsgdConfig,
    len: u64,
    /// Entries per bucket (at least 1).
    bucket: usize,
}

impl Qsgd {
    pub(crate) fn alphabet(&self) -> u64 {
        2 * u64::from(self.config.levels) + 1
    }

    /// The one stream: zigzagged levels.
    fn streams(&self) -> [StreamShape; 1] {
        [StreamShape::values(self.alphabet())]
    }

    /// Entries per bucket (one norm each).
    pub(crate) fn bucket_entries(&self) -> usize {
        self.bucket
    }

    /// The levels s per sign.
    pub(crate) fn levels(&self) -> u32 {
        self.config.levels
    }

    fn buckets(&self) -> usize {
        (self.len as usize).div_ceil(self.bucket)
    }

    pub(crate) fn read_norms(&self, side_info: &[u8]) -> SdkResult<Vec<f32>> {
        let mut reader = SideInfoReader::new(side_info);
        let norms = (0..self.buckets())
            .map(|_| reader.non_negative_f32("norm"))
            .collect::<SdkResult<Vec<f32>>>()?;
        reader.finish()?;
        Ok(norms)
    }
}

impl Stage for Qsgd {
    type Config = QsgdConfig;
    const INFO: StageInfo = StageInfo::new(
        "qsgd",
        "QSGD (Alistarh et al. 2017): unbiased seeded stochastic rounding of |x|/norm to s \
              levels per bucket of entries; one f32 norm (L2 or max) per bucket as side info; \
              signed levels zigzag-mapped to an alphabet of 2s+1.",
    )
    .with_example(r#"{"levels": 4, "norm": "l2", "bucket_size": 100, "seed": 3}"#)
    .with_flags(StageFlags::RANDOMIZED.union(StageFlags::CHECKS_FINITE));

    fn new(config: QsgdConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        let len = tensor.len();
        let bucket = match config.bucket_size {
            0 => len.max(1),
            size => size.min(len.max(1)),
        } as usize;
        Ok(Self {
            config,
            len,
            bucket,
        })
    }
}

/// Random draws generated at once.
const DRAWS: usize = 1024;

/// The stochastic rounding of one bucket's part: entry `value` with draw `word`
/// becomes the zigzag symbol of `±level`, where `position = min(|value|·scale, s)`
/// and `level = ⌊position⌋ + [unit(word) < position - ⌊position⌋]`, with
/// `unit(word) = (word >> 11)·2⁻⁵³` ([`gradcodec_sdk::random::unit_interval`]).
///
/// Written in f64 lane arithmetic so it vectorizes (AVX2 where the CPU has it,
/// [`gradcodec_sdk::simd_dispatch!`]) with the scalar rule's exact results:
/// `trunc` is the floor on `[0, s]`; [`unit_interval_lanes`] is
/// `unit_interval`; the levels are small integers, exact in f64; `zigzag`
/// maps `L > 0` to `2L - 1` (positive, -0 included) or `2L` (negative) and 0 to
/// 0 (the input is finite: no NaN to order).
fn round_levels_kernel(part: &[f32], words: &[u64], scale: f64, s: f64, out: &mut [u32]) {
    for ((symbol, &value), &word) in out.iter_mut().zip(part).zip(words) {
        let position = (f64::from(value.abs()) * scale).min(s);
        let floor = position.trunc();
        let up = unit_interval_lanes(word) < position - floor;
        let level = floor + if up { 1.0 } else { 0.0 };
        let odd = if level > 0.0 && value >= 0.0 {
            1.0
        } else {
            0.0
        };
        *symbol = (2.0 * level - odd) as i32 as u32;
    }
}

gradcodec_sdk::simd_dispatch! {
    /// [`round_levels_kernel`], AVX2 where the CPU has it.
    fn round_levels(part: &[f32], words: &[u64], scale: f64, s: f64, out: &mut [u32]) => round_levels_kernel
}

/// Alphabets up to this size (a power of two) dequantize by table lookup.
const SMALL_ALPHABET: usize = 256;

/// The L2 norm of every `bucket` entries (the last bucket may be shorter):
/// each the square root of its squares summed in order in `f64`, rounded to
/// `f32`. Four buckets are summed side by side (the same additions in the same
/// order per bucket, so the same norms), which hides the latency of each
/// bucket's chain of additions.
fn l2_norms(input: &[f32], bucket: usize) -> Vec<f32> {
    let square = |v: f32| f64::from(v) * f64::from(v);
    let mut norms = Vec::with_capacity(input.len().div_ceil(bucket));
    let mut groups = input.chunks_exact(4 * bucket);
    for group in &mut groups {
        let (a, rest) = group.split_at(bucket);
        let (b, rest) = rest.split_at(bucket);
        let (c, d) = rest.split_at(bucket);
        let mut sums = [0.0f64; 4];
        for j in 0..bucket {
            sums[0] += square(a[j]);
            sums[1] += square(b[j]);
            sums[2] += square(c[j]);
            sums[3] += square(d[j]);
        }
        norms.extend(sums.map(|sum| sum.sqrt() as f32));
    }
    for rest in groups.remainder().chunks(bucket) {
        norms.push(rest.iter().map(|v| square(*v)).sum::<f64>().sqrt() as f32);
    }
    norms
}

impl Quantizer for Qsgd {
    fn quantize(&mut self, ctx: &CallContext, input: &[f32], out: &mut Quantized) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        // CHECKS_FINITE: one vectorized pass (the host then skips its own),
        // the scalar search only to name the entry.
        if !gradcodec_sdk::floats::all_finite(input) {
            ensure_finite(input)?;
        }
        begin_streams(out, &self.streams());
        let stream = &mut out.streams[0];
        stream.symbols.reserve(input.len());
        let s = f64::from(self.config.levels);
        let mut rng = call_rng(self.config.seed, ctx);
        let mut draws = vec![0u64; DRAWS.min(self.bucket)];
        let norms = match self.config.norm {
            QsgdNorm::L2 => l2_norms(input, self.bucket),
            QsgdNorm::Max => input
                .chunks(self.bucket)
                .map(|bucket| bucket.iter().fold(0.0f32, |acc, v| acc.max(v.abs())))
                .collect(),
        };
        for (bucket, &norm) in input.chunks(self.bucket).zip(&norms) {
            SideInfoWriter::new(&mut out.side_info).f32(norm);
            if norm == 0.0 {
                stream
                    .symbols
                    .resize(stream.symbols.len() + bucket.len(), 0);
                continue;
            }
            let scale = s / f64::from(norm);
            for part in bucket.chunks(DRAWS) {
                // One draw per entry, in order: the generator's words in bulk
                // (the same stream `next_u64` reads, low word first).
                let words = &mut draws[..part.len()];
                rng.fill_u64(words);
                stream
                    .symbols
                    .extend_filled(part.len(), |out| round_levels(part, words, scale, s, out));
            }
        }
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        self.read_norms(&out.side_info)?;
        describe(out, &self.streams());
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let norms = self.read_norms(&coded.side_info)?;
        ensure_data(coded.streams.len() == 1, || {
            "qsgd expects one stream".into()
        })?;
        let symbols = &coded.streams[0].symbols;
        check_count("qsgd", symbols, self.len)?;
        let levels = f64::from(self.config.levels);
        out.clear();
        out.reserve(symbols.len());
        let alphabet = self.alphabet() as usize;
        if alphabet <= SMALL_ALPHABET {
            // Per bucket, the value of every symbol (the same expression), then
            // a lookup by the masked symbol (no bounds check); the alphabet
            // check rides along the same pass, and any symbol outside it fails
            // the whole call below (what it decoded is discarded).
            let mut values = [0.0f32; SMALL_ALPHABET];
            let mut outside = false;
            for (bucket, norm) in symbols.chunks(self.bucket).zip(&norms) {
                let step = f64::from(*norm) / levels;
                for (symbol, value) in values[..alphabet].iter_mut().enumerate() {
                    *value = (unzigzag(symbol as u32) as f64 * step) as f32;
                }
                out.extend_mapped(bucket, |s| {
                    outside |= s as usize >= alphabet;
                    values[s as usize & (SMALL_ALPHABET - 1)]
                });
            }
            if outside {
                out.clear();
                check_alphabet("qsgd", symbols, self.alphabet())?;
            }
        } else {
            check_alphabet("qsgd", symbols, self.alphabet())?;
            for (bucket, norm) in symbols.chunks(self.bucket).zip(&norms) {
                let step = f64::from(*norm) / levels;
                out.extend_mapped(bucket, |s| (unzigzag(s) as f64 * step) as f32);
            }
        }
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        let norms = self.read_norms(side_info)?;
        let largest = norms.iter().fold(0.0f32, |a, n| a.max(*n));
        Ok(format!(
            "{{\"buckets\":{},\"max_norm\":{largest}}}",
            norms.len()
        ))
    }
}

/// Maps a signed level to a symbol: 0, 1, -1, 2, -2, ... -> 0, 1, 2, 3, 4, ...
pub fn zigzag(level: i64) -> u32 {
    if level > 0 {
        (2 * level - 1) as u32
    } else {
        (-2 * level) as u32
    }
}

/// Inverse of [`zigzag`].
pub fn unzigzag(symbol: u32) -> i64 {
    let symbol = i64::from(symbol);
    if symbol % 2 == 1 {
        (symbol + 1) / 2
    } else {
        -(symbol / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::random::unit_interval;

    #[test]
    fn the_lane_rounding_is_the_scalar_rule() {
        let mut rng = gradcodec_sdk::random::call_rng(5, &CallContext::new(0, 0));
        for s in [1.0f64, 3.0, 16.0, 127.0] {
            let values: Vec<f32> = (0..4099)
                .map(|i| {
                    let u = (rng.uniform01() * 4.0 - 2.0) as f32;
                    match i % 7 {
                        0 => 0.0,
                        1 => -0.0,
                        2 => u * 1e-30,
                        _ => u,
                    }
                })
                .collect();
            let mut words: Vec<u64> = (0..values.len()).map(|_| rng.next_u64()).collect();
            words[0] = 0;
            words[1] = u64::MAX;
            words[2] = 1 << 63;
            for scale in [0.7f64, 5.0, 1e35, f64::INFINITY] {
                let mut fast = vec![0u32; values.len()];
                round_levels(&values, &words, scale, s, &mut fast);
                let mut portable = vec![0u32; values.len()];
                round_levels_kernel(&values, &words, scale, s, &mut portable);
                let scalar: Vec<u32> = values
                    .iter()
                    .zip(&words)
                    .map(|(&value, &word)| {
                        let position = (f64::from(value.abs()) * scale).min(s);
                        let floor = position as i64;
                        let up = unit_interval(word) < position - floor as f64;
                        let level = floor + i64::from(up);
                        zigzag(if value < 0.0 { -level } else { level })
                    })
                    .collect();
                assert_eq!(fast, scalar, "s = {s}, scale = {scale}");
                assert_eq!(portable, scalar, "s = {s}, scale = {scale}");
            }
        }
    }

    #[test]
    fn zigzag_round_trips() {
        for level in -40i64..=40 {
            assert_eq!(unzigzag(zigzag(level)), level);
        }
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(1), 1);
        assert_eq!(zigzag(-1), 2);
    }
    use gradcodec_sdk::{conformance::sample_tensor, parse_config};

    fn make(levels: u32, norm: QsgdNorm, seed: u64, len: u64) -> Qsgd {
        let tensor = TensorSpec::new("t", &[len]);
        let config = QsgdConfig {
            levels,
            norm,
            bucket_size: 0,
            seed,
        };
        Qsgd::new(config, &tensor).unwrap()
    }

    #[test]
    fn bulk_draws_give_the_symbols_of_one_draw_per_entry() {
        // Bucket sizes below, at and above the bulk size, a zero bucket.
        for bucket in [7usize, 512, 1024, 3000] {
            let len = 5_000u64;
            let mut q = make(16, QsgdNorm::L2, 9, len);
            q.bucket = bucket;
            let mut input = sample_tensor(len as usize, 4);
            input[..bucket.min(100)].iter_mut().for_each(|v| *v = 0.0);
            let ctx = CallContext::new(3, 1);
            let mut out = Quantized::default();
            q.quantize(&ctx, &input, &mut out).unwrap();
            // Reference: the plain loop with one `uniform01` per entry.
            let mut rng = call_rng(9, &ctx);
            let mut expected = Vec::new();
            for chunk in input.chunks(bucket) {
                let norm = chunk
                    .iter()
                    .map(|v| f64::from(*v) * f64::from(*v))
                    .sum::<f64>()
                    .sqrt() as f32;
                if norm == 0.0 {
                    expected.extend(std::iter::repeat_n(0, chunk.len()));
                    continue;
                }
                let scale = 16.0 / f64::from(norm);
                for value in chunk {
                    let position = (f64::from(value.abs()) * scale).min(16.0);
                    let floor = position.floor();
                    let up = rng.uniform01() < position - floor;
                    let level = floor as i64 + i64::from(up);
                    expected.push(zigzag(if *value < 0.0 { -level } else { level }));
                }
            }
            assert_eq!(
                out.streams[0].symbols.as_slice(),
                expected.as_slice(),
                "bucket {bucket}"
            );
        }
    }

    #[test]
    fn interleaved_norms_equal_the_plain_sums() {
        let input: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.4 + (i as f32).sin() * 1e-7)
            .collect();
        for bucket in [1, 3, 512, 2048, 9_999, 20_000] {
            let plain: Vec<f32> = input
                .chunks(bucket)
                .map(|b| {
                    b.iter()
                        .map(|v| f64::from(*v) * f64::from(*v))
                        .sum::<f64>()
                        .sqrt() as f32
                })
                .collect();
            let fast = l2_norms(&input, bucket);
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "bucket {bucket}"
            );
        }
    }

    #[test]
    fn unbiased_in_expectation_over_seeds() {
        let input = sample_tensor(64, 5);
        let trials = 20_000u64;
        for norm in [QsgdNorm::L2, QsgdNorm::Max] {
            let mut sum = vec![0.0f64; input.len()];
            for seed in 0..trials {
                let mut q = make(2, norm, seed, 64);
                let ctx = CallContext::new(0, 0);
                let mut coded = Quantized::default();
                q.quantize(&ctx, &input, &mut coded).unwrap();
                let mut out = RVec::new();
                q.dequantize(&ctx, &coded, &mut out).unwrap();
                for (acc, v) in sum.iter_mut().zip(out.iter()) {
                    *acc += f64::from(*v);
                }
            }
            let scale = match norm {
                QsgdNorm::L2 => input
                    .iter()
                    .map(|v| f64::from(*v).powi(2))
                    .sum::<f64>()
                    .sqrt(),
                QsgdNorm::Max => input.iter().fold(0.0f64, |a, v| a.max(f64::from(v.abs()))),
            };
            // Per-entry standard deviation <= (scale/s)/2; allow 5 sigma of the mean.
            let tolerance = 5.0 * scale / 2.0 / 2.0 / (trials as f64).sqrt();
            let mut worst = 0.0f64;
            for (acc, x) in sum.iter().zip(&input) {
                let error = (acc / trials as f64 - f64::from(*x)).abs();
                worst = worst.max(error);
                assert!(
                    error < tolerance,
                    "{norm:?}: mean off by {error} > {tolerance}"
                );
            }
            eprintln!(
                "qsgd {norm:?}: worst |E[Q(x)] - x| = {worst:.2e} (tolerance {tolerance:.2e})"
            );
        }
    }

    #[test]
    fn symbols_stay_in_the_alphabet_and_seed_matters() {
        let input = sample_tensor(1000, 9);
        let ctx = CallContext::new(2, 1);
        let (mut a, mut b) = (Quantized::default(), Quantized::default());
        make(3, QsgdNorm::Max, 1, 1000)
            .quantize(&ctx, &input, &mut a)
            .unwrap();
        make(3, QsgdNorm::Max, 2, 1000)
            .quantize(&ctx, &input, &mut b)
            .unwrap();
        assert!(a.streams[0].symbols.iter().all(|s| *s < 7));
        assert_ne!(a, b);
        // The largest entry always lands on the top level with the max norm.
        let top = input
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
            .unwrap()
            .0;
        assert_eq!(unzigzag(a.streams[0].symbols[top]).abs(), 3);
    }

    #[test]
    fn buckets_carry_their_own_norms_and_lower_the_error() {
        let input = sample_tensor(10_000, 17);
        let tensor = TensorSpec::new("t", &[100, 100]);
        let ctx = CallContext::new(0, 0);
        let mut errors = Vec::new();
        for bucket_size in [0u64, 512, 64] {
            let config = QsgdConfig {
                levels: 4,
                norm: QsgdNorm::L2,
                bucket_size,
                seed: 1,
            };
            let mut q = Qsgd::new(config, &tensor).unwrap();
            let mut coded = Quantized::default();
            q.quantize(&ctx, &input, &mut coded).unwrap();
            let buckets = if bucket_size == 0 {
                1
            } else {
                10_000usize.div_ceil(bucket_size as usize)
            };
            assert_eq!(coded.side_info.len(), 4 * buckets);
            let mut out = RVec::new();
            q.dequantize(&ctx, &coded, &mut out).unwrap();
            let error: f64 = input
                .iter()
                .zip(out.iter())
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum::<f64>()
                / input.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
            errors.push(error);
        }
        eprintln!("qsgd s=4 relative MSE for buckets (whole, 512, 64): {errors:?}");
        assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
    }

    #[test]
    fn zero_levels_is_an_error_naming_the_field() {
        let error = parse_config::<QsgdConfig>(r#"{"levels": 0}"#).unwrap_err();
        assert!(error.message.contains("levels"), "{error}");
    }
}
