//! The canonical Huffman code of a model pmf (the `huffman` coder's
//! `model: parametric`): integer weights `max(1, round(p·2^30/Σp))`, the
//! length-limited Huffman construction of [`crate::huffman_code`], codes for
//! every symbol of the alphabet. Both ends build it from the same f32 model, so
//! nothing of the code is sent.

use crate::bits::msb::{BitReader, BitWriter};
use crate::bits::{BitSink, BitSource};
use crate::huffman_code::{code_lengths, CanonicalCode};
use gradcodec_sdk::prelude::*;

/// Integer weights of a model pmf; `None` when it is not a pmf.
pub fn model_weights(model: &[f32]) -> Option<Vec<u64>> {
    if model.iter().any(|p| !p.is_finite() || *p < 0.0) {
        return None;
    }
    let total: f64 = model.iter().map(|p| f64::from(*p)).sum();
    if total <= 0.0 {
        return None;
    }
    let scale = f64::from(1u32 << 30) / total;
    Some(
        model
            .iter()
            .map(|p| ((f64::from(*p) * scale).round() as u64).max(1))
            .collect(),
    )
}

/// The parametric code of an `alphabet`-symbol stream with model `model`
/// (every symbol of the alphabet has a code).
pub fn parametric_code(model: &[f32], alphabet: usize) -> SdkResult<CanonicalCode> {
    if model.is_empty() {
        return Err(unsupported(
            "huffman (parametric): the stream has no model; use model: empirical or a quantizer \
             that derives a model from its side info",
        ));
    }
    if model.len() != alphabet {
        return Err(corrupt(format!(
            "huffman (parametric): model has {} entries for an alphabet of {alphabet}",
            model.len()
        )));
    }
    let weights = model_weights(model)
        .ok_or_else(|| corrupt("huffman (parametric): the model is not a probability vector"))?;
    let lengths = code_lengths(&weights);
    let symbols: Vec<u32> = (0..alphabet as u32).collect();
    CanonicalCode::new(&symbols, &lengths)
}

/// Writes the symbols with `code` (a one-symbol code writes the count instead).
pub fn write_symbols(
    code: &CanonicalCode,
    alphabet: usize,
    symbols: &[u32],
    writer: &mut BitWriter<'_>,
) {
    let table = code.encode_table(alphabet);
    if code.min_length() == 0 {
        writer.put_gamma(symbols.len() as u64);
        return;
    }
    writer.put_codes(&table, symbols);
}

/// Reads exactly `count` symbols with `code`, then checks the end of the input.
pub fn read_symbols(
    code: &CanonicalCode,
    reader: &mut BitReader<'_>,
    count: u64,
    out: &mut RVec<u32>,
) -> SdkResult<()> {
    out.clear();
    if code.min_length() == 0 {
        let stored = reader
            .get_gamma(63)
            .map_err(|_| corrupt("huffman: bad symbol count"))?;
        if stored != count || reader.overrun() {
            return Err(corrupt(format!(
                "huffman: the stream holds {stored} symbols, {count} expected"
            )));
        }
        let symbol = code.decoder().decode(reader)?;
        out.reserve(count as usize);
        out.resize(out.len() + count as usize, symbol);
    } else {
        // Every symbol takes at least `min_length` bits: refuse counts the input
        // cannot hold before allocating anything.
        if count.saturating_mul(u64::from(code.min_length())) > reader.remaining() {
            return Err(corrupt(format!(
                "huffman: {} bytes cannot hold {count} symbols",
                reader.total() / 8
            )));
        }
        let decoder = code.bulk_decoder(count);
        let start = out.len();
        out.resize(start + count as usize, 0);
        let slots = &mut out.as_mut_slice()[start..];
        let (bulk, position) = decoder.decode_bulk(reader.data(), reader.position(), slots)?;
        *reader = BitReader::at(reader.data(), position);
        for slot in &mut slots[bulk..] {
            *slot = decoder.decode(reader)?;
        }
    }
    if !reader.at_clean_end() {
        return Err(corrupt(if reader.overrun() {
            "huffman: truncated input".to_string()
        } else {
            "huffman: trailing bytes after the last symbol".to_string()
        }));
    }
    Ok(())
}

