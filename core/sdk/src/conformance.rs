//! The conformance kit: one call checks every stage of a library.
//!
//! ```ignore
//! #[test]
//! fn conformance() {
//!     gradcodec_sdk::conformance::check_library(plugin_root());
//! }
//! ```
//!
//! For each stage in the manifest, with its example parameters, it checks:
//! canonical-config round trip and rejection of unknown fields; round trip
//! (quantizer: decoder-side stream description and dequantize agree with the
//! encoder; lossless stages exact; entropy coders exact on several streams);
//! determinism (two fresh instances give identical outputs); reset (a reset
//! instance behaves like a fresh one); state save/load; and malformed input
//! (truncated or garbage data, out-of-range symbols, wrong lengths) gives an
//! error, never a panic. A RANDOMIZED quantizer must draw differently per
//! round and per tensor index ([`check_stage`]).

use abi_stable::std_types::{RResult, RStr, RVec};
use gradcodec_abi::{
    CallContext, ErrorCode, PluginRootRef, Quantized, StageDescriptor, StageError, StageFlags,
    StageKind, StageResult, StreamRole, SymbolStream, TensorSpec,
};

/// Test input: deterministic, heavy-tailed, with exact zeros and sign changes.
pub fn sample_tensor(len: usize, salt: u32) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(salt);
    (0..len)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let uniform = ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            if i % 7 == 3 {
                return 0.0;
            }
            let magnitude = -(uniform.ln()) * 0.01;
            let sign = if (state >> 7) & 1 == 0 { 1.0 } else { -1.0 };
            (sign * magnitude * magnitude.sqrt() * 10.0) as f32
        })
        .collect()
}

fn ok<T>(what: &str, result: StageResult<T>) -> T {
    match result {
        RResult::ROk(value) => value,
        RResult::RErr(error) => panic!("{what}: unexpected error: {error}"),
    }
}

fn expect_clean_error<T>(what: &str, result: StageResult<T>) {
    match result {
        RResult::ROk(_) => panic!("{what}: accepted malformed input"),
        RResult::RErr(error) => check_clean(what, &error),
    }
}

fn check_clean(what: &str, error: &StageError) {
    assert_ne!(
        error.code,
        ErrorCode::PANIC,
        "{what}: the stage panicked: {error}"
    );
    assert!(!error.message.is_empty(), "{what}: error without a message");
}

const TENSOR_SHAPE: [u64; 2] = [48, 37];

fn tensor() -> TensorSpec {
    TensorSpec {
        name: "conformance.weight".into(),
        shape: RVec::from(TENSOR_SHAPE.to_vec()),
    }
}

/// Runs the whole kit over every stage of `root`; panics with a message naming
/// the stage and the failed check.
pub fn check_library(root: PluginRootRef) {
    let manifest = (root.manifest())();
    assert!(!manifest.stages.is_empty(), "library lists no stage");
    assert_eq!(
        manifest.abi_version.as_str(),
        gradcodec_abi::ABI_VERSION,
        "library built against another ABI version"
    );
    for stage in manifest.stages.iter() {
        check_stage(root, stage);
    }
}

/// Runs the kit for one stage with other parameters than its example (JSON),
/// e.g. to cover every model or format option of a stage.
pub fn check_stage_with_params(
    root: PluginRootRef,
    kind: StageKind,
    name: &str,
    params_json: &str,
) {
    let manifest = (root.manifest())();
    let mut stage = manifest
        .stages
        .iter()
        .find(|s| s.kind == kind && s.name.as_str() == name)
        .unwrap_or_else(|| panic!("the library has no {kind} `{name}`"))
        .clone();
    stage.example_params = params_json.into();
    check_stage_params(root, &stage);
}

/// [`check_stage_with_params`] for each `(name, params_json)` of `variants`, all
/// stages of `kind`: the kit over every documented option, not only the
/// example.
pub fn check_variants(root: PluginRootRef, kind: StageKind, variants: &[(&str, &str)]) {
    for (name, params_json) in variants {
        check_stage_with_params(root, kind, name, params_json);
    }
}

