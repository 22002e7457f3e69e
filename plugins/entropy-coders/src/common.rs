//! Checks and transforms shared by the coders: alphabet checks, the gap transform
//! of `positions` streams, and the decode-side count guard.

use crate::bits::{BitSink, BitSource};
use gradcodec_sdk::prelude::*;

/// Checks on the encoder side that every symbol lies in the alphabet.
pub fn check_symbols(stream: &SymbolStream) -> SdkResult<()> {
    let alphabet = stream.alphabet_size;
    match stream.symbols.iter().find(|s| u64::from(**s) >= alphabet) {
        None => Ok(()),
        Some(symbol) => Err(invalid_input(format!(
            "symbol {symbol} outside 0..{alphabet}"
        ))),
    }
}

/// True for a `positions` stream (coded as gaps).
pub fn is_positions(stream: &SymbolStream) -> bool {
    stream.role == StreamRole::POSITIONS
}

/// Gaps of strictly increasing positions: `p_0`, then `p_i - p_{i-1} - 1`.
/// Fails (invalid input) unless the positions strictly increase.
pub fn positions_to_gaps(positions: &[u32]) -> SdkResult<Vec<u32>> {
    let mut gaps = Vec::with_capacity(positions.len());
    let mut next = 0u64;
    for &position in positions {
        let position = u64::from(position);
        if position < next {
            return Err(invalid_input(format!(
                "positions must strictly increase (got {position} after {})",
                next.wrapping_sub(1)
            )));
        }
        gaps.push((position - next) as u32);
        next = position + 1;
    }
    Ok(gaps)
}

/// Rebuilds positions from gaps in place, checking each against `alphabet`.
pub struct GapDecoder {
    next: u64,
    alphabet: u64,
}

impl GapDecoder {
    /// Starts a stream of positions below `alphabet`.
    pub fn new(alphabet: u64) -> Self {
        Self { next: 0, alphabet }
    }

    /// The position for the next gap.
    pub fn position(&mut self, gap: u64) -> SdkResult<u32> {
        let position = self.next.saturating_add(gap);
        ensure_data(position < self.alphabet, || {
            format!("position {position} outside 0..{}", self.alphabet)
        })?;
        self.next = position + 1;
        Ok(position as u32)
    }
}

/// Checks a decoded symbol against the alphabet.
pub fn check_decoded(symbol: u64, alphabet: u64) -> SdkResult<u32> {
    if symbol < alphabet && symbol <= u64::from(u32::MAX) {
        Ok(symbol as u32)
    } else {
        Err(corrupt(format!(
            "decoded symbol {symbol} outside 0..{alphabet}"
        )))
    }
}

/// The integers a gap coder writes for `stream`: the gaps of a positions
/// stream (see [`positions_to_gaps`]), the symbols of any other.
pub fn coded_integers(stream: &SymbolStream) -> SdkResult<std::borrow::Cow<'_, [u32]>> {
    Ok(if is_positions(stream) {
        std::borrow::Cow::Owned(positions_to_gaps(&stream.symbols)?)
    } else {
        std::borrow::Cow::Borrowed(stream.symbols.as_slice())
    })
}

/// Turns the integers a decoder reads back into symbols: positions from their
/// gaps (strictly increasing, inside the alphabet), other symbols checked
/// against the alphabet.
pub struct SymbolRebuilder {
    positions: Option<GapDecoder>,
    alphabet: u64,
}

impl SymbolRebuilder {
    /// For the stream being decoded.
    pub fn new(stream: &SymbolStream) -> Self {
        Self {
            positions: is_positions(stream).then(|| GapDecoder::new(stream.alphabet_size)),
            alphabet: stream.alphabet_size,
        }
    }

    /// The symbol of the next decoded integer.
    #[inline]
    pub fn symbol(&mut self, value: u64) -> SdkResult<u32> {
        match self.positions.as_mut() {
            Some(decoder) => decoder.position(value),
            None => check_decoded(value, self.alphabet),
        }
    }
}

/// For coders of small integers (gaps and levels): refuses raw-words streams.
pub fn refuse_raw_words(coder: &str, stream: &SymbolStream) -> SdkResult<()> {
    if stream.role == StreamRole::RAW_WORDS {
        Err(unsupported(format!(
            "{coder} codes positions and values, not raw words; route raw-words \
             streams to another coder"
        )))
    } else {
        Ok(())
    }
}

/// An empty stream must come with no bytes.
pub fn expect_no_bytes(coder: &str, bytes: &[u8]) -> SdkResult<()> {
    ensure_data(bytes.is_empty(), || {
        format!("{coder}: bytes for an empty stream")
    })
}

/// The bits to hold `alphabet - 1` (0 for alphabets of one symbol).
pub fn symbol_bits(alphabet: u64) -> u32 {
    if alphabet <= 1 {
        0
    } else {
        64 - (alphabet - 1).leading_zeros()
    }
}

