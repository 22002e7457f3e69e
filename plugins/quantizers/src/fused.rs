//! Fused pairs (ABI 1.1) of the `raw`, `fp16` and `bf16` quantizers with the
//! `bitpack` coder: input to coded bytes and reconstruction in one pass.
//!
//! Composed, each of these pipelines takes four passes behind the ABI: the
//! quantizer writes one u32 symbol per entry, the host checks the alphabet,
//! `bitpack` packs the symbols into 32- or 16-bit little-endian words, and
//! `dequantize` reads them back for the reconstruction. Fused:
//!
//! - [`RawBitpack`]: the bytes are the f32 entries little-endian
//!   (`bitpack` at width 32), the reconstruction is the input itself; decoding
//!   reads the f32s back;
//! - [`Fp16Bitpack`] / [`Bf16Bitpack`]: 4096 entries at a time, the cast
//!   ([`crate::convert`]: F16C where the CPU has it, the bf16 bit arithmetic)
//!   into a stack buffer of 16-bit patterns, their `bitpack` bytes (width 16)
//!   and the cast back as the reconstruction; decoding casts the patterns
//!   back, refusing infinities and NaNs as `dequantize` does.
//!
//! The bytes come from `gradcodec_coding::bitpack` ([`pack_16`] /
//! [`pack_32`]), the very layout functions the coder calls, and the casts are
//! the composed quantizers' own, so the side info (none), stream descriptors,
//! bytes and reconstruction are the composed path's bit for bit; decoding
//! refuses what the composed decoder refuses (a wrong byte length for the
//! count, a count other than the tensor's, a stream more or less, side info,
//! non-finite 16-bit patterns). The conformance kit's `check_fused_pair`
//! checks all of it (core/runtime/tests/fused.rs).
//!
//! Used by the engine for pipelines/f32.yaml, fp16.yaml and bf16.yaml:
//!
//! ```yaml
//! stages:
//!   - quantizer:     { use: fp16 }
//!   - entropy-coder: { use: bitpack }
//! ```

use crate::cast::{decode_checked_le, Bf16Format, Cast, F16Format, HalfFormat};
use crate::convert::{as_slots, fill_spare, CHUNK};
use gradcodec_coding::bitpack::{pack_16, packed_len};
use gradcodec_sdk::abi::{CodedStream, FusedEncoded};
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::FusedPair;

const QUANTIZERS: &str = "gradcodec-plugin-quantizers";
const ENTROPY_CODERS: &str = "gradcodec-plugin-entropy-coders";

/// Whether a canonical config is the empty object (`raw`, `fp16`, `bf16` and
/// `bitpack` have no parameters).
pub(crate) fn no_params(stage: &str, config: &str) -> SdkResult<bool> {
    let value: serde_json::Value =
        serde_json::from_str(config).map_err(|e| invalid_config(format!("{stage} config: {e}")))?;
    Ok(value.as_object().is_some_and(|o| o.is_empty()))
}

/// `out` holding `len` entries, every one about to be overwritten: a buffer of
/// that length is reused as it is.
pub(crate) fn resize_for_overwrite<T: Copy + Default>(out: &mut RVec<T>, len: usize) {
    if out.len() != len {
        out.clear();
        out.resize(len, T::default());
    }
}

/// Clears `out` for one stream of `bytes` coded bytes and `len` reconstructed
/// entries, keeping the coded buffer (and its capacity) and reusing
/// buffers of the right length without clearing them: the callers overwrite
/// every byte and entry.
fn begin_one_stream(out: &mut FusedEncoded, bytes: usize, len: usize) {
    out.quantized.clear();
    out.symbol_counts.clear();
    out.coded.truncate(1);
    if out.coded.is_empty() {
        out.coded.push(RVec::new());
    }
    resize_for_overwrite(&mut out.coded[0], bytes);
    if out.skip_reconstruction {
        out.reconstruction.clear();
    } else {
        resize_for_overwrite(&mut out.reconstruction, len);
    }
}

