//! A quantizer's streams: one description shared by both ends, and the
//! standard checks of what the decoder received.
//!
//! A quantizer states the shape of its streams (role and alphabet) in one
//! place, usually a function of its config and side info, and uses it twice:
//! [`begin_streams`] in `quantize` (then fills the symbols) and [`describe`] in
//! `describe_streams`. In `dequantize`, [`received_streams`] does the checks
//! every quantizer owes its decoder: the stream count, each stream's length and
//! every symbol inside its alphabet, and hands back the symbol slices.
//!
//! ```
//! use gradcodec_sdk::streams::{begin_streams, describe, received_streams, StreamShape};
//! use gradcodec_sdk::{buffers::RVecExt, Quantized};
//!
//! const SIGNS: [StreamShape; 1] = [StreamShape::values(2)];
//! let input = [0.5f32, -1.0, 2.0];
//!
//! // Encoder: one values stream of two symbols.
//! let mut coded = Quantized::default();
//! begin_streams(&mut coded, &SIGNS);
//! coded.streams[0].symbols.extend_mapped(&input, |v| u32::from(v < 0.0));
//!
//! // Decoder: the same descriptors, then the checked symbols.
//! let mut received = Quantized::default();
//! describe(&mut received, &SIGNS);
//! received.streams[0].symbols = coded.streams[0].symbols.clone();
//! let [signs] = received_streams("sign", &received, &SIGNS, [3]).unwrap();
//! assert_eq!(signs, &[0, 1, 0]);
//! // A wrong count is an error naming the stage.
//! assert!(received_streams("sign", &received, &SIGNS, [4]).is_err());
//! ```

use crate::error::{ensure_data, SdkResult};
use gradcodec_abi::{Quantized, StreamRole, SymbolStream};

/// Largest alphabet a stream may declare: symbols are u32.
pub const MAX_ALPHABET: u64 = 1 << 32;

/// The shape of one stream: its role and alphabet size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamShape {
    /// Values, positions or raw words.
    pub role: StreamRole,
    /// Symbols are in `0..alphabet_size`.
    pub alphabet_size: u64,
}

impl StreamShape {
    /// A values stream of `alphabet_size` symbols (levels, signs, ...).
    pub const fn values(alphabet_size: u64) -> Self {
        Self {
            role: StreamRole::VALUES,
            alphabet_size,
        }
    }

    /// A positions stream into a tensor of `len` entries (strictly increasing
    /// indices, see [`check_positions`]).
    pub const fn positions(len: u64) -> Self {
        Self {
            role: StreamRole::POSITIONS,
            alphabet_size: len,
        }
    }

    /// A stream of raw 32-bit words (f32 bit patterns).
    pub const fn raw_words() -> Self {
        Self {
            role: StreamRole::RAW_WORDS,
            alphabet_size: MAX_ALPHABET,
        }
    }

    /// A values stream of 16-bit patterns (f16, bf16).
    pub const fn half_words() -> Self {
        Self::values(1 << 16)
    }

    /// An empty stream of this shape.
    pub fn empty(self) -> SymbolStream {
        SymbolStream::new(self.role, self.alphabet_size)
    }
}

/// Decoder side: replaces `out`'s streams with empty ones of `shapes` (the side
/// info is kept; the old streams' symbol buffers are reused).
pub fn describe(out: &mut Quantized, shapes: &[StreamShape]) {
    // The streams already there lend their symbol buffers (no fresh
    // allocation per call).
    out.reuse_streams(shapes.iter().map(|shape| (shape.role, shape.alphabet_size)));
}

/// Encoder side: clears `out` (side info and streams, capacity kept, symbol
/// buffers too) and adds empty streams of `shapes`, whose symbols the quantizer
/// then fills.
pub fn begin_streams(out: &mut Quantized, shapes: &[StreamShape]) {
    out.side_info.clear();
    describe(out, shapes);
}

/// Decoder side: checks that `coded` holds exactly the streams of `shapes`,
/// stream `i` with `counts[i]` symbols, each inside its alphabet, and returns
/// the symbol slices. Errors name `stage` and the stream.
pub fn received_streams<'a, const N: usize>(
    stage: &str,
    coded: &'a Quantized,
    shapes: &[StreamShape; N],
    counts: [u64; N],
) -> SdkResult<[&'a [u32]; N]> {
    ensure_data(coded.streams.len() == N, || {
        format!(
            "{stage} expects {N} stream{}, got {}",
            if N == 1 { "" } else { "s" },
            coded.streams.len()
        )
    })?;
    let mut slices: [&[u32]; N] = [&[]; N];
    for (i, ((slice, shape), count)) in slices.iter_mut().zip(shapes).zip(counts).enumerate() {
        let stream = &coded.streams[i];
        let role = shape.role.as_str();
        ensure_data(stream.role == shape.role, || {
            format!(
                "{stage} stream {i} should be {role}, is {}",
                stream.role.as_str()
            )
        })?;
        ensure_data(stream.symbols.len() as u64 == count, || {
            format!(
                "{stage} {role} stream has {} symbols, expected {count}",
                stream.symbols.len()
            )
        })?;
        if shape.alphabet_size < MAX_ALPHABET {
            if let Some(largest) = out_of_alphabet(&stream.symbols, shape.alphabet_size) {
                return Err(crate::error::corrupt(format!(
                    "{stage} {role} symbol {largest} outside 0..{}",
                    shape.alphabet_size
                )));
            }
        }
        *slice = stream.symbols.as_slice();
    }
    Ok(slices)
}

/// Fails unless `side_info` is empty (for quantizers that send none).
pub fn expect_no_side_info(stage: &str, side_info: &[u8]) -> SdkResult<()> {
    ensure_data(side_info.is_empty(), || format!("{stage} has no side info"))
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
    match out_of_alphabet(symbols, alphabet) {
        Some(largest) => Err(crate::error::corrupt(format!(
            "{what} symbol {largest} outside 0..{alphabet}"
        ))),
        None => Ok(()),
    }
}

/// The largest symbol if it is outside `0..alphabet`. One maximum over the
/// slice (it vectorizes), no early exit.
fn out_of_alphabet(symbols: &[u32], alphabet: u64) -> Option<u32> {
    symbols
        .iter()
        .copied()
        .max()
        .filter(|largest| u64::from(*largest) >= alphabet)
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

#[cfg(test)]
mod reuse_tests {
    use super::*;

    #[test]
    fn describe_keeps_the_symbol_buffers_and_resets_the_rest() {
        let mut coded = Quantized::default();
        begin_streams(
            &mut coded,
            &[StreamShape::values(4), StreamShape::raw_words()],
        );
        coded.side_info.push(9);
        coded.streams[0].symbols.extend_from_copy_slice(&[1, 2, 3]);
        coded.streams[0].model.push(0.5);
        let buffer = coded.streams[0].symbols.as_ptr();
        describe(&mut coded, &[StreamShape::positions(100)]);
        assert_eq!(
            coded.side_info.as_slice(),
            &[9],
            "describe keeps the side info"
        );
        assert_eq!(coded.streams.len(), 1);
        let stream = &coded.streams[0];
        assert_eq!(
            (stream.role, stream.alphabet_size),
            (StreamRole::POSITIONS, 100)
        );
        assert!(stream.symbols.is_empty() && stream.model.is_empty());
        assert_eq!(stream.symbols.as_ptr(), buffer, "the buffer is reused");
        begin_streams(&mut coded, &[]);
        assert!(coded.side_info.is_empty() && coded.streams.is_empty());
    }
}
