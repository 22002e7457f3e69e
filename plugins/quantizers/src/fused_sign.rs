//! The fused pair `sign` + `bitpack`: signSGD's one bit per entry, packed as
//! `bitpack` packs a 2-symbol alphabet (LSB first: entry `8j + b` is bit `b`
//! of byte `j`, 1 for a negative entry), in one pass that also writes the
//! reconstruction `±scale`. The scale is the composed quantizer's, `mean |x|`
//! summed in entry order in f64, so the bytes and x̂ are the composed path's
//! bit for bit (the conformance kit checks it). Decoding turns the bits
//! straight into `±scale`.
//!
//! ```yaml
//! # pipelines/signsgd-ef.yaml
//! - error-correction: { use: error-feedback, params: { gamma: 1.0 } }
//! - quantizer:        { use: sign }
//! - entropy-coder:    { use: bitpack }
//! ```

use crate::fused::{no_params, resize_for_overwrite};
use crate::sign::read_scale;
use gradcodec_sdk::abi::{CodedStream, FusedEncoded};
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::FusedPair;

/// `sign` + `bitpack` in one pass.
pub struct SignBitpack {
    len: u64,
}

impl FusedPair for SignBitpack {
    const QUANTIZER_LIBRARY: &'static str = "gradcodec-plugin-quantizers";
    const QUANTIZER: &'static str = "sign";
    const CODER_LIBRARY: &'static str = "gradcodec-plugin-entropy-coders";
    const CODER: &'static str = "bitpack";
    const DOC: &'static str = "scaled sign and 1-bit packing in one pass: eight signs per \
        byte and the reconstruction ±scale, no symbol buffer";

    fn new(
        quantizer_config: &str,
        coder_config: &str,
        tensor: &TensorSpec,
    ) -> SdkResult<Option<Self>> {
        if !no_params("sign", quantizer_config)? || !no_params("bitpack", coder_config)? {
            return Ok(None);
        }
        Ok(Some(Self { len: tensor.len() }))
    }

    fn encode(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut FusedEncoded,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        // The composed quantizer's scale, summed the same way (one f64 chain).
        let sum = input.iter().map(|v| f64::from(v.abs())).sum::<f64>();
        if !sum.is_finite() {
            // Only a non-finite entry makes the sum non-finite: its error.
            ensure_finite(input)?;
        }
        let scale = if input.is_empty() {
            0.0
        } else {
            (sum / input.len() as f64) as f32
        };
        out.quantized.clear();
        out.symbol_counts.clear();
        out.coded.truncate(1);
        if out.coded.is_empty() {
            out.coded.push(RVec::new());
        }
        SideInfoWriter::new(&mut out.quantized.side_info).f32(scale);
        let mut stream = SymbolStream::new(StreamRole::VALUES, 2);
        stream.symbols.clear();
        out.quantized.streams.push(stream);
        out.symbol_counts.push(input.len() as u64);
        let bytes = &mut out.coded[0];
        resize_for_overwrite(bytes, input.len().div_ceil(8));
        resize_for_overwrite(&mut out.reconstruction, input.len());
        let values = out.reconstruction.as_mut_slice();
        for ((byte, chunk), value) in bytes
            .as_mut_slice()
            .iter_mut()
            .zip(input.chunks(8))
            .zip(values.chunks_mut(8))
        {
            let mut bits = 0u8;
            for (b, (v, x)) in chunk.iter().zip(value.iter_mut()).enumerate() {
                let negative = *v < 0.0;
                bits |= u8::from(negative) << b;
                *x = if negative { -scale } else { scale };
            }
            *byte = bits;
        }
        Ok(())
    }

    fn decode(
        &mut self,
        _ctx: &CallContext,
        described: &Quantized,
        streams: &[CodedStream<'_>],
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let scale = read_scale(&described.side_info)?;
        let [stream] = streams else {
            return Err(corrupt(format!(
                "sign expects 1 stream, got {}",
                streams.len()
            )));
        };
        let (bytes, count) = (stream.bytes.as_slice(), stream.symbols);
        let expected = count.div_ceil(8);
        ensure_data(bytes.len() as u64 == expected, || {
            format!(
                "bitpack: {count} symbols of 1 bits need {expected} bytes, got {}",
                bytes.len()
            )
        })?;
        ensure_data(count == self.len, || {
            format!("sign stream has {count} symbols, expected {}", self.len)
        })?;
        resize_for_overwrite(out, count as usize);
        // The eight values of every byte, looked up whole.
        let rows: Vec<[f32; 8]> = (0..=255u8)
            .map(|byte| std::array::from_fn(|b| if (byte >> b) & 1 == 1 { -scale } else { scale }))
            .collect();
        let mut values = out.as_mut_slice().chunks_exact_mut(8);
        for (value, byte) in values.by_ref().zip(bytes) {
            value.copy_from_slice(&rows[usize::from(*byte)]);
        }
        let tail = values.into_remainder();
        if let Some(byte) = bytes.get(count as usize / 8) {
            for (x, row) in tail.iter_mut().zip(rows[usize::from(*byte)]) {
                *x = row;
            }
        }
        Ok(())
    }
}
