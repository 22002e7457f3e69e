//! `raw`: f32 passthrough, the uncompressed baseline.
//!
//! Emits one stream of raw words (the IEEE-754 bits of every entry) and no side
//! info, so with the `bitpack` coder a message costs 32 bits per entry plus the
//! container. It refuses NaN and infinite entries both ways (`CHECKS_FINITE`):
//! the check rides the copy, a cache-sized chunk at a time, and saves the host
//! its own scans.
//!
//! ```yaml
//! - quantizer: { use: raw }
//! ```

use crate::convert::{fill_chunked, CHUNK};
use gradcodec_sdk::prelude::*;

/// The passthrough quantizer.
pub struct Raw {
    len: u64,
}

const STREAMS: [StreamShape; 1] = [StreamShape::raw_words()];

impl Stage for Raw {
    type Config = NoParams;
    const INFO: StageInfo = StageInfo::new(
        "raw",
        "f32 passthrough: one stream of the raw IEEE-754 bits of every entry, no side info. \
              The uncompressed baseline (32 bits per entry with bitpack).",
    )
    .with_flags(StageFlags::LOSSLESS.union(StageFlags::CHECKS_FINITE));

    fn new(_config: NoParams, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self { len: tensor.len() })
    }
}

impl Quantizer for Raw {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        begin_streams(out, &STREAMS);
        let filled = fill_chunked(&mut out.streams[0].symbols, input.len(), |index, words| {
            let chunk = &input[index * CHUNK..][..words.len()];
            for (word, value) in words.iter_mut().zip(chunk) {
                *word = value.to_bits();
            }
            ensure_chunk_finite(chunk)
        });
        if filled.is_err() {
            out.streams[0].symbols.clear();
            ensure_finite(input)?;
        }
        filled
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        expect_no_side_info("raw", &out.side_info)?;
        describe(out, &STREAMS);
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let [words] = received_streams("raw", coded, &STREAMS, [self.len])?;
        fill_chunked(out, words.len(), |index, out| {
            let chunk = &words[index * CHUNK..][..out.len()];
            for (value, word) in out.iter_mut().zip(chunk) {
                *value = f32::from_bits(*word);
            }
            ensure_decoded_finite(out)
        })
    }
}

/// The quantize side's check of one chunk (the caller names the entry).
pub(crate) fn ensure_chunk_finite(chunk: &[f32]) -> SdkResult<()> {
    if gradcodec_sdk::floats::all_finite(chunk) {
        Ok(())
    } else {
        Err(invalid_input("non-finite input"))
    }
}

/// The dequantize side's check: raw words that are NaN or infinite patterns.
pub(crate) fn ensure_decoded_finite(values: &[f32]) -> SdkResult<()> {
    if gradcodec_sdk::floats::all_finite(values) {
        Ok(())
    } else {
        Err(non_finite_words())
    }
}

/// The error of a stream of raw words holding a NaN or an infinity.
pub(crate) fn non_finite_words() -> gradcodec_sdk::StageError {
    corrupt("raw: the stream holds the bits of a NaN or an infinity")
}
