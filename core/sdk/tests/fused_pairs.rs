//! The conformance kit's fused-pair check, on a tiny pair: a sign quantizer
//! (`sign`: one bit per entry, the mean magnitude as side info) and a bit-packing
//! coder (`bits`), fused by `SignBits`. Deliberately wrong fused
//! implementations (other bytes, a lenient decoder, a panic, another
//! reconstruction) must be caught; the quantizer's `flavour` parameter picks
//! which fused implementation the library builds.

use gradcodec_sdk::conformance::{check_fused_pair, FusedPairUnderTest};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

const LIBRARY: &str = "fused-test";

/// `sign`'s parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignConfig {
    /// Which fused implementation the library builds for this config (the
    /// quantizer itself ignores it).
    #[serde(default)]
    pub flavour: String,
}

impl StageConfig for SignConfig {}

const SHAPES: [StreamShape; 1] = [StreamShape::values(2)];

/// Sign quantizer: side info the mean magnitude (f32), one bit per entry.
pub struct Sign {
    len: u64,
}

fn mean_magnitude(input: &[f32]) -> f32 {
    if input.is_empty() {
        return 0.0;
    }
    (input.iter().map(|v| f64::from(v.abs())).sum::<f64>() / input.len() as f64) as f32
}

fn read_scale(side_info: &[u8]) -> SdkResult<f32> {
    let bytes: [u8; 4] = side_info
        .try_into()
        .map_err(|_| corrupt("side info must be 4 bytes"))?;
    let scale = f32::from_le_bytes(bytes);
    ensure_data(scale.is_finite() && scale >= 0.0, || "bad scale".into())?;
    Ok(scale)
}

impl Stage for Sign {
    type Config = SignConfig;
    const INFO: StageInfo = StageInfo::new("sign", "Test stage: the sign of each entry.");
    fn new(_config: SignConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self { len: tensor.len() })
    }
}

impl Quantizer for Sign {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        begin_streams(out, &SHAPES);
        out.side_info
            .extend_from_slice(&mean_magnitude(input).to_le_bytes());
        out.streams[0]
            .symbols
            .extend(input.iter().map(|v| u32::from(v.is_sign_negative())));
        Ok(())
    }
    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        read_scale(&out.side_info)?;
        describe(out, &SHAPES);
        Ok(())
    }
    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let scale = read_scale(&coded.side_info)?;
        let [signs] = received_streams("sign", coded, &SHAPES, [self.len])?;
        out.clear();
        out.extend(signs.iter().map(|s| if *s == 1 { -scale } else { scale }));
        Ok(())
    }
}

/// Packs binary symbols, 8 a byte, first symbol in the lowest bit; the decoder
/// wants exactly the bytes the count needs and zero padding bits.
pub struct Bits;

impl Stage for Bits {
    type Config = NoParams;
    const INFO: StageInfo = StageInfo::new("bits", "Test stage: one bit per binary symbol.")
        .with_flags(StageFlags::LOSSLESS);
    fn new(_config: NoParams, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self)
    }
}

fn pack(symbols: impl Iterator<Item = bool>, out: &mut RVec<u8>) {
    let mut byte = 0u8;
    let mut filled = 0;
    for bit in symbols {
        byte |= u8::from(bit) << filled;
        filled += 1;
        if filled == 8 {
            out.push(byte);
            byte = 0;
            filled = 0;
        }
    }
    if filled > 0 {
        out.push(byte);
    }
}

fn unpack(bytes: &[u8], count: u64) -> SdkResult<impl Iterator<Item = bool> + '_> {
    ensure_data(bytes.len() as u64 == count.div_ceil(8), || {
        format!("{} bytes for {count} bits", bytes.len())
    })?;
    let padding = (bytes.len() as u64 * 8 - count) as u32;
    if let Some(last) = bytes.last() {
        ensure_data(padding == 0 || last >> (8 - padding) == 0, || {
            "padding bits set".into()
        })?;
    }
    Ok((0..count as usize).map(move |i| (bytes[i / 8] >> (i % 8)) & 1 == 1))
}

