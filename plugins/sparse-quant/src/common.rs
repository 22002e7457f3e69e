//! Helpers shared by the quantizers of this crate: input checks, side-info
//! reading and writing, keep counts, top-k selection, sparse streams and the
//! value formats of sparse quantizers.

use gradcodec_sdk::buffers::RVecExt;
use gradcodec_sdk::{
    corrupt, ensure, ensure_data, invalid_input, unsupported, JsonSchema, RVec, SdkResult,
    StreamRole, SymbolStream, TensorSpec,
};
use half::{bf16, f16};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Rejects non-finite input.
pub fn check_finite(input: &[f32]) -> SdkResult<()> {
    match input.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(invalid_input(format!(
            "input entry {index} is not finite ({})",
            input[index]
        ))),
    }
}

/// The tensor's length, if its positions fit in u32 symbols.
pub fn check_indexable(tensor: &TensorSpec) -> SdkResult<u64> {
    let len = tensor.len();
    if len > 1 << 32 {
        return Err(unsupported(format!(
            "tensor `{}` has {len} entries; positions are limited to 2^32",
            tensor.name
        )));
    }
    Ok(len)
}

/// Checks `sparsity` in (0, 1), naming the field.
pub fn validate_sparsity(sparsity: f64) -> Result<(), String> {
    ensure(
        sparsity > 0.0 && sparsity < 1.0,
        "sparsity",
        format!("must be in (0, 1), got {sparsity}"),
    )
}

/// Entries kept at `sparsity` out of `n`: `⌊n·(1 - sparsity)⌋` (computed with a
/// 1e-9 slack so that e.g. 100·(1 - 0.99) counts as 1), at least `min_keep`, at
/// most `n`.
pub fn keep_count(n: u64, sparsity: f64, min_keep: u64) -> u64 {
    let exact = (n as f64 * (1.0 - sparsity) + 1e-9).floor() as u64;
    exact.max(min_keep).min(n)
}

