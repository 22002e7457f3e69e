//! `golomb-rice`: Rice codes of gaps between positions, or of values, with the
//! parameter chosen per stream.
//!
//! A `positions` stream (strictly increasing) is coded as its gaps `p_0`, then
//! `p_i - p_{i-1} - 1`; a `values` stream codes each symbol as it is. Each value
//! `v` becomes the quotient `q = v >> k` in unary (q one bits and a zero) followed
//! by the k low bits of `v`. Quotients of 32 or more are escaped: 32 one bits, then
//! the Elias gamma code of `q - 31`, then the k low bits, so one outlier costs
//! O(log v) bits, not O(v). The parameter k (0..=31) is written as the first byte;
//! the encoder picks the k that gives the shortest stream, which for geometric gaps
//! of mean μ is the classic `⌊log₂(μ·ln 2)⌋` or a neighbour, and which, unlike a rule
//! on the mean, is not misled by outliers. The last byte is zero padded.
//! `raw-words` streams are refused as unsupported. From Golomb, "Run-length
//! encodings", IEEE Trans. Inf. Theory, 1966, and Rice, "Some practical universal
//! noiseless coding techniques", JPL, 1979; the usual code for top-k positions (e.g.
//! Sattler et al., "Sparse Binary Compression", 2019).
//!
//! ```yaml
//! - entropy-coder: { use: golomb-rice, roles: [positions] }
//! ```

use crate::bits::{gamma_len, BitReader, BitSink, BitSource, BitWriter};
use crate::common::{
    check_count_fits, check_symbols, coded_integers, expect_no_bytes, refuse_raw_words,
    SymbolRebuilder,
};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Unary quotients from this value on are escaped.
const ESCAPE: u64 = 32;

/// `golomb-rice` has no parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GolombRiceConfig {}

impl StageConfig for GolombRiceConfig {}

/// The Golomb-Rice coder.
pub struct GolombRice;

/// Bits of the Rice code of `value` with parameter `k`.
pub fn rice_len(value: u64, k: u32) -> u64 {
    let q = value >> k;
    let quotient = if q < ESCAPE {
        q + 1
    } else {
        ESCAPE + gamma_len(q - ESCAPE + 1)
    };
    quotient + u64::from(k)
}

/// The Rice parameter for `values`: the k in 0..=31 giving the shortest stream.
/// For geometric gaps of mean μ this is the classic `⌊log₂(μ·ln 2)⌋` or a
/// neighbour; an exact search also copes with outliers, which mislead the mean.
pub fn choose_k(values: &[u32]) -> u32 {
    let mut costs = [0u64; 32];
    for value in values {
        let value = u64::from(*value);
        for (k, cost) in costs.iter_mut().enumerate() {
            *cost += rice_len(value, k as u32);
        }
    }
    (0..32u32)
        .min_by_key(|k| (costs[*k as usize], *k))
        .unwrap_or(0)
}

/// The classic starting point for geometric gaps of mean `mean`.
pub fn k_from_mean(mean: f64) -> u32 {
    let scaled = mean * std::f64::consts::LN_2;
    if scaled < 1.0 {
        0
    } else {
        (scaled.log2().floor() as u32).min(31)
    }
}

impl Stage for GolombRice {
    type Config = GolombRiceConfig;
    const INFO: StageInfo = StageInfo::new(
        "golomb-rice",
        "Golomb-Rice coding (Golomb 1966; Rice 1979) of position gaps (p_i - p_{i-1} - 1) \
              or values: unary quotient (escaped past 32) plus k low bits, with the k that \
              gives the shortest stream (about log2 of the mean gap) in a one-byte header. \
              Raw-word streams are unsupported.",
    )
    .with_flags(StageFlags::LOSSLESS);

    fn new(_config: GolombRiceConfig, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self)
    }
}

impl EntropyCoder for GolombRice {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        refuse_raw_words("golomb-rice", stream)?;
        check_symbols(stream)?;
        if stream.symbols.is_empty() {
            return Ok(());
        }
        let values = coded_integers(stream)?;
        let k = choose_k(&values);
        let mut writer = BitWriter::new();
        writer.write(u64::from(k), 8);
        for value in values.iter() {
            let value = u64::from(*value);
            let q = value >> k;
            if q < ESCAPE {
                for _ in 0..q {
                    writer.bit(true);
                }
                writer.bit(false);
            } else {
                for _ in 0..ESCAPE {
                    writer.bit(true);
                }
                writer.put_gamma(q - ESCAPE + 1);
            }
            writer.write(value, k);
        }
        out.extend_from_slice(&writer.finish());
        Ok(())
    }

    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        refuse_raw_words("golomb-rice", stream)?;
        stream.symbols.clear();
        if count == 0 {
            return expect_no_bytes("golomb-rice", bytes);
        }
        let mut reader = BitReader::new(bytes);
        let k = reader.read(8)? as u32;
        if k > 31 {
            return Err(corrupt(format!("golomb-rice: parameter {k} out of range")));
        }
        check_count_fits(count, reader.remaining(), 1 + u64::from(k))?;
        stream.symbols.reserve(count as usize);
        let mut rebuild = SymbolRebuilder::new(stream);
        for _ in 0..count {
            let mut q = u64::from(reader.ones(ESCAPE as u32)?);
            if q == ESCAPE {
                q = ESCAPE + reader.get_gamma(33)? - 1;
            }
            if q > u64::from(u32::MAX) >> k {
                return Err(corrupt("golomb-rice: value overflows 32 bits"));
            }
            let value = (q << k) | reader.read(k)?;
            stream.symbols.push(rebuild.symbol(value)?);
        }
        reader.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::positions_to_gaps;

    #[test]
    fn parameter_tracks_the_mean_gap_and_outliers_are_cheap() {
        // Positions of a 1% top-k: gaps around 100.
        let mut positions = SymbolStream::new(StreamRole::POSITIONS, 1_000_000);
        positions.symbols = (0..10_000u32).map(|i| i * 100 + (i * 37) % 50).collect();
        let gaps = positions_to_gaps(&positions.symbols).unwrap();
        let k = choose_k(&gaps);
        let mean = gaps.iter().map(|g| f64::from(*g)).sum::<f64>() / gaps.len() as f64;
        assert!(k.abs_diff(k_from_mean(mean)) <= 1, "k = {k}, mean {mean}");
        let mut out = RVec::new();
        GolombRice.encode(&positions, &mut out).unwrap();
        assert_eq!(out[0] as u32, k);
        let bits_per_position = out.len() as f64 * 8.0 / 10_000.0;
        eprintln!("golomb-rice: k = {k}, {bits_per_position:.2} bits per position (1% density)");
        assert!(bits_per_position < 9.0, "{bits_per_position}");
        let mut back = SymbolStream::new(StreamRole::POSITIONS, 1_000_000);
        GolombRice
            .decode(&out, positions.symbols.len() as u64, &mut back)
            .unwrap();
        assert_eq!(back.symbols, positions.symbols);
        // A huge value among small ones costs O(log v) bits, not O(v).
        let mut values = SymbolStream::new(StreamRole::VALUES, 1 << 32);
        values.symbols = vec![0, 1, 0, u32::MAX, 2, 0].into();
        let mut out = RVec::new();
        GolombRice.encode(&values, &mut out).unwrap();
        assert!(out.len() < 16, "{} bytes", out.len());
        let mut back = SymbolStream::new(StreamRole::VALUES, 1 << 32);
        GolombRice.decode(&out, 6, &mut back).unwrap();
        assert_eq!(back.symbols, values.symbols);
    }
}
