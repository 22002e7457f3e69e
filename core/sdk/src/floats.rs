//! 16-bit float value formats: f32 to IEEE half or bfloat16 bit patterns
//! (round to nearest even, saturating at the largest finite value) and back
//! (rejecting patterns outside 16 bits and non-finite ones), for quantizers that
//! send values as 16-bit symbols.
//!
//! ```
//! use gradcodec_sdk::floats::{from_f16_bits, to_f16_bits};
//!
//! assert_eq!(from_f16_bits(to_f16_bits(0.5)).unwrap(), 0.5);
//! assert_eq!(from_f16_bits(to_f16_bits(1e9)).unwrap(), 65504.0); // saturates
//! assert!(from_f16_bits(0x7C00).is_err()); // +inf is not a value
//! assert!(from_f16_bits(1 << 16).is_err());
//! ```

use crate::error::{ensure_data, SdkResult};
use half::{bf16, f16};

/// `value` as f16 bits, saturating at ±65504.
#[inline]
pub fn to_f16_bits(value: f32) -> u32 {
    let limit = f16::MAX.to_f32();
    u32::from(f16::from_f32(value.clamp(-limit, limit)).to_bits())
}

/// `value` as bf16 bits, saturating at the largest finite bf16.
#[inline]
pub fn to_bf16_bits(value: f32) -> u32 {
    let limit = bf16::MAX.to_f32();
    u32::from(bf16::from_f32(value.clamp(-limit, limit)).to_bits())
}

/// Decodes f16 bits; rejects symbols beyond 16 bits and non-finite patterns.
pub fn from_f16_bits(symbol: u32) -> SdkResult<f32> {
    decode_16(symbol, "f16", |bits| f16::from_bits(bits).to_f32())
}

/// Decodes bf16 bits; rejects symbols beyond 16 bits and non-finite patterns.
pub fn from_bf16_bits(symbol: u32) -> SdkResult<f32> {
    decode_16(symbol, "bf16", |bits| bf16::from_bits(bits).to_f32())
}

fn decode_16(symbol: u32, format: &str, convert: impl Fn(u16) -> f32) -> SdkResult<f32> {
    ensure_data(symbol < 1 << 16, || {
        format!("{format} symbol {symbol} out of range")
    })?;
    let value = convert(symbol as u16);
    ensure_data(value.is_finite(), || {
        format!("{format} symbol {symbol:#06x} is not a finite value")
    })?;
    Ok(value)
}

/// Whether every value is finite: the exponent field of each entry is not all
/// ones, tested on the bits with no early exit inside 1024-entry blocks, so the
/// loop vectorizes (AVX2 where the CPU has it, picked at run time). For the
/// checks a CHECKS_FINITE quantizer folds into a pass it already makes.
pub fn all_finite(values: &[f32]) -> bool {
    all_finite_dispatch(values)
}

crate::simd_dispatch! {
    fn all_finite_dispatch(values: &[f32]) -> bool => all_finite_kernel
}

#[inline(always)]
fn all_finite_kernel(values: &[f32]) -> bool {
    values.chunks(1024).all(|block| {
        block
            .iter()
            .fold(true, |ok, v| ok & (v.to_bits() & 0x7fff_ffff < 0x7f80_0000))
    })
}

#[cfg(test)]
mod tests {
    use super::all_finite;

    #[test]
    fn all_finite_finds_every_nan_and_infinity_wherever_it_sits() {
        let values: Vec<f32> = (0..5000).map(|i| (i as f32 - 2500.0) * 1e-3).collect();
        assert!(all_finite(&values));
        assert!(all_finite(&[]));
        assert!(all_finite(&[
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -0.0,
            1e-45
        ]));
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for place in [0, 1023, 1024, 4999] {
                let mut hostile = values.clone();
                hostile[place] = bad;
                assert!(!all_finite(&hostile), "{bad} at {place}");
            }
        }
    }
}