/// The one coded stream of a message for a tensor of `len` entries whose
/// symbols are `width` bits, with the checks the composed decoder makes:
/// `bitpack`'s byte length for the count, then `dequantize`'s count.
fn one_stream<'a>(
    stage: &str,
    described: &Quantized,
    streams: &'a [CodedStream<'a>],
    width: u32,
    len: u64,
) -> SdkResult<&'a [u8]> {
    expect_no_side_info(stage, &described.side_info)?;
    packed_stream(stage, streams, width, len)
}

/// [`one_stream`]'s checks of the stream itself, for quantizers that send side
/// info: one stream, `bitpack`'s byte length for its count, the tensor's count.
pub(crate) fn packed_stream<'a>(
    stage: &str,
    streams: &'a [CodedStream<'a>],
    width: u32,
    len: u64,
) -> SdkResult<&'a [u8]> {
    let [stream] = streams else {
        return Err(corrupt(format!(
            "{stage} expects 1 stream, got {}",
            streams.len()
        )));
    };
    let (bytes, count) = (stream.bytes.as_slice(), stream.symbols);
    let expected = packed_len(count, width);
    ensure_data(bytes.len() as u128 == expected, || {
        format!(
            "bitpack: {count} symbols of {width} bits need {expected} bytes, got {}",
            bytes.len()
        )
    })?;
    ensure_data(count == len, || {
        format!("{stage} stream has {count} symbols, expected {len}")
    })?;
    Ok(bytes)
}

/// `raw` + `bitpack`: the f32 entries as little-endian words.
pub struct RawBitpack {
    len: u64,
}

impl FusedPair for RawBitpack {
    const QUANTIZER_LIBRARY: &'static str = QUANTIZERS;
    const QUANTIZER: &'static str = "raw";
    const CODER_LIBRARY: &'static str = ENTROPY_CODERS;
    const CODER: &'static str = "bitpack";
    const DOC: &'static str = "f32 passthrough and 32-bit packing in one copy: the entries \
        as little-endian words, the input as the reconstruction";

