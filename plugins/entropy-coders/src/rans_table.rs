//! The frequency table of the `rans` stage: quantizing a histogram to
//! frequencies that sum to `2^precision`, choosing the precision, and the
//! compact bit-packed header that carries the table (`model: empirical`); and
//! the table derived from a model pmf, never sent (`model: parametric`,
//! [`from_model`]: every symbol of the alphabet >= 1, f64 normalization to
//! integer weights, then integer-only quantization, so both ends and every
//! platform build the same table).
//!
//! **Quantization.** Every used symbol gets a frequency >= 1 and the frequencies
//! sum to `M = 2^precision`. Starting from `max(1, ⌊c·M/N⌋)`, units are added to
//! (or taken from) the symbol whose coded size gains (loses) the most (least),
//! then single units are moved between symbols while that shrinks the stream.
//! Since `Σ c_i·log₂ f_i` is separable and concave, the result minimizes the
//! payload bits `Σ c_i·(precision - log₂ f_i)` over all integer frequency vectors
//! (up to floating-point ties, broken by symbol index; deterministic).
//!
//! **Layout** (LSB-first bits, [`crate::bits`]):
//!
//! ```text
//! γ(used)                                 used >= 1 distinct symbols
//! if used >= 2:
//!   3 bits  precision - 10                0..=5
//!   4 bits  first_order                   <= precision
//!   2 bits  lag                           0..=3
//! for each used symbol s_k, increasing:
//!   γ(s_k - s_{k-1})                      s_{-1} = -1, so this is the gap + 1
//!   if used >= 2 and k < used - 1:
//!     ExpGolomb_{order_k}(f_k - 1)        order_0 = first_order,
//!                                         order_{k+1} = min(precision,
//!                                            max(0, ⌊log₂ f_k⌋ - lag))
//! zero padding to a byte
//! ```
//!
//! The last frequency is implied (`M` minus the others). The encoder picks
//! `first_order` and `lag` to minimize the table's bits.

use crate::bits::{gamma_len, BitReader, BitSink, BitSource, BitWriter};
use crate::common::{ceil_log2, frequency_bits, read_table_entries, write_table_entries};
use gradcodec_sdk::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Smallest probability precision in bits.
pub const MIN_PRECISION: u32 = 10;
/// Largest probability precision in bits.
pub const MAX_PRECISION: u32 = 15;

/// A static model: the used symbols (increasing) with their frequencies, which
/// sum to `2^precision` (one symbol: a frequency of `2^precision`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Probability bits.
    pub precision: u32,
    /// `(symbol, frequency)` by increasing symbol; frequencies >= 1.
    pub entries: Vec<(u32, u32)>,
}

impl Table {
    /// The largest frequency.
    pub fn max_frequency(&self) -> u32 {
        self.entries.iter().map(|(_, f)| *f).max().unwrap_or(0)
    }
}

/// An f64 key ordered by `total_cmp`, ties broken by index (smaller first).
#[derive(Clone, Copy, PartialEq)]
struct Key {
    value: f64,
    index: usize,
}

impl Eq for Key {}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.value
            .total_cmp(&other.value)
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bits saved by raising a frequency from `f` to `f + 1` for `count` symbols.
fn gain(count: u64, f: u64) -> f64 {
    count as f64 * ((f + 1) as f64 / f as f64).log2()
}

/// Bits lost by lowering a frequency from `f` (> 1) to `f - 1`.
fn loss(count: u64, f: u64) -> f64 {
    if f <= 1 {
        f64::INFINITY
    } else {
        count as f64 * (f as f64 / (f - 1) as f64).log2()
    }
}

