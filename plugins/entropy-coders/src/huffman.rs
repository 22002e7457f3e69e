//! `huffman`: canonical Huffman coding of a symbol stream, with an empirical or
//! a parametric model.
//!
//! - `model: empirical` — the code is built from the stream's own histogram and
//!   its code lengths travel first in the coded bytes, compactly: the number of
//!   distinct symbols (Elias gamma), then for each distinct symbol in increasing
//!   order the gap to the previous one (Elias gamma) and its length (5 bits).
//!   Alphabets up to 2^20 symbols; larger ones (e.g. raw f32 words, 2^32) are
//!   refused as unsupported.
//! - `model: parametric` — the code is built from `stream.model`, the pmf that
//!   the quantizer derives from its side info (e.g. the fitted GenNorm mass of
//!   every fp4 cell, CO3 §1.3), so both ends rebuild it and nothing but the
//!   symbols' bits is sent. A stream without a model is refused as unsupported.
//!
//! The model is turned into integer weights (`max(1, round(p·2^30/Σp))`), code
//! lengths are limited to 24 bits, and the canonical code is table-driven on
//! both sides. An empty stream codes to no bytes; a stream whose code has a
//! single symbol stores the symbol count (Elias gamma) so the decoder can check
//! it. The decoder validates everything before allocating (at most `count`
//! symbols), rejects incomplete codes, symbols outside the alphabet, truncated
//! input and trailing garbage. Huffman (1952); canonical codes as in Deflate
//! (RFC 1951); CO3: Chen, Hernandez, Huang, Rini, 2022-2023 (ALGORITHMS.md §1.3).
//!
//! ```yaml
//! - entropy-coder: { use: huffman, params: { model: parametric } }
//! ```

use crate::bits::msb::{BitReader, BitWriter};
use crate::bits::{BitSink, BitSource};
use crate::huffman_code::{code_lengths, CanonicalCode};

use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Largest alphabet the coder accepts.
pub const MAX_ALPHABET: u64 = 1 << 20;

/// Where the code comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HuffmanModel {
    /// The stream's histogram; code lengths are sent.
    #[default]
    Empirical,
    /// `stream.model` from the quantizer's side info; nothing but the symbols sent.
    Parametric,
}

/// Parameters of `huffman`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HuffmanConfig {
    /// `empirical` (histogram, code lengths sent) or `parametric` (the
    /// quantizer's model, nothing sent).
    pub model: HuffmanModel,
}

impl StageConfig for HuffmanConfig {}

/// The Huffman coder.
pub struct Huffman {
    config: HuffmanConfig,
}

impl Stage for Huffman {
    type Config = HuffmanConfig;
    const INFO: StageInfo = StageInfo::new(
        "huffman",
        "Canonical Huffman coding (Huffman 1952), table-driven, code lengths limited to 24 bits. \
              model: empirical builds the code from the stream's histogram and sends the code \
              lengths; model: parametric builds it from the stream's model (e.g. the GenNorm cell \
              masses of CO3, Chen-Hernandez-Huang-Rini 2022-2023) and sends only the symbols.",
    )
    .with_example(r#"{"model": "empirical"}"#)
    .with_flags(StageFlags::LOSSLESS);

    fn new(config: HuffmanConfig, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self { config })
    }
}

/// Alphabet of a stream as a `usize`, refusing what this coder cannot table.
fn checked_alphabet(stream: &SymbolStream) -> SdkResult<usize> {
    if stream.alphabet_size == 0 || stream.alphabet_size > MAX_ALPHABET {
        return Err(unsupported(format!(
            "huffman: alphabet of {} symbols (supported: 1..={MAX_ALPHABET})",
            stream.alphabet_size
        )));
    }
    Ok(stream.alphabet_size as usize)
}

/// The parametric code of a stream (every symbol of the alphabet has a code).
fn parametric_code(stream: &SymbolStream, alphabet: usize) -> SdkResult<CanonicalCode> {
    gradcodec_coding::parametric::parametric_code(&stream.model, alphabet)
}

fn check_symbols(stream: &SymbolStream, alphabet: usize) -> SdkResult<()> {
    match stream.symbols.iter().find(|s| **s as usize >= alphabet) {
        Some(bad) => Err(invalid_input(format!(
            "huffman: symbol {bad} outside the alphabet 0..{alphabet}"
        ))),
        None => Ok(()),
    }
}

use gradcodec_coding::parametric::{read_symbols, write_symbols};