    fn new(
        quantizer_config: &str,
        coder_config: &str,
        tensor: &TensorSpec,
    ) -> SdkResult<Option<Self>> {
        if !no_params("raw", quantizer_config)? || !no_params("bitpack", coder_config)? {
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
        begin_one_stream(out, input.len() * 4, input.len());
        // `raw` is CHECKS_FINITE: the check rides the copy.
        if !crate::words::to_words_checked(input, &mut out.coded[0]) {
            out.clear();
            ensure_finite(input)?;
            return Err(invalid_input("non-finite input"));
        }
        if !out.skip_reconstruction {
            out.reconstruction.copy_from_slice(input);
        }
        out.quantized.streams.push(StreamShape::raw_words().empty());
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
        let bytes = one_stream("raw", described, streams, 32, self.len)?;
        out.clear();
        if !crate::words::extend_from_words_checked(out, bytes) {
            out.clear();
            return Err(crate::raw::non_finite_words());
        }
        Ok(())
    }
}

/// `fp16` or `bf16` + `bitpack`: the 16-bit patterns as little-endian words.
pub struct CastBitpack<F> {
    quantizer: Cast<F>,
}

/// `fp16` + `bitpack`.
pub type Fp16Bitpack = CastBitpack<F16Format>;
/// `bf16` + `bitpack`.
pub type Bf16Bitpack = CastBitpack<Bf16Format>;

/// The DOC line of a cast pair.
pub trait CastPairDoc {
    /// What the pair does.
    const DOC: &'static str;
}

impl CastPairDoc for F16Format {
    const DOC: &'static str = "fp16 cast (F16C where available) and 16-bit packing in one \
        pass per 4096 entries: patterns, bytes and the cast back, no symbol buffer";
}

impl CastPairDoc for Bf16Format {
    const DOC: &'static str = "bf16 cast and 16-bit packing in one pass per 4096 entries: \
        patterns, bytes and the cast back, no symbol buffer";
}

/// Casts `input` into `coded` (`2 * input.len()` bytes, the 16-bit patterns
/// little-endian) a [`CHUNK`] at a time, handing each chunk's patterns to
/// `back`; `false` when an entry is not finite. On a little-endian machine
/// the bytes are the patterns themselves, so the cast writes them in place
/// when the buffer is u16-aligned (the allocator's alignment makes it so),
/// with no copy from a stack buffer; otherwise (or with `staged`) it goes
/// through a stack buffer and `pack_16`.
fn cast_into<F: HalfFormat>(
    input: &[f32],
    coded: &mut [u8],
    staged: bool,
    mut back: impl FnMut(usize, &[u16]),
) -> bool {
    let mut finite = true;
    // SAFETY: every bit pattern is a valid u16; the middle slice is used only
    // when it covers the whole buffer.
    let (head, words, tail) = unsafe { coded.align_to_mut::<u16>() };
    if !staged && cfg!(target_endian = "little") && head.is_empty() && tail.is_empty() {
        for (index, (chunk, patterns)) in
            input.chunks(CHUNK).zip(words.chunks_mut(CHUNK)).enumerate()
        {
            finite &= F::encode_slice(chunk, patterns);
            back(index, patterns);
        }
        return finite;
    }
    let mut halves = [0u16; CHUNK];
    for (index, (chunk, bytes)) in input
        .chunks(CHUNK)
        .zip(coded.chunks_mut(2 * CHUNK))
        .enumerate()
    {
        let halves = &mut halves[..chunk.len()];
        finite &= F::encode_slice(chunk, halves);
        pack_16(halves, |half| half, bytes);
        back(index, halves);
    }
    finite
}

impl<F: HalfFormat + CastPairDoc> FusedPair for CastBitpack<F> {
    const QUANTIZER_LIBRARY: &'static str = QUANTIZERS;
    const QUANTIZER: &'static str = F::INFO.name;
    const CODER_LIBRARY: &'static str = ENTROPY_CODERS;
    const CODER: &'static str = "bitpack";
    const DOC: &'static str = <F as CastPairDoc>::DOC;

    fn new(
        quantizer_config: &str,
        coder_config: &str,
        tensor: &TensorSpec,
    ) -> SdkResult<Option<Self>> {
        if !no_params(F::INFO.name, quantizer_config)? || !no_params("bitpack", coder_config)? {
            return Ok(None);
        }
        let quantizer = <Cast<F> as Stage>::new(NoParams::default(), tensor)?;
        Ok(Some(Self { quantizer }))
    }