/// Quantizes `counts` (all > 0) to frequencies >= 1 summing to `target`
/// (>= counts.len()), minimizing the payload bits (see the module doc).
pub fn quantize(counts: &[u64], target: u64) -> Vec<u32> {
    let total: u64 = counts.iter().sum();
    if counts.is_empty() || total == 0 {
        return Vec::new();
    }
    let mut f: Vec<u64> = counts
        .iter()
        .map(|c| ((u128::from(*c) * u128::from(target) / u128::from(total)) as u64).max(1))
        .collect();
    let sum: u64 = f.iter().sum();
    if sum < target {
        let mut heap: BinaryHeap<Key> = (0..f.len())
            .map(|i| Key {
                value: gain(counts[i], f[i]),
                index: i,
            })
            .collect();
        for _ in sum..target {
            let Some(Key { index, .. }) = heap.pop() else {
                break;
            };
            f[index] += 1;
            heap.push(Key {
                value: gain(counts[index], f[index]),
                index,
            });
        }
    } else if sum > target {
        // A min-heap of losses (negated).
        let mut heap: BinaryHeap<Key> = (0..f.len())
            .filter(|i| f[*i] > 1)
            .map(|i| Key {
                value: -loss(counts[i], f[i]),
                index: i,
            })
            .collect();
        for _ in target..sum {
            let Some(Key { index, .. }) = heap.pop() else {
                break;
            };
            f[index] -= 1;
            if f[index] > 1 {
                heap.push(Key {
                    value: -loss(counts[index], f[index]),
                    index,
                });
            }
        }
    }
    // Move single units while that helps (pairwise exchange optimality). Each
    // move strictly lowers the cost, so this ends; the cap is a safeguard.
    for _ in 0..4 * f.len() + 16 {
        let best_gain = (0..f.len()).map(|i| Key {
            value: gain(counts[i], f[i]),
            index: i,
        });
        let Some(up) = best_gain.max() else { break };
        let least_loss = (0..f.len()).filter(|j| *j != up.index).map(|j| Key {
            value: -loss(counts[j], f[j]),
            index: j,
        });
        let Some(down) = least_loss.max() else { break };
        let lost = -down.value;
        if up.value <= lost + 1e-9 * lost.max(1.0) {
            break;
        }
        f[up.index] += 1;
        f[down.index] -= 1;
    }
    f.into_iter().map(|v| v as u32).collect()
}

/// The cheapest `(first_order, lag, bits)` for the listed frequencies.
fn frequency_code(listed: &[u32], precision: u32) -> (u32, u32, u64) {
    let mut best = (0, 0, u64::MAX);
    for first_order in 0..=precision {
        for lag in 0..4 {
            let bits = frequency_bits(listed, first_order, lag, precision);
            if bits < best.2 {
                best = (first_order, lag, bits);
            }
        }
    }
    best
}

/// Bits of the table header of `entries` (before padding).
fn table_bits(entries: &[(u32, u32)], precision: u32) -> u64 {
    let mut bits = gamma_len(entries.len() as u64);
    let mut next = 0u32;
    for (symbol, _) in entries {
        bits += gamma_len(u64::from(symbol - next) + 1);
        next = symbol + 1;
    }
    if entries.len() >= 2 {
        let listed: Vec<u32> = entries[..entries.len() - 1]
            .iter()
            .map(|(_, f)| *f)
            .collect();
        bits += 3 + 4 + 2 + frequency_code(&listed, precision).2;
    }
    bits
}

/// Largest precision whose decoding table (6 bytes a slot) fits the L1 cache.
pub const CACHE_PRECISION: u32 = 12;

/// Relative size a precision above [`CACHE_PRECISION`] must save to be chosen
/// automatically.
pub const AUTO_TOLERANCE: f64 = 1.0 / 1024.0;