/// Rejects a count that cannot fit: every symbol takes at least `min_bits_each`
/// bits of the `bits` available.
pub fn check_count_fits(count: u64, bits: u64, min_bits_each: u64) -> SdkResult<()> {
    ensure_data(count.saturating_mul(min_bits_each) <= bits, || {
        format!("{count} symbols cannot fit in {bits} bits")
    })
}

/// `⌈log₂ v⌉` (0 for v <= 1).
pub fn ceil_log2(value: u64) -> u32 {
    if value <= 1 {
        0
    } else {
        64 - (value - 1).leading_zeros()
    }
}

/// Exp-Golomb order of a frequency that follows `previous` in a frequency
/// table (`ans` static, `rans`): `⌊log₂ previous⌋ - lag`, at most `precision`.
pub fn order_after(previous: u64, lag: u32, precision: u32) -> u32 {
    (63 - previous.max(1).leading_zeros())
        .saturating_sub(lag)
        .min(precision)
}

/// Bits of the listed frequencies (all but the last) under `first_order`, `lag`.
pub fn frequency_bits(listed: &[u32], first_order: u32, lag: u32, precision: u32) -> u64 {
    let mut order = first_order;
    let mut bits = 0;
    for frequency in listed {
        bits += crate::bits::exp_golomb_len(u64::from(*frequency) - 1, order);
        order = order_after(u64::from(*frequency), lag, precision);
    }
    bits
}

/// Writes the entries of a frequency table (`ans` static, `rans`): each
/// symbol, in increasing order, as the Elias-gamma code of its gap to the
/// previous one plus one, and after it (all but the last, which is implied)
/// its frequency minus one as an Exp-Golomb code whose order follows the
/// previous frequency (`first_order` first, see [`order_after`]).
pub fn write_table_entries(
    writer: &mut crate::bits::BitWriter,
    entries: &[(u32, u32)],
    first_order: u32,
    lag: u32,
    precision: u32,
) {
    let mut next = 0u32;
    let mut order = first_order;
    for (index, (symbol, frequency)) in entries.iter().enumerate() {
        writer.put_gamma(u64::from(symbol - next) + 1);
        next = symbol + 1;
        if index + 1 < entries.len() {
            writer.exp_golomb(u64::from(frequency - 1), order);
            order = order_after(u64::from(*frequency), lag, precision);
        }
    }
}

/// Reads `used` entries written by [`write_table_entries`], checking that
/// every symbol is below `alphabet` and that the frequencies (each at least 1)
/// sum to `2^precision`; `what` names the coder in errors.
pub fn read_table_entries(
    reader: &mut crate::bits::BitReader<'_>,
    used: u64,
    alphabet: u64,
    (first_order, lag, precision): (u32, u32, u32),
    what: &str,
) -> SdkResult<Vec<(u32, u32)>> {
    let target = 1u64 << precision;
    let mut entries = Vec::with_capacity(used.min(alphabet) as usize);
    let (mut next, mut sum, mut order) = (0u64, 0u64, first_order);
    for index in 0..used {
        let symbol = next + reader.get_gamma(32)? - 1;
        ensure_data(symbol < alphabet, || {
            format!("{what} table symbol {symbol} outside 0..{alphabet}")
        })?;
        next = symbol + 1;
        let frequency = if index + 1 < used {
            let frequency = reader.exp_golomb(order, precision)? + 1;
            order = order_after(frequency.min(target), lag, precision);
            frequency
        } else {
            target.saturating_sub(sum)
        };
        sum += frequency;
        // Every remaining symbol still needs at least 1.
        ensure_data(frequency >= 1 && sum + (used - index - 1) <= target, || {
            format!("{what} table frequencies do not sum to the total")
        })?;
        entries.push((symbol as u32, frequency as u32));
    }
    Ok(entries)
}

/// Zeroth-order empirical entropy, in bits per symbol (the tests' reference).
#[cfg(test)]
pub fn empirical_entropy(symbols: &[u32]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for s in symbols {
        *counts.entry(*s).or_insert(0u64) += 1;
    }
    let n = symbols.len() as f64;
    counts
        .values()
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_round_trip_and_reject_disorder() {
        let positions = [0u32, 1, 5, 6, 100];
        let gaps = positions_to_gaps(&positions).unwrap();
        assert_eq!(gaps, vec![0, 0, 3, 0, 93]);
        let mut decoder = GapDecoder::new(101);
        let back: Vec<u32> = gaps
            .iter()
            .map(|g| decoder.position(u64::from(*g)).unwrap())
            .collect();
        assert_eq!(back, positions);
        assert!(positions_to_gaps(&[3, 3]).is_err());
        assert!(positions_to_gaps(&[3, 2]).is_err());
        let mut decoder = GapDecoder::new(10);
        assert!(decoder.position(10).is_err());
    }
}
