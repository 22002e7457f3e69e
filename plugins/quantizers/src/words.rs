//! f32 entries to and from their little-endian 32-bit words (the `raw` +
//! `bitpack` layout) with the finiteness check `raw` promises
//! (`CHECKS_FINITE`) in the same pass: each word is tested as it is copied, so
//! neither side streams the tensor a second time to scan it. The loops have no
//! early exit and vectorize; `simd_dispatch!` runs their AVX2 builds where the
//! CPU has it.
//!
//! ```yaml
//! # Used by the fused pair of pipelines/f32.yaml:
//! - quantizer:     { use: raw }
//! - entropy-coder: { use: bitpack }
//! ```

use gradcodec_sdk::prelude::RVec;
use std::mem::MaybeUninit;

/// A finite f32 has an exponent field other than all ones.
#[inline(always)]
fn finite_bits(bits: u32) -> bool {
    bits & 0x7fff_ffff < 0x7f80_0000
}

#[inline(always)]
fn to_words_kernel(input: &[f32], out: &mut [u8]) -> bool {
    let mut finite = true;
    for (bytes, value) in out.chunks_exact_mut(4).zip(input) {
        let bits = value.to_bits();
        finite &= finite_bits(bits);
        bytes.copy_from_slice(&bits.to_le_bytes());
    }
    finite
}

#[inline(always)]
fn from_words_kernel(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool {
    let mut finite = true;
    for (value, word) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        let bits = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        finite &= finite_bits(bits);
        value.write(f32::from_bits(bits));
    }
    finite
}

gradcodec_sdk::simd_dispatch! {
    /// Writes `input` as little-endian words into `out` (`4 * input.len()`
    /// bytes); `false` when an entry is NaN or infinite (every word is still
    /// written).
    pub fn to_words_checked(input: &[f32], out: &mut [u8]) -> bool => to_words_kernel
}

gradcodec_sdk::simd_dispatch! {
    fn from_words_dispatch(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool => from_words_kernel
}

/// Appends the f32s of the little-endian words of `bytes` (`bytes.len() / 4`
/// of them) to `out`, written once, straight into its spare capacity (no
/// zeroing, no staging buffer); `false` when one is a NaN or an infinity
/// (every entry is still appended).
pub fn extend_from_words_checked(out: &mut RVec<f32>, bytes: &[u8]) -> bool {
    let count = bytes.len() / 4;
    let start = out.len();
    out.reserve(count);
    // SAFETY: `reserve` made room for `count` entries after the `start`
    // initialized ones; the slice covers exactly that room, which nothing else
    // references while it lives, and `MaybeUninit` needs no initialization.
    let spare = unsafe {
        std::slice::from_raw_parts_mut(
            out.as_mut_ptr().add(start).cast::<MaybeUninit<f32>>(),
            count,
        )
    };
    let finite = from_words_dispatch(bytes, spare);
    // SAFETY: the kernel wrote all `count` entries (it zips the `count` slots
    // with the `count` whole words of `bytes`).
    unsafe { out.set_len(start + count) };
    finite
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_every_non_finite_entry_is_reported() {
        let input: Vec<f32> = (0..10_000).map(|i| (i as f32 - 5000.0) * 1.5e-4).collect();
        let mut bytes = vec![0u8; input.len() * 4];
        assert!(to_words_checked(&input, &mut bytes));
        let expected: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(bytes, expected);
        let mut out = RVec::from(vec![7.0f32]);
        assert!(extend_from_words_checked(&mut out, &bytes));
        assert_eq!(out[0], 7.0);
        assert_eq!(&out[1..], input.as_slice());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for place in [0, 4097, 9999] {
                let mut hostile = input.clone();
                hostile[place] = bad;
                assert!(!to_words_checked(&hostile, &mut bytes), "{bad} at {place}");
                let mut out = RVec::new();
                assert!(
                    !extend_from_words_checked(&mut out, &bytes),
                    "{bad} at {place}"
                );
                assert_eq!(out.len(), input.len());
            }
        }
    }
}
