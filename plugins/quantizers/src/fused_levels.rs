//! Fused pairs of the level quantizers `qsgd` and `terngrad` with `bitpack`:
//! the fixed-width wire (what GRACE's and torch's hooks send: one small
//! integer per entry) decoded in one pass from the packed bytes to the values.
//!
//! Composed, a decode unpacks every symbol into a u32 buffer (4 bytes per
//! entry), scans it for the alphabet, and `dequantize` reads it again. Fused,
//! the symbols are unpacked straight into the output's spare capacity (no
//! staging copy; each 4096 entries tested while in L1), mapped through the
//! value of every symbol (per qsgd bucket: `level * norm / s`, the same f64
//! expression `dequantize` computes; for terngrad `0, +scale, -scale`), with
//! the alphabet check folded into the lookup: eight symbols of width `w` fill
//! exactly `w` bytes, read as one word and split with shifts of a
//! compile-time width (qsgd's 6 bits, terngrad's 2; widths 3 to 7 in vector
//! lanes with AVX-512F or AVX2, picked at run time). Encoding is
//! the composed quantizer followed by `bitpack`'s own packing, so the side info,
//! bytes and reconstruction are the composed path's by construction; decoding
//! refuses what the composed decoder refuses (byte length, count, a symbol
//! outside the alphabet, bad side info), which the conformance kit checks.
//!
//! ```yaml
//! # pipelines/terngrad-bitpack.yaml
//! stages:
//!   - quantizer:     { use: terngrad, params: { clip_sigma: 2.5, seed: 0 } }
//!   - entropy-coder: { use: bitpack }
//! ```

use crate::fused::{no_params, packed_stream, resize_for_overwrite};
use crate::qsgd::{unzigzag, Qsgd};
use crate::terngrad::TernGrad;
use gradcodec_coding::bitpack::{pack, packed_len, symbol_width};
use gradcodec_sdk::abi::{CodedStream, FusedEncoded};
use gradcodec_sdk::buffers::assume_written;
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::FusedPair;
use std::mem::MaybeUninit;

/// Symbols unpacked per step.
const STEP: usize = 4096;
/// The widest symbol a level pair decodes (alphabets up to 256).
const MAX_WIDTH: u32 = 8;

/// What the fused decode needs of a level quantizer.
pub trait Levels: Quantizer + Stage + Sized {
    /// The quantizer's stage name.
    const NAME: &'static str;
    /// The alphabet of its one stream.
    fn levels_alphabet(&self) -> u64;
    /// Entries that share one scale (the whole tensor: its length).
    fn segment(&self) -> usize;
    /// The scale of every segment, read and checked from the side info as
    /// `dequantize` reads it.
    fn scales(&self, side_info: &[u8]) -> SdkResult<Vec<f32>>;
    /// `values[symbol]` = what `dequantize` gives `symbol` in a segment of
    /// `scale`, for every symbol of the alphabet (`values` has its length).
    fn fill_values(&self, scale: f32, values: &mut [f32]);
}

impl Levels for Qsgd {
    const NAME: &'static str = "qsgd";
    fn levels_alphabet(&self) -> u64 {
        self.alphabet()
    }
    fn segment(&self) -> usize {
        self.bucket_entries()
    }
    fn scales(&self, side_info: &[u8]) -> SdkResult<Vec<f32>> {
        self.read_norms(side_info)
    }
    fn fill_values(&self, norm: f32, values: &mut [f32]) {
        // `dequantize`'s expression: the step once per bucket, in f64.
        let step = f64::from(norm) / f64::from(self.levels());
        for (symbol, value) in values.iter_mut().enumerate() {
            *value = (unzigzag(symbol as u32) as f64 * step) as f32;
        }
    }
}

impl Levels for TernGrad {
    const NAME: &'static str = "terngrad";
    fn levels_alphabet(&self) -> u64 {
        3
    }
    fn segment(&self) -> usize {
        (self.len() as usize).max(1)
    }
    fn scales(&self, side_info: &[u8]) -> SdkResult<Vec<f32>> {
        Ok(vec![crate::terngrad::read_scale(side_info)?])
    }
    fn fill_values(&self, scale: f32, values: &mut [f32]) {
        values.copy_from_slice(&[0.0, scale, -scale]);
    }
}

/// A level quantizer + `bitpack` in one pass.
pub struct LevelsBitpack<Q> {
    quantizer: Q,
    len: u64,
    width: u32,
    scratch: Quantized,
}