    fn encode(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut FusedEncoded,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.quantizer.len())?;
        begin_one_stream(out, input.len() * 2, input.len());
        let mut finite = true;
        let reconstruct = !out.skip_reconstruction;
        let (coded, reconstruction) = (&mut out.coded[0], &mut out.reconstruction);
        finite &= cast_into::<F>(input, coded, false, |index, patterns| {
            if reconstruct {
                // Finite input casts to finite patterns (the casts saturate).
                let start = index * CHUNK;
                // SAFETY: the kernel stores only computed f32s.
                let slots = unsafe { as_slots(&mut reconstruction[start..start + patterns.len()]) };
                F::decode_slice(patterns, slots);
            }
        });
        if !finite {
            out.clear();
            ensure_finite(input)?;
            return Err(invalid_input("non-finite input"));
        }
        out.quantized.streams.push(crate::cast::STREAMS[0].empty());
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
        let len = self.quantizer.len();
        let bytes = one_stream(F::INFO.name, described, streams, 16, len)?;
        // The patterns are read where they lie in the message (unaligned
        // loads), with no copy into an aligned buffer first.
        fill_spare(out, len as usize, |index, out| {
            decode_checked_le::<F>(&bytes[index * CHUNK * 2..][..out.len() * 2], out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::Raw;
    use gradcodec_coding::bitpack::pack;
    use gradcodec_sdk::conformance::sample_tensor;

    /// The composed path with the shared `bitpack` layout: quantize, pack the
    /// symbols at the stream's width, dequantize.
    fn composed<Q: Quantizer>(input: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let tensor = TensorSpec::new("t", &[input.len() as u64]);
        let mut q = Q::new(gradcodec_sdk::parse_config("{}").unwrap(), &tensor).unwrap();
        let ctx = CallContext::new(0, 0);
        let mut coded = Quantized::default();
        q.quantize(&ctx, input, &mut coded).unwrap();
        let stream = &coded.streams[0];
        let width = gradcodec_coding::bitpack::symbol_width(stream.alphabet_size);
        let mut bytes = vec![0u8; packed_len(stream.symbols.len() as u64, width) as usize];
        pack(&stream.symbols, width, &mut bytes);
        let mut reconstruction = RVec::new();
        q.dequantize(&ctx, &coded, &mut reconstruction).unwrap();
        (bytes, reconstruction.to_vec())
    }

    fn fused<P: FusedPair>(input: &[f32], out: &mut FusedEncoded) -> P {
        let tensor = TensorSpec::new("t", &[input.len() as u64]);
        let mut pair = P::new("{}", "{}", &tensor).unwrap().unwrap();
        pair.encode(&CallContext::new(0, 0), input, out).unwrap();
        pair
    }

    fn decode<P: FusedPair>(pair: &mut P, bytes: &[u8], count: u64) -> SdkResult<Vec<f32>> {
        let coded = [CodedStream {
            bytes: bytes.into(),
            symbols: count,
        }];
        let mut out = RVec::new();
        pair.decode(
            &CallContext::new(0, 0),
            &Quantized::default(),
            &coded,
            &mut out,
        )?;
        Ok(out.to_vec())
    }

    #[test]
    fn casts_write_the_same_bytes_in_place_and_staged() {
        for input in inputs() {
            let expected: Vec<u8> = input
                .iter()
                .flat_map(|v| (F16Format::encode(*v) as u16).to_le_bytes())
                .collect();
            for staged in [false, true] {
                let mut coded = vec![0u8; 2 * input.len()];
                let mut seen = 0;
                let finite =
                    cast_into::<F16Format>(&input, &mut coded, staged, |index, patterns| {
                        assert_eq!(index * CHUNK, seen);
                        seen += patterns.len();
                    });
                assert!(finite);
                assert_eq!(seen, input.len());
                assert_eq!(coded, expected, "staged: {staged}");
            }
        }
    }

    fn inputs() -> Vec<Vec<f32>> {
        let mut wide: Vec<f32> = sample_tensor(9001, 3).iter().map(|v| v * 3e4).collect();
        wide.extend([65504.0, 65519.0, 65520.0, 1e9, -1e9, 1e-7, -3e-8, 0.0, -0.0]);
        vec![
            sample_tensor(10_000, 1),
            wide,
            vec![],
            vec![1.0],
            sample_tensor(4097, 2),
        ]
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    fn check<Q: Quantizer, P: FusedPair>() {
        let mut out = FusedEncoded::default();
        for input in inputs() {
            let (bytes, reconstruction) = composed::<Q>(&input);
            let mut pair = fused::<P>(&input, &mut out);
            assert_eq!(out.coded.len(), 1);
            assert_eq!(
                out.coded[0].as_slice(),
                bytes.as_slice(),
                "{}",
                P::QUANTIZER
            );
            assert!(same_bits(&out.reconstruction, &reconstruction));
            assert_eq!(out.symbol_counts.as_slice(), &[input.len() as u64]);
            assert!(out.quantized.side_info.is_empty());
            let back = decode(&mut pair, &bytes, input.len() as u64).unwrap();
            assert!(same_bits(&back, &reconstruction));
            // Wrong lengths and counts are refused.
            assert!(
                decode(&mut pair, &bytes[..bytes.len() / 2], input.len() as u64).is_err()
                    || input.is_empty()
            );
            assert!(decode(&mut pair, &bytes, input.len() as u64 + 1).is_err());
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0; 4]);
            assert!(decode(&mut pair, &longer, input.len() as u64 + 2).is_err());
        }
    }

    #[test]
    fn fused_pairs_give_the_composed_bytes_and_reconstruction() {
        check::<Raw, RawBitpack>();
        check::<crate::cast::Fp16, Fp16Bitpack>();
        check::<crate::cast::Bf16, Bf16Bitpack>();
    }

    #[test]
    fn non_finite_patterns_and_inputs_are_refused() {
        let input = sample_tensor(5000, 4);
        let mut out = FusedEncoded::default();
        for (infinity, mut pair) in [
            (
                0x7C00u16,
                Box::new(fused::<Fp16Bitpack>(&input, &mut out)) as Box<dyn Decode>,
            ),
            (0x7F80u16, Box::new(fused::<Bf16Bitpack>(&input, &mut out))),
        ] {
            for at in [0, 4097, 4999] {
                let mut bytes = vec![0u8; 10_000];
                bytes[2 * at..2 * at + 2].copy_from_slice(&infinity.to_le_bytes());
                let error = pair.decode(&bytes, 5000).unwrap_err();
                assert!(error.message.contains("not a finite value"), "{error}");
                bytes[2 * at] = 0;
                bytes[2 * at + 1] = 0;
                assert!(pair.decode(&bytes, 5000).is_ok());
            }
        }
        let tensor = TensorSpec::new("t", &[3]);
        let mut pair = Fp16Bitpack::new("{}", "{}", &tensor).unwrap().unwrap();
        let ctx = CallContext::new(0, 0);
        assert!(pair.encode(&ctx, &[1.0, f32::NAN, 2.0], &mut out).is_err());
        assert!(pair.encode(&ctx, &[1.0, 2.0], &mut out).is_err());
        // Raw (CHECKS_FINITE) refuses them both ways too.
        let mut raw = RawBitpack::new("{}", "{}", &tensor).unwrap().unwrap();
        for hostile in [
            [f32::INFINITY, 0.0, 1.0],
            [0.0, f32::NAN, 1.0],
            [0.0, 1.0, -f32::INFINITY],
        ] {
            let error = raw.encode(&ctx, &hostile, &mut out).unwrap_err();
            assert!(error.message.contains("not finite"), "{error}");
        }
        raw.encode(&ctx, &[0.5, -1.0, 2.0], &mut out).unwrap();
        let mut words = out.coded[0].to_vec();
        assert_eq!(
            Decode::decode(&mut raw, &words, 3).unwrap(),
            vec![0.5, -1.0, 2.0]
        );
        words[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        let error = Decode::decode(&mut raw, &words, 3).unwrap_err();
        assert!(error.message.contains("NaN or an infinity"), "{error}");
    }

    #[test]
    fn other_configs_are_not_fused() {
        let tensor = TensorSpec::new("t", &[3]);
        assert!(RawBitpack::new("{}", r#"{"x": 1}"#, &tensor)
            .unwrap()
            .is_none());
        assert!(Fp16Bitpack::new("{}", "[]", &tensor).unwrap().is_none());
        assert!(Bf16Bitpack::new("not json", "{}", &tensor).is_err());
    }

    /// Object-safe decode for the table above.
    trait Decode {
        fn decode(&mut self, bytes: &[u8], count: u64) -> SdkResult<Vec<f32>>;
    }
    impl<P: FusedPair> Decode for P {
        fn decode(&mut self, bytes: &[u8], count: u64) -> SdkResult<Vec<f32>> {
            decode(self, bytes, count)
        }
    }
}