/// Indices of the `k` entries of largest magnitude (ties: lower index first),
/// in increasing order.
///
/// The order is that of `|x|` under `total_cmp`, which for the non-negative
/// `|x|` is the order of its bit pattern as a `u32`. Instead of a selection
/// over all entries: a histogram of the top 12 bits of those patterns finds
/// the bucket holding the k-th largest, a selection among that bucket's
/// entries finds the exact cut (pattern, index), and one pass keeps every entry
/// above it: three linear passes, no data-dependent swaps.
pub fn top_k_indices(input: &[f32], k: usize) -> Vec<u32> {
    const BUCKET_SHIFT: u32 = 20;
    let n = input.len();
    if k == 0 {
        return Vec::new();
    }
    if k >= n {
        return (0..n as u32).collect();
    }
    let key = |x: f32| x.abs().to_bits();
    let mut histogram = vec![0u32; 1 << (32 - BUCKET_SHIFT)];
    for x in input {
        histogram[(key(*x) >> BUCKET_SHIFT) as usize] += 1;
    }
    // The bucket of the k-th largest, and how many to take from it.
    let (mut bucket, mut above) = (histogram.len() - 1, 0usize);
    while above + (histogram[bucket] as usize) < k {
        above += histogram[bucket] as usize;
        bucket -= 1;
    }
    let wanted = k - above;
    let mut candidates: Vec<(u32, u32)> = input
        .iter()
        .enumerate()
        .filter(|(_, x)| (key(**x) >> BUCKET_SHIFT) as usize == bucket)
        .map(|(i, x)| (key(*x), i as u32))
        .collect();
    // Largest pattern first, then lower index: the wanted-th is the cut.
    let (_, cut, _) =
        candidates.select_nth_unstable_by(wanted - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let (cut_key, cut_index) = *cut;
    let mut kept = Vec::with_capacity(k);
    kept.extend(
        input
            .iter()
            .enumerate()
            .filter(|(i, x)| {
                let key = key(**x);
                key > cut_key || (key == cut_key && (*i as u32) <= cut_index)
            })
            .map(|(i, _)| i as u32),
    );
    kept
}

/// The selection by sorting (reference for [`top_k_indices`]).
#[cfg(test)]
fn top_k_indices_by_sorting(input: &[f32], k: usize) -> Vec<u32> {
    let mut indices: Vec<u32> = (0..input.len() as u32).collect();
    indices.sort_by(|a, b| {
        input[*b as usize]
            .abs()
            .total_cmp(&input[*a as usize].abs())
            .then(a.cmp(b))
    });
    indices.truncate(k);
    indices.sort_unstable();
    indices
}

/// Checks a positions stream: strictly increasing, every entry below `n`.
pub fn check_positions(symbols: &[u32], n: u64) -> SdkResult<()> {
    let mut previous: Option<u32> = None;
    for &position in symbols {
        ensure_data(u64::from(position) < n, || {
            format!("position {position} outside the tensor of {n} entries")
        })?;
        if let Some(before) = previous {
            ensure_data(position > before, || {
                format!("positions not strictly increasing ({before} then {position})")
            })?;
        }
        previous = Some(position);
    }
    Ok(())
}

/// Checks that a stream holds `expected` symbols.
pub fn check_count(what: &str, symbols: &[u32], expected: u64) -> SdkResult<()> {
    ensure_data(symbols.len() as u64 == expected, || {
        format!(
            "{what} stream has {} symbols, expected {expected}",
            symbols.len()
        )
    })
}

/// Checks that every symbol is below `alphabet`.
pub fn check_alphabet(what: &str, symbols: &[u32], alphabet: u64) -> SdkResult<()> {
    // The maximum first (vectorizes), the search only for the message.
    match symbols.iter().copied().max() {
        Some(largest) if u64::from(largest) >= alphabet => Err(corrupt(format!(
            "{what} symbol {largest} outside 0..{alphabet}"
        ))),
        _ => Ok(()),
    }
}

/// Little-endian side-info writer helpers.
pub fn put_f32(out: &mut RVec<u8>, value: f32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends a little-endian u32.
pub fn put_u32(out: &mut RVec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Reads side info front to back; every read checks the length.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take4(&mut self, what: &str) -> SdkResult<[u8; 4]> {
        ensure_data(self.bytes.len() >= 4, || {
            format!("side info too short for {what}")
        })?;
        let (head, rest) = self.bytes.split_at(4);
        self.bytes = rest;
        Ok([head[0], head[1], head[2], head[3]])
    }

    /// A u32.
    pub fn u32(&mut self, what: &str) -> SdkResult<u32> {
        Ok(u32::from_le_bytes(self.take4(what)?))
    }

    /// A finite f32 (non-negative when `non_negative`).
    pub fn f32(&mut self, what: &str, non_negative: bool) -> SdkResult<f32> {
        let value = f32::from_le_bytes(self.take4(what)?);
        ensure_data(value.is_finite() && (!non_negative || value >= 0.0), || {
            format!("invalid {what} {value} in side info")
        })?;
        Ok(value)
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> SdkResult<()> {
        ensure_data(self.bytes.is_empty(), || {
            format!("{} unexpected trailing side-info bytes", self.bytes.len())
        })
    }
}

/// How sparse quantizers send the values they keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// The f32 bits, exact (a `raw-words` stream, alphabet 2^32).
    F32,
    /// IEEE half precision (a `values` stream, alphabet 65536; saturates at ±65504).
    F16,
    /// bfloat16 (a `values` stream, alphabet 65536).
    Bf16,
    /// `value_bits`-bit uniform levels over [-max, max] of the kept values, rounded
    /// to nearest; the scale is one f32 of side info.
    Uniform,
}

/// Checks `value_bits` for the uniform value format.
pub fn validate_value_bits(bits: u32) -> Result<(), String> {
    ensure(
        (1..=16).contains(&bits),
        "value_bits",
        format!("must be in 1..=16, got {bits}"),
    )
}

/// Encoder and decoder of kept values in one [`ValueFormat`].
#[derive(Clone, Copy, Debug)]
pub struct ValueCodec {
    /// The format.
    pub format: ValueFormat,
    /// Bits of the uniform format.
    pub bits: u32,
}

fn f16_bits(value: f32) -> u32 {
    let limit = f16::MAX.to_f32();
    u32::from(f16::from_f32(value.clamp(-limit, limit)).to_bits())
}

fn bf16_bits(value: f32) -> u32 {
    let limit = bf16::MAX.to_f32();
    u32::from(bf16::from_f32(value.clamp(-limit, limit)).to_bits())
}

/// Encodes `value` as f16 bits, saturating at ±65504 (used by the cast quantizers).
pub fn to_f16_bits(value: f32) -> u32 {
    f16_bits(value)
}

/// Encodes `value` as bf16 bits, saturating at the largest finite bf16.
pub fn to_bf16_bits(value: f32) -> u32 {
    bf16_bits(value)
}

/// Decodes f16 bits; rejects symbols beyond 16 bits and non-finite patterns.
pub fn from_f16_bits(symbol: u32) -> SdkResult<f32> {
    ensure_data(symbol < 1 << 16, || {
        format!("f16 symbol {symbol} out of range")
    })?;
    let value = f16::from_bits(symbol as u16).to_f32();
    ensure_data(value.is_finite(), || {
        format!("f16 symbol {symbol:#06x} is not a finite value")
    })?;
    Ok(value)
}

/// Decodes bf16 bits; rejects symbols beyond 16 bits and non-finite patterns.
pub fn from_bf16_bits(symbol: u32) -> SdkResult<f32> {
    ensure_data(symbol < 1 << 16, || {
        format!("bf16 symbol {symbol} out of range")
    })?;
    let value = bf16::from_bits(symbol as u16).to_f32();
    ensure_data(value.is_finite(), || {
        format!("bf16 symbol {symbol:#06x} is not a finite value")
    })?;
    Ok(value)
}

impl ValueCodec {
    /// Levels of the uniform format.
    fn levels(&self) -> u32 {
        1u32 << self.bits
    }

    /// The (empty) descriptor of the values stream.
    pub fn stream(&self) -> SymbolStream {
        match self.format {
            ValueFormat::F32 => SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32),
            ValueFormat::F16 | ValueFormat::Bf16 => SymbolStream::new(StreamRole::VALUES, 1 << 16),
            ValueFormat::Uniform => SymbolStream::new(StreamRole::VALUES, u64::from(self.levels())),
        }
    }

    /// Appends the side info of `values` to `side_info` and returns the stream.
    pub fn encode(&self, values: &[f32], side_info: &mut RVec<u8>) -> SymbolStream {
        let mut stream = self.stream();
        stream.symbols.reserve(values.len());
        match self.format {
            ValueFormat::F32 => stream.symbols.extend_mapped(values, |v| v.to_bits()),
            ValueFormat::F16 => stream.symbols.extend_mapped(values, f16_bits),
            ValueFormat::Bf16 => stream.symbols.extend_mapped(values, bf16_bits),
            ValueFormat::Uniform => {
                let scale = values.iter().fold(0.0f32, |acc, v| acc.max(v.abs()));
                put_f32(side_info, scale);
                let top = (self.levels() - 1) as f32;
                if scale == 0.0 || top == 0.0 {
                    stream
                        .symbols
                        .resize(stream.symbols.len() + values.len(), 0);
                } else {
                    let inverse_step = top / (2.0 * scale);
                    stream.symbols.extend_mapped(values, |v| {
                        ((v + scale) * inverse_step).clamp(0.0, top).round() as u32
                    });
                }
            }
        }
        stream
    }

    /// Reads this format's side info (the uniform scale, or nothing).
    pub fn read_side_info(&self, reader: &mut Reader<'_>) -> SdkResult<Option<f32>> {
        match self.format {
            ValueFormat::Uniform => Ok(Some(reader.f32("value scale", true)?)),
            _ => Ok(None),
        }
    }

    /// Decodes the values of `symbols` (side info already read into `scale`),
    /// rejecting out-of-range symbols and non-finite values.
    pub fn decode(&self, scale: Option<f32>, symbols: &[u32]) -> SdkResult<Vec<f32>> {
        match self.format {
            ValueFormat::F32 => symbols
                .iter()
                .map(|bits| {
                    let value = f32::from_bits(*bits);
                    ensure_data(value.is_finite(), || {
                        format!("value word {bits:#010x} is not a finite f32")
                    })?;
                    Ok(value)
                })
                .collect(),
            ValueFormat::F16 => symbols.iter().map(|s| from_f16_bits(*s)).collect(),
            ValueFormat::Bf16 => symbols.iter().map(|s| from_bf16_bits(*s)).collect(),
            ValueFormat::Uniform => {
                let scale = scale.unwrap_or(0.0);
                let levels = self.levels();
                check_alphabet("value", symbols, u64::from(levels))?;
                let step = if levels > 1 {
                    2.0 * scale / (levels - 1) as f32
                } else {
                    0.0
                };
                Ok(symbols
                    .iter()
                    .map(|s| {
                        if scale == 0.0 {
                            0.0
                        } else {
                            *s as f32 * step - scale
                        }
                    })
                    .collect())
            }
        }
    }
}

/// Writes a dense tensor of `n` entries with `values` at `positions` into `out`.
pub fn scatter(n: usize, positions: &[u32], values: &[f32], out: &mut RVec<f32>) {
    out.clear();
    out.resize(n, 0.0);
    for (position, value) in positions.iter().zip(values) {
        out[*position as usize] = *value;
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

// Randomness. The bitstreams of randomized stages depend on these draws, so they
// are built here from the generator's raw 64-bit outputs (ChaCha8, stable by
// specification) rather than from `rand`'s distributions, whose algorithms may
// change between versions.

/// A uniform draw in [0, 1) with 53 random bits.
pub fn uniform01(rng: &mut impl RngCore) -> f64 {
    unit_interval(rng.next_u64())
}

/// The draw in [0, 1) that [`uniform01`] makes of the 64-bit output `word`.
#[inline]
pub fn unit_interval(word: u64) -> f64 {
    (word >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `0..bound` (bound > 0), unbiased (Lemire's method).
pub fn uniform_below(rng: &mut impl RngCore, bound: u64) -> u64 {
    let mut product = u128::from(rng.next_u64()) * u128::from(bound);
    if (product as u64) < bound {
        let threshold = bound.wrapping_neg() % bound;
        while (product as u64) < threshold {
            product = u128::from(rng.next_u64()) * u128::from(bound);
        }
    }
    (product >> 64) as u64
}

/// A standard normal draw (Box-Muller).
pub fn normal(rng: &mut impl RngCore) -> f64 {
    let u1 = uniform01(rng);
    let u2 = uniform01(rng);
    let radius = (-2.0 * (1.0 - u1).ln()).sqrt();
    radius * (std::f64::consts::TAU * u2).cos()
}

/// `k` distinct indices of `0..n`, uniformly at random (Floyd's algorithm), in
/// increasing order.
pub fn sample_indices(rng: &mut impl RngCore, n: u64, k: u64) -> Vec<u32> {
    let k = k.min(n);
    let mut chosen = vec![0u64; n.div_ceil(64) as usize];
    let set = |index: u64, chosen: &mut Vec<u64>| -> bool {
        let (word, bit) = ((index / 64) as usize, index % 64);
        let fresh = chosen[word] & (1 << bit) == 0;
        chosen[word] |= 1 << bit;
        fresh
    };
    for j in n - k..n {
        let candidate = uniform_below(rng, j + 1);
        if !set(candidate, &mut chosen) {
            set(j, &mut chosen);
        }
    }
    let mut indices = Vec::with_capacity(k as usize);
    for (word_index, word) in chosen.iter().enumerate() {
        let mut bits = *word;
        while bits != 0 {
            let bit = bits.trailing_zeros();
            indices.push((word_index as u64 * 64 + u64::from(bit)) as u32);
            bits &= bits - 1;
        }
    }
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips() {
        for level in -40i64..=40 {
            assert_eq!(unzigzag(zigzag(level)), level);
        }
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(1), 1);
        assert_eq!(zigzag(-1), 2);
    }

    #[test]
    fn draws_are_uniform_and_samples_distinct() {
        let mut rng = gradcodec_sdk::random::call_rng(5, &gradcodec_sdk::CallContext::new(0, 0));
        let mut hits = [0u32; 10];
        for _ in 0..100_000 {
            hits[uniform_below(&mut rng, 10) as usize] += 1;
        }
        assert!(hits.iter().all(|h| (9_500..10_500).contains(h)), "{hits:?}");
        let mean = (0..100_000).map(|_| uniform01(&mut rng)).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.005);
        for (n, k) in [(10u64, 10u64), (1000, 7), (1000, 993), (5, 0)] {
            let indices = sample_indices(&mut rng, n, k);
            assert_eq!(indices.len() as u64, k);
            assert!(indices.windows(2).all(|w| w[0] < w[1]));
            assert!(indices.iter().all(|i| u64::from(*i) < n));
        }
        // Every index equally likely: 4 of 8, 40000 times.
        let mut counts = [0u32; 8];
        for _ in 0..40_000 {
            for i in sample_indices(&mut rng, 8, 4) {
                counts[i as usize] += 1;
            }
        }
        assert!(
            counts.iter().all(|c| (19_400..20_600).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn keep_counts_and_top_k() {
        assert_eq!(keep_count(100, 0.99, 0), 1);
        assert_eq!(keep_count(1000, 0.999, 0), 1);
        assert_eq!(keep_count(10, 0.99, 0), 0);
        assert_eq!(keep_count(10, 0.99, 1), 1);
        assert_eq!(keep_count(1_000_000, 0.995, 1), 5000);
        let input = [0.1, -3.0, 2.0, 0.0, -2.0, 5.0];
        assert_eq!(top_k_indices(&input, 3), vec![1, 2, 5]);
        // Tie between 2.0 and -2.0: the lower index wins.
        assert_eq!(top_k_indices(&input, 2), vec![1, 5]);
        assert_eq!(top_k_indices(&input, 6), vec![0, 1, 2, 3, 4, 5]);
        assert!(top_k_indices(&input, 0).is_empty());
        // Against the sorting reference: ties, zeros of both signs, many
        // magnitudes in one bucket, huge and tiny values.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for round in 0..40 {
            let n = 1 + rng.random_range(0..5_000usize);
            let input: Vec<f32> = (0..n)
                .map(|_| match round % 4 {
                    0 => rng.random_range(-1.0f32..1.0),
                    1 => f32::from(rng.random_range(-3i8..4)) * 0.25,
                    2 => 1.0 + rng.random_range(0.0f32..1e-3),
                    _ => rng.random_range(-1.0f32..1.0) * rng.random_range(-40.0f32..40.0).exp2(),
                })
                .chain([0.0, -0.0])
                .collect();
            for k in [
                1,
                2,
                input.len() / 100 + 1,
                input.len() / 2,
                input.len() - 1,
                input.len(),
            ] {
                assert_eq!(
                    top_k_indices(&input, k),
                    top_k_indices_by_sorting(&input, k),
                    "round {round}, n {}, k {k}",
                    input.len()
                );
            }
        }
    }
}