/// Empirical header: distinct symbols, gaps and lengths.
fn write_empirical(stream: &SymbolStream, alphabet: usize, out: &mut RVec<u8>) -> SdkResult<()> {
    let mut counts = vec![0u64; alphabet];
    for symbol in stream.symbols.iter() {
        counts[*symbol as usize] += 1;
    }
    let used: Vec<u32> = (0..alphabet as u32)
        .filter(|s| counts[*s as usize] > 0)
        .collect();
    let weights: Vec<u64> = used.iter().map(|s| counts[*s as usize]).collect();
    let lengths = code_lengths(&weights);
    let code = CanonicalCode::new(&used, &lengths)?;
    let mut writer = BitWriter::new(out);
    writer.put_gamma(used.len() as u64);
    let mut previous: Option<u32> = None;
    for (symbol, length) in used.iter().zip(&lengths) {
        let gap = previous.map_or(*symbol, |p| symbol - p - 1);
        writer.put_gamma(u64::from(gap) + 1);
        if used.len() > 1 {
            writer.put(u32::from(*length), 5);
        }
        previous = Some(*symbol);
    }
    write_symbols(&code, alphabet, &stream.symbols, &mut writer);
    writer.finish();
    Ok(())
}

fn read_empirical(
    reader: &mut BitReader<'_>,
    alphabet: usize,
    count: u64,
    out: &mut RVec<u32>,
) -> SdkResult<()> {
    let used = reader
        .get_gamma(63)
        .map_err(|_| corrupt("huffman: bad symbol table size"))?;
    // Each table entry takes at least 1 bit (gap) + 5 bits (length).
    if used == 0 || used > alphabet as u64 || used > count || used > reader.remaining() {
        return Err(corrupt(format!(
            "huffman: a table of {used} symbols is impossible here (alphabet {alphabet}, {count} symbols)"
        )));
    }
    let used = used as usize;
    let mut symbols = Vec::with_capacity(used);
    let mut lengths = Vec::with_capacity(used);
    let mut next: u64 = 0;
    for _ in 0..used {
        let gap = reader
            .get_gamma(63)
            .map_err(|_| corrupt("huffman: bad symbol gap"))?
            - 1;
        let symbol = next.saturating_add(gap);
        if symbol >= alphabet as u64 || reader.overrun() {
            return Err(corrupt("huffman: symbol table outside the alphabet"));
        }
        symbols.push(symbol as u32);
        lengths.push(if used > 1 { reader.get(5) as u8 } else { 0 });
        next = symbol + 1;
    }
    if reader.overrun() {
        return Err(corrupt("huffman: truncated symbol table"));
    }
    let code = CanonicalCode::new(&symbols, &lengths)?;
    read_symbols(&code, reader, count, out)
}

