//! `bitpack`: fixed-width bit packing of a symbol stream.
//!
//! Every symbol takes `w = ⌈log₂(alphabet)⌉` bits (0 for a one-symbol alphabet),
//! packed least-significant bit first into bytes; the stream is exactly
//! `⌈count·w / 8⌉` bytes. No model, no adaptivity: the reference point that
//! entropy coders must beat.
//!
//! ```yaml
//! - entropy-coder: { use: bitpack }
//! ```

use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// `bitpack` has no parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BitpackConfig {}

impl StageConfig for BitpackConfig {}

/// The fixed-width coder.
pub struct Bitpack;

/// Bits per symbol for an alphabet of `alphabet` symbols.
pub fn symbol_width(alphabet: u64) -> u32 {
    if alphabet <= 1 {
        0
    } else {
        64 - (alphabet - 1).leading_zeros()
    }
}

impl Stage for Bitpack {
    type Config = BitpackConfig;
    const INFO: StageInfo = StageInfo::new(
        "bitpack",
        "Fixed-width bit packing: ceil(log2(alphabet)) bits per symbol, LSB first. \
              The no-model reference for entropy coders.",
    )
    .with_flags(StageFlags::LOSSLESS);

    fn new(_config: BitpackConfig, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self)
    }
}

/// Packs `symbols` of `width` bits (1..=64; symbols below `2^32`) into `out`,
/// which holds exactly `⌈len·width/8⌉` bytes. Writes 32 bits at a time.
fn pack(symbols: &[u32], width: u32, out: &mut [u8]) {
    if width == 32 {
        for (bytes, symbol) in out.chunks_exact_mut(4).zip(symbols) {
            bytes.copy_from_slice(&symbol.to_le_bytes());
        }
        return;
    }
    if width == 8 {
        for (byte, symbol) in out.iter_mut().zip(symbols) {
            *byte = *symbol as u8;
        }
        return;
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

/// Unpacks `out.len()` symbols of `width` bits (1..=64) from `bytes`, which holds
/// exactly `⌈len·width/8⌉` bytes; the value above bit 32 of a wide symbol must be
/// zero, else `false`.
fn unpack(bytes: &[u8], width: u32, out: &mut [u32]) -> bool {
    if width == 32 {
        for (symbol, word) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *symbol = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
        return true;
    }
    if width == 8 {
        for (symbol, byte) in out.iter_mut().zip(bytes) {
            *symbol = u32::from(*byte);
        }
        return true;
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

impl EntropyCoder for Bitpack {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        let width = symbol_width(stream.alphabet_size);
        if width == 0 {
            return Ok(());
        }
        let alphabet = stream.alphabet_size;
        let symbols = stream.symbols.as_slice();
        if let Some(symbol) = symbols.iter().find(|s| u64::from(**s) >= alphabet) {
            return Err(invalid_input(format!(
                "symbol {symbol} outside 0..{alphabet}"
            )));
        }
        let bytes = (symbols.len() * width as usize).div_ceil(8);
        out.extend_filled(bytes, |out| pack(symbols, width, out));
        Ok(())
    }

    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        let width = symbol_width(stream.alphabet_size);
        let expected = (u128::from(count) * u128::from(width)).div_ceil(8);
        ensure_data(bytes.len() as u128 == expected, || {
            format!(
                "bitpack: {count} symbols of {width} bits need {expected} bytes, got {}",
                bytes.len()
            )
        })?;
        let alphabet = stream.alphabet_size;
        stream.symbols.clear();
        if width == 0 {
            stream.symbols.resize(count as usize, 0);
            return Ok(());
        }
        let mut fits = true;
        stream
            .symbols
            .extend_filled(count as usize, |out| fits = unpack(bytes, width, out));
        let symbols = stream.symbols.as_slice();
        let outside = symbols.iter().find(|s| u64::from(**s) >= alphabet);
        if !fits || outside.is_some() {
            let symbol = outside.map_or_else(|| "above 2^32".to_string(), u32::to_string);
            stream.symbols.clear();
            return Err(gradcodec_sdk::corrupt(format!(
                "bitpack: symbol {symbol} outside 0..{alphabet}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::StreamRole;

    #[test]
    fn widths() {
        assert_eq!(symbol_width(1), 0);
        assert_eq!(symbol_width(2), 1);
        assert_eq!(symbol_width(11), 4);
        assert_eq!(symbol_width(256), 8);
        assert_eq!(symbol_width(1 << 32), 32);
    }

    #[test]
    fn packs_to_the_exact_size() {
        let mut stream = SymbolStream::new(StreamRole::VALUES, 11);
        stream.symbols = (0..1001u32).map(|i| i % 11).collect();
        let mut bytes = RVec::new();
        Bitpack.encode(&stream, &mut bytes).unwrap();
        assert_eq!(bytes.len(), (1001 * 4usize).div_ceil(8));
        let mut back = SymbolStream::new(StreamRole::VALUES, 11);
        Bitpack.decode(&bytes, 1001, &mut back).unwrap();
        assert_eq!(back.symbols, stream.symbols);
    }
}
