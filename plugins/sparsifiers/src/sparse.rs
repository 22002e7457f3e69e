//! What the sparsifiers share: keep counts, top-k selection, the scatter of
//! kept values, and the value formats kept values are sent in. (Side info,
//! stream checks and randomness come from the SDK.)

use gradcodec_sdk::floats::{from_bf16_bits, from_f16_bits, to_bf16_bits, to_f16_bits};
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::side_info::{SideInfoReader, SideInfoWriter};
use gradcodec_sdk::streams::{check_alphabet, check_positions, received_streams, StreamShape};
use serde::{Deserialize, Serialize};

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

impl ValueCodec {
    /// Levels of the uniform format.
    fn levels(&self) -> u32 {
        1u32 << self.bits
    }

    /// The shape of the values stream.
    pub fn shape(&self) -> StreamShape {
        match self.format {
            ValueFormat::F32 => StreamShape::raw_words(),
            ValueFormat::F16 | ValueFormat::Bf16 => StreamShape::half_words(),
            ValueFormat::Uniform => StreamShape::values(u64::from(self.levels())),
        }
    }

    /// The (empty) descriptor of the values stream.
    pub fn stream(&self) -> SymbolStream {
        self.shape().empty()
    }

    /// Appends the side info of `values` to `side_info` and returns the stream.
    pub fn encode(&self, values: &[f32], side_info: &mut RVec<u8>) -> SymbolStream {
        let mut stream = self.stream();
        stream.symbols.reserve(values.len());
        match self.format {
            ValueFormat::F32 => stream.symbols.extend_mapped(values, |v| v.to_bits()),
            ValueFormat::F16 => stream.symbols.extend_mapped(values, to_f16_bits),
            ValueFormat::Bf16 => stream.symbols.extend_mapped(values, to_bf16_bits),
            ValueFormat::Uniform => {
                let scale = values.iter().fold(0.0f32, |acc, v| acc.max(v.abs()));
                SideInfoWriter::new(side_info).f32(scale);
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

    /// Encoder side: appends the positions stream and the stream of `values`
    /// (their side info, if any, to `out.side_info`).
    pub fn push_sparse(&self, out: &mut Quantized, len: u64, positions: &[u32], values: &[f32]) {
        let mut stream = StreamShape::positions(len).empty();
        stream.symbols.extend_copied(positions);
        out.streams.push(stream);
        let values = self.encode(values, &mut out.side_info);
        out.streams.push(values);
    }

    /// Reads the rest of the side info: this format's part, then nothing more.
    pub fn finish_side_info(&self, mut reader: SideInfoReader<'_>) -> SdkResult<Option<f32>> {
        let scale = self.read_side_info(&mut reader)?;
        reader.finish()?;
        Ok(scale)
    }

    /// Reads this format's side info (the uniform scale, or nothing).
    pub fn read_side_info(&self, reader: &mut SideInfoReader<'_>) -> SdkResult<Option<f32>> {
        match self.format {
            ValueFormat::Uniform => Ok(Some(reader.non_negative_f32("value scale")?)),
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
                let values: Vec<f32> = symbols
                    .iter()
                    .map(|s| {
                        if scale == 0.0 {
                            0.0
                        } else {
                            *s as f32 * step - scale
                        }
                    })
                    .collect();
                // A scale near f32::MAX overflows the step: refused here, so
                // the decoded values are always finite (topk is CHECKS_FINITE).
                ensure_data(gradcodec_sdk::floats::all_finite(&values), || {
                    format!("value scale {scale} overflows the uniform levels")
                })?;
                Ok(values)
            }
        }
    }
}

/// The two streams of a sparsifier that sends positions: the positions into a
/// tensor of `len` entries, then the kept values as `values`.
pub fn positions_and(len: u64, values: StreamShape) -> [StreamShape; 2] {
    [StreamShape::positions(len), values]
}

/// Decoder side: the positions and value symbols of `count` kept entries,
/// checked (counts, alphabets, positions strictly increasing).
pub fn received_sparse<'a>(
    stage: &str,
    coded: &'a Quantized,
    shapes: &[StreamShape; 2],
    count: u64,
) -> SdkResult<(&'a [u32], &'a [u32])> {
    let [positions, values] = received_streams(stage, coded, shapes, [count, count])?;
    check_positions(positions, shapes[0].alphabet_size)?;
    Ok((positions, values))
}

/// The side-info summary of a sparsifier: the kept count under `count_key`,
/// and the value scale of the uniform format.
pub fn kept_summary(count_key: &str, count: u64, scale: Option<f32>) -> String {
    match scale {
        Some(scale) => format!("{{\"{count_key}\":{count},\"value_scale\":{scale}}}"),
        None => format!("{{\"{count_key}\":{count}}}"),
    }
}

/// `input`'s entries at `indices`, times `factor`.
pub fn gather(input: &[f32], indices: &[u32], factor: f32) -> Vec<f32> {
    indices
        .iter()
        .map(|i| input[*i as usize] * factor)
        .collect()
}

/// Writes a dense tensor of `n` entries with `values` at `positions` into `out`.
pub fn scatter(n: usize, positions: &[u32], values: &[f32], out: &mut RVec<f32>) {
    out.clear();
    out.resize(n, 0.0);
    for (position, value) in positions.iter().zip(values) {
        out[*position as usize] = *value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_values_are_finite_or_refused() {
        let uniform = ValueCodec {
            format: ValueFormat::Uniform,
            bits: 4,
        };
        let values = uniform.decode(Some(1.5), &[0, 7, 15]).unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
        // 2 * scale overflows: refused, not decoded to infinities.
        let error = uniform.decode(Some(f32::MAX), &[0, 15]).unwrap_err();
        assert!(error.message.contains("overflows"), "{error}");
        let raw = ValueCodec {
            format: ValueFormat::F32,
            bits: 0,
        };
        assert!(raw.decode(None, &[f32::NAN.to_bits()]).is_err());
        assert!(raw.decode(None, &[f32::INFINITY.to_bits()]).is_err());
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
