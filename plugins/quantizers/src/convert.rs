//! Slice conversions between f32 and 16-bit float bit patterns, the hot loops
//! of the `fp16` and `bf16` quantizers and of their fused pairs with `bitpack`.
//!
//! Each function computes, for a whole slice, exactly what the per-entry
//! casts of `gradcodec_sdk::floats` compute (the `half` crate's
//! round-to-nearest-even, saturating at the largest finite value; finite
//! patterns back to f32), and reports non-finite entries instead of
//! converting them, so the callers refuse what the per-entry code refuses:
//!
//! - fp16: with AVX2 + F16C (detected at run time,
//!   `gradcodec_sdk::simd::has_avx2`), eight entries per `vcvtps2ph` /
//!   `vcvtph2ps` with the rounding mode in the instruction (nearest even, not
//!   MXCSR), after clamping to ±65504 as `to_f16_bits` does; elsewhere the
//!   per-entry `half` casts. The tests compare both with `half`'s software
//!   conversion on a sweep of f32 bit patterns (subnormals, ±max, values that
//!   round to 65520 and beyond, halfway cases).
//! - bf16: the bit arithmetic of round-to-nearest-even (`bits + 0x7FFF +
//!   lsb`, then the high half) on the clamped value, a loop the compiler
//!   vectorizes, compiled for AVX2 where the CPU has it (`simd_dispatch!`).
//!
//! ```yaml
//! # Used by pipelines/fp16.yaml and pipelines/bf16.yaml:
//! - quantizer:     { use: fp16 }
//! - entropy-coder: { use: bitpack }
//! ```

use gradcodec_sdk::buffers::RVecExt;
use gradcodec_sdk::floats::to_f16_bits;
use gradcodec_sdk::prelude::{RVec, SdkResult};
use half::{bf16, f16};
use std::mem::MaybeUninit;

/// Entries converted per step (through stack buffers of this many entries).
pub const CHUNK: usize = 4096;

/// Sets `out` to `len` entries, `fill(index, piece)` writing the `index`-th
/// piece of [`CHUNK`] entries (the last one shorter): in place when `out`
/// already holds `len` entries, else through a stack buffer appended to the
/// cleared `out`, so a fresh buffer is written once instead of zeroed first.
/// Stops at the first error (`out` then holds a prefix).
pub fn fill_chunked<T: Copy + Default>(
    out: &mut RVec<T>,
    len: usize,
    mut fill: impl FnMut(usize, &mut [T]) -> SdkResult<()>,
) -> SdkResult<()> {
    if out.len() == len {
        for (index, piece) in out.chunks_mut(CHUNK).enumerate() {
            fill(index, piece)?;
        }
        return Ok(());
    }
    out.clear();
    out.reserve(len);
    let mut buffer = [T::default(); CHUNK];
    for index in 0..len.div_ceil(CHUNK) {
        let piece = &mut buffer[..CHUNK.min(len - index * CHUNK)];
        fill(index, piece)?;
        out.extend_from_copy_slice(piece);
    }
    Ok(())
}

/// Sets `out` to `len` entries, `fill(index, piece)` writing every slot of
/// the `index`-th piece of [`CHUNK`] entries (the last one shorter) straight
/// into `out`'s spare capacity: no stack buffer to copy from, no zeroing.
/// Stops at the first error (`out` is then empty).
pub fn fill_spare(
    out: &mut RVec<f32>,
    len: usize,
    mut fill: impl FnMut(usize, &mut [MaybeUninit<f32>]) -> SdkResult<()>,
) -> SdkResult<()> {
    out.clear();
    // SAFETY: on success every piece was filled, and `fill` writes every slot
    // of its piece (its contract), so all `len` entries are written.
    unsafe {
        out.extend_written(len, |spare| {
            for (index, piece) in spare.chunks_mut(CHUNK).enumerate() {
                fill(index, piece)?;
            }
            Ok(())
        })
    }
}