impl EntropyCoder for Huffman {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        let alphabet = checked_alphabet(stream)?;
        if self.config.model == HuffmanModel::Parametric {
            // Refuse a stream without a model even when it is empty.
            let code = parametric_code(stream, alphabet)?;
            check_symbols(stream, alphabet)?;
            if !stream.symbols.is_empty() {
                let mut writer = BitWriter::new(out);
                write_symbols(&code, alphabet, &stream.symbols, &mut writer);
                writer.finish();
            }
            return Ok(());
        }
        check_symbols(stream, alphabet)?;
        if stream.symbols.is_empty() {
            return Ok(());
        }
        write_empirical(stream, alphabet, out)
    }

    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        let alphabet = checked_alphabet(stream)?;
        let code = match self.config.model {
            HuffmanModel::Parametric => Some(parametric_code(stream, alphabet)?),
            HuffmanModel::Empirical => None,
        };
        stream.symbols.clear();
        if count == 0 {
            return if bytes.is_empty() {
                Ok(())
            } else {
                Err(corrupt("huffman: bytes for an empty stream"))
            };
        }
        let mut reader = BitReader::new(bytes);
        match code {
            Some(code) => read_symbols(&code, &mut reader, count, &mut stream.symbols),
            None => read_empirical(&mut reader, alphabet, count, &mut stream.symbols),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::StreamRole;

    fn coder(model: HuffmanModel) -> Huffman {
        Huffman {
            config: HuffmanConfig { model },
        }
    }

    fn round_trip(model: HuffmanModel, stream: &SymbolStream) -> RVec<u8> {
        let mut bytes = RVec::new();
        coder(model).encode(stream, &mut bytes).unwrap();
        let mut back = SymbolStream {
            symbols: RVec::new(),
            ..stream.clone()
        };
        coder(model)
            .decode(&bytes, stream.symbols.len() as u64, &mut back)
            .unwrap();
        assert_eq!(back.symbols, stream.symbols);
        bytes
    }

    fn entropy_bits(symbols: &[u32], alphabet: usize) -> f64 {
        let mut counts = vec![0usize; alphabet];
        for s in symbols {
            counts[*s as usize] += 1;
        }
        let n = symbols.len() as f64;
        counts
            .iter()
            .filter(|c| **c > 0)
            .map(|c| {
                let p = *c as f64 / n;
                -p * p.log2()
            })
            .sum::<f64>()
            * n
    }

    #[test]
    fn empirical_code_is_within_huffman_redundancy_of_the_entropy() {
        // Geometric-like source over 40 symbols.
        let mut state = 12345u64;
        let symbols: Vec<u32> = (0..200_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let u = ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                ((-u.ln() * 3.0) as u32).min(39)
            })
            .collect();
        let mut stream = SymbolStream::new(StreamRole::VALUES, 40);
        stream.symbols = symbols.into();
        let bytes = round_trip(HuffmanModel::Empirical, &stream);
        let bits = bytes.len() as f64 * 8.0;
        let entropy = entropy_bits(&stream.symbols, 40);
        let redundancy = (bits - entropy) / stream.symbols.len() as f64;
        println!("empirical: {:.4} bits/symbol over entropy", redundancy);
        assert!((0.0..0.1).contains(&redundancy), "redundancy {redundancy}");
    }

    #[test]
    fn large_and_degenerate_alphabets() {
        // 2^16 symbols, all used once or more.
        let mut stream = SymbolStream::new(StreamRole::VALUES, 1 << 16);
        stream.symbols = (0..200_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) >> 16)
            .collect();
        round_trip(HuffmanModel::Empirical, &stream);
        let mut modelled = stream.clone();
        modelled.model = (0..1u32 << 16).map(|i| 1.0 / (1.0 + i as f32)).collect();
        round_trip(HuffmanModel::Parametric, &modelled);
        // A one-symbol stream stores its count; a wrong count is refused.
        let mut single = SymbolStream::new(StreamRole::VALUES, 5);
        single.symbols = vec![3; 1000].into();
        let bytes = round_trip(HuffmanModel::Empirical, &single);
        assert!(bytes.len() <= 4);
        let mut back = single.clone();
        assert!(coder(HuffmanModel::Empirical)
            .decode(&bytes, 999, &mut back)
            .is_err());
        // 2^32 alphabets are refused as unsupported.
        let mut raw = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
        raw.symbols = vec![7, 8].into();
        let error = coder(HuffmanModel::Empirical)
            .encode(&raw, &mut RVec::new())
            .unwrap_err();
        assert_eq!(error.code, gradcodec_sdk::ErrorCode::UNSUPPORTED);
    }

    #[test]
    fn parametric_needs_a_model_and_sends_only_symbols() {
        let mut stream = SymbolStream::new(StreamRole::VALUES, 4);
        stream.symbols = vec![0, 0, 1, 2, 0, 3, 0, 0].into();
        let error = coder(HuffmanModel::Parametric)
            .encode(&stream, &mut RVec::new())
            .unwrap_err();
        assert_eq!(error.code, gradcodec_sdk::ErrorCode::UNSUPPORTED);
        stream.model = vec![0.5, 0.25, 0.125, 0.125].into();
        let bytes = round_trip(HuffmanModel::Parametric, &stream);
        // Lengths 1, 2, 3, 3: 5·1 + 2 + 3 + 3 = 13 bits.
        assert_eq!(bytes.len(), 2);
        stream.model = vec![0.5, 0.5].into();
        assert!(coder(HuffmanModel::Parametric)
            .encode(&stream, &mut RVec::new())
            .is_err());
        stream.model = vec![0.5, f32::NAN, 0.1, 0.1].into();
        assert!(coder(HuffmanModel::Parametric)
            .encode(&stream, &mut RVec::new())
            .is_err());
    }

    #[test]
    fn garbage_is_refused_without_panic_or_huge_allocation() {
        let mut stream = SymbolStream::new(StreamRole::VALUES, 11);
        stream.symbols = (0..5000u32).map(|i| (i * i) % 11).collect();
        stream.model = vec![1.0 / 11.0; 11].into();
        for model in [HuffmanModel::Empirical, HuffmanModel::Parametric] {
            let bytes = round_trip(model, &stream);
            let mut target = stream.clone();
            let malformed = [
                bytes[..bytes.len() / 2].to_vec(),
                vec![0xFF; 64],
                Vec::new(),
                [bytes.as_slice(), &[0]].concat(),
            ];
            for probe in malformed {
                let result = coder(model).decode(&probe, 5000, &mut target);
                assert!(result.is_err(), "{model:?}: accepted a malformed stream");
                assert!(target.symbols.capacity() <= 5000);
            }
            // Random bytes of the right size carry no header for the parametric
            // code and may decode; the result must then still be well-formed.
            let noise = vec![0xA5; bytes.len()];
            match coder(model).decode(&noise, 5000, &mut target) {
                Ok(()) => {
                    assert_eq!(model, HuffmanModel::Parametric);
                    assert_eq!(target.symbols.len(), 5000);
                    assert!(target.symbols.iter().all(|s| *s < 11));
                }
                Err(error) => assert_ne!(error.code, gradcodec_sdk::ErrorCode::PANIC),
            }
            // A huge count is refused before any allocation.
            let mut fresh = stream.clone();
            fresh.symbols = RVec::new();
            assert!(coder(model)
                .decode(&bytes, u64::MAX / 2, &mut fresh)
                .is_err());
            assert_eq!(fresh.symbols.capacity(), 0);
        }
    }
}
