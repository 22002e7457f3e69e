//! Per quantizer and entropy coder of the loaded plugins, alone, through the
//! plugin ABI (as the engine calls them), with default parameters (`{}`; the
//! stage's example parameters if it needs some):
//!
//! - `quantizer/<name>/<input>`: `quantize` and `dequantize` of the input's
//!   entries as one tensor (`[N / 1000, 1000]`);
//! - `coder/<name>/<input>`: `encode` and `decode` of the symbol stream the
//!   `uniform` quantizer (8 bits, its default) makes of the same entries,
//!
//! each next to memcpy and zstd (compress and decompress) of the stage's own
//! input: the f32 bytes for a quantizer, the u32 symbols for a coder.

use crate::baseline;
use crate::inputs::{matrix_shape, Input};
use crate::ratios::Summary;
use criterion::{measurement::WallTime, BenchmarkGroup, Criterion, Throughput};
use gradcodec::abi::abi_stable::std_types::{RResult, RStr, RVec};
use gradcodec::abi::{
    CallContext, ErrorCode, Quantized, StageFlags, StageKind, StageResult, SymbolStream, TensorSpec,
};
use gradcodec::{RegisteredStage, Registry};
use std::hint::black_box;

/// The quantizer whose symbols the coder benchmarks encode.
const SYMBOL_SOURCE: &str = "uniform";

/// The value of `result`; panics naming `what` on an error.
fn ok<T>(what: &str, result: StageResult<T>) -> T {
    match result {
        RResult::ROk(value) => value,
        RResult::RErr(error) => panic!("{what}: {error}"),
    }
}

/// The first-registered stage of each (kind, name) of `kind`.
pub fn of_kind(registry: &Registry, kind: StageKind) -> Vec<&RegisteredStage> {
    let mut seen = std::collections::BTreeSet::new();
    registry
        .stages()
        .iter()
        .filter(|s| s.descriptor.kind == kind && seen.insert(s.descriptor.name.to_string()))
        .collect()
}

/// `{}` when the stage accepts it, else its example parameters.
fn default_params(stage: &RegisteredStage) -> String {
    let accepts = (stage.library.root.canonical_config())(
        stage.descriptor.kind,
        RStr::from(stage.descriptor.name.as_str()),
        RStr::from("{}"),
    );
    match accepts {
        RResult::ROk(_) => "{}".to_string(),
        RResult::RErr(_) => stage.descriptor.example_params.to_string(),
    }
}

fn tensor_spec(entries: usize) -> TensorSpec {
    let shape: Vec<u64> = matrix_shape(entries).iter().map(|d| *d as u64).collect();
    TensorSpec {
        name: "bench".into(),
        shape: RVec::from(shape),
    }
}

fn quantizer(stage: &RegisteredStage, entries: usize) -> gradcodec::abi::QuantizerBox {
    let (name, params) = (stage.descriptor.name.as_str(), default_params(stage));
    ok(
        &format!("quantizer `{name}` with {params}"),
        (stage.library.root.new_quantizer())(
            RStr::from(name),
            RStr::from(params.as_str()),
            &tensor_spec(entries),
        ),
    )
}

/// Quantizes and dequantizes once; panics unless a fresh decoder-side instance
/// rebuilds the same reconstruction from side info and symbols.
fn check_quantizer(stage: &RegisteredStage, values: &[f32], what: &str) -> Quantized {
    let ctx = CallContext::new(0, 0);
    let mut encoder = quantizer(stage, values.len());
    let mut coded = Quantized::default();
    ok(what, encoder.quantize(&ctx, values.into(), &mut coded));
    let mut encoder_view = RVec::new();
    ok(what, encoder.dequantize(&ctx, &coded, &mut encoder_view));
    let mut received = Quantized {
        side_info: coded.side_info.clone(),
        streams: RVec::new(),
    };
    let mut decoder = quantizer(stage, values.len());
    ok(what, decoder.describe_streams(&ctx, &mut received));
    assert_eq!(
        received.streams.len(),
        coded.streams.len(),
        "{what}: streams"
    );
    for (described, sent) in received.streams.iter_mut().zip(coded.streams.iter()) {
        described.symbols = sent.symbols.clone();
    }
    let mut decoder_view = RVec::new();
    ok(what, decoder.dequantize(&ctx, &received, &mut decoder_view));
    assert!(
        encoder_view == decoder_view,
        "{what}: the decoder's reconstruction differs from the encoder's"
    );
    coded
}

fn baselines(group: &mut BenchmarkGroup<'_, WallTime>, bytes: &[u8]) {
    baseline::memcpy(group, bytes);
    baseline::compress(group, bytes);
    baseline::decompress(group, bytes);
}

