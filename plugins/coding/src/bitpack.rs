//! The `bitpack` coder's byte layout: fixed-width bit packing, one source for
//! the coder (`gradcodec-plugin-entropy-coders`) and the fused pairs that write
//! its bytes directly (the `raw`, `fp16` and `bf16` quantizers with `bitpack`,
//! in `gradcodec-plugin-quantizers`).
//!
//! Every symbol takes `w = ⌈log₂(alphabet)⌉` bits ([`symbol_width`]; 0 for a
//! one-symbol alphabet), packed least-significant bit first into bytes; a
//! stream of `n` symbols is exactly `⌈n·w / 8⌉` bytes ([`packed_len`]).
//! Because the packing is LSB-first, the byte-aligned widths are plain arrays
//! of little-endian words: width 8 is one byte per symbol, width 16
//! ([`pack_16`] / [`unpack_16`]) symbol `i` at bytes `2i..2i+2`, width 32
//! ([`pack_32`] / [`unpack_32`]) symbol `i` at bytes `4i..4i+4`. The generic
//! [`pack`] / [`unpack`] call those for their widths, so a fused pair writing
//! 16-bit patterns with [`pack_16`] gives the coder's bytes by construction.
//!
//! ```yaml
//! # The pipelines whose bytes come from here (pipelines/f32.yaml, fp16.yaml):
//! - quantizer:     { use: fp16 }
//! - entropy-coder: { use: bitpack }
//! ```
//!
//! ```
//! use gradcodec_coding::bitpack::{pack, pack_16, packed_len, symbol_width, unpack};
//!
//! let width = symbol_width(1 << 16);
//! assert_eq!(width, 16);
//! let symbols = [0x1234u32, 0xABCD, 7];
//! let mut bytes = vec![0u8; packed_len(3, width) as usize];
//! pack(&symbols, width, &mut bytes);
//! assert_eq!(bytes, [0x34, 0x12, 0xCD, 0xAB, 7, 0]);
//! // The 16-bit layout from any word source: the same bytes.
//! let mut direct = vec![0u8; 6];
//! pack_16(&[0x1234u16, 0xABCD, 7], |h| h, &mut direct);
//! assert_eq!(direct, bytes);
//! let mut back = [0u32; 3];
//! assert!(unpack(&bytes, width, &mut back));
//! assert_eq!(back, symbols);
//! ```

/// Bits per symbol for an alphabet of `alphabet` symbols: `⌈log₂ alphabet⌉`.
pub fn symbol_width(alphabet: u64) -> u32 {
    if alphabet <= 1 {
        0
    } else {
        64 - (alphabet - 1).leading_zeros()
    }
}

/// Bytes of `count` symbols of `width` bits: `⌈count·width / 8⌉` (in u128,
/// so an untrusted count cannot overflow).
pub fn packed_len(count: u64, width: u32) -> u128 {
    (u128::from(count) * u128::from(width)).div_ceil(8)
}

/// The width-16 layout: `bits(values[i])` little-endian at bytes `2i..2i+2`
/// (as many as both hold; `out` is normally exactly `2·values.len()` bytes).
#[inline]
pub fn pack_16<T: Copy>(values: &[T], bits: impl Fn(T) -> u16, out: &mut [u8]) {
    for (bytes, value) in out.chunks_exact_mut(2).zip(values) {
        bytes.copy_from_slice(&bits(*value).to_le_bytes());
    }
}

/// Reads the width-16 layout: `out[i] = value(word i)`.
#[inline]
pub fn unpack_16<T>(bytes: &[u8], out: &mut [T], value: impl Fn(u16) -> T) {
    for (o, word) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = value(u16::from_le_bytes([word[0], word[1]]));
    }
}

/// The width-32 layout: `bits(values[i])` little-endian at bytes `4i..4i+4`.
#[inline]
pub fn pack_32<T: Copy>(values: &[T], bits: impl Fn(T) -> u32, out: &mut [u8]) {
    for (bytes, value) in out.chunks_exact_mut(4).zip(values) {
        bytes.copy_from_slice(&bits(*value).to_le_bytes());
    }
}