/// `qsgd` + `bitpack`.
pub type QsgdBitpack = LevelsBitpack<Qsgd>;
/// `terngrad` + `bitpack`.
pub type TerngradBitpack = LevelsBitpack<TernGrad>;

/// The DOC line of a level pair.
pub trait LevelsPairDoc {
    /// What the pair does.
    const DOC: &'static str;
}

impl LevelsPairDoc for Qsgd {
    const DOC: &'static str = "qsgd levels and fixed-width packing: decodes the packed bytes \
        straight to level * norm / s per bucket, no symbol buffer, the alphabet check in the lookup";
}

impl LevelsPairDoc for TernGrad {
    const DOC: &'static str = "terngrad levels and 2-bit packing: decodes each byte's four \
        entries with one lookup, no symbol buffer, the alphabet check in the lookup";
}

impl<Q: Levels + LevelsPairDoc + Send + 'static> FusedPair for LevelsBitpack<Q> {
    const QUANTIZER_LIBRARY: &'static str = "gradcodec-plugin-quantizers";
    const QUANTIZER: &'static str = Q::NAME;
    const CODER_LIBRARY: &'static str = "gradcodec-plugin-entropy-coders";
    const CODER: &'static str = "bitpack";
    const DOC: &'static str = Q::DOC;

    fn new(
        quantizer_config: &str,
        coder_config: &str,
        tensor: &TensorSpec,
    ) -> SdkResult<Option<Self>> {
        if !no_params("bitpack", coder_config)? {
            return Ok(None);
        }
        let config: Q::Config = gradcodec_sdk::parse_config(quantizer_config)?;
        let quantizer = Q::new(config, tensor)?;
        let width = symbol_width(quantizer.levels_alphabet());
        if width == 0 || width > MAX_WIDTH {
            return Ok(None);
        }
        Ok(Some(Self {
            quantizer,
            len: tensor.len(),
            width,
            scratch: Quantized::default(),
        }))
    }

    fn encode(
        &mut self,
        ctx: &CallContext,
        input: &[f32],
        out: &mut FusedEncoded,
    ) -> SdkResult<()> {
        let skip = out.skip_reconstruction;
        out.clear();
        self.quantizer.quantize(ctx, input, &mut self.scratch)?;
        let [stream] = self.scratch.streams.as_slice() else {
            return Err(invalid_input(format!(
                "{} gave other than one stream",
                Q::NAME
            )));
        };
        let count = stream.symbols.len();
        if out.coded.is_empty() {
            out.coded.push(RVec::new());
        }
        out.coded.truncate(1);
        resize_for_overwrite(
            &mut out.coded[0],
            packed_len(count as u64, self.width) as usize,
        );
        pack(&stream.symbols, self.width, &mut out.coded[0]);
        let mut described = SymbolStream::new(stream.role, stream.alphabet_size);
        described.model = stream.model.clone();
        out.quantized.streams.push(described);
        out.quantized
            .side_info
            .extend_from_slice(&self.scratch.side_info);
        out.symbol_counts.push(count as u64);
        if !skip {
            self.quantizer
                .dequantize(ctx, &self.scratch, &mut out.reconstruction)?;
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
        let bytes = packed_stream(Q::NAME, streams, self.width, self.len)?;
        let count = self.len;
        let scales = self.quantizer.scales(&described.side_info)?;
        let segment = self.quantizer.segment();
        let alphabet = self.quantizer.levels_alphabet() as u32;
        out.clear();
        // Symbols outside the alphabet decode to NaN, which the finiteness
        // check of every decoded piece catches (valid symbols give finite
        // values: finite scales from checked side info).
        let mut values = [f32::NAN; 1 << MAX_WIDTH];
        let fill = |dest: &mut [MaybeUninit<f32>]| {
            let mut outside = false;
            let mut written = 0;
            for (index, scale) in scales.iter().enumerate() {
                let start = index * segment;
                let end = (start + segment).min(count as usize);
                if start >= end {
                    break;
                }
                self.quantizer
                    .fill_values(*scale, &mut values[..alphabet as usize]);
                let segment = Segment {
                    bytes,
                    values: &values,
                };
                outside |= !segment.decode(self.width, start, &mut dest[start..end]);
                written = end;
            }
            if outside || written as u64 != count {
                return Err(corrupt(format!(
                    "bitpack: a symbol outside 0..{alphabet} (or a segment the side info lacks)"
                )));
            }
            Ok(())
        };
        // SAFETY: on success the segments wrote every entry of `0..count`
        // (each writes all of its slots, and they follow one another up to
        // `count`, checked above).
        unsafe { out.extend_written(count as usize, fill) }
    }
}

