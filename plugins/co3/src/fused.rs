//! The fused pair `float-convert` + `huffman` (`model: parametric`): CO3's
//! conversion and GenNorm Huffman coding in one pass over the tensor.
//!
//! Composed, the pair takes five passes behind the ABI: the fit, rounding into
//! a u32 symbol buffer, the host's alphabet check, Huffman coding of the buffer
//! and dequantization of it. Fused, after the same fit it rounds a few thousand
//! entries at a time into a stack buffer, writes their reconstructions from the
//! level table and their codes with the same canonical code and bit writer
//! (`gradcodec-coding`), so the bytes, side info and reconstruction are the
//! composed path's bit for bit (the conformance kit checks it). With AVX-512F
//! and an alphabet of at most 16 symbols (fp4) the fill writes the symbols as
//! packed pairs, one byte each, which the writer looks up directly. Decoding turns
//! the codes straight into levels (`read_levels`), with no symbol buffer.
//!
//! Used by the engine whenever a pipeline's quantizer is `float-convert` and
//! its only entropy coder is `huffman` with `model: parametric`, e.g.
//!
//! ```yaml
//! - quantizer:     { use: float-convert, params: { format: fp4, prescale: gennorm } }
//! - entropy-coder: { use: huffman, params: { model: parametric } }
//! ```

use crate::float_convert::{level_values, FloatConvert, FloatConvertConfig, Rounder, SideInfo};
use gradcodec_coding::bits::msb::{BitReader, BitWriter, PairTable, PAIR_ALPHABET};
use gradcodec_coding::bits::BitSink;
use gradcodec_coding::parametric::{parametric_code, read_levels};
use gradcodec_sdk::abi::{CodedStream, FusedEncoded};
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::FusedPair;

/// Entries rounded per step (a stack buffer of their symbols).
const CHUNK: usize = 4096;

/// `float-convert` + `huffman` (parametric) in one pass.
pub struct FloatConvertHuffman {
    quantizer: FloatConvert,
}

impl FusedPair for FloatConvertHuffman {
    const QUANTIZER_LIBRARY: &'static str = "gradcodec-plugin-co3";
    const QUANTIZER: &'static str = "float-convert";
    const CODER_LIBRARY: &'static str = "gradcodec-plugin-entropy-coders";
    const CODER: &'static str = "huffman";
    const DOC: &'static str =
        "CO3 conversion and parametric GenNorm Huffman in one pass: rounding, \
        codes and reconstruction per 4096-entry chunk, no symbol buffer";

    fn new(
        quantizer_config: &str,
        coder_config: &str,
        tensor: &TensorSpec,
    ) -> SdkResult<Option<Self>> {
        let coder: serde_json::Value = serde_json::from_str(coder_config)
            .map_err(|e| invalid_config(format!("huffman config: {e}")))?;
        if coder != serde_json::json!({ "model": "parametric" }) {
            return Ok(None);
        }
        let config: FloatConvertConfig = serde_json::from_str(quantizer_config)
            .map_err(|e| invalid_config(format!("float-convert config: {e}")))?;
        if config.validate().is_err() {
            return Ok(None);
        }
        let quantizer = <FloatConvert as Stage>::new(config, tensor)?;
        Ok(Some(Self { quantizer }))
    }

