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

use gradcodec_sdk::{
    ensure_data, invalid_input, EntropyCoder, JsonSchema, RVec, SdkResult, Stage, StageConfig,
    StageFlags, StageInfo, SymbolStream, TensorSpec,
};
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
    const INFO: StageInfo = StageInfo {
        name: "bitpack",
        version: 1,
        format_version: 1,
        doc: "Fixed-width bit packing: ceil(log2(alphabet)) bits per symbol, LSB first. \
              The no-model reference for entropy coders.",
        example_params: "{}",
        flags: StageFlags::LOSSLESS,
    };

    fn new(_config: BitpackConfig, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self)
    }
}

impl EntropyCoder for Bitpack {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        let width = symbol_width(stream.alphabet_size);
        if width == 0 {
            return Ok(());
        }
        let alphabet = stream.alphabet_size;
        out.reserve((stream.symbols.len() * width as usize).div_ceil(8));
        let mut buffer: u64 = 0;
        let mut filled: u32 = 0;
        for &symbol in stream.symbols.iter() {
            if u64::from(symbol) >= alphabet {
                return Err(invalid_input(format!(
                    "symbol {symbol} outside 0..{alphabet}"
                )));
            }
            buffer |= u64::from(symbol) << filled;
            filled += width;
            while filled >= 8 {
                out.push(buffer as u8);
                buffer >>= 8;
                filled -= 8;
            }
        }
        if filled > 0 {
            out.push(buffer as u8);
        }
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
        stream.symbols.reserve(count as usize);
        let mask = if width == 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        let mut buffer: u64 = 0;
        let mut filled: u32 = 0;
        let mut input = bytes.iter();
        for _ in 0..count {
            while filled < width {
                let byte = input.next().copied().unwrap_or(0);
                buffer |= u64::from(byte) << filled;
                filled += 8;
            }
            let symbol = buffer & mask;
            buffer >>= width;
            filled -= width;
            ensure_data(symbol < alphabet, || {
                format!("bitpack: symbol {symbol} outside 0..{alphabet}")
            })?;
            stream.symbols.push(symbol as u32);
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