/// The packed bytes and value table of one segment's decode.
struct Segment<'a> {
    bytes: &'a [u8],
    values: &'a [f32; 1 << MAX_WIDTH],
}

/// `dest`'s entries, every one of which its writer just initialized.
fn written(dest: &[MaybeUninit<f32>]) -> &[f32] {
    // SAFETY: callers pass slots they wrote.
    unsafe { assume_written(dest) }
}

impl Segment<'_> {
    /// Writes the values of symbols `start..start + dest.len()` (`width` bits
    /// each, LSB first) into `dest`, every slot; `false` when one is outside
    /// the alphabet (its value is NaN; the others are then meaningless).
    fn decode(&self, width: u32, start: usize, dest: &mut [MaybeUninit<f32>]) -> bool {
        match width {
            1 => self.by_bytes::<1, 8>(start, dest),
            2 => self.by_bytes::<2, 4>(start, dest),
            3 => self.by_words::<3>(start, dest),
            4 => self.by_bytes::<4, 2>(start, dest),
            5 => self.by_words::<5>(start, dest),
            6 => self.by_words::<6>(start, dest),
            7 => self.by_words::<7>(start, dest),
            _ => self.by_bytes::<8, 1>(start, dest),
        }
    }

    /// Widths `W` that divide a byte (`P` = 8 / `W` symbols per byte): the `P`
    /// values of every byte looked up whole, from a byte boundary; each
    /// `STEP` entries tested while they are in L1.
    fn by_bytes<const W: u32, const P: usize>(
        &self,
        start: usize,
        dest: &mut [MaybeUninit<f32>],
    ) -> bool {
        let end = start + dest.len();
        let aligned = start.next_multiple_of(P).min(end);
        let (head, rest) = dest.split_at_mut(aligned - start);
        let mut finite = self.one_by_one::<W>(start, head);
        let whole = rest.len() / P;
        let (body, tail) = rest.split_at_mut(whole * P);
        let mask = (1usize << W) - 1;
        let rows: Vec<[MaybeUninit<f32>; P]> = (0..256usize)
            .map(|byte| {
                std::array::from_fn(|slot| {
                    MaybeUninit::new(self.values[(byte >> (slot * W as usize)) & mask])
                })
            })
            .collect();
        let first = aligned / P;
        for (piece, slots) in self.bytes[first..first + whole]
            .chunks(STEP / P)
            .zip(body.chunks_mut(STEP))
        {
            for (group, byte) in slots.chunks_exact_mut(P).zip(piece) {
                group.copy_from_slice(&rows[usize::from(*byte)]);
            }
            finite &= gradcodec_sdk::floats::all_finite(written(slots));
        }
        finite & self.one_by_one::<W>(aligned + whole * P, tail)
    }

    /// Other widths `W`: eight symbols fill exactly `W` bytes, read as one
    /// little-endian word and split with shifts, from a multiple of eight;
    /// each `STEP` entries tested while they are in L1.
    fn by_words<const W: u32>(&self, start: usize, dest: &mut [MaybeUninit<f32>]) -> bool {
        let end = start + dest.len();
        let aligned = start.next_multiple_of(8).min(end);
        let (head, rest) = dest.split_at_mut(aligned - start);
        let mut finite = self.one_by_one::<W>(start, head);
        let groups = rest.len() / 8;
        let (body, tail) = rest.split_at_mut(groups * 8);
        #[cfg(target_arch = "x86_64")]
        let (avx512, avx2) = (
            W <= 6 && std::is_x86_feature_detected!("avx512f"),
            gradcodec_sdk::simd::has_avx2(),
        );
        for (step, slots) in body.chunks_mut(STEP).enumerate() {
            let first = (aligned + step * STEP) / 8 * W as usize;
            // The last group reads eight bytes from its first byte on.
            #[cfg(target_arch = "x86_64")]
            if (avx512 || avx2)
                && first + (slots.len() / 8).saturating_sub(1) * W as usize + 8 <= self.bytes.len()
            {
                // SAFETY: the CPU has the kernel's features (detected above);
                // every group's eight-byte read ends by the last one's, within
                // `bytes`; AVX-512 only for widths up to 6.
                unsafe {
                    if avx512 {
                        groups_avx512::<W>(self.bytes, first, self.values, slots)
                    } else {
                        groups_avx2::<W>(self.bytes, first, self.values, slots)
                    }
                };
                finite &= gradcodec_sdk::floats::all_finite(written(slots));
                continue;
            }
            self.groups::<W>(first, slots);
            finite &= gradcodec_sdk::floats::all_finite(written(slots));
        }
        finite & self.one_by_one::<W>(aligned + groups * 8, tail)
    }

    /// The groups of eight `W`-bit symbols from byte `first` on (`W` bytes a
    /// group) into `slots` (a multiple of eight), one symbol at a time.
    fn groups<const W: u32>(&self, first: usize, slots: &mut [MaybeUninit<f32>]) {
        let mask = (1u64 << W) - 1;
        for (group, eight) in slots.chunks_exact_mut(8).enumerate() {
            let byte = first + group * W as usize;
            let word = match self.bytes.get(byte..byte + 8) {
                Some(bytes) => u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])),
                None => self.tail_word(byte),
            };
            for (k, slot) in eight.iter_mut().enumerate() {
                slot.write(self.values[((word >> (k as u32 * W)) & mask) as usize]);
            }
        }
    }

    /// The bytes from `byte` to the end, little-endian, zero above them.
    fn tail_word(&self, byte: usize) -> u64 {
        let rest = &self.bytes[byte.min(self.bytes.len())..];
        rest.iter()
            .take(8)
            .enumerate()
            .fold(0, |word, (i, b)| word | u64::from(*b) << (8 * i))
    }

    /// Symbols `start..start + dest.len()` (fewer than a group) one at a time.
    fn one_by_one<const W: u32>(&self, start: usize, dest: &mut [MaybeUninit<f32>]) -> bool {
        let mask = (1u32 << W) - 1;
        for (slot, index) in dest.iter_mut().zip(start..) {
            let bit = index * W as usize;
            let low = u32::from(self.bytes[bit / 8]);
            let high = u32::from(self.bytes.get(bit / 8 + 1).copied().unwrap_or(0));
            slot.write(self.values[(((low | high << 8) >> (bit % 8)) & mask) as usize]);
        }
        gradcodec_sdk::floats::all_finite(written(dest))
    }
}

