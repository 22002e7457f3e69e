//! `fp16` and `bf16`: casts to 16-bit floating point.
//!
//! Each entry is rounded to nearest-even in IEEE binary16 (`fp16`: 5 exponent
//! bits, 10 mantissa bits; magnitudes saturate at 65504 instead of overflowing to
//! infinity, and below 6.1e-5 they become subnormal or zero) or in bfloat16
//! (`bf16`: f32's 8-bit exponent with 7 mantissa bits; saturates at the largest
//! finite bf16). One `values` stream holds the 16-bit patterns (alphabet 65536);
//! no side info. Lossy (not flagged lossless). Decoding rejects patterns of
//! infinities and NaNs. The baseline casts of mixed-precision training (Micikevicius
//! et al., "Mixed Precision Training", ICLR 2018; Kalamkar et al., "A Study of
//! BFLOAT16 for Deep Learning Training", 2019), via the `half` crate.
//!
//! ```yaml
//! - quantizer: { use: fp16 }
//! - quantizer: { use: bf16 }
//! ```

use crate::convert::{self, fill_chunked, fill_spare, CHUNK};
use gradcodec_sdk::floats::{from_bf16_bits, from_f16_bits, to_bf16_bits, to_f16_bits};
use gradcodec_sdk::prelude::*;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// Which 16-bit format.
pub trait HalfFormat: Send + 'static {
    /// The stage's facts.
    const INFO: StageInfo;
    /// f32 to the format's bits.
    fn encode(value: f32) -> u32;
    /// The format's bits to f32 (refusing non-finite patterns).
    fn decode(symbol: u32) -> SdkResult<f32>;
    /// [`HalfFormat::encode`] of a slice (`out` as long as `input`): `false`
    /// when an entry is not finite (then `out` is unspecified).
    fn encode_slice(input: &[f32], out: &mut [u16]) -> bool;
    /// [`HalfFormat::decode`] of a slice (`out` as long as `bits`, every slot
    /// written; it may be spare capacity): `false` when a pattern is not
    /// finite (then `out` is unspecified).
    fn decode_slice(bits: &[u16], out: &mut [MaybeUninit<f32>]) -> bool;
    /// [`HalfFormat::decode_slice`] of patterns stored little-endian in
    /// `bytes` (two bytes each, any alignment; `out` as long as
    /// `bytes.len() / 2`).
    fn decode_le_bytes(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool;
}

/// Shared implementation of the two casts.
pub struct Cast<F> {
    len: u64,
    format: PhantomData<F>,
}

impl<F> Cast<F> {
    /// Entries of the tensor.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// IEEE binary16.
pub struct F16Format;
/// bfloat16.
pub struct Bf16Format;

impl HalfFormat for F16Format {
    const INFO: StageInfo = StageInfo::new(
        "fp16",
        "Cast to IEEE half precision (round to nearest even, saturating at 65504): one \
              values stream of 16-bit patterns (alphabet 65536), no side info.",
    )
    .with_flags(StageFlags::CHECKS_FINITE);
    fn encode(value: f32) -> u32 {
        to_f16_bits(value)
    }
    fn decode(symbol: u32) -> SdkResult<f32> {
        from_f16_bits(symbol)
    }
    fn encode_slice(input: &[f32], out: &mut [u16]) -> bool {
        convert::f16_from_f32(input, out)
    }
    fn decode_slice(bits: &[u16], out: &mut [MaybeUninit<f32>]) -> bool {
        convert::f16_to_f32(bits, out)
    }
    fn decode_le_bytes(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool {
        convert::f16_le_to_f32(bytes, out)
    }
}

impl HalfFormat for Bf16Format {
    const INFO: StageInfo = StageInfo::new(
        "bf16",
        "Cast to bfloat16 (round to nearest even, saturating): one values stream of \
              16-bit patterns (alphabet 65536), no side info.",
    )
    .with_flags(StageFlags::CHECKS_FINITE);
    fn encode(value: f32) -> u32 {
        to_bf16_bits(value)
    }
    fn decode(symbol: u32) -> SdkResult<f32> {
        from_bf16_bits(symbol)
    }
    fn encode_slice(input: &[f32], out: &mut [u16]) -> bool {
        convert::bf16_from_f32(input, out)
    }
    fn decode_slice(bits: &[u16], out: &mut [MaybeUninit<f32>]) -> bool {
        convert::bf16_to_f32(bits, out)
    }
    fn decode_le_bytes(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool {
        convert::bf16_le_to_f32(bytes, out)
    }
}

/// Decodes `bits` into `out` (as long), or the error [`HalfFormat::decode`]
/// gives for the first pattern it refuses.
pub(crate) fn decode_checked<F: HalfFormat>(
    bits: &[u16],
    out: &mut [MaybeUninit<f32>],
) -> SdkResult<()> {
    if F::decode_slice(bits, out) {
        return Ok(());
    }
    refuse_first::<F>(bits.iter().copied())
}

/// [`decode_checked`] of patterns stored little-endian in `bytes` (two bytes
/// each, any alignment; `out` as long as `bytes.len() / 2`).
pub(crate) fn decode_checked_le<F: HalfFormat>(
    bytes: &[u8],
    out: &mut [MaybeUninit<f32>],
) -> SdkResult<()> {
    if F::decode_le_bytes(bytes, out) {
        return Ok(());
    }
    refuse_first::<F>(
        bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]])),
    )
}