/// Builds the table for `histogram` (counts per symbol, at least one nonzero).
///
/// With `precision` given, that precision is used (raised to `⌈log₂ used⌉` if
/// the used symbols do not fit); with `None`, the precision in 10..=12 that
/// minimizes payload plus table bits, or the best in 13..=15 if that saves
/// more than [`AUTO_TOLERANCE`] (about 0.1%) more: decoding tables above 2^12
/// entries leave the L1 cache and decode measurably slower (ties: the
/// smaller precision).
pub fn plan(histogram: &[u64], precision: Option<u32>) -> Table {
    let used: Vec<(u32, u64)> = histogram
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(s, c)| (s as u32, *c))
        .collect();
    if used.len() <= 1 {
        return Table {
            precision: MIN_PRECISION,
            entries: used.iter().map(|(s, _)| (*s, 1 << MIN_PRECISION)).collect(),
        };
    }
    let counts: Vec<u64> = used.iter().map(|(_, c)| *c).collect();
    let lowest = ceil_log2(used.len() as u64).clamp(MIN_PRECISION, MAX_PRECISION);
    let candidates = match precision {
        Some(p) => {
            let p = p.max(lowest).min(MAX_PRECISION);
            p..=p
        }
        None => lowest..=MAX_PRECISION,
    };
    let mut options: Vec<(f64, Table)> = Vec::new();
    for p in candidates {
        let frequencies = quantize(&counts, 1 << p);
        let entries: Vec<(u32, u32)> = used
            .iter()
            .zip(&frequencies)
            .map(|((s, _), f)| (*s, *f))
            .collect();
        let payload: f64 = counts
            .iter()
            .zip(&frequencies)
            .map(|(c, f)| *c as f64 * (f64::from(p) - f64::from(*f).log2()))
            .sum();
        let cost = payload + table_bits(&entries, p) as f64;
        options.push((
            cost,
            Table {
                precision: p,
                entries,
            },
        ));
    }
    // The best precision up to 12 (decoding tables of at most 2^12 entries
    // stay in the L1 cache), unless a higher one saves more than the tolerance.
    let cheapest = |range: std::ops::RangeInclusive<u32>| {
        options
            .iter()
            .filter(|(_, table)| range.contains(&table.precision))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .cloned()
    };
    let low = cheapest(MIN_PRECISION..=CACHE_PRECISION);
    let high = cheapest(CACHE_PRECISION + 1..=MAX_PRECISION);
    let chosen = match (low, high) {
        (Some(low), Some(high)) if high.0 < low.0 * (1.0 - AUTO_TOLERANCE) => Some(high),
        (Some(low), _) => Some(low),
        (None, high) => high,
    };
    chosen.map(|(_, table)| table).unwrap_or(Table {
        precision: MIN_PRECISION,
        entries: Vec::new(),
    })
}

/// Writes `table` (at least one entry) and pads to a byte.
pub fn write(table: &Table, writer: &mut BitWriter) {
    let used = table.entries.len();
    writer.put_gamma(used as u64);
    let mut order = 0;
    let mut lag = 0;
    if used >= 2 {
        let listed: Vec<u32> = table.entries[..used - 1].iter().map(|(_, f)| *f).collect();
        let (first_order, best_lag, _) = frequency_code(&listed, table.precision);
        order = first_order;
        lag = best_lag;
        writer.write(u64::from(table.precision - MIN_PRECISION), 3);
        writer.write(u64::from(first_order), 4);
        writer.write(u64::from(lag), 2);
    }
    write_table_entries(writer, &table.entries, order, lag, table.precision);
}

/// Reads a table for an alphabet of `alphabet` symbols, checking that it
/// describes a distribution, and skips the zero padding (which must be zero).
pub fn read(reader: &mut BitReader<'_>, alphabet: u64) -> SdkResult<Table> {
    let used = reader.get_gamma(32)?;
    ensure_data(used <= alphabet, || {
        format!("rans table lists {used} symbols of an alphabet of {alphabet}")
    })?;
    let (mut precision, mut order, mut lag) = (MIN_PRECISION, 0, 0);
    if used >= 2 {
        precision = reader.read(3)? as u32 + MIN_PRECISION;
        order = reader.read(4)? as u32;
        lag = reader.read(2)? as u32;
        ensure_data(
            precision <= MAX_PRECISION && used <= 1 << precision && order <= precision,
            || format!("rans table: bad precision {precision} or order {order}"),
        )?;
    }
    // Every entry takes at least one bit, so `used` is bounded by the input.
    ensure_data(used <= reader.remaining(), || {
        format!("rans table of {used} symbols cannot fit the input")
    })?;
    let entries = read_table_entries(reader, used, alphabet, (order, lag, precision), "rans")?;
    let padding = (reader.remaining() % 8) as u32;
    ensure_data(reader.read(padding)? == 0, || {
        "rans table: nonzero padding bits".into()
    })?;
    Ok(Table { precision, entries })
}

