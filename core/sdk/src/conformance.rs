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
//!
//! A fused pair (ABI 1.1) is checked against the two stages it fuses by
//! [`check_fused_pair`]: same bytes, side info, descriptors, counts and
//! reconstruction as the composed path, and a decoder that refuses what the
//! composed one refuses.

use abi_stable::std_types::{RResult, RStr, RVec};
use gradcodec_abi::{
    CallContext, CodedStream, ErrorCode, FusedEncoded, PluginRootRef, Quantized, StageDescriptor,
    StageError, StageFlags, StageKind, StageResult, StreamRole, SymbolStream, TensorSpec,
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
        StageKind::ERROR_CORRECTION => {
            check_error_correction(root, name, &canonical, &label);
            if stage.flags.contains(StageFlags::CHECKS_FINITE) {
                check_compensate_refuses_non_finite(root, name, &canonical, &label);
            }
        }
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

/// A CHECKS_FINITE error correction's `compensate` refuses NaN, +inf and
/// -inf at the first, middle and last residual entry, with memory and without,
/// and afterwards compensates as an instance that never saw them.
fn check_compensate_refuses_non_finite(root: PluginRootRef, name: &str, params: &str, label: &str) {
    let make = || {
        ok(
            &format!("{label}: create"),
            (root.new_error_correction())(RStr::from(name), RStr::from(params), &tensor()),
        )
    };
    let len = TENSOR_SHAPE.iter().product::<u64>() as usize;
    let (mut stage, mut twin) = (make(), make());
    let mut out = RVec::new();
    for round in 0..2u64 {
        let ctx = CallContext::new(round, 0);
        let input = sample_tensor(len, round as u32 + 40);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for place in [0, len / 2, len - 1] {
                let mut hostile = input.clone();
                hostile[place] = bad;
                expect_clean_error(
                    &format!("{label}: CHECKS_FINITE compensate({bad} at {place}, round {round})"),
                    stage.compensate(&ctx, hostile.as_slice().into(), &mut out),
                );
            }
        }
        let (mut a, mut b) = (RVec::new(), RVec::new());
        ok(
            label,
            stage.compensate(&ctx, input.as_slice().into(), &mut a),
        );
        ok(
            label,
            twin.compensate(&ctx, input.as_slice().into(), &mut b),
        );
        assert_eq!(
            a, b,
            "{label}: CHECKS_FINITE compensate changed something on a refused residual"
        );
        let reconstructed: Vec<f32> = a.iter().map(|v| (v * 4.0).round() / 4.0).collect();
        ok(
            label,
            stage.feedback(&ctx, a.as_slice().into(), reconstructed.as_slice().into()),
        );
        ok(
            label,
            twin.feedback(&ctx, b.as_slice().into(), reconstructed.as_slice().into()),
        );
    }
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
    // quantizer's when it cannot handle it or promises to: CHECKS_FINITE).
    let short = sample_tensor(len - 1, 3);
    expect_clean_error(
        &format!("{label}: quantize(wrong length)"),
        fresh.quantize(&ctx, short.as_slice().into(), &mut a),
    );
    if stage.flags.contains(StageFlags::CHECKS_FINITE) {
        check_finite_promise(&make, &input, label);
    }
}

