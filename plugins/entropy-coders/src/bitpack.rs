//! `bitpack`: fixed-width bit packing of a symbol stream.
//!
//! Every symbol takes `w = ⌈log₂(alphabet)⌉` bits (0 for a one-symbol alphabet),
//! packed least-significant bit first into bytes; the stream is exactly
//! `⌈count·w / 8⌉` bytes. No model, no adaptivity: the reference point that
//! entropy coders must beat. The layout (and its byte-aligned fast paths)
//! lives in `gradcodec_coding::bitpack`, shared with the fused pairs of the
//! `raw`, `fp16` and `bf16` quantizers, which write these bytes directly.
//!
//! ```yaml
//! - entropy-coder: { use: bitpack }
//! ```

use gradcodec_coding::bitpack::{pack, packed_len, unpack};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

pub use gradcodec_coding::bitpack::symbol_width;

/// `bitpack` has no parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BitpackConfig {}

impl StageConfig for BitpackConfig {}

/// The fixed-width coder.
pub struct Bitpack;

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

impl EntropyCoder for Bitpack {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        let width = symbol_width(stream.alphabet_size);
        if width == 0 {
            return Ok(());
        }
        let alphabet = stream.alphabet_size;
        let symbols = stream.symbols.as_slice();
        // The largest symbol first (a loop that vectorizes), the culprit only
        // when there is one.
        let largest = symbols.iter().copied().fold(0, u32::max);
        if u64::from(largest) >= alphabet {
            let symbol = symbols.iter().find(|s| u64::from(**s) >= alphabet);
            let symbol = symbol.copied().unwrap_or(largest);
            return Err(invalid_input(format!(
                "symbol {symbol} outside 0..{alphabet}"
            )));
        }
        let bytes = packed_len(symbols.len() as u64, width) as usize;
        out.extend_filled(bytes, |out| pack(symbols, width, out));
        Ok(())
    }

    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        let width = symbol_width(stream.alphabet_size);
        let expected = packed_len(count, width);
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
        let largest = symbols.iter().copied().fold(0, u32::max);
        let outside = if u64::from(largest) < alphabet {
            None
        } else {
            symbols.iter().find(|s| u64::from(**s) >= alphabet)
        };
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
