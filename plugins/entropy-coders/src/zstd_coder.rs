//! `zstd`: the generic lossless baseline — byte packing, then Zstandard.
//!
//! Symbols are packed little-endian at the minimal whole-byte width of the
//! alphabet (`⌈⌈log₂ alphabet⌉ / 8⌉` bytes: 1 for up to 256 symbols, 4 for raw
//! f32 words; nothing at all for a one-symbol alphabet), and the bytes are
//! compressed as one Zstandard frame at `level`. `positions` streams are first
//! turned into gaps (`p_0`, then `p_i - p_{i-1} - 1`), the one modelling step
//! allowed, since raw indices never repeat. An empty stream is zero bytes. The
//! decoder asks zstd for at most `count × width` bytes and requires exactly that
//! many. Zstandard: Collet & Kucherawy, RFC 8878 (2021), via the `zstd` crate;
//! ALGORITHMS.md §7's "generic lossless coder on the raw f32 bytes".
//!
//! ```yaml
//! - entropy-coder: { use: zstd, params: { level: 3 } }
//! ```

use crate::common::{check_symbols, coded_integers, symbol_bits, SymbolRebuilder};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of `zstd`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ZstdConfig {
    /// Compression level, -7..=22 (negative: faster; 0 means zstd's default, 3).
    pub level: i32,
}

impl Default for ZstdConfig {
    fn default() -> Self {
        Self { level: 3 }
    }
}

impl StageConfig for ZstdConfig {
    fn validate(&self) -> Result<(), String> {
        ensure(
            (-7..=22).contains(&self.level),
            "level",
            format!("must be in -7..=22, got {}", self.level),
        )
    }
}

/// The zstd coder.
pub struct Zstd {
    level: i32,
}

/// Bytes per packed symbol.
fn width(alphabet: u64) -> usize {
    symbol_bits(alphabet).div_ceil(8) as usize
}

impl Stage for Zstd {
    type Config = ZstdConfig;
    const INFO: StageInfo = StageInfo::new(
        "zstd",
        "Generic baseline: symbols packed at the minimal byte width of the alphabet \
              (positions as gaps), then one Zstandard frame (RFC 8878) at `level`.",
    )
    .with_example(r#"{"level": 3}"#)
    .with_flags(StageFlags::LOSSLESS);

    fn new(config: ZstdConfig, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            level: config.level,
        })
    }
}

impl EntropyCoder for Zstd {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        check_symbols(stream)?;
        let width = width(stream.alphabet_size);
        if stream.symbols.is_empty() || width == 0 {
            return Ok(());
        }
        let values = coded_integers(stream)?;
        let mut packed = Vec::with_capacity(values.len() * width);
        for value in values.iter() {
            packed.extend_from_slice(&value.to_le_bytes()[..width]);
        }
        let compressed = zstd::bulk::compress(&packed, self.level)
            .map_err(|error| corrupt(format!("zstd failed to compress: {error}")))?;
        out.extend_from_slice(&compressed);
        Ok(())
    }

    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        stream.symbols.clear();
        let width = width(stream.alphabet_size);
        if count == 0 || width == 0 {
            ensure_data(bytes.is_empty(), || {
                "zstd: bytes for a stream that needs none".into()
            })?;
            stream.symbols.resize(count as usize, 0);
            return Ok(());
        }
        let expected = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(width))
            .ok_or_else(|| corrupt("zstd: stream too long"))?;
        // A frame that declares its size lets us refuse an impossible one before
        // allocating.
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(bytes) {
            ensure_data(size == expected as u64, || {
                format!("zstd: frame holds {size} bytes, expected {expected}")
            })?;
        }
        // Streamed in chunks straight into the symbols, so memory grows with
        // what the frame really holds (a frame without a stated size may claim
        // anything: reserving the claim let a 412-byte message demand 16 GiB),
        // and no second copy of the stream's bytes is held.
        let mut rebuild = SymbolRebuilder::new(stream);
        let symbols = &mut stream.symbols;
        let mut decoded: Vec<u32> = Vec::new();
        let total = decompress_in_chunks(bytes, expected, width, |chunk| {
            decoded.clear();
            for word_bytes in chunk.chunks_exact(width) {
                let mut word = [0u8; 4];
                word[..width].copy_from_slice(word_bytes);
                let value = u64::from(u32::from_le_bytes(word));
                decoded.push(rebuild.symbol(value)?);
            }
            symbols.extend_copied(&decoded);
            Ok(())
        })?;
        ensure_data(total == expected, || {
            format!("zstd: decompressed {total} bytes, expected {expected}")
        })?;
        Ok(())
    }
}