/// Runs the kit for one stage with its example parameters. A RANDOMIZED
/// quantizer must also draw differently per round and per tensor index (its
/// example parameters must enable its randomness): the same input quantized at
/// another round, or as another tensor, gives other output.
pub fn check_stage(root: PluginRootRef, stage: &StageDescriptor) {
    check_stage_params(root, stage);
    if stage.kind == StageKind::QUANTIZER && stage.flags.contains(StageFlags::RANDOMIZED) {
        let label = format!("{} `{}`", stage.kind, stage.name);
        let canonical = check_config(root, stage, &label);
        check_randomness(root, stage.name.as_str(), &canonical, &label);
    }
}

/// A randomized quantizer's output, fresh instance, same input, at `ctx`.
fn check_randomness(root: PluginRootRef, name: &str, params: &str, label: &str) {
    let len = TENSOR_SHAPE.iter().product::<u64>() as usize;
    let input = sample_tensor(len, 31);
    let quantize_at = |round: u64, tensor_index: u32| {
        let mut quantizer = ok(
            &format!("{label}: create"),
            (root.new_quantizer())(RStr::from(name), RStr::from(params), &tensor()),
        );
        let mut coded = Quantized::default();
        ok(
            label,
            quantizer.quantize(
                &CallContext::new(round, tensor_index),
                input.as_slice().into(),
                &mut coded,
            ),
        );
        coded
    };
    let first = quantize_at(0, 0);
    assert_ne!(
        first,
        quantize_at(1, 0),
        "{label}: a RANDOMIZED stage gives the same output at another round \
         (derive the generator with random::call_rng(seed, ctx))"
    );
    assert_ne!(
        first,
        quantize_at(0, 1),
        "{label}: a RANDOMIZED stage gives the same output for another tensor index \
         (derive the generator with random::call_rng(seed, ctx))"
    );
}

/// The kit's checks for one stage's kind, with `stage.example_params`.
fn check_stage_params(root: PluginRootRef, stage: &StageDescriptor) {
    let name = stage.name.as_str();
    let label = format!("{} `{}`", stage.kind, name);
    assert!(!stage.doc.is_empty(), "{label}: empty doc");
    assert!(
        serde_json::from_str::<serde_json::Value>(&stage.params_schema).is_ok(),
        "{label}: params_schema is not JSON"
    );
    let canonical = check_config(root, stage, &label);
    match stage.kind {
        StageKind::PREDICTOR => check_predictor(root, name, &canonical, &label),
        StageKind::ERROR_CORRECTION => check_error_correction(root, name, &canonical, &label),
        StageKind::QUANTIZER => check_quantizer(root, stage, &canonical, &label),
        StageKind::ENTROPY_CODER => check_entropy_coder(root, name, &canonical, &label),
        other => panic!("{label}: unknown kind {other:?}"),
    }
}