/// A CHECKS_FINITE quantizer refuses every NaN or infinity of its input
/// (wherever it sits, with its state unchanged: the next quantize gives what a
/// fresh instance gives), and its dequantize of any in-alphabet symbols is an
/// error or finite entries.
fn check_finite_promise(
    make: &dyn Fn() -> gradcodec_abi::QuantizerBox,
    input: &[f32],
    label: &str,
) {
    let ctx = CallContext::new(0, 0);
    let mut quantizer = make();
    let mut out = Quantized::default();
    let places = [0, input.len() / 2, input.len() - 1];
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for place in places {
            let mut hostile = input.to_vec();
            hostile[place] = bad;
            expect_clean_error(
                &format!("{label}: CHECKS_FINITE quantize({bad} at entry {place})"),
                quantizer.quantize(&ctx, hostile.as_slice().into(), &mut out),
            );
        }
    }
    let (mut after, mut fresh) = (Quantized::default(), Quantized::default());
    ok(label, quantizer.quantize(&ctx, input.into(), &mut after));
    ok(label, make().quantize(&ctx, input.into(), &mut fresh));
    assert_eq!(
        after, fresh,
        "{label}: CHECKS_FINITE quantize changed state on a refused input"
    );
    // Random in-alphabet symbols (seeded): every bit pattern a raw-words
    // stream can carry, NaNs and infinities included.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoded = RVec::new();
    for trial in 0..8 {
        let mut received = fresh.clone();
        for stream in received.streams.iter_mut() {
            let alphabet = stream.alphabet_size.max(1);
            for symbol in stream.symbols.iter_mut() {
                *symbol = (next() % alphabet) as u32;
            }
        }
        if let RResult::ROk(()) = quantizer.dequantize(&ctx, &received, &mut decoded) {
            assert!(
                decoded.iter().all(|v| v.is_finite()),
                "{label}: CHECKS_FINITE dequantize gave a non-finite entry (trial {trial})"
            );
        }
    }
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

/// The stages and parameters of a fused pair for [`check_fused_pair`]: the
/// library that exports the fused implementation, and the libraries (often the
/// same one) of the quantizer and the entropy coder it fuses.
#[derive(Clone, Copy)]
pub struct FusedPairUnderTest<'a> {
    /// The library whose `fused_pairs` lists the pair and whose `new_fused` builds it.
    pub fused_root: PluginRootRef,
    /// The quantizer's library.
    pub quantizer_root: PluginRootRef,
    /// The quantizer's stage name.
    pub quantizer: &'a str,
    /// The quantizer's parameters (JSON; the check passes their canonical config).
    pub quantizer_params: &'a str,
    /// The entropy coder's library.
    pub coder_root: PluginRootRef,
    /// The entropy coder's stage name.
    pub coder: &'a str,
    /// The coder's parameters (JSON; the check passes their canonical config).
    pub coder_params: &'a str,
}

/// What [`check_fused_pair`] compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FusedPairReport {
    /// Encodes compared (inputs × contexts).
    pub cases: usize,
    /// Coded bytes compared, over all cases.
    pub bytes: u64,
    /// Malformed messages both decoders refused.
    pub refused: usize,
}