/// Reads the width-32 layout: `out[i] = value(word i)`.
#[inline]
pub fn unpack_32<T>(bytes: &[u8], out: &mut [T], value: impl Fn(u32) -> T) {
    for (o, word) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = value(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
    }
}

/// Packs `symbols` of `width` bits (1..=64; symbols below `2^32`, so the bits
/// above 32 of a wider field are zero) into `out`, which holds exactly
/// `⌈len·width/8⌉` bytes. Writes 32 bits at a time.
pub fn pack(symbols: &[u32], width: u32, out: &mut [u8]) {
    match width {
        32 => return pack_32(symbols, |s| s, out),
        16 => return pack_16(symbols, |s| s as u16, out),
        8 => {
            for (byte, symbol) in out.iter_mut().zip(symbols) {
                *byte = *symbol as u8;
            }
            return;
        }
        _ => {}
    }
    let (mut buffer, mut filled, mut at) = (0u64, 0u32, 0usize);
    for &symbol in symbols {
        buffer |= u64::from(symbol) << filled;
        filled += width;
        while filled >= 32 {
            out[at..at + 4].copy_from_slice(&(buffer as u32).to_le_bytes());
            at += 4;
            buffer >>= 32;
            filled -= 32;
        }
    }
    for byte in &mut out[at..] {
        *byte = buffer as u8;
        buffer >>= 8;
    }
}

/// [`unpack`] for widths below 32: symbol `i` is the `width` bits at bit
/// `i * width`, read from one unaligned little-endian u64 (no carry between
/// symbols, so the loop runs without a dependency chain); the last symbols
/// read from a zero-padded copy of the final bytes.
fn unpack_narrow(bytes: &[u8], width: u32, out: &mut [u32]) {
    let width = width as usize;
    let mask = (1u64 << width) - 1;
    let read = |source: &[u8], bit: usize| -> u32 {
        let at = bit / 8;
        let word = u64::from_le_bytes(source[at..at + 8].try_into().unwrap_or([0; 8]));
        ((word >> (bit % 8)) & mask) as u32
    };
    // Symbols whose eight-byte window lies inside `bytes`.
    let direct = if bytes.len() >= 8 {
        ((bytes.len() - 8) * 8 / width + 1).min(out.len())
    } else {
        0
    };
    for (index, symbol) in out[..direct].iter_mut().enumerate() {
        *symbol = read(bytes, index * width);
    }
    // The rest from the final bytes, padded with zeros.
    let first_bit = direct * width;
    let start = first_bit / 8;
    let mut padded = bytes[start.min(bytes.len())..].to_vec();
    padded.resize(padded.len() + 8, 0);
    for (index, symbol) in out.iter_mut().enumerate().skip(direct) {
        *symbol = read(&padded, index * width - start * 8);
    }
}