fn check_config(root: PluginRootRef, stage: &StageDescriptor, label: &str) -> String {
    let canonical_fn = root.canonical_config();
    let name = RStr::from(stage.name.as_str());
    let canonical = ok(
        &format!("{label}: canonical config of the example"),
        canonical_fn(stage.kind, name, RStr::from(stage.example_params.as_str())),
    );
    let again = ok(
        &format!("{label}: canonical config of the canonical config"),
        canonical_fn(stage.kind, name, RStr::from(canonical.as_str())),
    );
    assert_eq!(
        canonical, again,
        "{label}: canonical config does not round-trip"
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&canonical).is_ok(),
        "{label}: canonical config is not JSON"
    );
    let bogus = canonical_fn(stage.kind, name, RStr::from(r#"{"no_such_parameter": 1}"#));
    match bogus {
        RResult::ROk(_) => panic!("{label}: accepted an unknown field"),
        RResult::RErr(error) => {
            check_clean(label, &error);
            assert!(
                error.message.contains("no_such_parameter"),
                "{label}: error does not name the unknown field: {error}"
            );
        }
    }
    expect_clean_error(
        &format!("{label}: malformed JSON"),
        canonical_fn(stage.kind, name, RStr::from("{not json")),
    );
    canonical.to_string()
}

fn check_predictor(root: PluginRootRef, name: &str, params: &str, label: &str) {
    let make = || {
        ok(
            &format!("{label}: create"),
            (root.new_predictor())(RStr::from(name), RStr::from(params), &tensor()),
        )
    };
    let len = TENSOR_SHAPE.iter().product::<u64>() as usize;
    let (mut first, mut second) = (make(), make());
    let mut prediction = RVec::new();
    let ctx = CallContext::new(0, 0);
    ok(label, first.predict(&ctx, &mut prediction));
    assert_eq!(prediction.len(), len, "{label}: prediction length");
    assert!(
        prediction.iter().all(|v| *v == 0.0),
        "{label}: first prediction must be zeros"
    );
    let mut predictions = Vec::new();
    for round in 0..4u64 {
        let ctx = CallContext::new(round, 0);
        let update = sample_tensor(len, round as u32);
        let observed = sample_tensor(len, 100 + round as u32);
        for predictor in [&mut first, &mut second] {
            ok(label, predictor.commit(&ctx, update.as_slice().into()));
            ok(label, predictor.observe(&ctx, observed.as_slice().into()));
        }
        let (mut a, mut b) = (RVec::new(), RVec::new());
        ok(label, first.predict(&ctx, &mut a));
        ok(label, second.predict(&ctx, &mut b));
        assert_eq!(a, b, "{label}: not deterministic");
        assert!(
            a.iter().all(|v| v.is_finite()),
            "{label}: non-finite prediction"
        );
        predictions.push(a);
    }
    let mut state = RVec::new();
    ok(label, first.save_state(&mut state));
    let mut restored = make();
    ok(label, restored.load_state(state.as_slice().into()));
    let (mut a, mut b) = (RVec::new(), RVec::new());
    ok(label, first.predict(&ctx, &mut a));
    ok(label, restored.predict(&ctx, &mut b));
    assert_eq!(a, b, "{label}: state save/load changes the prediction");
    let garbage = [7u8; 13];
    expect_clean_error(
        &format!("{label}: load_state(garbage)"),
        restored.load_state(garbage.as_slice().into()),
    );
    let mut after = RVec::new();
    ok(label, restored.predict(&ctx, &mut after));
    assert_eq!(a, after, "{label}: a failed load_state changed the state");
    first.reset();
    ok(label, first.predict(&ctx, &mut a));
    assert!(
        a.iter().all(|v| *v == 0.0),
        "{label}: reset must forget history"
    );
}

fn check_error_correction(root: PluginRootRef, name: &str, params: &str, label: &str) {
    let make = || {
        ok(
            &format!("{label}: create"),
            (root.new_error_correction())(RStr::from(name), RStr::from(params), &tensor()),
        )
    };
    let len = TENSOR_SHAPE.iter().product::<u64>() as usize;
    let (mut first, mut second) = (make(), make());
    let residual = sample_tensor(len, 1);
    let ctx = CallContext::new(0, 0);
    let mut compensated = RVec::new();
    ok(
        label,
        first.compensate(&ctx, residual.as_slice().into(), &mut compensated),
    );
    assert_eq!(compensated.len(), len, "{label}: output length");
    let mut outputs = Vec::new();
    for round in 0..4u64 {
        let ctx = CallContext::new(round, 0);
        let input = sample_tensor(len, round as u32 + 10);
        let (mut a, mut b) = (RVec::new(), RVec::new());
        ok(
            label,
            first.compensate(&ctx, input.as_slice().into(), &mut a),
        );
        ok(
            label,
            second.compensate(&ctx, input.as_slice().into(), &mut b),
        );
        assert_eq!(a, b, "{label}: not deterministic");
        let reconstructed: Vec<f32> = a.iter().map(|v| (v * 4.0).round() / 4.0).collect();
        ok(
            label,
            first.feedback(&ctx, a.as_slice().into(), reconstructed.as_slice().into()),
        );
        ok(
            label,
            second.feedback(&ctx, b.as_slice().into(), reconstructed.as_slice().into()),
        );
        outputs.push(a);
    }
    let mut state = RVec::new();
    ok(label, first.save_state(&mut state));
    let mut restored = make();
    ok(label, restored.load_state(state.as_slice().into()));
    let (mut a, mut b) = (RVec::new(), RVec::new());
    ok(
        label,
        first.compensate(&ctx, residual.as_slice().into(), &mut a),
    );
    ok(
        label,
        restored.compensate(&ctx, residual.as_slice().into(), &mut b),
    );
    assert_eq!(a, b, "{label}: state save/load changes the output");
    expect_clean_error(
        &format!("{label}: load_state(garbage)"),
        restored.load_state([1u8, 2, 3].as_slice().into()),
    );
    let mut fresh = make();
    first.reset();
    ok(
        label,
        first.compensate(&ctx, residual.as_slice().into(), &mut a),
    );
    ok(
        label,
        fresh.compensate(&ctx, residual.as_slice().into(), &mut b),
    );
    assert_eq!(a, b, "{label}: reset differs from a fresh instance");
}

fn check_quantizer(root: PluginRootRef, stage: &StageDescriptor, params: &str, label: &str) {
    let name = stage.name.as_str();
    let make = || {
        ok(
            &format!("{label}: create"),
            (root.new_quantizer())(RStr::from(name), RStr::from(params), &tensor()),
        )
    };
    let len = TENSOR_SHAPE.iter().product::<u64>() as usize;
    let lossless = stage.flags.contains(StageFlags::LOSSLESS);
    let (mut encoder, mut twin) = (make(), make());
    for round in 0..3u64 {
        let ctx = CallContext::new(round, 0);
        let input = sample_tensor(len, round as u32 + 20);
        let (mut coded, mut coded_twin) = (Quantized::default(), Quantized::default());
        ok(
            label,
            encoder.quantize(&ctx, input.as_slice().into(), &mut coded),
        );
        ok(
            label,
            twin.quantize(&ctx, input.as_slice().into(), &mut coded_twin),
        );
        assert_eq!(coded, coded_twin, "{label}: quantize is not deterministic");
        for stream in coded.streams.iter() {
            assert!(
                stream
                    .symbols
                    .iter()
                    .all(|s| u64::from(*s) < stream.alphabet_size),
                "{label}: symbol outside the declared alphabet"
            );
        }
        let mut encoder_view = RVec::new();
        ok(label, encoder.dequantize(&ctx, &coded, &mut encoder_view));
        assert_eq!(encoder_view.len(), len, "{label}: reconstruction length");
        assert!(
            encoder_view.iter().all(|v| v.is_finite()),
            "{label}: non-finite reconstruction"
        );
        if lossless {
            assert_eq!(
                encoder_view.as_slice(),
                input.as_slice(),
                "{label}: lossless stage is lossy"
            );
        }
        // The decoder rebuilds the descriptors from side info alone.
        let mut decoder = make();
        let mut received = Quantized {
            side_info: coded.side_info.clone(),
            streams: RVec::new(),
        };
        ok(label, decoder.describe_streams(&ctx, &mut received));
        assert_eq!(
            received.streams.len(),
            coded.streams.len(),
            "{label}: stream count"
        );
        for (described, sent) in received.streams.iter_mut().zip(coded.streams.iter()) {
            assert_eq!(described.role, sent.role, "{label}: stream role");
            assert_eq!(
                described.alphabet_size, sent.alphabet_size,
                "{label}: alphabet"
            );
            assert_eq!(
                described.model, sent.model,
                "{label}: model differs between ends"
            );
            assert!(
                described.symbols.is_empty(),
                "{label}: described symbols not empty"
            );
            described.symbols = sent.symbols.clone();
        }
        let mut decoder_view = RVec::new();
        ok(
            label,
            decoder.dequantize(&ctx, &received, &mut decoder_view),
        );
        assert_eq!(
            encoder_view, decoder_view,
            "{label}: decoder differs from encoder"
        );
        let summary = ok(
            label,
            decoder.summarize_side_info(coded.side_info.as_slice().into()),
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(&summary).is_ok(),
            "{label}: side-info summary is not JSON"
        );
        check_quantizer_malformed(&mut decoder, &ctx, &coded, label);
    }
    // State save/load: a restored instance continues exactly like the original.
    let ctx = CallContext::new(3, 0);
    let input = sample_tensor(len, 23);
    let mut state = RVec::new();
    ok(label, encoder.save_state(&mut state));
    let mut restored = make();
    ok(label, restored.load_state(state.as_slice().into()));
    let (mut a, mut b) = (Quantized::default(), Quantized::default());
    ok(
        label,
        encoder.quantize(&ctx, input.as_slice().into(), &mut a),
    );
    ok(
        label,
        restored.quantize(&ctx, input.as_slice().into(), &mut b),
    );
    assert_eq!(a, b, "{label}: state save/load changes the output");
    expect_clean_error(
        &format!("{label}: load_state(garbage)"),
        restored.load_state([9u8, 9, 9].as_slice().into()),
    );
    // Reset makes it behave like a fresh instance.
    let ctx = CallContext::new(0, 0);
    let input = sample_tensor(len, 20);
    encoder.reset();
    let mut fresh = make();
    let (mut a, mut b) = (Quantized::default(), Quantized::default());
    ok(
        label,
        encoder.quantize(&ctx, input.as_slice().into(), &mut a),
    );
    ok(label, fresh.quantize(&ctx, input.as_slice().into(), &mut b));
    assert_eq!(a, b, "{label}: reset differs from a fresh instance");
    // Wrong input length (non-finite input is the host's to refuse, and the
    // quantizer's when it cannot handle it: not checked here).
    let short = sample_tensor(len - 1, 3);
    expect_clean_error(
        &format!("{label}: quantize(wrong length)"),
        fresh.quantize(&ctx, short.as_slice().into(), &mut a),
    );
}

fn check_quantizer_malformed(
    decoder: &mut gradcodec_abi::QuantizerBox,
    ctx: &CallContext,
    coded: &Quantized,
    label: &str,
) {
    let mut out = RVec::new();
    // Truncated side info: either an error, or a clean (non-panicking) success.
    if !coded.side_info.is_empty() {
        let mut truncated = Quantized {
            side_info: coded.side_info[..coded.side_info.len() - 1].to_vec().into(),
            streams: RVec::new(),
        };
        if let RResult::RErr(error) = decoder.describe_streams(ctx, &mut truncated) {
            check_clean(label, &error);
        }
        let broken = Quantized {
            side_info: truncated.side_info.clone(),
            streams: coded.streams.clone(),
        };
        if let RResult::RErr(error) = decoder.dequantize(ctx, &broken, &mut out) {
            check_clean(label, &error);
        }
    }
    for (index, stream) in coded.streams.iter().enumerate() {
        // A missing symbol must be refused.
        if !stream.symbols.is_empty() {
            let mut short = coded.clone();
            short.streams[index].symbols.pop();
            if stream.role != StreamRole::POSITIONS {
                expect_clean_error(
                    &format!("{label}: dequantize(stream {index} one symbol short)"),
                    decoder.dequantize(ctx, &short, &mut out),
                );
            } else if let RResult::RErr(error) = decoder.dequantize(ctx, &short, &mut out) {
                check_clean(label, &error);
            }
        }
        // An out-of-range symbol must be refused.
        if stream.alphabet_size <= u64::from(u32::MAX) && !stream.symbols.is_empty() {
            let mut bad = coded.clone();
            bad.streams[index].symbols[0] = stream.alphabet_size as u32;
            expect_clean_error(
                &format!("{label}: dequantize(out-of-range symbol in stream {index})"),
                decoder.dequantize(ctx, &bad, &mut out),
            );
        }
    }
    let mut missing = coded.clone();
    if !missing.streams.is_empty() {
        missing.streams.pop();
        expect_clean_error(
            &format!("{label}: dequantize(missing stream)"),
            decoder.dequantize(ctx, &missing, &mut out),
        );
    }
}

/// Streams an entropy coder must round-trip exactly.
pub fn sample_streams() -> Vec<SymbolStream> {
    let values = sample_tensor(5000, 7);
    let mut skewed = SymbolStream::new(StreamRole::VALUES, 11);
    skewed.symbols = values
        .iter()
        .map(|v| ((v.abs() * 400.0).min(5.0) as u32) * 2 + u32::from(*v < 0.0))
        .map(|s| s.min(10))
        .collect();
    let mut modelled = skewed.clone();
    let mut counts = [1.0f32; 11];
    for s in skewed.symbols.iter() {
        counts[*s as usize] += 1.0;
    }
    let total: f32 = counts.iter().sum();
    modelled.model = counts.iter().map(|c| c / total).collect();
    let mut positions = SymbolStream::new(StreamRole::POSITIONS, 100_000);
    positions.symbols = (0..700u32).map(|i| i * 131 + (i * i) % 97).collect();
    let mut raw = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
    raw.symbols = values.iter().map(|v| v.to_bits()).collect();
    let mut single = SymbolStream::new(StreamRole::VALUES, 1);
    single.symbols = vec![0; 300].into();
    let empty = SymbolStream::new(StreamRole::VALUES, 3);
    let mut binary = SymbolStream::new(StreamRole::VALUES, 2);
    binary.symbols = values.iter().map(|v| u32::from(*v > 0.0)).collect();
    vec![skewed, modelled, positions, raw, single, empty, binary]
}

fn check_entropy_coder(root: PluginRootRef, name: &str, params: &str, label: &str) {
    let make = || {
        ok(
            &format!("{label}: create"),
            (root.new_entropy_coder())(RStr::from(name), RStr::from(params), &tensor()),
        )
    };
    let (mut coder, mut twin) = (make(), make());
    for (index, stream) in sample_streams().into_iter().enumerate() {
        let what = format!(
            "{label}: stream {index} ({:?}, alphabet {})",
            stream.role, stream.alphabet_size
        );
        let (mut bytes, mut bytes_twin) = (RVec::new(), RVec::new());
        let encoded = coder.encode(&stream, &mut bytes);
        if let RResult::RErr(error) = &encoded {
            // A coder may refuse a stream kind it does not support, cleanly.
            check_clean(&what, error);
            assert!(
                error.code == ErrorCode::UNSUPPORTED,
                "{what}: encode failed: {error}"
            );
            continue;
        }
        ok(&what, twin.encode(&stream, &mut bytes_twin));
        assert_eq!(bytes, bytes_twin, "{what}: encode is not deterministic");
        let count = stream.symbols.len() as u64;
        let mut decoded = SymbolStream {
            symbols: RVec::new(),
            ..stream.clone()
        };
        ok(
            &what,
            coder.decode(bytes.as_slice().into(), count, &mut decoded),
        );
        assert_eq!(
            decoded.symbols, stream.symbols,
            "{what}: round trip differs"
        );
        // Malformed inputs: errors or clean results, never a panic or a wild allocation.
        let probes: Vec<(String, Vec<u8>, u64)> = vec![
            ("truncated".into(), bytes[..bytes.len() / 2].to_vec(), count),
            ("garbage".into(), vec![0xA5; bytes.len().max(4)], count),
            ("empty".into(), Vec::new(), count),
            (
                "huge count".into(),
                bytes.to_vec(),
                count.max(1) * 1_000_000_000,
            ),
        ];
        for (probe, data, probe_count) in probes {
            let mut target = SymbolStream {
                symbols: RVec::new(),
                ..stream.clone()
            };
            match coder.decode(data.as_slice().into(), probe_count, &mut target) {
                RResult::ROk(()) => {
                    assert_eq!(
                        target.symbols.len() as u64,
                        probe_count,
                        "{what}: {probe}: wrong symbol count"
                    );
                    assert!(
                        target
                            .symbols
                            .iter()
                            .all(|s| u64::from(*s) < stream.alphabet_size),
                        "{what}: {probe}: symbol outside the alphabet"
                    );
                }
                RResult::RErr(error) => check_clean(&format!("{what}: {probe}"), &error),
            }
        }
        coder.reset();
    }
}