/// [`read_symbols`] writing `levels[symbol]` for each symbol into `out`
/// (resized to `count`), with the same checks: the fused decoders' path from
/// coded bytes straight to reconstructed values. `levels` has one entry per
/// symbol of the code's alphabet.
pub fn read_levels(
    code: &CanonicalCode,
    reader: &mut BitReader<'_>,
    count: u64,
    levels: &[f32],
    out: &mut RVec<f32>,
) -> SdkResult<()> {
    let level = |symbol: u32| {
        levels.get(symbol as usize).copied().ok_or_else(|| {
            corrupt(format!(
                "huffman: symbol {symbol} outside the {} levels",
                levels.len()
            ))
        })
    };
    if code.min_length() == 0 {
        let stored = reader
            .get_gamma(63)
            .map_err(|_| corrupt("huffman: bad symbol count"))?;
        if stored != count || reader.overrun() {
            return Err(corrupt(format!(
                "huffman: the stream holds {stored} symbols, {count} expected"
            )));
        }
        let value = level(code.decoder().decode(reader)?)?;
        out.clear();
        out.resize(count as usize, value);
    } else {
        if count.saturating_mul(u64::from(code.min_length())) > reader.remaining() {
            return Err(corrupt(format!(
                "huffman: {} bytes cannot hold {count} symbols",
                reader.total() / 8
            )));
        }
        if code.max_symbol() as usize >= levels.len() {
            return Err(corrupt(format!(
                "huffman: the code has symbol {}, there are {} levels",
                code.max_symbol(),
                levels.len()
            )));
        }
        // Every slot is written once, straight into the spare capacity (no
        // zeroing pass); `out` holds nothing until all of them are.
        out.clear();
        let decoder = code.bulk_decoder(count);
        // SAFETY: on success `decode_bulk_levels` wrote the first `bulk` slots
        // and the loop every slot after them, so all `count` are written.
        unsafe {
            out.extend_written(count as usize, |slots| {
                // Every symbol of the code has a level (checked above).
                let (bulk, position) =
                    decoder.decode_bulk_levels(reader.data(), reader.position(), levels, slots)?;
                *reader = BitReader::at(reader.data(), position);
                for slot in &mut slots[bulk..] {
                    slot.write(level(decoder.decode(reader)?)?);
                }
                Ok(())
            })?;
        }
    }
    if !reader.at_clean_end() {
        return Err(corrupt(if reader.overrun() {
            "huffman: truncated input".to_string()
        } else {
            "huffman: trailing bytes after the last symbol".to_string()
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(model: &[f32], symbols: &[u32]) -> RVec<u8> {
        let code = parametric_code(model, model.len()).unwrap();
        let mut bytes = RVec::new();
        let mut writer = BitWriter::new(&mut bytes);
        write_symbols(&code, model.len(), symbols, &mut writer);
        writer.finish();
        bytes
    }

    #[test]
    fn levels_are_the_mapped_symbols_and_refusals_agree() {
        let model = [0.002, 0.01, 0.05, 0.2, 0.476, 0.2, 0.05, 0.01, 0.002];
        let levels: Vec<f32> = (0..9).map(|k| k as f32 - 4.0).collect();
        let mut state = 7u64;
        let symbols: Vec<u32> = (0..50_001)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let u = (state >> 40) as f64 / (1u64 << 24) as f64;
                let mut total = 0.0;
                model
                    .iter()
                    .position(|p| {
                        total += f64::from(*p);
                        u < total
                    })
                    .unwrap_or(8) as u32
            })
            .collect();
        let bytes = encode(&model, &symbols);
        let code = parametric_code(&model, 9).unwrap();
        for cut in [bytes.len(), bytes.len() - 1, bytes.len() / 2] {
            for count in [symbols.len() as u64, symbols.len() as u64 - 3, 100] {
                let mut as_symbols = RVec::new();
                let by_symbols = read_symbols(
                    &code,
                    &mut BitReader::new(&bytes[..cut]),
                    count,
                    &mut as_symbols,
                );
                let mut as_levels = RVec::new();
                let by_levels = read_levels(
                    &code,
                    &mut BitReader::new(&bytes[..cut]),
                    count,
                    &levels,
                    &mut as_levels,
                );
                assert_eq!(
                    by_symbols.is_ok(),
                    by_levels.is_ok(),
                    "cut {cut}, count {count}"
                );
                if by_symbols.is_ok() {
                    let mapped: Vec<f32> = as_symbols.iter().map(|s| levels[*s as usize]).collect();
                    assert_eq!(as_levels.as_slice(), mapped.as_slice());
                }
            }
        }
        // Fewer levels than symbols of the code: refused, never indexed.
        let mut out = RVec::new();
        assert!(read_levels(
            &code,
            &mut BitReader::new(&bytes),
            50_001,
            &levels[..5],
            &mut out
        )
        .is_err());
    }

    #[test]
    fn weights_refuse_what_is_not_a_pmf() {
        assert!(model_weights(&[0.5, f32::NAN]).is_none());
        assert!(model_weights(&[0.0, 0.0]).is_none());
        assert!(model_weights(&[-0.1, 1.1]).is_none());
        assert_eq!(
            model_weights(&[0.75, 0.25, 0.0]).unwrap(),
            vec![3 << 28, 1 << 28, 1]
        );
    }

    #[test]
    fn every_symbol_gets_a_code_and_likelier_symbols_shorter_ones() {
        let code = parametric_code(&[0.6, 0.25, 0.1, 0.05], 4).unwrap();
        let table = code.encode_table(4);
        assert!(table.iter().all(|(_, length)| *length > 0));
        assert!(table[0].1 <= table[3].1);
        assert!(parametric_code(&[0.5, 0.5], 3).is_err());
        assert!(parametric_code(&[], 3).is_err());
    }
}