/// Unpacks `out.len()` symbols of `width` bits (1..=64) from `bytes`, which holds
/// exactly `⌈len·width/8⌉` bytes; the value above bit 32 of a wide symbol must be
/// zero, else `false`.
pub fn unpack(bytes: &[u8], width: u32, out: &mut [u32]) -> bool {
    match width {
        32 => {
            unpack_32(bytes, out, |s| s);
            return true;
        }
        16 => {
            unpack_16(bytes, out, u32::from);
            return true;
        }
        8 => {
            for (symbol, byte) in out.iter_mut().zip(bytes) {
                *symbol = u32::from(*byte);
            }
            return true;
        }
        1..32 => {
            unpack_narrow(bytes, width, out);
            return true;
        }
        _ => {}
    }
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut wide = false;
    let (mut buffer, mut filled) = (0u64, 0u32);
    let mut input = bytes.chunks(4);
    for symbol in out.iter_mut() {
        let mut value = 0u64;
        let mut have = 0u32;
        // Take `width` bits, 32 at most per refill (a u64 holds < 32 + 32).
        while have < width {
            if filled == 0 {
                let word = input.next().unwrap_or(&[]);
                let mut le = [0u8; 4];
                le[..word.len()].copy_from_slice(word);
                buffer = u64::from(u32::from_le_bytes(le));
                filled = 32;
            }
            let take = (width - have).min(filled);
            let part = buffer & ((1u64 << take) - 1);
            value |= part << have;
            buffer >>= take;
            filled -= take;
            have += take;
        }
        let value = value & mask;
        wide |= value > u64::from(u32::MAX);
        *symbol = value as u32;
    }
    !wide
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: bit `b` of symbol `i` is bit `i·w + b` of the stream.
    fn reference(symbols: &[u32], width: u32) -> Vec<u8> {
        let mut out = vec![0u8; packed_len(symbols.len() as u64, width) as usize];
        for (i, symbol) in symbols.iter().enumerate() {
            for b in 0..width.min(32) {
                if (symbol >> b) & 1 == 1 {
                    let bit = i * width as usize + b as usize;
                    out[bit / 8] |= 1 << (bit % 8);
                }
            }
        }
        out
    }

    fn symbols(count: usize, width: u32, seed: u32) -> Vec<u32> {
        let mask = if width >= 32 {
            u32::MAX
        } else {
            (1u32 << width) - 1
        };
        (0..count as u32)
            .map(|i| {
                i.wrapping_mul(0x9E37_79B9)
                    .wrapping_add(seed)
                    .rotate_left(i % 29)
                    & mask
            })
            .collect()
    }

    #[test]
    fn widths_and_lengths() {
        assert_eq!(symbol_width(1), 0);
        assert_eq!(symbol_width(2), 1);
        assert_eq!(symbol_width(11), 4);
        assert_eq!(symbol_width(256), 8);
        assert_eq!(symbol_width(1 << 16), 16);
        assert_eq!(symbol_width(1 << 32), 32);
        assert_eq!(packed_len(3, 16), 6);
        assert_eq!(packed_len(3, 5), 2);
        assert_eq!(packed_len(u64::MAX, 64), u128::from(u64::MAX) * 8);
    }

    #[test]
    fn every_width_packs_lsb_first_and_unpacks() {
        for width in [
            1, 2, 3, 5, 6, 7, 8, 11, 16, 17, 20, 25, 26, 30, 31, 32, 33, 64,
        ] {
            for count in [0, 1, 2, 3, 7, 8, 9, 100, 1001] {
                let input = symbols(count, width, width * 7 + count as u32);
                let mut bytes = vec![0xEEu8; packed_len(count as u64, width) as usize];
                pack(&input, width, &mut bytes);
                assert_eq!(bytes, reference(&input, width), "width {width}, {count}");
                let mut back = vec![0u32; count];
                assert!(unpack(&bytes, width, &mut back));
                assert_eq!(back, input, "width {width}, {count}");
            }
        }
    }

    #[test]
    fn the_word_layouts_are_the_packed_bytes() {
        let input = symbols(1001, 16, 3);
        let mut packed = vec![0u8; 2002];
        pack(&input, 16, &mut packed);
        let halves: Vec<u16> = input.iter().map(|s| *s as u16).collect();
        let mut direct = vec![0u8; 2002];
        pack_16(&halves, |h| h, &mut direct);
        assert_eq!(direct, packed);
        let mut back = vec![0u16; 1001];
        unpack_16(&packed, &mut back, |h| h);
        assert_eq!(back, halves);

        let floats: Vec<f32> = (0..999).map(|i| (i as f32 - 500.0) * 0.37).collect();
        let bits: Vec<u32> = floats.iter().map(|f| f.to_bits()).collect();
        let mut packed = vec![0u8; 3996];
        pack(&bits, 32, &mut packed);
        let mut direct = vec![0u8; 3996];
        pack_32(&floats, f32::to_bits, &mut direct);
        assert_eq!(direct, packed);
        let mut back = vec![0f32; 999];
        unpack_32(&packed, &mut back, f32::from_bits);
        assert_eq!(back, floats);
    }

    #[test]
    fn wide_fields_above_32_bits_are_refused() {
        let mut bytes = vec![0u8; packed_len(2, 33) as usize];
        pack(&[5, 6], 33, &mut bytes);
        // Set bit 32 of the first symbol.
        bytes[4] |= 1;
        let mut back = [0u32; 2];
        assert!(!unpack(&bytes, 33, &mut back));
    }
}
