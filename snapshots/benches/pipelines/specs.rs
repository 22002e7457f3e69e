//! Per spec in pipelines/ and per input: the groups `<spec>/encode/<input>`
//! and `<spec>/decode/<input>`, each with the codec (`codec`) and the memcpy
//! and zstd baselines on the same input.
//!
//! Each timed call is round-0 work on warm instances: the encoder (decoder) is
//! reset before each message, so stateful pipelines repeat the same message.

use crate::baseline;
use crate::inputs::Input;
use crate::ratios::Summary;
use criterion::{Criterion, Throughput};
use gradcodec::{spec::spec_files, Decoder, Encoder, Pipeline, PipelineSpec, Registry};
use std::hint::black_box;
use std::sync::Arc;

/// Every spec of pipelines/, by file stem, built; panics naming the spec if one
/// does not parse or build.
pub fn build_all(registry: &Registry) -> Vec<(String, Arc<Pipeline>)> {
    let files = spec_files(&gradcodec_snapshots::pipelines_dir())
        .unwrap_or_else(|e| panic!("cannot list pipelines/: {e}"));
    assert!(!files.is_empty(), "no spec in pipelines/");
    files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let spec = PipelineSpec::from_file(&path)
                .unwrap_or_else(|e| panic!("pipelines/{name}.yaml does not parse: {e}"));
            let pipeline = registry.build(&spec).unwrap_or_else(|e| {
                panic!(
                    "pipelines/{name}.yaml does not build: {e}{}",
                    load_failures(registry)
                )
            });
            (name, pipeline)
        })
        .collect()
}

/// The libraries that failed to load, as a suffix for a panic message.
pub fn load_failures(registry: &Registry) -> String {
    registry
        .failures()
        .iter()
        .map(|f| format!("\n  {} failed to load: {}", f.path.display(), f.message))
        .collect()
}

/// A warm encoder and decoder, and the round-0 message, checked.
struct Prepared {
    encoder: Encoder,
    decoder: Decoder,
    message: Vec<u8>,
}

/// Encodes `input` twice (reset in between) and decodes it; panics unless the
/// bytes repeat and the decoder reproduces the encoder's reconstruction.
fn prepare(pipeline: &Arc<Pipeline>, input: &Input, what: &str) -> Prepared {
    let mut encoder = pipeline.encoder();
    let message = encoder
        .encode(&input.update)
        .unwrap_or_else(|e| panic!("{what}: encode failed: {e}"));
    encoder.reset();
    let again = encoder
        .encode(&input.update)
        .unwrap_or_else(|e| panic!("{what}: encode after reset failed: {e}"));
    assert!(
        again == message,
        "{what}: encoding the same update after a reset gave different bytes"
    );
    let mut decoder = pipeline.decoder();
    let decoded = decoder
        .decode(&message)
        .unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
    assert!(
        &decoded == encoder.last_reconstruction(),
        "{what}: the decoder's output differs from the encoder's reconstruction"
    );
    Prepared {
        encoder,
        decoder,
        message,
    }
}

/// The encode and decode groups of one spec on one input.
pub fn bench(
    c: &mut Criterion,
    name: &str,
    pipeline: &Arc<Pipeline>,
    input: &Input,
    summary: &mut Summary,
) {
    let what = format!("pipelines/{name}.yaml on {}", input.label);
    let mut prepared: Option<Prepared> = None;
    let update = &input.update;

    let group_name = format!("{name}/encode/{}", input.label);
    let mut group = c.benchmark_group(&group_name);
    group.throughput(Throughput::Elements(input.entries()));
    group.bench_function("codec", |b| {
        let p = prepared.get_or_insert_with(|| prepare(pipeline, input, &what));
        b.iter(|| {
            p.encoder.reset();
            p.encoder
                .encode(black_box(update))
                .unwrap_or_else(|e| panic!("{what}: encode failed: {e}"))
        })
    });
    baseline::memcpy(&mut group, &input.bytes);
    baseline::compress(&mut group, &input.bytes);
    group.finish();
    summary.add(
        &group_name,
        input.entries(),
        "codec",
        baseline::encode_ids(),
    );

    let group_name = format!("{name}/decode/{}", input.label);
    let mut group = c.benchmark_group(&group_name);
    group.throughput(Throughput::Elements(input.entries()));
    group.bench_function("codec", |b| {
        let p = prepared.get_or_insert_with(|| prepare(pipeline, input, &what));
        b.iter(|| {
            p.decoder.reset();
            p.decoder
                .decode(black_box(&p.message))
                .unwrap_or_else(|e| panic!("{what}: decode failed: {e}"))
        })
    });
    baseline::memcpy(&mut group, &input.bytes);
    baseline::decompress(&mut group, &input.bytes);
    group.finish();
    summary.add(
        &group_name,
        input.entries(),
        "codec",
        baseline::decode_ids(),
    );
}