/// Decompresses `bytes` (one or more zstd frames) and hands the output to
/// `consume` in chunks of whole `width`-byte words; refuses output past
/// `limit` bytes. Returns the bytes produced.
fn decompress_in_chunks(
    bytes: &[u8],
    limit: usize,
    width: usize,
    mut consume: impl FnMut(&[u8]) -> SdkResult<()>,
) -> SdkResult<usize> {
    use std::io::Read;
    const CHUNK: usize = 1 << 16;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(bytes)
        .map_err(|error| corrupt(format!("zstd: {error}")))?;
    let mut buffer = vec![0u8; CHUNK - CHUNK % width];
    let (mut filled, mut total) = (0usize, 0usize);
    loop {
        let read = decoder
            .read(&mut buffer[filled..])
            .map_err(|error| corrupt(format!("zstd: {error}")))?;
        total += read;
        ensure_data(total <= limit, || {
            format!("zstd: the frame holds more than the {limit} bytes expected")
        })?;
        filled += read;
        if read == 0 || filled == buffer.len() {
            let whole = filled - filled % width;
            consume(&buffer[..whole])?;
            buffer.copy_within(whole..filled, 0);
            filled -= whole;
        }
        if read == 0 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::{conformance::sample_tensor, StreamRole};

    /// A frame that states no size, claiming 2^34 four-byte symbols: the old
    /// decoder reserved the 64 GiB claimed (more than the machine has: the
    /// process aborted); now memory follows the frame's real output and the
    /// mismatch is an error.
    #[test]
    fn a_frame_without_a_size_cannot_make_the_decoder_reserve_its_claim() {
        let mut frame = Vec::new();
        {
            let mut encoder = zstd::stream::write::Encoder::new(&mut frame, 3).unwrap();
            std::io::Write::write_all(&mut encoder, &[7u8; 4096]).unwrap();
            encoder.finish().unwrap();
        }
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&frame),
            Ok(None)
        ));
        let mut stream = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
        let error = Zstd { level: 3 }
            .decode(&frame, 1 << 34, &mut stream)
            .unwrap_err();
        assert!(
            error
                .message
                .contains("decompressed 4096 bytes, expected 68719476736"),
            "{}",
            error.message
        );
        // More output than the claim is refused as soon as it passes the claim.
        let error = Zstd { level: 3 }
            .decode(&frame, 16, &mut stream)
            .unwrap_err();
        assert!(
            error.message.contains("more than the 64 bytes"),
            "{}",
            error.message
        );
    }

    #[test]
    fn compresses_redundant_words_and_refuses_wrong_sizes() {
        let values = sample_tensor(100_000, 4);
        let mut raw = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
        raw.symbols = values.iter().map(|v| v.to_bits()).collect();
        let mut zstd = Zstd { level: 3 };
        let mut out = RVec::new();
        zstd.encode(&raw, &mut out).unwrap();
        let ratio = out.len() as f64 / (4.0 * values.len() as f64);
        eprintln!(
            "zstd level 3 on heavy-tailed f32 words: {:.3} of the raw size",
            ratio
        );
        assert!(ratio < 0.95, "{ratio}");
        let mut back = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
        zstd.decode(&out, values.len() as u64, &mut back).unwrap();
        assert_eq!(back.symbols, raw.symbols);
        assert!(zstd
            .decode(&out, values.len() as u64 - 1, &mut back)
            .is_err());
        assert!(zstd
            .decode(&out, values.len() as u64 + 1, &mut back)
            .is_err());
        // Byte-wide symbols of a small alphabet.
        let mut small = SymbolStream::new(StreamRole::VALUES, 3);
        small.symbols = (0..1000u32).map(|i| i % 3).collect();
        let mut out = RVec::new();
        zstd.encode(&small, &mut out).unwrap();
        assert!(out.len() < 100);
        let mut back = SymbolStream::new(StreamRole::VALUES, 3);
        zstd.decode(&out, 1000, &mut back).unwrap();
        assert_eq!(back.symbols, small.symbols);
        let mut narrower = SymbolStream::new(StreamRole::VALUES, 2);
        assert!(zstd.decode(&out, 1000, &mut narrower).is_err());
        assert!(
            gradcodec_sdk::parse_config::<ZstdConfig>(r#"{"level": 40}"#)
                .unwrap_err()
                .message
                .contains("level")
        );
    }
}
