//! The cost of the plugin boundary: the same stage (`uniform`, 8 bits, from
//! plugins/quantizers) called through the ABI from its loaded .so, and called
//! in-process through the SDK trait, at 1k, 64k and 1M entries. Also a plain
//! memcpy of the input, as the machine's reference speed in the same run.
//!
//! `cargo bench -p gradcodec --bench abi_boundary` (after `cargo build --release
//! --workspace`); `cargo test --benches` runs each once as a smoke test.

use abi_stable::std_types::{RResult, RStr, RVec};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gradcodec::abi::{CallContext, Quantized, TensorSpec};
use gradcodec::{loader, PluginSearch, Registry};
use gradcodec_plugin_quantizers::uniform::{Uniform, UniformConfig};
use gradcodec_sdk::{Quantizer, Stage};
use std::hint::black_box;
use std::path::PathBuf;

fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf()
}

fn input(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 1e-5)
        .collect()
}

fn boundary(c: &mut Criterion) {
    let library = build_dir().join("libgradcodec_plugin_quantizers.so");
    assert!(loader::is_plugin_file_name(&library));
    let registry =
        Registry::discover(&PluginSearch::only(vec![], vec![library.clone()])).expect("registry");
    let stage = registry
        .find(gradcodec::abi::StageKind::QUANTIZER, "uniform", None)
        .unwrap_or_else(|_| panic!("{} not built: run cargo build first", library.display()));
    let root = stage.library.root;
    let params = r#"{"bits": 8}"#;
    let mut group = c.benchmark_group("plugin-boundary/uniform8-quantize");
    for len in [1_000usize, 64_000, 1_000_000] {
        let data = input(len);
        let tensor = TensorSpec {
            name: "bench".into(),
            shape: RVec::from(vec![len as u64]),
        };
        let ctx = CallContext::new(0, 0);
        group.throughput(Throughput::Elements(len as u64));
        let mut through_abi =
            match (root.new_quantizer())(RStr::from("uniform"), RStr::from(params), &tensor) {
                RResult::ROk(q) => q,
                RResult::RErr(e) => panic!("{e}"),
            };
        let mut out = Quantized::default();
        group.bench_with_input(BenchmarkId::new("abi", len), &data, |b, data| {
            b.iter(|| {
                through_abi
                    .quantize(&ctx, black_box(data.as_slice()).into(), &mut out)
                    .unwrap()
            })
        });
        let mut in_process = Uniform::new(
            UniformConfig {
                bits: 8,
                ..UniformConfig::default()
            },
            &tensor,
        )
        .unwrap();
        group.bench_with_input(BenchmarkId::new("in-process", len), &data, |b, data| {
            b.iter(|| {
                in_process
                    .quantize(&ctx, black_box(data.as_slice()), &mut out)
                    .unwrap()
            })
        });
        let mut copy = vec![0f32; len];
        group.bench_with_input(BenchmarkId::new("memcpy", len), &data, |b, data| {
            b.iter(|| copy.copy_from_slice(black_box(data.as_slice())))
        });
    }
    group.finish();
}

criterion_group!(benches, boundary);
criterion_main!(benches);
