//! f32 entries to and from their little-endian 32-bit words (the `raw` +
//! `bitpack` layout) with the finiteness check `raw` promises
//! (`CHECKS_FINITE`) folded into the copy, so neither side streams the tensor a
//! second time to scan it. Encode is one loop over the entries (LLVM turns it
//! into a `memcpy` and a vectorized test). Decode goes a 64 KiB piece at a
//! time: the C library's `memcpy` copies the piece and the SDK's vectorized
//! `all_finite` tests the f32s just written, while they sit in L1/L2. That
//! beats one vector loop that tests each word as it stores it (0.20-0.28 ms
//! against 0.31-0.35 ms per 4 MiB on this machine; f32 decode median 1,858
//! against 1,621 M entries/s in `profile_codec`).
//!
//! ```yaml
//! # Used by the fused pair of pipelines/f32.yaml:
//! - quantizer:     { use: raw }
//! - entropy-coder: { use: bitpack }
//! ```

use gradcodec_sdk::buffers::{assume_written, RVecExt};
use gradcodec_sdk::floats::all_finite;
use gradcodec_sdk::prelude::RVec;
use std::mem::MaybeUninit;

/// Entries copied and then tested together: 64 KiB, so the test reads what the
/// copy just wrote into L1/L2.
const PIECE: usize = 16 * 1024;

#[inline(always)]
fn to_words_kernel(input: &[f32], out: &mut [u8]) -> bool {
    let mut finite = true;
    for (bytes, value) in out.chunks_exact_mut(4).zip(input) {
        let bits = value.to_bits();
        finite &= bits & 0x7fff_ffff < 0x7f80_0000;
        bytes.copy_from_slice(&bits.to_le_bytes());
    }
    finite
}

gradcodec_sdk::simd_dispatch! {
    /// Writes `input` as little-endian words into `out` (`4 * input.len()`
    /// bytes); `false` when an entry is NaN or infinite (every word is still
    /// written). One loop; LLVM makes it a `memcpy` and a vectorized test
    /// (a piece-wise test and copy measured no faster on encode).
    pub fn to_words_checked(input: &[f32], out: &mut [u8]) -> bool => to_words_kernel
}

/// Writes the f32s of the whole little-endian words of `bytes` into `out`
/// (`out.len()` of them, at most `bytes.len() / 4`); `false` when one is a NaN
/// or an infinity (every entry is still written).
fn from_words(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool {
    let mut finite = true;
    for (words, values) in bytes.chunks(PIECE * 4).zip(out.chunks_mut(PIECE)) {
        let words = &words[..values.len() * 4];
        if cfg!(target_endian = "little") {
            // SAFETY: `values` is `values.len()` writable f32 slots and `words`
            // exactly `4 * values.len()` readable bytes of another buffer (a
            // shared borrow cannot alias the exclusive one); on a little-endian
            // machine those bytes are the f32s' memory representation, and any
            // bit pattern is a valid f32.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    words.as_ptr(),
                    values.as_mut_ptr().cast::<u8>(),
                    words.len(),
                );
            }
        } else {
            for (value, word) in values.iter_mut().zip(words.chunks_exact(4)) {
                value.write(f32::from_le_bytes([word[0], word[1], word[2], word[3]]));
            }
        }
        // SAFETY: every slot of `values` was written just above.
        finite &= all_finite(unsafe { assume_written(values) });
    }
    finite
}

/// Appends the f32s of the little-endian words of `bytes` (`bytes.len() / 4`
/// of them) to `out`, written once, straight into its spare capacity (no
/// zeroing, no staging buffer); `false` when one is a NaN or an infinity
/// (every entry is still appended).
pub fn extend_from_words_checked(out: &mut RVec<f32>, bytes: &[u8]) -> bool {
    let mut finite = true;
    // SAFETY: `from_words` writes all `bytes.len() / 4` slots (it pairs every
    // piece of them with its `4 * len` bytes of `bytes`).
    let appended = unsafe {
        out.extend_written(bytes.len() / 4, |spare| {
            finite = from_words(bytes, spare);
            Ok::<(), std::convert::Infallible>(())
        })
    };
    appended.is_ok() && finite
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_every_non_finite_entry_is_reported() {
        let input: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 - 20_000.0) * 1.5e-4)
            .collect();
        let mut bytes = vec![0u8; input.len() * 4];
        assert!(to_words_checked(&input, &mut bytes));
        let expected: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(bytes, expected);
        let mut out = RVec::from(vec![7.0f32]);
        assert!(extend_from_words_checked(&mut out, &bytes));
        assert_eq!(out[0], 7.0);
        assert_eq!(&out[1..], input.as_slice());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for place in [0, 4097, PIECE - 1, PIECE, 2 * PIECE + 5, 39_999] {
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