/// The error [`HalfFormat::decode`] gives for the first of `patterns` it
/// refuses (a slice kernel found one).
fn refuse_first<F: HalfFormat>(patterns: impl Iterator<Item = u16>) -> SdkResult<()> {
    for h in patterns {
        F::decode(u32::from(h))?;
    }
    Err(corrupt(format!("{} pattern not finite", F::INFO.name)))
}

/// The `fp16` quantizer.
pub type Fp16 = Cast<F16Format>;
/// The `bf16` quantizer.
pub type Bf16 = Cast<Bf16Format>;

pub(crate) const STREAMS: [StreamShape; 1] = [StreamShape::half_words()];

impl<F: HalfFormat> Stage for Cast<F> {
    type Config = NoParams;
    const INFO: StageInfo = F::INFO;

    fn new(_config: NoParams, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            len: tensor.len(),
            format: PhantomData,
        })
    }
}

impl<F: HalfFormat> Quantizer for Cast<F> {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        begin_streams(out, &STREAMS);
        let mut finite = true;
        let mut halves = [0u16; CHUNK];
        let symbols = &mut out.streams[0].symbols;
        fill_chunked(symbols, input.len(), |index, symbols| {
            let chunk = &input[index * CHUNK..][..symbols.len()];
            let halves = &mut halves[..chunk.len()];
            finite &= F::encode_slice(chunk, halves);
            for (symbol, half) in symbols.iter_mut().zip(halves.iter()) {
                *symbol = u32::from(*half);
            }
            Ok(())
        })?;
        if !finite {
            out.streams[0].symbols.clear();
            ensure_finite(input)?;
            return Err(invalid_input("non-finite input"));
        }
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        expect_no_side_info(F::INFO.name, &out.side_info)?;
        describe(out, &STREAMS);
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        expect_no_side_info(F::INFO.name, &coded.side_info)?;
        let [symbols] = received_streams(F::INFO.name, coded, &STREAMS, [self.len])?;
        // Every symbol is below 2^16 (`received_streams` checked the alphabet).
        let mut halves = [0u16; CHUNK];
        fill_spare(out, symbols.len(), |index, out| {
            let chunk = &symbols[index * CHUNK..][..out.len()];
            let halves = &mut halves[..chunk.len()];
            for (half, symbol) in halves.iter_mut().zip(chunk) {
                *half = *symbol as u16;
            }
            decode_checked::<F>(halves, out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::conformance::sample_tensor;

    fn round_trip<Q: Quantizer>(input: &[f32]) -> Vec<f32> {
        let tensor = TensorSpec::new("t", &[input.len() as u64]);
        let config: Q::Config = gradcodec_sdk::parse_config("{}").unwrap();
        let mut q = Q::new(config, &tensor).unwrap();
        let ctx = CallContext::new(0, 0);
        let mut coded = Quantized::default();
        q.quantize(&ctx, input, &mut coded).unwrap();
        let mut out = RVec::new();
        q.dequantize(&ctx, &coded, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn relative_errors_match_the_formats_and_saturate() {
        let input: Vec<f32> = sample_tensor(10_000, 1)
            .into_iter()
            .map(|v| v * 1000.0)
            .collect();
        for (out, bound) in [
            (round_trip::<Fp16>(&input), 2f32.powi(-11)),
            (round_trip::<Bf16>(&input), 2f32.powi(-8)),
        ] {
            for (x, y) in input.iter().zip(&out) {
                // Normal range: relative error at most half an ulp.
                if x.abs() > 1e-3 {
                    assert!((x - y).abs() <= bound * x.abs(), "{x} -> {y}");
                }
            }
        }
        let big = round_trip::<Fp16>(&[1e6, -1e6, 65504.0]);
        assert_eq!(big, vec![65504.0, -65504.0, 65504.0]);
        let big = round_trip::<Bf16>(&[f32::MAX, 1.0]);
        assert!(big[0].is_finite() && big[1] == 1.0);
    }
}