/// Initialized f32s as slots for the decode kernels, which only ever store
/// computed f32s into them.
///
/// # Safety
///
/// The caller must write only initialized values through the result (never
/// `MaybeUninit::uninit()`), so `values` stays initialized.
pub unsafe fn as_slots(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of f32; the caller keeps the
    // entries initialized (above).
    unsafe { &mut *(std::ptr::from_mut(values) as *mut [MaybeUninit<f32>]) }
}

/// The largest finite f16, where `fp16` saturates.
const F16_LIMIT: f32 = 65504.0;
/// The f32 exponent field: all ones is an infinity or a NaN.
const F32_EXPONENT: u32 = 0x7F80_0000;
/// The f16 exponent field.
const F16_EXPONENT: u16 = 0x7C00;
/// The bf16 exponent field.
const BF16_EXPONENT: u16 = 0x7F80;

/// True when `value` is an infinity or a NaN (as bits, so the loop vectorizes).
#[inline(always)]
fn non_finite(value: f32) -> bool {
    value.to_bits() & F32_EXPONENT == F32_EXPONENT
}

/// `out[i] = to_f16_bits(input[i])` for the first `min(len)` entries; `false`
/// (and `out` unspecified) when an input entry is not finite.
pub fn f16_from_f32(input: &[f32], out: &mut [u16]) -> bool {
    let len = input.len().min(out.len());
    let (input, out) = (&input[..len], &mut out[..len]);
    let mut done = 0;
    let mut bad = false;
    #[cfg(target_arch = "x86_64")]
    if gradcodec_sdk::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 and F16C (checked just above).
        (done, bad) = unsafe { x86::f16_from_f32(input, out) };
    }
    for (o, v) in out[done..].iter_mut().zip(&input[done..]) {
        bad |= non_finite(*v);
        *o = to_f16_bits(*v) as u16;
    }
    !bad
}

/// `out[i]` = the f16 pattern `bits[i]` as f32, every one of the first
/// `min(len)` slots written (`out` may be a fresh buffer's spare capacity);
/// `false` (and `out` unspecified) when a pattern is an infinity or a NaN.
pub fn f16_to_f32(bits: &[u16], out: &mut [MaybeUninit<f32>]) -> bool {
    let len = bits.len().min(out.len());
    let (bits, out) = (&bits[..len], &mut out[..len]);
    let mut done = 0;
    let mut bad = false;
    #[cfg(target_arch = "x86_64")]
    if gradcodec_sdk::simd::has_avx2() {
        // SAFETY: any bytes are valid u8s, and the view covers exactly the
        // slice's memory; x86-64 is little-endian, so they are the patterns
        // little-endian, what the kernel reads.
        let bytes = unsafe { std::slice::from_raw_parts(bits.as_ptr().cast::<u8>(), len * 2) };
        // SAFETY: the CPU has AVX2 and F16C (checked just above).
        (done, bad) = unsafe { x86::f16_to_f32(bytes, out) };
    }
    for (o, h) in out[done..].iter_mut().zip(&bits[done..]) {
        bad |= h & F16_EXPONENT == F16_EXPONENT;
        o.write(f16::from_bits(*h).to_f32());
    }
    !bad
}

/// [`f16_to_f32`] of patterns stored little-endian in `bytes`, two bytes
/// each at any alignment (a stream inside a message), so a decode reads the
/// message itself instead of a copy of it: the first `min(bytes.len() / 2,
/// out.len())` slots are written.
pub fn f16_le_to_f32(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool {
    let len = (bytes.len() / 2).min(out.len());
    let (bytes, out) = (&bytes[..len * 2], &mut out[..len]);
    let mut done = 0;
    let mut bad = false;
    #[cfg(target_arch = "x86_64")]
    if gradcodec_sdk::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 and F16C (checked just above).
        (done, bad) = unsafe { x86::f16_to_f32(bytes, out) };
    }
    for (o, pair) in out[done..]
        .iter_mut()
        .zip(bytes[done * 2..].chunks_exact(2))
    {
        let h = u16::from_le_bytes([pair[0], pair[1]]);
        bad |= h & F16_EXPONENT == F16_EXPONENT;
        o.write(f16::from_bits(h).to_f32());
    }
    !bad
}