/// [`Segment::groups`] with AVX2: the eight symbols of a group as lanes (the
/// low half of the group's word in lanes 0-3, its high half in 4-7, each
/// shifted by its place), their values in one gather and one store; the same
/// values. Widths up to 7 (four symbols fit a 32-bit lane).
///
/// # Safety
/// The CPU has AVX2, and `bytes` holds eight bytes from the last group's
/// first byte, `first + (slots.len() / 8 - 1) * W`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn groups_avx2<const W: u32>(
    bytes: &[u8],
    first: usize,
    values: &[f32; 1 << MAX_WIDTH],
    slots: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    const { assert!(W >= 1 && W <= 7) };
    let w = W as i32;
    let shifts = _mm256_setr_epi32(0, w, 2 * w, 3 * w, 0, w, 2 * w, 3 * w);
    let mask = _mm256_set1_epi32((1 << W) - 1);
    for (group, eight) in slots.chunks_exact_mut(8).enumerate() {
        let byte = first + group * W as usize;
        // SAFETY: `byte + 8 <= bytes.len()` for every group (the caller's contract).
        let word = unsafe { bytes.as_ptr().add(byte).cast::<u64>().read_unaligned() }.to_le();
        let low = word as u32 as i32;
        let high = (word >> (4 * W)) as u32 as i32;
        let halves = _mm256_setr_epi32(low, low, low, low, high, high, high, high);
        let symbols = _mm256_and_si256(_mm256_srlv_epi32(halves, shifts), mask);
        // SAFETY: every symbol is below 2^W <= 128, inside `values` (256 entries).
        let gathered = unsafe { _mm256_i32gather_ps::<4>(values.as_ptr(), symbols) };
        // SAFETY: `eight` is eight f32 slots (MaybeUninit<f32> has f32's layout).
        unsafe { _mm256_storeu_ps(eight.as_mut_ptr().cast::<f32>(), gathered) };
    }
}