fn fused_ok<T>(what: &str, result: StageResult<T>) -> Result<T, String> {
    match result {
        RResult::ROk(value) => Ok(value),
        RResult::RErr(error) => Err(format!("{what}: unexpected error: {error}")),
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn stage_descriptor(
    root: PluginRootRef,
    kind: StageKind,
    name: &str,
) -> Result<StageDescriptor, String> {
    (root.manifest())()
        .stages
        .iter()
        .find(|s| s.kind == kind && s.name.as_str() == name)
        .cloned()
        .ok_or_else(|| format!("the library has no {kind} `{name}`"))
}

fn canonical_params(
    root: PluginRootRef,
    kind: StageKind,
    name: &str,
    params: &str,
) -> Result<String, String> {
    fused_ok(
        &format!("{kind} `{name}`: canonical config"),
        (root.canonical_config())(kind, RStr::from(name), RStr::from(params)),
    )
    .map(|text| text.to_string())
}

/// The composed decoder: descriptors from the side info, each stream decoded by
/// the coder, then dequantized.
fn composed_decode(
    quantizer: &mut gradcodec_abi::QuantizerBox,
    coder: &mut gradcodec_abi::EntropyCoderBox,
    ctx: &CallContext,
    side_info: &[u8],
    streams: &[(Vec<u8>, u64)],
) -> StageResult<RVec<f32>> {
    let mut received = Quantized {
        side_info: side_info.to_vec().into(),
        streams: RVec::new(),
    };
    if let RResult::RErr(error) = quantizer.describe_streams(ctx, &mut received) {
        return RResult::RErr(error);
    }
    for (stream, (bytes, count)) in received.streams.iter_mut().zip(streams) {
        coder.reset();
        if let RResult::RErr(error) = coder.decode(bytes.as_slice().into(), *count, stream) {
            return RResult::RErr(error);
        }
    }
    if received.streams.len() != streams.len() {
        return RResult::RErr(StageError::new(
            ErrorCode::CORRUPT_DATA,
            "",
            "stream count differs from the descriptors",
        ));
    }
    let mut out = RVec::new();
    quantizer.dequantize(ctx, &received, &mut out).map(|()| out)
}

/// The fused decoder on the same message.
fn fused_decode(
    fused: &mut gradcodec_abi::FusedBox,
    quantizer: &gradcodec_abi::QuantizerBox,
    ctx: &CallContext,
    side_info: &[u8],
    streams: &[(Vec<u8>, u64)],
) -> StageResult<RVec<f32>> {
    let mut described = Quantized {
        side_info: side_info.to_vec().into(),
        streams: RVec::new(),
    };
    if let RResult::RErr(error) = quantizer.describe_streams(ctx, &mut described) {
        return RResult::RErr(error);
    }
    let coded: Vec<CodedStream<'_>> = streams
        .iter()
        .map(|(bytes, count)| CodedStream {
            bytes: bytes.as_slice().into(),
            symbols: *count,
        })
        .collect();
    let mut out = RVec::new();
    fused
        .decode(ctx, &described, coded.as_slice().into(), &mut out)
        .map(|()| out)
}

/// Checks a fused pair against the two stages it fuses: on each of `inputs`
/// (one tensor each, shape `[len]`) at several rounds and tensor indices, the
/// fused encode must give exactly the composed path's output (quantizer
/// `quantize`, coder `encode` per stream, quantizer `dequantize`): the same side
/// info, stream descriptors (role, alphabet, model; symbols left empty), symbol
/// counts, coded bytes, and reconstruction bit for bit; the composed decoder
/// (`describe_streams`, coder `decode`, `dequantize`) and the fused decoder must
/// both give that reconstruction from those bytes; on malformed messages
/// (truncated, garbage, extra or missing bytes, wrong counts, a missing stream)
/// the fused decoder must refuse what the composed one refuses, cleanly, and
/// otherwise agree with it bit for bit; and a reset instance must behave like
/// a fresh one. Neither stage may be STATEFUL, and the fused library must list
/// the pair in `fused_pairs` and build it for these configs.
///
/// Returns what it compared, or the first difference.
pub fn check_fused_pair(
    pair: &FusedPairUnderTest<'_>,
    inputs: &[Vec<f32>],
) -> Result<FusedPairReport, String> {
    let label = format!("fused {}+{}", pair.quantizer, pair.coder);
    let quantizer_stage =
        stage_descriptor(pair.quantizer_root, StageKind::QUANTIZER, pair.quantizer)?;
    let coder_stage = stage_descriptor(pair.coder_root, StageKind::ENTROPY_CODER, pair.coder)?;
    for stage in [&quantizer_stage, &coder_stage] {
        if stage.flags.contains(StageFlags::STATEFUL) {
            return Err(format!(
                "{label}: {} `{}` is STATEFUL; only stateless stages can be fused",
                stage.kind, stage.name
            ));
        }
    }
    let fused_pairs = pair
        .fused_root
        .fused_pairs()
        .ok_or_else(|| format!("{label}: the library predates ABI 1.1 (no fused_pairs)"))?;
    let new_fused = pair
        .fused_root
        .new_fused()
        .ok_or_else(|| format!("{label}: the library predates ABI 1.1 (no new_fused)"))?;
    let quantizer_library = (pair.quantizer_root.manifest())().library;
    let coder_library = (pair.coder_root.manifest())().library;
    let listed = fused_pairs().iter().any(|p| {
        p.quantizer.as_str() == pair.quantizer
            && p.coder.as_str() == pair.coder
            && p.quantizer_library == quantizer_library
            && p.coder_library == coder_library
    });
    if !listed {
        return Err(format!(
            "{label}: not in the library's fused_pairs (with quantizer library `{quantizer_library}` \
             and coder library `{coder_library}`)"
        ));
    }
    let quantizer_config = canonical_params(
        pair.quantizer_root,
        StageKind::QUANTIZER,
        pair.quantizer,
        pair.quantizer_params,
    )?;
    let coder_config = canonical_params(
        pair.coder_root,
        StageKind::ENTROPY_CODER,
        pair.coder,
        pair.coder_params,
    )?;
    let mut report = FusedPairReport::default();
    for (input_index, input) in inputs.iter().enumerate() {
        let spec = TensorSpec::new("fused.weight", &[input.len() as u64]);
        let new_quantizer = || {
            fused_ok(
                &format!("{label}: create the quantizer"),
                (pair.quantizer_root.new_quantizer())(
                    RStr::from(pair.quantizer),
                    RStr::from(quantizer_config.as_str()),
                    &spec,
                ),
            )
        };
        let new_coder = || {
            fused_ok(
                &format!("{label}: create the coder"),
                (pair.coder_root.new_entropy_coder())(
                    RStr::from(pair.coder),
                    RStr::from(coder_config.as_str()),
                    &spec,
                ),
            )
        };
        let make_fused = || -> Result<gradcodec_abi::FusedBox, String> {
            let made = fused_ok(
                &format!("{label}: new_fused"),
                new_fused(
                    RStr::from(pair.quantizer),
                    RStr::from(quantizer_config.as_str()),
                    RStr::from(pair.coder),
                    RStr::from(coder_config.as_str()),
                    &spec,
                ),
            )?;
            made.into_option().ok_or_else(|| {
                format!(
                    "{label}: new_fused gave None for the configs {quantizer_config} and {coder_config}"
                )
            })
        };
        let (mut quantizer, mut coder, mut fused) = (new_quantizer()?, new_coder()?, make_fused()?);
        let (mut decoder_quantizer, mut decoder_coder, mut decoder_fused) =
            (new_quantizer()?, new_coder()?, make_fused()?);
        let contexts = [
            CallContext::new(0, 0),
            CallContext::new(1, 0),
            CallContext::new(2, input_index as u32 + 1),
            CallContext::new(7, 3),
        ];
        let mut first: Option<FusedEncoded> = None;
        for ctx in contexts {
            let what = format!(
                "{label}: input {input_index} ({} entries), round {}, tensor {}",
                input.len(),
                ctx.round,
                ctx.tensor_index
            );
            // The composed path.
            let mut quantized = Quantized::default();
            fused_ok(
                &what,
                quantizer.quantize(&ctx, input.as_slice().into(), &mut quantized),
            )?;
            let mut coded = Vec::new();
            for stream in quantized.streams.iter() {
                let mut bytes = RVec::new();
                coder.reset();
                fused_ok(&what, coder.encode(stream, &mut bytes))?;
                coded.push((bytes.to_vec(), stream.symbols.len() as u64));
            }
            let mut reconstruction = RVec::new();
            fused_ok(
                &what,
                quantizer.dequantize(&ctx, &quantized, &mut reconstruction),
            )?;
            // The fused path, into a used buffer (it must clear it).
            let mut out = first.clone().unwrap_or_default();
            fused_ok(&what, fused.encode(&ctx, input.as_slice().into(), &mut out))?;
            compare_encoded(&what, &quantized, &coded, &reconstruction, &out)?;
            // With the host's `skip_reconstruction`: the same bytes, and x̂ left
            // out or the same.
            let mut skipped = first.clone().unwrap_or_default();
            skipped.skip_reconstruction = true;
            let skip_what = format!("{what}, skip_reconstruction");
            fused_ok(
                &skip_what,
                fused.encode(&ctx, input.as_slice().into(), &mut skipped),
            )?;
            if skipped.reconstruction.is_empty() {
                skipped.reconstruction = reconstruction.clone();
            }
            compare_encoded(&skip_what, &quantized, &coded, &reconstruction, &skipped)?;
            report.cases += 1;
            report.bytes += coded.iter().map(|(b, _)| b.len() as u64).sum::<u64>();
            // Both decoders, from the composed bytes.
            let side_info = quantized.side_info.as_slice();
            let composed = fused_ok(
                &format!("{what}: composed decode"),
                composed_decode(
                    &mut decoder_quantizer,
                    &mut decoder_coder,
                    &ctx,
                    side_info,
                    &coded,
                ),
            )?;
            if !same_bits(&composed, &reconstruction) {
                return Err(format!(
                    "{what}: the composed decoder differs from the encoder"
                ));
            }
            let decoded = fused_ok(
                &format!("{what}: fused decode"),
                fused_decode(
                    &mut decoder_fused,
                    &decoder_quantizer,
                    &ctx,
                    side_info,
                    &coded,
                ),
            )?;
            if !same_bits(&decoded, &reconstruction) {
                return Err(format!(
                    "{what}: the fused decode of the composed bytes differs from the reconstruction"
                ));
            }
            report.refused += check_malformed(
                &what,
                &mut decoder_quantizer,
                &mut decoder_coder,
                &mut decoder_fused,
                &ctx,
                side_info,
                &coded,
            )?;
            if first.is_none() {
                first = Some(out);
            }
        }
        // Reset: behaves like a fresh instance.
        fused.reset();
        let ctx = contexts[0];
        let mut again = FusedEncoded::default();
        fused_ok(
            &label,
            fused.encode(&ctx, input.as_slice().into(), &mut again),
        )?;
        if Some(&again) != first.as_ref() {
            return Err(format!(
                "{label}: input {input_index}: reset differs from a fresh instance"
            ));
        }
    }
    Ok(report)
}

fn compare_encoded(
    what: &str,
    quantized: &Quantized,
    coded: &[(Vec<u8>, u64)],
    reconstruction: &[f32],
    fused: &FusedEncoded,
) -> Result<(), String> {
    if fused.quantized.side_info != quantized.side_info {
        return Err(format!("{what}: side info differs from the quantizer's"));
    }
    if fused.quantized.streams.len() != quantized.streams.len() {
        return Err(format!(
            "{what}: {} stream descriptors, the quantizer gives {}",
            fused.quantized.streams.len(),
            quantized.streams.len()
        ));
    }
    if fused.symbol_counts.len() != coded.len() || fused.coded.len() != coded.len() {
        return Err(format!(
            "{what}: {} symbol counts and {} coded streams for {} streams",
            fused.symbol_counts.len(),
            fused.coded.len(),
            coded.len()
        ));
    }
    for (index, (mine, theirs)) in fused
        .quantized
        .streams
        .iter()
        .zip(quantized.streams.iter())
        .enumerate()
    {
        if mine.role != theirs.role || mine.alphabet_size != theirs.alphabet_size {
            return Err(format!("{what}: stream {index}: role or alphabet differs"));
        }
        if !same_bits(&mine.model, &theirs.model) {
            return Err(format!("{what}: stream {index}: model differs"));
        }
        if !mine.symbols.is_empty() {
            return Err(format!("{what}: stream {index}: symbols not left empty"));
        }
        let (bytes, count) = &coded[index];
        if fused.symbol_counts[index] != *count {
            return Err(format!(
                "{what}: stream {index}: {} symbols, the quantizer gives {count}",
                fused.symbol_counts[index]
            ));
        }
        if fused.coded[index].as_slice() != bytes.as_slice() {
            return Err(format!(
                "{what}: stream {index}: coded bytes differ from the coder's ({} bytes, the coder gives {})",
                fused.coded[index].len(),
                bytes.len()
            ));
        }
    }
    if !same_bits(&fused.reconstruction, reconstruction) {
        return Err(format!(
            "{what}: reconstruction differs from dequantize (bitwise)"
        ));
    }
    Ok(())
}

/// Malformed messages: the fused decoder refuses what the composed one
/// refuses (never by panicking) and otherwise agrees with it. Returns how many
/// both refused.
fn check_malformed(
    what: &str,
    quantizer: &mut gradcodec_abi::QuantizerBox,
    coder: &mut gradcodec_abi::EntropyCoderBox,
    fused: &mut gradcodec_abi::FusedBox,
    ctx: &CallContext,
    side_info: &[u8],
    coded: &[(Vec<u8>, u64)],
) -> Result<usize, String> {
    // (what, side info, coded bytes and symbol count per stream)
    type Probe = (String, Vec<u8>, Vec<(Vec<u8>, u64)>);
    let mut probes: Vec<Probe> = Vec::new();
    for (index, (bytes, count)) in coded.iter().enumerate() {
        let mut with = |name: String, bytes: Vec<u8>, count: u64| {
            let mut streams = coded.to_vec();
            streams[index] = (bytes, count);
            probes.push((
                format!("stream {index}: {name}"),
                side_info.to_vec(),
                streams,
            ));
        };
        with(
            "truncated".into(),
            bytes[..bytes.len() / 2].to_vec(),
            *count,
        );
        with("empty bytes".into(), Vec::new(), *count);
        with("garbage".into(), vec![0xA5; bytes.len().max(4)], *count);
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0x5A; 3]);
        with("trailing bytes".into(), longer, *count);
        with("one symbol more".into(), bytes.clone(), count + 1);
        if *count > 0 {
            with("one symbol less".into(), bytes.clone(), count - 1);
        }
        with(
            "huge count".into(),
            bytes.clone(),
            count.max(&1) * 1_000_000_000,
        );
    }
    if !coded.is_empty() {
        probes.push((
            "a stream missing".into(),
            side_info.to_vec(),
            coded[..coded.len() - 1].to_vec(),
        ));
    }
    let mut extra = coded.to_vec();
    extra.push((vec![1, 2, 3], 3));
    probes.push(("an extra stream".into(), side_info.to_vec(), extra));
    if !side_info.is_empty() {
        probes.push((
            "truncated side info".into(),
            side_info[..side_info.len() - 1].to_vec(),
            coded.to_vec(),
        ));
    }
    let mut refused = 0;
    for (probe, side_info, streams) in probes {
        let composed = composed_decode(quantizer, coder, ctx, &side_info, &streams);
        let fused_result = match quantizer.describe_streams(
            ctx,
            &mut Quantized {
                side_info: side_info.clone().into(),
                streams: RVec::new(),
            },
        ) {
            // Side info the quantizer refuses never reaches a decoder.
            RResult::RErr(_) => continue,
            RResult::ROk(()) => fused_decode(fused, quantizer, ctx, &side_info, &streams),
        };
        match (composed, fused_result) {
            (RResult::RErr(_), RResult::RErr(error)) => {
                if error.code == ErrorCode::PANIC {
                    return Err(format!("{what}: {probe}: the fused decoder panicked: {error}"));
                }
                refused += 1;
            }
            (RResult::RErr(error), RResult::ROk(_)) => {
                return Err(format!(
                    "{what}: {probe}: the fused decoder accepted what the composed one refuses ({error})"
                ))
            }
            (RResult::ROk(_), RResult::RErr(error)) => {
                return Err(format!(
                    "{what}: {probe}: the fused decoder refused what the composed one accepts ({error})"
                ))
            }
            (RResult::ROk(a), RResult::ROk(b)) => {
                if !same_bits(&a, &b) {
                    return Err(format!(
                        "{what}: {probe}: the decoders accept it but reconstruct differently"
                    ));
                }
            }
        }
    }
    Ok(refused)
}
