//! `elias-gamma`: Elias gamma codes of gaps between positions, or of values.
//!
//! A `positions` stream (strictly increasing) is coded as its gaps: the first
//! position `p_0` as `γ(p_0 + 1)`, then each `γ(p_i - p_{i-1})`. A `values` stream
//! codes each symbol `v` as `γ(v + 1)`. `γ(u)` is ⌊log₂ u⌋ zero bits, a one, and the
//! ⌊log₂ u⌋ bits below u's leading one (LSB first), so small gaps and values are
//! cheap: 1 bit for a gap of 1 or a value of 0. No header and no model; the last
//! byte is zero padded. `raw-words` streams are refused as unsupported (32-bit
//! words would take about 63 bits each). From Elias, "Universal codeword sets and
//! representations of the integers", IEEE Trans. Inf. Theory, 1975; QSGD
//! (Alistarh et al. 2017) codes its levels and gaps this way.
//!
//! ```yaml
//! - entropy-coder: { use: elias-gamma, roles: [positions] }
//! ```

use crate::bits::{BitReader, BitSink, BitSource, BitWriter};
use crate::common::{
    check_count_fits, check_symbols, coded_integers, expect_no_bytes, refuse_raw_words,
    SymbolRebuilder,
};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// `elias-gamma` has no parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EliasGammaConfig {}

impl StageConfig for EliasGammaConfig {}

/// The Elias gamma coder.
pub struct EliasGamma;

impl Stage for EliasGamma {
    type Config = EliasGammaConfig;
    const INFO: StageInfo = StageInfo::new(
        "elias-gamma",
        "Elias gamma coding (Elias 1975): positions as gaps gamma(p_i - p_{i-1}) (first \
              gamma(p_0 + 1)), values as gamma(v + 1); no header, no model. Raw-word streams \
              are unsupported.",
    )
    .with_flags(StageFlags::LOSSLESS);

    fn new(_config: EliasGammaConfig, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self)
    }
}

impl EntropyCoder for EliasGamma {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        refuse_raw_words("elias-gamma", stream)?;
        check_symbols(stream)?;
        let mut writer = BitWriter::new();
        for value in coded_integers(stream)?.iter() {
            writer.put_gamma(u64::from(*value) + 1);
        }
        out.extend_from_slice(&writer.finish());
        Ok(())
    }

    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        refuse_raw_words("elias-gamma", stream)?;
        stream.symbols.clear();
        if count == 0 {
            return expect_no_bytes("elias-gamma", bytes);
        }
        let mut reader = BitReader::new(bytes);
        check_count_fits(count, reader.remaining(), 1)?;
        stream.symbols.reserve(count as usize);
        let mut rebuild = SymbolRebuilder::new(stream);
        for _ in 0..count {
            let value = reader.get_gamma(32)? - 1;
            stream.symbols.push(rebuild.symbol(value)?);
        }
        reader.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_gamma_lengths() {
        let mut positions = SymbolStream::new(StreamRole::POSITIONS, 1000);
        // Gaps 1, 1, 2, 4 -> gamma(1)=1, gamma(1)... first position 0 -> gamma(1).
        positions.symbols = vec![0, 1, 3, 7].into();
        let mut out = RVec::new();
        EliasGamma.encode(&positions, &mut out).unwrap();
        // 1 + 1 + 3 + 5 = 10 bits -> 2 bytes.
        assert_eq!(out.len(), 2);
        let mut back = SymbolStream::new(StreamRole::POSITIONS, 1000);
        EliasGamma.decode(&out, 4, &mut back).unwrap();
        assert_eq!(back.symbols, positions.symbols);
        // A position beyond the alphabet is refused on decode.
        let mut small = SymbolStream::new(StreamRole::POSITIONS, 7);
        assert!(EliasGamma.decode(&out, 4, &mut small).is_err());
        let raw = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
        let error = EliasGamma.encode(&raw, &mut out).unwrap_err();
        assert_eq!(error.code, gradcodec_sdk::ErrorCode::UNSUPPORTED);
    }
}