/// [`Segment::groups`] with AVX-512F, two groups (sixteen symbols) a step:
/// the halves of both words spread to their lanes and shifted by their
/// places, the values looked up in registers (two-table permutes over the
/// first 64 values, the symbol's bit 5 choosing the pair), one store; the
/// same values. Widths up to 6; an odd last group goes through
/// [`groups_avx2`].
///
/// # Safety
/// As [`groups_avx2`], with AVX-512F (which implies AVX2) and `W <= 6`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn groups_avx512<const W: u32>(
    bytes: &[u8],
    first: usize,
    values: &[f32; 1 << MAX_WIDTH],
    slots: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    debug_assert!((1..=6).contains(&W), "lookups cover 64 values");
    let w = W as i32;
    let shifts = _mm512_setr_epi32(
        0,
        w,
        2 * w,
        3 * w,
        0,
        w,
        2 * w,
        3 * w,
        0,
        w,
        2 * w,
        3 * w,
        0,
        w,
        2 * w,
        3 * w,
    );
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let mask = _mm512_set1_epi32((1 << W) - 1);
    let upper = _mm512_set1_epi32(32);
    // SAFETY: `values` has 256 entries; these read the first 64.
    let tables = [0, 16, 32, 48].map(|at| unsafe { _mm512_loadu_ps(values.as_ptr().add(at)) });
    let half_words = |byte: usize| {
        // SAFETY: `byte + 8 <= bytes.len()` for every group (the caller's contract).
        let word = unsafe { bytes.as_ptr().add(byte).cast::<u64>().read_unaligned() }.to_le();
        (word as u32 as i32, (word >> (4 * W)) as u32 as i32)
    };
    let mut pairs = slots.chunks_exact_mut(16);
    for (pair, sixteen) in pairs.by_ref().enumerate() {
        let byte = first + 2 * pair * W as usize;
        let (low0, high0) = half_words(byte);
        let (low1, high1) = half_words(byte + W as usize);
        let halves = _mm512_castsi128_si512(_mm_setr_epi32(low0, high0, low1, high1));
        let lanes = _mm512_permutexvar_epi32(spread, halves);
        let symbols = _mm512_and_si512(_mm512_srlv_epi32(lanes, shifts), mask);
        let below = _mm512_permutex2var_ps(tables[0], symbols, tables[1]);
        let above = _mm512_permutex2var_ps(tables[2], symbols, tables[3]);
        let from_above = _mm512_test_epi32_mask(symbols, upper);
        let found = _mm512_mask_blend_ps(from_above, below, above);
        // SAFETY: `sixteen` is sixteen f32 slots (MaybeUninit<f32> has f32's layout).
        unsafe { _mm512_storeu_ps(sixteen.as_mut_ptr().cast::<f32>(), found) };
    }
    let done = slots.len() / 16 * 16;
    // SAFETY: AVX-512F implies AVX2; the odd group's read is within the contract.
    unsafe {
        groups_avx2::<W>(
            bytes,
            first + done / 8 * W as usize,
            values,
            &mut slots[done..],
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every width's groups through the AVX2 and AVX-512 kernels against the
    /// portable loop, odd group counts included.
    #[test]
    fn the_avx2_groups_are_the_portable_groups() {
        if !gradcodec_sdk::simd::has_avx2() {
            return;
        }
        let mut values = [f32::NAN; 1 << MAX_WIDTH];
        for (i, value) in values.iter_mut().enumerate().take(100) {
            *value = i as f32 * 0.5 - 7.0;
        }
        let bytes: Vec<u8> = (0..4_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let segment = Segment {
            bytes: &bytes,
            values: &values,
        };
        fn check<const W: u32>(segment: &Segment<'_>, bytes: &[u8]) {
            for (first, groups) in [(0usize, 64usize), (3, 17), (1000, 300)] {
                assert!(first + (groups - 1) * W as usize + 8 <= bytes.len());
                let mut portable = vec![MaybeUninit::new(0.0f32); groups * 8];
                let mut wide = vec![MaybeUninit::new(1.0f32); groups * 8];
                segment.groups::<W>(first, &mut portable);
                // SAFETY: AVX2 checked above; the reads stay in `bytes` (asserted).
                unsafe { groups_avx2::<W>(bytes, first, segment.values, &mut wide) };
                let bits = |v: &[MaybeUninit<f32>]| -> Vec<u32> {
                    written(v).iter().map(|x| x.to_bits()).collect()
                };
                assert_eq!(bits(&portable), bits(&wide), "width {W} from byte {first}");
                if W <= 6 && std::is_x86_feature_detected!("avx512f") {
                    let mut widest = vec![MaybeUninit::new(2.0f32); groups * 8];
                    // SAFETY: AVX-512F detected; W <= 6; the reads stay in `bytes`.
                    unsafe { groups_avx512::<W>(bytes, first, segment.values, &mut widest) };
                    assert_eq!(
                        bits(&portable),
                        bits(&widest),
                        "width {W} from byte {first}, AVX-512"
                    );
                }
            }
        }
        check::<1>(&segment, &bytes);
        check::<3>(&segment, &bytes);
        check::<5>(&segment, &bytes);
        check::<6>(&segment, &bytes);
        check::<7>(&segment, &bytes);
    }
}