/// The group of one quantizer on one input.
pub fn bench_quantizer(
    c: &mut Criterion,
    stage: &RegisteredStage,
    input: &Input,
    summary: &mut Summary,
) {
    let name = stage.descriptor.name.as_str();
    let what = format!("quantizer `{name}` on {}", input.label);
    let stateful = stage.descriptor.flags.contains(StageFlags::STATEFUL);
    let values = input.values.as_slice();
    let ctx = CallContext::new(0, 0);
    let mut instance = quantizer(stage, values.len());
    let mut coded: Option<Quantized> = None;
    let group_name = format!("quantizer/{name}/{}", input.label);
    let mut group = c.benchmark_group(&group_name);
    group.throughput(Throughput::Elements(input.entries()));
    group.bench_function("quantize", |b| {
        let mut out = coded
            .get_or_insert_with(|| check_quantizer(stage, values, &what))
            .clone();
        b.iter(|| {
            if stateful {
                instance.reset();
            }
            ok(
                &what,
                instance.quantize(&ctx, black_box(values).into(), &mut out),
            )
        })
    });
    group.bench_function("dequantize", |b| {
        let coded = coded.get_or_insert_with(|| check_quantizer(stage, values, &what));
        let mut out = RVec::new();
        b.iter(|| {
            ok(
                &what,
                instance.dequantize(&ctx, black_box(&*coded), &mut out),
            )
        })
    });
    baselines(&mut group, &input.bytes);
    group.finish();
    summary.add(
        &group_name,
        input.entries(),
        "quantize",
        baseline::encode_ids(),
    );
    summary.add(
        &group_name,
        input.entries(),
        "dequantize",
        baseline::decode_ids(),
    );
}

/// The symbol stream the coder benchmarks encode: the first stream of the
/// `uniform` quantizer (default parameters) on the input.
pub fn symbols(registry: &Registry, input: &Input) -> SymbolStream {
    let source = registry
        .find(StageKind::QUANTIZER, SYMBOL_SOURCE, None)
        .unwrap_or_else(|e| panic!("the coder benchmarks need quantizer `{SYMBOL_SOURCE}`: {e}"));
    let what = format!("quantizer `{SYMBOL_SOURCE}` on {}", input.label);
    let coded = check_quantizer(source, &input.values, &what);
    coded
        .streams
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{what}: no stream"))
}

/// The group of one entropy coder on the symbols of one input (skipped, with a
/// note, when the coder refuses such a stream as unsupported).
pub fn bench_coder(
    c: &mut Criterion,
    stage: &RegisteredStage,
    input: &Input,
    stream: &SymbolStream,
    summary: &mut Summary,
) {
    let (name, params) = (stage.descriptor.name.as_str(), default_params(stage));
    let what = format!("entropy coder `{name}` on {} symbols", input.label);
    let mut coder = ok(
        &what,
        (stage.library.root.new_entropy_coder())(
            RStr::from(name),
            RStr::from(params.as_str()),
            &tensor_spec(input.values.len()),
        ),
    );
    let mut bytes = RVec::new();
    if let RResult::RErr(error) = coder.encode(stream, &mut bytes) {
        assert!(error.code == ErrorCode::UNSUPPORTED, "{what}: {error}");
        eprintln!("note: {what} skipped: {error}");
        return;
    }
    let count = stream.symbols.len() as u64;
    let mut decoded = SymbolStream {
        symbols: RVec::new(),
        ..stream.clone()
    };
    coder.reset();
    ok(
        &what,
        coder.decode(bytes.as_slice().into(), count, &mut decoded),
    );
    assert!(
        decoded.symbols == stream.symbols,
        "{what}: round trip differs"
    );
    let group_name = format!("coder/{name}/{}", input.label);
    let mut group = c.benchmark_group(&group_name);
    group.throughput(Throughput::Elements(count));
    let mut out = RVec::new();
    group.bench_function("encode", |b| {
        b.iter(|| {
            coder.reset();
            out.clear();
            ok(&what, coder.encode(black_box(stream), &mut out))
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            coder.reset();
            ok(
                &what,
                coder.decode(black_box(bytes.as_slice()).into(), count, &mut decoded),
            )
        })
    });
    let symbol_bytes: Vec<u8> = stream
        .symbols
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    baselines(&mut group, &symbol_bytes);
    group.finish();
    summary.add(&group_name, count, "encode", baseline::encode_ids());
    summary.add(&group_name, count, "decode", baseline::decode_ids());
}
