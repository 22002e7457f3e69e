//! Criterion benchmarks of every spec in pipelines/ and of every quantizer and
//! entropy coder of the built plugins, on real gradients (the
//! `resfed-cnn-grad-late` fixture tiled to N entries) and on seeded
//! GenNorm(β = 1, 0.5) samples of N entries.
//!
//! Every group also measures, in the same run and on the same input, a plain
//! memcpy and zstd levels 1 and 3 (compression, or decompression in decode
//! directions), and the run ends with each figure as a multiple of those, which
//! holds on a noisy machine where the absolute figures do not. Groups:
//! `<spec>/encode/<input>`, `<spec>/decode/<input>`,
//! `quantizer/<name>/<input>` and `coder/<name>/<input>`, with inputs
//! `resfed-late-<N>`, `gennorm-b1-<N>` and `gennorm-b0.5-<N>`. The pipelines'
//! encoder runs a message's tensors in parallel (rayon); the baselines and the
//! single-tensor stage groups use one thread.
//!
//! ```text
//! cargo build --release --workspace                  # the plugins the benchmarks load
//! cargo bench -p gradcodec-snapshots --bench pipelines                # everything, N = 1M
//! cargo bench -p gradcodec-snapshots --bench pipelines -- '^co3-fp4/'  # one spec (a regex)
//! cargo bench -p gradcodec-snapshots --bench pipelines -- '^(quantizer|coder)/'  # stages only
//! GRADCODEC_BENCH_FULL=1 cargo bench ...             # N = 1M and 25M
//! GRADCODEC_BENCH_SIZE=200000 cargo bench ...        # other sizes (comma separated)
//! cargo test -p gradcodec-snapshots --bench pipelines # quick mode: each benchmark once, N = 64k
//! ```
//!
//! Each benchmark takes about 3 s (10 samples, 2 s of measurement; criterion's
//! `--sample-size`, `--warm-up-time` and `--measurement-time` change that), so
//! a whole run at 1M (about 970 benchmarks) takes some 50 minutes: filter.
//!
//! Every benchmark panics with a message naming the spec or stage if a spec
//! does not build, encoding the same update twice gives different bytes, or
//! decoding differs from the encoder's reconstruction, so the quick mode in
//! `scripts/test` catches rot.

mod baseline;
mod inputs;
mod ratios;
mod specs;
mod stages;

use criterion::Criterion;
use gradcodec::abi::StageKind;
use std::time::Duration;

/// Entries per input in quick mode (criterion's test mode).
const QUICK_ENTRIES: usize = 64_000;
/// Entries per input in a benchmark run.
const ENTRIES: usize = 1_000_000;
/// Also measured when `GRADCODEC_BENCH_FULL=1`.
const FULL_ENTRIES: usize = 25_000_000;

/// Whether criterion runs in test mode: `cargo test --benches` (no `--bench`
/// argument) or `cargo bench -- --test`.
fn quick_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}

/// The sizes of this run: `GRADCODEC_BENCH_SIZE` (comma separated) if set,
/// else 64k in quick mode, else 1M (and 25M with `GRADCODEC_BENCH_FULL=1`).
fn sizes(quick: bool) -> Vec<usize> {
    if let Ok(given) = std::env::var("GRADCODEC_BENCH_SIZE") {
        return given
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| panic!("GRADCODEC_BENCH_SIZE: `{s}` is not a size"))
            })
            .collect();
    }
    if quick {
        return vec![QUICK_ENTRIES];
    }
    let full = std::env::var("GRADCODEC_BENCH_FULL").is_ok_and(|v| v == "1");
    if full {
        vec![ENTRIES, FULL_ENTRIES]
    } else {
        vec![ENTRIES]
    }
}

fn main() {
    let quick = quick_mode();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let registry = gradcodec_snapshots::build_registry();
    let pipelines = specs::build_all(&registry);
    let inputs = inputs::all(&sizes(quick));
    let mut summary = ratios::Summary::default();
    for input in &inputs {
        for (name, pipeline) in &pipelines {
            specs::bench(&mut c, name, pipeline, input, &mut summary);
        }
        for stage in stages::of_kind(&registry, StageKind::QUANTIZER) {
            stages::bench_quantizer(&mut c, stage, input, &mut summary);
        }
        let symbols = stages::symbols(&registry, input);
        for stage in stages::of_kind(&registry, StageKind::ENTROPY_CODER) {
            stages::bench_coder(&mut c, stage, input, &symbols, &mut summary);
        }
    }
    c.final_summary();
    if !quick {
        summary.print();
    }
}
