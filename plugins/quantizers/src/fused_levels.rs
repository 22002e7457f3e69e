//! Fused pairs of the level quantizers `qsgd` and `terngrad` with `bitpack`:
//! the fixed-width wire (what GRACE's and torch's hooks send: one small
//! integer per entry) decoded in one pass from the packed bytes to the values.
//!
//! Composed, a decode unpacks every symbol into a u32 buffer (4 bytes per
//! entry), scans it for the alphabet, and `dequantize` reads it again. Fused,
//! 4096 symbols at a time are unpacked into a stack buffer and mapped through
//! the value of every symbol (per qsgd bucket: `level * norm / s`, the same f64
//! expression `dequantize` computes; for terngrad `0, +scale, -scale`), with
//! the alphabet check folded into the lookup: eight symbols of width `w` fill
//! exactly `w` bytes, read as one word and split with shifts of a
//! compile-time width (qsgd's 6 bits, terngrad's 2). Encoding is
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
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::FusedPair;

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
        out.reserve(count as usize);
        // Symbols outside the alphabet decode to NaN, which the finiteness
        // check of every decoded piece catches (valid symbols give finite
        // values: finite scales from checked side info).
        let mut values = [f32::NAN; 1 << MAX_WIDTH];
        let mut staged = [0.0f32; STEP];
        let mut outside = false;
        for (index, scale) in scales.iter().enumerate() {
            let start = index * segment;
            let end = (start + segment).min(count as usize);
            if start >= end {
                break;
            }
            self.quantizer
                .fill_values(*scale, &mut values[..alphabet as usize]);
            outside |= !decode_segment(bytes, self.width, start, end, &values, &mut staged, out);
        }
        if outside || out.len() as u64 != count {
            out.clear();
            return Err(corrupt(format!(
                "bitpack: a symbol outside 0..{alphabet} (or a segment the side info lacks)"
            )));
        }
        Ok(())
    }
}

/// Appends the values of symbols `start..end` (`width` bits each, LSB first)
/// to `out`, through `staged`; `false` when one is outside the alphabet (its
/// value in `values` is NaN; the appended values are then meaningless).
fn decode_segment(
    bytes: &[u8],
    width: u32,
    start: usize,
    end: usize,
    values: &[f32; 1 << MAX_WIDTH],
    staged: &mut [f32; STEP],
    out: &mut RVec<f32>,
) -> bool {
    let segment = Segment { bytes, values };
    match width {
        1 => segment.by_bytes::<1, 8>(start, end, staged, out),
        2 => segment.by_bytes::<2, 4>(start, end, staged, out),
        3 => segment.by_words::<3>(start, end, staged, out),
        4 => segment.by_bytes::<4, 2>(start, end, staged, out),
        5 => segment.by_words::<5>(start, end, staged, out),
        6 => segment.by_words::<6>(start, end, staged, out),
        7 => segment.by_words::<7>(start, end, staged, out),
        _ => segment.by_bytes::<8, 1>(start, end, staged, out),
    }
}

/// The packed bytes and value table of one decode.
struct Segment<'a> {
    bytes: &'a [u8],
    values: &'a [f32; 1 << MAX_WIDTH],
}

impl Segment<'_> {
    /// Appends `staged[..len]` to `out`; whether all of it is finite (read
    /// while it is still in L1).
    fn flush(staged: &[f32], out: &mut RVec<f32>) -> bool {
        out.extend_copied(staged);
        gradcodec_sdk::floats::all_finite(staged)
    }

    /// Widths `W` that divide a byte (`P` = 8 / `W` symbols per byte): the `P`
    /// values of every byte looked up whole, from a byte boundary.
    fn by_bytes<const W: u32, const P: usize>(
        &self,
        start: usize,
        end: usize,
        staged: &mut [f32; STEP],
        out: &mut RVec<f32>,
    ) -> bool {
        let aligned = start.next_multiple_of(P).min(end);
        let mut finite = self.one_by_one::<W>(start, aligned, staged, out);
        let whole = (end - aligned) / P;
        let mask = (1usize << W) - 1;
        let rows: Vec<[f32; P]> = (0..256usize)
            .map(|byte| {
                std::array::from_fn(|slot| self.values[(byte >> (slot * W as usize)) & mask])
            })
            .collect();
        let first = aligned / P;
        for piece in self.bytes[first..first + whole].chunks(STEP / P) {
            for (slots, byte) in staged.chunks_exact_mut(P).zip(piece) {
                let row: &[f32; P] = &rows[usize::from(*byte)];
                slots.copy_from_slice(row);
            }
            finite &= Self::flush(&staged[..piece.len() * P], out);
        }
        let done = aligned + whole * P;
        finite & self.one_by_one::<W>(done, end, staged, out)
    }

    /// Other widths `W`: eight symbols fill exactly `W` bytes, read as one
    /// little-endian word and split with shifts, from a multiple of eight.
    fn by_words<const W: u32>(
        &self,
        start: usize,
        end: usize,
        staged: &mut [f32; STEP],
        out: &mut RVec<f32>,
    ) -> bool {
        let aligned = start.next_multiple_of(8).min(end);
        let mut finite = self.one_by_one::<W>(start, aligned, staged, out);
        let groups_end = aligned + (end - aligned) / 8 * 8;
        let mask = (1u64 << W) - 1;
        let mut at = aligned;
        while at < groups_end {
            let here = (groups_end - at).min(STEP);
            let first = at / 8 * W as usize;
            for (group, slots) in staged[..here].chunks_exact_mut(8).enumerate() {
                let byte = first + group * W as usize;
                let word = match self.bytes.get(byte..byte + 8) {
                    Some(eight) => u64::from_le_bytes(eight.try_into().unwrap_or([0; 8])),
                    None => self.tail_word(byte),
                };
                for (k, slot) in slots.iter_mut().enumerate() {
                    *slot = self.values[((word >> (k as u32 * W)) & mask) as usize];
                }
            }
            finite &= Self::flush(&staged[..here], out);
            at += here;
        }
        finite & self.one_by_one::<W>(groups_end, end, staged, out)
    }

    /// The bytes from `byte` to the end, little-endian, zero above them.
    fn tail_word(&self, byte: usize) -> u64 {
        let rest = &self.bytes[byte.min(self.bytes.len())..];
        rest.iter()
            .take(8)
            .enumerate()
            .fold(0, |word, (i, b)| word | u64::from(*b) << (8 * i))
    }

    /// Symbols `start..end` (fewer than a group) one at a time.
    fn one_by_one<const W: u32>(
        &self,
        start: usize,
        end: usize,
        staged: &mut [f32; STEP],
        out: &mut RVec<f32>,
    ) -> bool {
        let mask = (1u32 << W) - 1;
        for (slot, index) in staged.iter_mut().zip(start..end) {
            let bit = index * W as usize;
            let low = u32::from(self.bytes[bit / 8]);
            let high = u32::from(self.bytes.get(bit / 8 + 1).copied().unwrap_or(0));
            *slot = self.values[(((low | high << 8) >> (bit % 8)) & mask) as usize];
        }
        Self::flush(&staged[..end - start], out)
    }
}