#[inline(always)]
fn bf16_from_f32_kernel(input: &[f32], out: &mut [u16]) -> bool {
    let limit = bf16::MAX.to_f32();
    let mut bad = false;
    for (o, v) in out.iter_mut().zip(input) {
        bad |= non_finite(*v);
        let bits = v.clamp(-limit, limit).to_bits();
        // Round to nearest even: a carry into bit 16 exactly when the low half
        // is above 0x8000, or equal to it with bit 16 set.
        *o = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
    }
    !bad
}

#[inline(always)]
fn bf16_to_f32_kernel(bits: &[u16], out: &mut [MaybeUninit<f32>]) -> bool {
    let mut bad = false;
    for (o, h) in out.iter_mut().zip(bits) {
        bad |= h & BF16_EXPONENT == BF16_EXPONENT;
        o.write(f32::from_bits(u32::from(*h) << 16));
    }
    !bad
}

#[inline(always)]
fn bf16_le_to_f32_kernel(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool {
    let mut bad = false;
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let h = u16::from_le_bytes([pair[0], pair[1]]);
        bad |= h & BF16_EXPONENT == BF16_EXPONENT;
        o.write(f32::from_bits(u32::from(h) << 16));
    }
    !bad
}

gradcodec_sdk::simd_dispatch! {
    /// `out[i] = to_bf16_bits(input[i])` for the first `min(len)` entries;
    /// `false` (and `out` unspecified) when an input entry is not finite.
    pub fn bf16_from_f32(input: &[f32], out: &mut [u16]) -> bool => bf16_from_f32_kernel
}

gradcodec_sdk::simd_dispatch! {
    /// `out[i]` = the bf16 pattern `bits[i]` as f32, every one of the first
    /// `min(len)` slots written (`out` may be spare capacity); `false` (and
    /// `out` unspecified) when a pattern is an infinity or a NaN.
    pub fn bf16_to_f32(bits: &[u16], out: &mut [MaybeUninit<f32>]) -> bool => bf16_to_f32_kernel
}