impl EntropyCoder for Bits {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        if stream.alphabet_size > 2 {
            return Err(unsupported("bits codes binary streams only"));
        }
        pack(stream.symbols.iter().map(|s| *s == 1), out);
        Ok(())
    }
    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        if stream.alphabet_size > 2 {
            return Err(unsupported("bits codes binary streams only"));
        }
        let bits = unpack(bytes, count)?;
        stream.symbols.clear();
        stream.symbols.extend(bits.map(u32::from));
        if stream.alphabet_size < 2 {
            check_alphabet_small(stream)?;
        }
        Ok(())
    }
}

fn check_alphabet_small(stream: &SymbolStream) -> SdkResult<()> {
    ensure_data(
        stream
            .symbols
            .iter()
            .all(|s| u64::from(*s) < stream.alphabet_size),
        || "symbol outside the alphabet".into(),
    )
}

/// What each fused implementation gets wrong.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    /// First symbol in the highest bit: other bytes.
    WrongBytes,
    /// Accepts trailing bytes after the packed bits.
    LenientDecoder,
    /// Panics on encode.
    Panics,
    /// Reconstructs with the scale rounded to f16 precision.
    OtherReconstruction,
}

/// The fused `sign` + `bits`, one type per flavour (`FLAW` as an index).
pub struct SignBits<const FLAW: u8> {
    len: u64,
}

impl<const FLAW: u8> SignBits<FLAW> {
    const FLAW: Flaw = match FLAW {
        0 => Flaw::None,
        1 => Flaw::WrongBytes,
        2 => Flaw::LenientDecoder,
        3 => Flaw::Panics,
        _ => Flaw::OtherReconstruction,
    };
    const FLAVOUR: &'static str = match FLAW {
        0 => "",
        1 => "wrong-bytes",
        2 => "lenient-decoder",
        3 => "panics",
        _ => "other-reconstruction",
    };
}

impl<const FLAW: u8> FusedPair for SignBits<FLAW> {
    const QUANTIZER_LIBRARY: &'static str = LIBRARY;
    const QUANTIZER: &'static str = "sign";
    const CODER_LIBRARY: &'static str = LIBRARY;
    const CODER: &'static str = "bits";
    const DOC: &'static str = "Test pair: signs packed while they are computed.";

    fn new(
        quantizer_config: &str,
        coder_config: &str,
        tensor: &TensorSpec,
    ) -> SdkResult<Option<Self>> {
        let config: SignConfig = parse_config(quantizer_config)?;
        let _: NoParams = parse_config(coder_config)?;
        Ok((config.flavour == Self::FLAVOUR).then(|| Self { len: tensor.len() }))
    }

    fn encode(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut FusedEncoded,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        if Self::FLAW == Flaw::Panics {
            panic!("deliberate panic in a fused encode");
        }
        out.clear();
        let mut scale = mean_magnitude(input);
        begin_streams(&mut out.quantized, &SHAPES);
        out.quantized
            .side_info
            .extend_from_slice(&scale.to_le_bytes());
        out.symbol_counts.push(input.len() as u64);
        let mut bytes = RVec::new();
        if Self::FLAW == Flaw::WrongBytes {
            let mut reversed: Vec<bool> = input.iter().map(|v| v.is_sign_negative()).collect();
            reversed.reverse();
            pack(reversed.into_iter(), &mut bytes);
        } else {
            pack(input.iter().map(|v| v.is_sign_negative()), &mut bytes);
        }
        out.coded.push(bytes);
        if Self::FLAW == Flaw::OtherReconstruction {
            scale = half::f16::from_f32(scale).to_f32();
        }
        out.reconstruction.extend(input.iter().map(|v| {
            if v.is_sign_negative() {
                -scale
            } else {
                scale
            }
        }));
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
            return Err(corrupt(format!("expected 1 stream, got {}", streams.len())));
        };
        ensure_data(described.streams.len() == 1, || {
            "expected 1 descriptor".into()
        })?;
        ensure_data(stream.symbols == self.len, || "wrong symbol count".into())?;
        let mut bytes = stream.bytes.as_slice();
        if Self::FLAW == Flaw::LenientDecoder {
            bytes = &bytes[..bytes.len().min(self.len.div_ceil(8) as usize)];
        }
        let bits = unpack(bytes, stream.symbols)?;
        out.clear();
        out.extend(bits.map(|negative| if negative { -scale } else { scale }));
        Ok(())
    }
}