// ---------------------------------------------------------------------------
// Parametric tables: derived from the quantizer's model, never sent

/// Default precision of a parametric table for an alphabet of `alphabet`
/// symbols: [`CACHE_PRECISION`] (12), raised to `⌈log₂ alphabet⌉ + 3` (so
/// that the unit every symbol is guaranteed costs at most 1/8 of the
/// probability mass) up to [`MAX_PRECISION`].
pub fn parametric_precision(alphabet: u64) -> u32 {
    (ceil_log2(alphabet) + 3).clamp(CACHE_PRECISION, MAX_PRECISION)
}

/// Scale of the integer weights a model is normalized to before quantizing.
const WEIGHT_ONE: f64 = (1u64 << 40) as f64;

/// A ratio `num / den` (`den > 0`) ordered exactly by cross-multiplication,
/// ties broken by index (the smaller index is the larger key).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ratio {
    num: u128,
    den: u128,
    index: usize,
}

impl Ord for Ratio {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.num * other.den)
            .cmp(&(other.num * self.den))
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What raising a frequency from `f` (>= 1) to `f + 1` saves for weight `w`
/// (<= 2^40), in units of 1/2 nat: `w·ln((f + 1)/f) / 2 = w·atanh(1/d)` with
/// `d = 2f + 1`, to two terms of the series, `w·(1/d + 1/(3d³))` — the ratio
/// `w·(3d² + 1) / (3d³)` (relative error below 0.3% at `f = 1`, 0.03% at 2,
/// falling as `d⁻⁴`). Numerator below 2^74, denominator below 2^50, so the
/// cross products fit 128 bits.
fn unit_gain(w: u64, f: u64, index: usize) -> Ratio {
    let d = u128::from(2 * f + 1);
    Ratio {
        num: u128::from(w) * (3 * d * d + 1),
        den: 3 * d * d * d,
        index,
    }
}

/// What lowering a frequency from `f` (> 1) to `f - 1` costs: the gain of
/// raising it from `f - 1`.
fn unit_loss(w: u64, f: u64, index: usize) -> Ratio {
    unit_gain(w, f - 1, index)
}

/// Quantizes integer `weights` (each at most 2^40, not all zero) to
/// frequencies of at least 1 summing to `target` (at least `weights.len()`,
/// at most 2^15), in integer arithmetic only: from `max(1, ⌊w·target/Σw⌋)`,
/// units go to the symbol that gains the most ([`unit_gain`]) or come from
/// the one that loses the least ([`unit_loss`]), then single units move
/// between symbols while that helps. Ties go by symbol index. This is
/// [`quantize`] with rational estimates of the gains, compared exactly, in
/// place of floating-point logarithms, so every platform gets the same table.
fn quantize_weights(weights: &[u64], target: u64) -> Vec<u32> {
    let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if weights.is_empty() || total == 0 {
        return Vec::new();
    }
    let mut f: Vec<u64> = weights
        .iter()
        .map(|w| ((u128::from(*w) * u128::from(target) / total) as u64).max(1))
        .collect();
    let sum: u64 = f.iter().sum();
    if sum < target {
        let mut heap: BinaryHeap<Ratio> = (0..f.len())
            .map(|i| unit_gain(weights[i], f[i], i))
            .collect();
        for _ in sum..target {
            let Some(Ratio { index, .. }) = heap.pop() else {
                break;
            };
            f[index] += 1;
            heap.push(unit_gain(weights[index], f[index], index));
        }
    } else if sum > target {
        // A min-heap of losses.
        let mut heap: BinaryHeap<std::cmp::Reverse<Ratio>> = (0..f.len())
            .filter(|i| f[*i] > 1)
            .map(|i| std::cmp::Reverse(unit_loss(weights[i], f[i], i)))
            .collect();
        for _ in target..sum {
            let Some(std::cmp::Reverse(Ratio { index, .. })) = heap.pop() else {
                break;
            };
            f[index] -= 1;
            if f[index] > 1 {
                heap.push(std::cmp::Reverse(unit_loss(
                    weights[index],
                    f[index],
                    index,
                )));
            }
        }
    }
    // Pairwise exchanges while one helps; the cap is a safeguard.
    for _ in 0..4 * f.len() + 16 {
        let Some(up) = (0..f.len()).map(|i| unit_gain(weights[i], f[i], i)).max() else {
            break;
        };
        let Some(down) = (0..f.len())
            .filter(|j| *j != up.index && f[*j] > 1)
            .map(|j| unit_loss(weights[j], f[j], j))
            .min()
        else {
            break;
        };
        if up.num * down.den <= down.num * up.den {
            break;
        }
        f[up.index] += 1;
        f[down.index] -= 1;
    }
    f.into_iter().map(|v| v as u32).collect()
}