gradcodec_sdk::simd_dispatch! {
    /// [`bf16_to_f32`] of patterns stored little-endian in `bytes`, two bytes
    /// each at any alignment (a stream inside a message): the first
    /// `min(bytes.len() / 2, out.len())` slots are written.
    pub fn bf16_le_to_f32(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> bool => bf16_le_to_f32_kernel
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{F16_EXPONENT, F16_LIMIT, F32_EXPONENT};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// f32 to f16 bits, eight at a time: clamp to ±65504 (what
    /// `to_f16_bits` does to finite values), then `vcvtps2ph` rounding to
    /// nearest even. Returns how many entries it did (a multiple of 8) and
    /// whether one of them was not finite.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f16_from_f32(input: &[f32], out: &mut [u16]) -> (usize, bool) {
        let high = _mm256_set1_ps(F16_LIMIT);
        let low = _mm256_set1_ps(-F16_LIMIT);
        let exponent = _mm256_set1_epi32(F32_EXPONENT as i32);
        let mut bad = _mm256_setzero_si256();
        let mut done = 0;
        for (chunk, o) in input.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            // SAFETY: `chunk` holds 8 f32 (unaligned loads are allowed).
            let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
            let e = _mm256_and_si256(_mm256_castps_si256(v), exponent);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, exponent));
            let clamped = _mm256_min_ps(_mm256_max_ps(v, low), high);
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(clamped);
            // SAFETY: `o` holds 8 u16, 16 bytes (unaligned stores are allowed).
            unsafe { _mm_storeu_si128(o.as_mut_ptr().cast(), h) };
            done += 8;
        }
        (done, _mm256_testz_si256(bad, bad) == 0)
    }

    /// f16 patterns stored little-endian in `bytes` to f32, eight at a time
    /// (unaligned 16-byte loads, `vcvtph2ps`, exact). Returns how many
    /// entries it did (a multiple of 8) and whether one of them was an
    /// infinity or a NaN pattern.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f16_to_f32(bytes: &[u8], out: &mut [MaybeUninit<f32>]) -> (usize, bool) {
        let exponent = _mm_set1_epi16(F16_EXPONENT as i16);
        let mut bad = _mm_setzero_si128();
        let mut done = 0;
        for (chunk, o) in bytes.chunks_exact(16).zip(out.chunks_exact_mut(8)) {
            // SAFETY: `chunk` holds 16 bytes (unaligned loads are allowed).
            let h = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
            let e = _mm_and_si128(h, exponent);
            bad = _mm_or_si128(bad, _mm_cmpeq_epi16(e, exponent));
            // SAFETY: `o` holds 8 f32 slots (`MaybeUninit<f32>` has f32's
            // layout; unaligned stores are allowed).
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().cast::<f32>(), _mm256_cvtph_ps(h)) };
            done += 8;
        }
        (done, _mm_testz_si128(bad, bad) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::floats::{from_bf16_bits, from_f16_bits, to_bf16_bits};

    /// The kernels' slots over initialized test buffers.
    fn slots(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
        // SAFETY: the kernels under test store only computed f32s.
        unsafe { as_slots(values) }
    }

    #[test]
    fn spare_fills_write_every_piece_or_leave_nothing() {
        for len in [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 5] {
            let mut out: RVec<f32> = vec![7.0; 3].into();
            fill_spare(&mut out, len, |index, piece| {
                for (i, o) in piece.iter_mut().enumerate() {
                    o.write((index * CHUNK + i) as f32);
                }
                Ok(())
            })
            .unwrap();
            let expected: Vec<f32> = (0..len).map(|i| i as f32).collect();
            assert_eq!(out.as_slice(), expected.as_slice(), "{len}");
        }
        let mut out: RVec<f32> = vec![7.0; 3].into();
        let failed = fill_spare(&mut out, 3 * CHUNK, |index, piece| {
            piece.fill(MaybeUninit::new(1.0));
            if index == 1 {
                Err(gradcodec_sdk::corrupt("stop"))
            } else {
                Ok(())
            }
        });
        assert!(failed.is_err());
        assert!(out.is_empty());
    }

    /// `half`'s software f32 to f16 conversion (never F16C), saturating like
    /// `to_f16_bits`.
    fn software_f16(value: f32) -> u16 {
        f16::from_f32_const(value.clamp(-F16_LIMIT, F16_LIMIT)).to_bits()
    }

    /// Finite f32 patterns around every place a cast can go wrong: a strided
    /// sweep of all finite patterns, both f16 and bf16 halfway points (and one
    /// ulp either side) across the whole exponent range, f16 subnormals and
    /// the underflow edge, f32 subnormals, ±65504 and what rounds past it,
    /// ±f32::MAX and the largest bf16.
    fn sweep() -> Vec<f32> {
        let mut bits: Vec<u32> = (0..=u32::MAX).step_by(4093).collect();
        for exponent in 0..255u32 {
            for mantissa in [0u32, 1, 0x1000, 0x2000, 0x3000, 0x8000, 0x1_8000, 0x7F_FFFF] {
                for delta in [-1i64, 0, 1] {
                    let m = (i64::from(mantissa) + delta).clamp(0, 0x7F_FFFF) as u32;
                    bits.push((exponent << 23) | m);
                }
            }
        }
        // Around the f16 subnormal range, densely.
        let tiny = 2f32.powi(-26).to_bits();
        let small = 2f32.powi(-13).to_bits();
        bits.extend((tiny..small).step_by(37));
        bits.extend(0..100_000);
        let mut values: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        values.extend([
            65504.0,
            65519.99,
            65520.0,
            65520.01,
            65536.0,
            1e6,
            f32::MAX,
            bf16::MAX.to_f32(),
            f32::MIN_POSITIVE,
            5.960_464_5e-8,
            2.980_232_2e-8,
            2.980_233e-8,
            0.0,
        ]);
        let negated: Vec<f32> = values.iter().map(|v| -v).collect();
        values.extend(negated);
        values.retain(|v| v.is_finite());
        values
    }

    #[test]
    fn fp16_slices_match_the_scalar_and_the_software_cast_bit_for_bit() {
        let input = sweep();
        let mut out = vec![0u16; input.len()];
        assert!(f16_from_f32(&input, &mut out));
        for (v, h) in input.iter().zip(&out) {
            let scalar = to_f16_bits(*v) as u16;
            assert_eq!(*h, scalar, "{v:e} ({:#010x})", v.to_bits());
            assert_eq!(*h, software_f16(*v), "{v:e} ({:#010x})", v.to_bits());
        }
        let mut one = [0u16];
        assert!(f16_from_f32(&[65520.0], &mut one));
        assert_eq!(one[0], 0x7BFF, "65520 would round to infinity: saturates");
        f16_from_f32(&[-1e9], &mut one);
        assert_eq!(one[0], 0xFBFF, "saturates at -65504");
    }

    #[test]
    fn every_f16_pattern_decodes_like_the_scalar_cast() {
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        let mut out = vec![0f32; bits.len()];
        assert!(
            !f16_to_f32(&bits, slots(&mut out)),
            "infinities and NaNs are refused"
        );
        let finite: Vec<u16> = bits
            .iter()
            .copied()
            .filter(|h| from_f16_bits(u32::from(*h)).is_ok())
            .collect();
        assert_eq!(finite.len(), 65536 - 2 * 1024);
        let mut out = vec![0f32; finite.len()];
        assert!(f16_to_f32(&finite, slots(&mut out)));
        for (h, v) in finite.iter().zip(&out) {
            let scalar = from_f16_bits(u32::from(*h)).unwrap();
            assert_eq!(v.to_bits(), scalar.to_bits(), "{h:#06x}");
        }
        // A non-finite pattern in the vector part and in the scalar tail.
        for at in [3, 17] {
            let mut bits = vec![0x3C00u16; 18];
            bits[at] = 0x7C00;
            assert!(!f16_to_f32(&bits, slots(&mut [0.0; 18])), "at {at}");
        }
    }

    #[test]
    fn patterns_read_from_bytes_at_any_offset_decode_like_the_u16_slices() {
        // Every pattern, little-endian, at an even and an odd offset inside a
        // byte buffer (as a stream lies in a message).
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        type FromSlice = fn(&[u16], &mut [MaybeUninit<f32>]) -> bool;
        type FromBytes = fn(&[u8], &mut [MaybeUninit<f32>]) -> bool;
        let decoders: [(FromSlice, FromBytes); 2] =
            [(f16_to_f32, f16_le_to_f32), (bf16_to_f32, bf16_le_to_f32)];
        for (from_slice, from_bytes) in decoders {
            for offset in [0, 1] {
                for (at, chunk) in bits.chunks(4093).enumerate() {
                    let mut bytes = vec![0xA5u8; offset];
                    bytes.extend(chunk.iter().flat_map(|h| h.to_le_bytes()));
                    let (mut expected, mut got) =
                        (vec![0f32; chunk.len()], vec![0f32; chunk.len()]);
                    let finite = from_slice(chunk, slots(&mut expected));
                    assert_eq!(
                        from_bytes(&bytes[offset..], slots(&mut got)),
                        finite,
                        "piece {at}"
                    );
                    if finite {
                        let same = expected
                            .iter()
                            .zip(&got)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "piece {at}, offset {offset}");
                    }
                }
            }
            // A non-finite pattern in the vector part and in the scalar tail,
            // and an odd trailing byte that is not read.
            for at in [3, 17] {
                let mut bits = [0x3C00u16; 18];
                bits[at] = 0x7FFF;
                let mut bytes: Vec<u8> = bits.iter().flat_map(|h| h.to_le_bytes()).collect();
                bytes.push(0xFF);
                assert!(!from_bytes(&bytes, slots(&mut [0.0; 18])), "at {at}");
            }
        }
    }

    #[test]
    fn bf16_slices_match_the_scalar_cast_bit_for_bit() {
        let input = sweep();
        let mut out = vec![0u16; input.len()];
        assert!(bf16_from_f32(&input, &mut out));
        for (v, h) in input.iter().zip(&out) {
            assert_eq!(
                u32::from(*h),
                to_bf16_bits(*v),
                "{v:e} ({:#010x})",
                v.to_bits()
            );
        }
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        let mut out = vec![0f32; bits.len()];
        assert!(!bf16_to_f32(&bits, slots(&mut out)));
        let finite: Vec<u16> = bits
            .iter()
            .copied()
            .filter(|h| from_bf16_bits(u32::from(*h)).is_ok())
            .collect();
        let mut out = vec![0f32; finite.len()];
        assert!(bf16_to_f32(&finite, slots(&mut out)));
        for (h, v) in finite.iter().zip(&out) {
            let scalar = from_bf16_bits(u32::from(*h)).unwrap();
            assert_eq!(v.to_bits(), scalar.to_bits(), "{h:#06x}");
        }
    }

    #[test]
    fn non_finite_inputs_are_reported_wherever_they_are() {
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            for at in [0, 9, 20] {
                let mut input = vec![1.5f32; 21];
                input[at] = bad;
                assert!(!f16_from_f32(&input, &mut [0; 21]), "{bad} at {at}");
                assert!(!bf16_from_f32(&input, &mut [0; 21]), "{bad} at {at}");
            }
        }
    }

    #[test]
    fn chunked_fills_write_every_piece_in_place_or_appended() {
        for len in [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 5] {
            for start in [0, len, len + 3] {
                let mut out: RVec<u32> = vec![7; start].into();
                fill_chunked(&mut out, len, |index, piece| {
                    for (i, o) in piece.iter_mut().enumerate() {
                        *o = (index * CHUNK + i) as u32;
                    }
                    Ok(())
                })
                .unwrap();
                let expected: Vec<u32> = (0..len as u32).collect();
                assert_eq!(out.as_slice(), expected.as_slice(), "{len} from {start}");
            }
        }
        let mut out: RVec<u32> = RVec::new();
        let failed = fill_chunked(&mut out, 3 * CHUNK, |index, _| {
            if index == 1 {
                Err(gradcodec_sdk::corrupt("stop"))
            } else {
                Ok(())
            }
        });
        assert!(failed.is_err());
        assert_eq!(out.len(), CHUNK);
    }

    /// Every f32 pattern (about ten seconds in release):
    /// `cargo test --release -p gradcodec-plugin-quantizers -- --ignored`.
    #[test]
    #[ignore]
    fn all_f32_patterns() {
        let mut input = vec![0f32; 1 << 20];
        let (mut a, mut b) = (vec![0u16; 1 << 20], vec![0u16; 1 << 20]);
        for block in 0..(1u64 << 12) {
            for (i, v) in input.iter_mut().enumerate() {
                let bits = ((block << 20) | i as u64) as u32;
                let value = f32::from_bits(bits);
                *v = if value.is_finite() { value } else { 0.0 };
            }
            f16_from_f32(&input, &mut a);
            bf16_from_f32(&input, &mut b);
            for ((v, h), g) in input.iter().zip(&a).zip(&b) {
                assert_eq!(*h, software_f16(*v), "{:#010x}", v.to_bits());
                assert_eq!(u32::from(*g), to_bf16_bits(*v), "{:#010x}", v.to_bits());
            }
        }
    }
}