gradcodec_sdk::export_plugin! {
    library: LIBRARY,
    quantizers: [Sign],
    entropy_coders: [Bits],
    fused: [SignBits<0>, SignBits<1>, SignBits<2>, SignBits<3>, SignBits<4>],
}

fn inputs() -> Vec<Vec<f32>> {
    vec![
        gradcodec_sdk::conformance::sample_tensor(1000, 1),
        gradcodec_sdk::conformance::sample_tensor(13, 2),
        vec![0.0, -0.0, 1.5, -2.5],
        Vec::new(),
    ]
}

fn check(flavour: &str) -> Result<gradcodec_sdk::conformance::FusedPairReport, String> {
    let quantizer_params = format!(r#"{{"flavour": "{flavour}"}}"#);
    check_fused_pair(
        &FusedPairUnderTest {
            fused_root: plugin_root(),
            quantizer_root: plugin_root(),
            quantizer: "sign",
            quantizer_params: &quantizer_params,
            coder_root: plugin_root(),
            coder: "bits",
            coder_params: "{}",
        },
        &inputs(),
    )
}

#[test]
fn the_stages_pass_the_kit() {
    gradcodec_sdk::conformance::check_library(plugin_root());
}

#[test]
fn a_faithful_fused_pair_passes() {
    let report = check("").unwrap();
    assert_eq!(report.cases, 16);
    assert!(report.bytes > 0);
    assert!(report.refused > 0, "no malformed message was refused");
}

#[test]
fn fused_pairs_lists_every_fused_type() {
    let pairs = (plugin_root().fused_pairs().unwrap())();
    assert_eq!(pairs.len(), 5);
    assert!(pairs.iter().all(|p| p.quantizer == "sign"
        && p.coder == "bits"
        && p.quantizer_library == LIBRARY
        && p.coder_library == LIBRARY));
}

#[test]
fn other_bytes_are_caught() {
    let error = check("wrong-bytes").unwrap_err();
    assert!(error.contains("coded bytes differ"), "{error}");
}

#[test]
fn a_decoder_that_accepts_what_the_composed_one_refuses_is_caught() {
    let error = check("lenient-decoder").unwrap_err();
    assert!(
        error.contains("accepted what the composed one refuses") && error.contains("trailing"),
        "{error}"
    );
}

#[test]
fn a_panic_is_an_error_not_an_unwind() {
    let error = check("panics").unwrap_err();
    assert!(
        error.contains("panicked") && error.contains("fused sign+bits"),
        "{error}"
    );
}

#[test]
fn another_reconstruction_is_caught() {
    let error = check("other-reconstruction").unwrap_err();
    assert!(error.contains("reconstruction differs"), "{error}");
}

#[test]
fn configs_no_type_fuses_give_none_and_the_check_says_so() {
    let new_fused = plugin_root().new_fused().unwrap();
    let tensor = TensorSpec::new("t", &[4]);
    let made = new_fused(
        "sign".into(),
        r#"{"flavour":"nobody"}"#.into(),
        "bits".into(),
        "{}".into(),
        &tensor,
    );
    assert!(matches!(
        made,
        abi_stable::std_types::RResult::ROk(abi_stable::std_types::ROption::RNone)
    ));
    let other_pair = new_fused(
        "sign".into(),
        "{}".into(),
        "rans".into(),
        "{}".into(),
        &tensor,
    );
    assert!(matches!(
        other_pair,
        abi_stable::std_types::RResult::ROk(abi_stable::std_types::ROption::RNone)
    ));
    let error = check("nobody").unwrap_err();
    assert!(error.contains("gave None"), "{error}");
}