/// The table of a model pmf (one probability per symbol of the alphabet, at
/// most 2^`precision` of them): every symbol gets a frequency >= 1, even one
/// the model deems (nearly) impossible. The probabilities are normalized in
/// f64 (sum in symbol order, then `round(p·2^40/Σp)`; correctly rounded
/// operations only, so every platform gets the same weights), then quantized
/// by [`quantize_weights`] in integer arithmetic, so both ends build the same
/// table. Fails on a negative, non-finite or all-zero model.
pub fn from_model(model: &[f32], precision: u32) -> Result<Table, String> {
    if model.is_empty() {
        return Err("the model is empty".into());
    }
    if model.len() as u64 > 1u64 << precision {
        return Err(format!(
            "{} symbols do not fit 2^{precision} slots",
            model.len()
        ));
    }
    if model.iter().any(|p| !p.is_finite() || *p < 0.0) {
        return Err("the model is not a probability vector (negative or non-finite entry)".into());
    }
    let total: f64 = model.iter().map(|p| f64::from(*p)).sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err("the model has no positive probability".into());
    }
    let scale = WEIGHT_ONE / total;
    let weights: Vec<u64> = model
        .iter()
        .map(|p| (f64::from(*p) * scale).round() as u64)
        .collect();
    // The largest weight is at least 2^40 / 4096, so the weights are not all zero.
    let frequencies = quantize_weights(&weights, 1 << precision);
    Ok(Table {
        precision,
        entries: (0u32..).zip(frequencies).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_keeps_every_symbol_and_sums_to_the_target() {
        let counts = [1u64, 1, 1, 1_000_000, 5, 70, 70, 3];
        for p in 3..=15 {
            let f = quantize(&counts, 1 << p);
            assert_eq!(f.iter().map(|v| u64::from(*v)).sum::<u64>(), 1 << p);
            assert!(f.iter().all(|v| *v >= 1));
        }
        // Exact proportions stay exact.
        assert_eq!(quantize(&[1, 3], 4), vec![1, 3]);
        assert_eq!(quantize(&[5, 5], 1024), vec![512, 512]);
    }

    #[test]
    fn quantization_is_pairwise_optimal() {
        let counts = [1000u64, 300, 299, 17, 2, 1, 1, 1];
        let f = quantize(&counts, 1 << 10);
        for i in 0..counts.len() {
            for j in 0..counts.len() {
                if i != j && f[j] > 1 {
                    let g = gain(counts[i], u64::from(f[i]));
                    let l = loss(counts[j], u64::from(f[j]));
                    assert!(g <= l + 1e-6, "moving a unit {j} -> {i} would help");
                }
            }
        }
    }

    #[test]
    fn tables_round_trip_and_have_the_estimated_size() {
        let mut histogram = vec![0u64; 300];
        for (s, c) in [(0usize, 5u64), (1, 100), (2, 4000), (7, 9), (299, 1)] {
            histogram[s] = c;
        }
        for precision in [None, Some(10), Some(12), Some(15)] {
            let table = plan(&histogram, precision);
            let mut writer = BitWriter::new();
            write(&table, &mut writer);
            assert_eq!(
                writer.bit_len(),
                table_bits(&table.entries, table.precision)
            );
            let bytes = writer.finish();
            let mut reader = BitReader::new(&bytes);
            assert_eq!(read(&mut reader, 300).unwrap(), table);
            assert_eq!(reader.remaining(), 0);
            assert!(read(&mut BitReader::new(&bytes), 299).is_err());
        }
        let single = plan(&[0, 0, 9], None);
        assert_eq!(single.entries, vec![(2, 1 << MIN_PRECISION)]);
    }

    /// `Σ w·(precision - log₂ f)`: the payload bits of weights `w` under `f`.
    fn cost(weights: &[u64], f: &[u32], precision: u32) -> f64 {
        weights
            .iter()
            .zip(f)
            .map(|(w, f)| *w as f64 * (f64::from(precision) - f64::from(*f).log2()))
            .sum()
    }

    #[test]
    fn model_tables_cover_the_alphabet_and_sum_to_the_slots() {
        let fp4 = [
            1e-6f32, 1e-4, 0.004, 0.02, 0.06, 0.12, 0.2, 0.19, 0.2, 0.12, 0.06, 0.02, 0.004, 1e-4,
            0.0,
        ];
        for precision in MIN_PRECISION..=MAX_PRECISION {
            let table = from_model(&fp4, precision).unwrap();
            assert_eq!(table.precision, precision);
            assert_eq!(table.entries.len(), fp4.len());
            assert!(table
                .entries
                .iter()
                .enumerate()
                .all(|(i, (s, f))| *s == i as u32 && *f >= 1));
            let sum: u64 = table.entries.iter().map(|(_, f)| u64::from(*f)).sum();
            assert_eq!(sum, 1 << precision);
        }
        // Exact proportions stay exact, whatever the model's scale.
        let table = from_model(&[2.0, 1.0, 1.0], 10).unwrap();
        assert_eq!(table.entries, vec![(0, 512), (1, 256), (2, 256)]);
        assert_eq!(from_model(&[7.0], 12).unwrap().entries, vec![(0, 4096)]);
        // Every symbol of a full alphabet gets its unit.
        let uniform = from_model(&vec![1.0; 4096], 12).unwrap();
        assert!(uniform.entries.iter().all(|(_, f)| *f == 1));
        for bad in [&[][..], &[0.0, 0.0], &[1.0, -1.0], &[f32::NAN, 1.0]] {
            assert!(from_model(bad, 12).is_err(), "{bad:?}");
        }
        assert!(from_model(&vec![1.0; 1025], 10).is_err());
    }

    #[test]
    fn integer_quantization_is_as_good_as_the_exact_one() {
        // Against `quantize` (exact log₂ gains, optimal up to ties).
        let cases: Vec<Vec<u64>> = vec![
            vec![1 << 40, 1, 1, 1],
            vec![1000, 300, 299, 17, 2, 1, 1, 1, 0, 0],
            (0..300).map(|i| (1e12 * 0.95f64.powi(i)) as u64).collect(),
            (0..15).map(|i| 1u64 << (2 * i)).collect(),
        ];
        for weights in cases {
            for precision in [10, 12, 15] {
                let f = quantize_weights(&weights, 1 << precision);
                assert_eq!(f.iter().map(|v| u64::from(*v)).sum::<u64>(), 1 << precision);
                assert!(f.iter().all(|v| *v >= 1));
                let positive: Vec<u64> = weights.iter().map(|w| (*w).max(1)).collect();
                let exact = quantize(&positive, 1 << precision);
                let (ours, best) = (
                    cost(&weights, &f, precision),
                    cost(&weights, &exact, precision),
                );
                assert!(
                    ours <= best * (1.0 + 1e-6) + 1e-6 * weights.iter().sum::<u64>() as f64,
                    "{weights:?} at {precision}: {ours} vs {best}"
                );
            }
        }
    }
}