    fn encode(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut FusedEncoded,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.quantizer.len())?;
        out.quantized.clear();
        out.symbol_counts.clear();
        out.coded.truncate(1);
        if out.coded.is_empty() {
            out.coded.push(RVec::new());
        }
        let bytes = &mut out.coded[0];
        bytes.clear();
        let side = self.quantizer.side_info(input);
        side.write(&mut out.quantized.side_info);
        let stream = self.quantizer.stream(&side);
        let alphabet = stream.alphabet_size as usize;
        let code = parametric_code(&stream.model, alphabet)?;
        let table = code.encode_table(alphabet);
        let pairs = (alphabet <= PAIR_ALPHABET).then(|| PairTable::new(&table));
        let values = level_values(self.quantizer.format(), side.scale);
        let rounder = Rounder::new(self.quantizer.format(), f64::from(side.scale));
        let reconstruction = &mut out.reconstruction;
        if reconstruction.len() != input.len() {
            // Every entry is overwritten below; a reused buffer needs no clearing.
            reconstruction.clear();
            reconstruction.resize(input.len(), 0.0);
        }
        if !input.is_empty() {
            let mut writer = BitWriter::new(bytes);
            if code.min_length() == 0 {
                // A one-symbol code writes the count (as `huffman` does).
                writer.put_gamma(input.len() as u64);
                fill_values(
                    &rounder,
                    &values,
                    input,
                    reconstruction.as_mut_slice(),
                    |_| {},
                );
            } else if let Some(pairs) = pairs.as_ref().filter(|_| values.len() <= 16) {
                fill_paired(
                    &rounder,
                    &values,
                    input,
                    reconstruction.as_mut_slice(),
                    pairs,
                    &mut writer,
                );
            } else {
                fill_values(
                    &rounder,
                    &values,
                    input,
                    reconstruction.as_mut_slice(),
                    |symbols| match &pairs {
                        Some(pairs) => writer.put_pairs(pairs, symbols),
                        None => writer.put_codes(&table, symbols),
                    },
                );
            }
            writer.finish();
        }
        out.quantized.streams.push(stream);
        out.symbol_counts.push(input.len() as u64);
        Ok(())
    }

    fn decode(
        &mut self,
        _ctx: &CallContext,
        described: &Quantized,
        streams: &[CodedStream<'_>],
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let side = SideInfo::read(&described.side_info)?;
        let [stream] = streams else {
            return Err(corrupt(format!(
                "float-convert expects one stream, got {}",
                streams.len()
            )));
        };
        let len = self.quantizer.len();
        ensure_data(stream.symbols == len, || {
            format!(
                "float-convert stream has {} symbols, the tensor has {len}",
                stream.symbols
            )
        })?;
        let model = self.quantizer.stream(&side);
        let alphabet = model.alphabet_size as usize;
        let code = parametric_code(&model.model, alphabet)?;
        let bytes = stream.bytes.as_slice();
        let values = level_values(self.quantizer.format(), side.scale);
        if len == 0 {
            ensure_data(bytes.is_empty(), || {
                "huffman: bytes for an empty stream".to_string()
            })?;
            out.clear();
        } else {
            // Codes straight to levels: no symbol buffer.
            let mut reader = BitReader::new(bytes);
            read_levels(&code, &mut reader, len, &values, out)?;
        }
        Ok(())
    }
}

/// Rounds `input` chunk by chunk: the symbols go to `emit`, their levels to `out`.
fn fill_values(
    rounder: &Rounder,
    values: &[f32],
    input: &[f32],
    out: &mut [f32],
    mut emit: impl FnMut(&[u32]),
) {
    let mut symbols = [0u32; CHUNK];
    let mut small = [0.0f32; 16];
    if values.len() <= 16 {
        small[..values.len()].copy_from_slice(values);
    }
    for (chunk, out) in input.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
        let symbols = &mut symbols[..chunk.len()];
        if values.len() <= 16 {
            rounder.fill_with_levels(chunk, &small, symbols, out);
        } else {
            rounder.fill(chunk, symbols);
            for (value, symbol) in out.iter_mut().zip(symbols.iter()) {
                *value = values[*symbol as usize];
            }
        }
        emit(symbols);
    }
}

/// [`fill_values`] into `writer` with the pair table of an alphabet of at most
/// 16 symbols (`values` has at most 16 levels): chunk by chunk as packed
/// symbol pairs where the CPU's fill writes them
/// (`Rounder::fill_pairs_with_levels`), else as symbols; the same bits either
/// way.
fn fill_paired(
    rounder: &Rounder,
    values: &[f32],
    input: &[f32],
    out: &mut [f32],
    pairs: &PairTable,
    writer: &mut BitWriter<'_>,
) {
    let mut small = [0.0f32; 16];
    small[..values.len()].copy_from_slice(values);
    let mut packed = [0u8; CHUNK / 2];
    let mut symbols = [0u32; CHUNK];
    for (chunk, out) in input.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
        let packed = &mut packed[..chunk.len() / 2];
        if rounder.fill_pairs_with_levels(chunk, &small, packed, out) {
            writer.put_pair_indices(pairs, packed);
        } else {
            let symbols = &mut symbols[..chunk.len()];
            rounder.fill_with_levels(chunk, &small, symbols, out);
            writer.put_pairs(pairs, symbols);
        }
    }
}
