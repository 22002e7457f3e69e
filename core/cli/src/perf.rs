//! `gradcodec perf`: speed and size of pipelines against memcpy and zstd, measured
//! in one run on the same input, so the ratios hold on a noisy machine.
//!
//! For each pipeline: bits per entry of the real message; the zeroth-order entropy
//! `H0` of the symbols its quantizer gave the coders (per stream, summed; for a
//! positions stream `log₂ C(n, k)`, the information in which k of n entries were
//! kept; for a stream of raw 32-bit words, the sum over its four byte planes, as
//! whole words are nearly all distinct) and the coded payload's ratio to it; container and side information as a
//! share of the message; and encode / decode throughput in the steady state — the same encoder
//! and decoder reset before each repetition (`reset`, as between streams), so
//! buffers are warm and every repetition does round-0 work with the same bytes.
//! The baselines run on the update's raw little-endian f32 bytes: a copy into a
//! reused buffer (memcpy), and zstd levels 1 and 3 with reused contexts. All in a
//! rayon pool of `--threads` threads (the tensors of one update are coded in
//! parallel; the baselines are single-threaded).
//!
//! `--tile N` repeats each tensor's entries until the update holds at least `N`
//! (each tensor keeps its own statistics; copies are stacked along the first axis).
//! Every copy after the
//! first is a seeded permutation of the tensor, so the same values come back in
//! another order: a generic compressor finds no long repeats that real gradients
//! would not have (plain repetition lets zstd -1 shrink a tiled gradient ~10x).

use crate::PluginArgs;
use anyhow::Context;
use clap::Args;
use gradcodec::{NamedTensor, PipelineSpec, Update};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `perf`.
#[derive(Args)]
pub struct PerfArgs {
    /// Pipeline spec (YAML); repeat for several.
    #[arg(long, required = true)]
    pipeline: Vec<PathBuf>,
    /// Update (.npy or .safetensors).
    #[arg(long)]
    input: PathBuf,
    /// Tile the input to at least this many entries.
    #[arg(long)]
    tile: Option<usize>,
    /// With --tile: add the copies as separate tensors (`name#k`, shapes kept), as
    /// in a model with many layers, instead of lengthening each tensor.
    #[arg(long, requires = "tile")]
    tile_as_tensors: bool,
    /// With --tile: flatten everything into one 1-D tensor (as a DDP bucket is),
    /// each copy after the first a seeded permutation, so one big tensor is coded
    /// (in blocks, in parallel).
    #[arg(long, requires = "tile", conflicts_with = "tile_as_tensors")]
    tile_as_one: bool,
    /// Threads of the pool the pipelines run in.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Instead of the table: encode and decode with 1 thread and with this many,
    /// alternating repetitions so both see the same machine, and their ratio.
    #[arg(long, value_name = "THREADS", conflicts_with = "threads")]
    scaling: Option<usize>,
    /// Minimum timing per measurement, seconds (at least 3 repetitions).
    #[arg(long, default_value_t = 1.0)]
    min_time: f64,
}

/// The baselines' line.
#[derive(Serialize)]
struct Baselines {
    kind: &'static str,
    entries: u64,
    tensors: usize,
    threads: usize,
    memcpy_mentries_per_s: f64,
    zstd1_bits_per_entry: f64,
    zstd1_encode_mentries_per_s: f64,
    zstd1_decode_mentries_per_s: f64,
    zstd3_bits_per_entry: f64,
    zstd3_encode_mentries_per_s: f64,
    zstd3_decode_mentries_per_s: f64,
}

/// One pipeline's line.
#[derive(Serialize)]
struct PipelinePerf {
    kind: &'static str,
    pipeline: String,
    entries: u64,
    threads: usize,
    bits_per_entry: f64,
    /// Σ over streams of their information (`count · H0`; `log₂ C(n, k)` for
    /// positions), per entry.
    symbol_entropy_bits_per_entry: f64,
    /// Coded stream bytes (payload only) × 8 / that information; `None` when 0.
    payload_over_entropy: Option<f64>,
    /// (message − payload) / message: container and side information.
    overhead_fraction: f64,
    /// (message − payload − side information) / message: the container alone.
    container_fraction: f64,
    /// Per stream role: (payload bits, `count · H0` bits).
    streams: HashMap<String, (f64, f64)>,
    encode_mentries_per_s: f64,
    decode_mentries_per_s: f64,
    repetitions: usize,
    /// The fused pair the timed encoder and decoder ran (`quantizer + coder
    /// (library)`), if any (`GRADCODEC_FUSED=off` turns them off).
    fused: Option<String>,
}

/// Copy `copy` of `values` for tiling: the values themselves for copy 0, else a
/// permutation seeded by the copy's index.
fn tile_copy(values: &[f32], copy: usize) -> Vec<f32> {
    let mut values = values.to_vec();
    if copy > 0 {
        values.shuffle(&mut ChaCha8Rng::seed_from_u64(copy as u64));
    }
    values
}

/// The copies of [`tile`] as separate tensors, each (after the first) a seeded
/// permutation of the original's values, shapes kept.
fn tile_as_tensors(update: Update, at_least: usize) -> anyhow::Result<Update> {
    let entries = update.entries().max(1);
    let copies = at_least.div_ceil(entries).max(1);
    let mut tensors = Vec::with_capacity(update.tensors.len() * copies);
    for copy in 0..copies {
        for t in &update.tensors {
            let values: Vec<f32> = t.data.iter().copied().collect();
            let values = tile_copy(&values, copy);
            let name = format!("{}#{copy}", t.name);
            tensors.push(NamedTensor::from_vec(name, t.data.shape(), values)?);
        }
    }
    Ok(Update::new(tensors))
}

/// The copies of [`tile`] as one flat tensor `bucket` (the update's values in
/// order, then each further copy a seeded permutation of them).
fn tile_as_one(update: Update, at_least: usize) -> anyhow::Result<Update> {
    let values: Vec<f32> = update
        .tensors
        .iter()
        .flat_map(|t| t.data.iter().copied())
        .collect();
    let copies = at_least.div_ceil(values.len().max(1)).max(1);
    let flat: Vec<f32> = (0..copies).flat_map(|c| tile_copy(&values, c)).collect();
    let len = flat.len();
    Ok(Update::new(vec![NamedTensor::from_vec(
        "bucket",
        &[len],
        flat,
    )?]))
}

fn tile(update: Update, at_least: usize) -> anyhow::Result<Update> {
    let entries = update.entries().max(1);
    let copies = at_least.div_ceil(entries).max(1);
    if copies == 1 {
        return Ok(update);
    }
    let tensors = update
        .tensors
        .iter()
        .map(|t| {
            let values: Vec<f32> = t.data.iter().copied().collect();
            let tiled: Vec<f32> = (0..copies).flat_map(|c| tile_copy(&values, c)).collect();
            // Stacked along the first axis: a matrix stays a matrix (PowerSGD).
            let mut shape = t.data.shape().to_vec();
            match shape.first_mut() {
                Some(rows) => *rows *= copies,
                None => shape.push(copies),
            }
            NamedTensor::from_vec(t.name.clone(), &shape, tiled)
        })
        .collect::<Result<_, _>>()?;
    Ok(Update::new(tensors))
}

/// Median seconds of `run` over at least `min_time` and 3 repetitions, after a
/// warm-up.
fn time(
    min_time: Duration,
    mut run: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, usize)> {
    let (medians, count) = time_alternating(min_time, 1, 3, |_| run())?;
    Ok((medians[0], count))
}

/// [`time`] of `run` alone, with `check` of its output after the clock stops.
fn time_checked<T>(
    min_time: Duration,
    mut run: impl FnMut() -> anyhow::Result<T>,
    mut check: impl FnMut(T) -> anyhow::Result<()>,
) -> anyhow::Result<(f64, usize)> {
    let (medians, count) =
        time_alternating_checked(min_time, 1, 3, |_| run(), |_, output| check(output))?;
    Ok((medians[0], count))
}

/// The information in a stream, bits: for a `positions` stream (distinct sorted
/// indices below `n`), `log₂ C(n, k)`, what any coder of a k-subset needs on
/// average; for the others `count · H0`, the empirical zeroth-order entropy.
fn stream_information_bits(stream: &gradcodec::abi::SymbolStream) -> f64 {
    if stream.role == gradcodec::abi::StreamRole::POSITIONS {
        let (n, k) = (stream.alphabet_size as f64, stream.symbols.len() as f64);
        let k = k.min(n - k);
        return (0..k as u64)
            .map(|i| ((n - i as f64) / (k - i as f64)).log2())
            .sum();
    }
    if stream.role == gradcodec::abi::StreamRole::RAW_WORDS && stream.alphabet_size > 1 << 16 {
        // Whole machine words (f32 bits) are nearly all distinct, so their H0
        // is just log2 of their count, a figure no coder can approach without
        // sending every value; the order-0 reference is that of the four byte
        // planes, the symbols the coders model.
        return (0..4)
            .map(|plane| {
                let bytes: Vec<u32> = stream
                    .symbols
                    .iter()
                    .map(|w| (w >> (8 * plane)) & 0xff)
                    .collect();
                entropy_bits(&bytes)
            })
            .sum();
    }
    entropy_bits(&stream.symbols)
}

/// `count · H0` in bits of one stream.
fn entropy_bits(symbols: &[u32]) -> f64 {
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for s in symbols {
        *counts.entry(*s).or_default() += 1;
    }
    let n = symbols.len() as f64;
    counts
        .values()
        .map(|&c| {
            let c = c as f64;
            -c * (c / n).log2()
        })
        .sum()
}

fn raw_bytes(update: &Update) -> Vec<u8> {
    update
        .tensors
        .iter()
        .flat_map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()))
        .collect()
}

fn baselines(update: &Update, threads: usize, min_time: Duration) -> anyhow::Result<Baselines> {
    let bytes = raw_bytes(update);
    let entries = update.entries() as f64;
    let rate = |seconds: f64| entries / seconds.max(1e-12) / 1e6;
    let mut copy = vec![0u8; bytes.len()];
    let (memcpy, _) = time(min_time, || {
        copy.copy_from_slice(black_box(&bytes));
        black_box(&copy);
        Ok(())
    })?;
    let zstd_level = |level: i32| -> anyhow::Result<(f64, f64, f64)> {
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        let mut decompressor = zstd::bulk::Decompressor::new()?;
        let compressed = compressor.compress(&bytes)?;
        // Timed as the pipelines are: the output is checked and dropped after
        // the clock stops.
        let (encode, _) = time_checked(
            min_time,
            || Ok(compressor.compress(black_box(&bytes))?),
            |again| {
                anyhow::ensure!(again == compressed, "zstd is not deterministic");
                Ok(())
            },
        )?;
        let (decode, _) = time_checked(
            min_time,
            || Ok(decompressor.decompress(black_box(&compressed), bytes.len())?),
            |out| {
                anyhow::ensure!(out == bytes, "zstd round trip lost bytes");
                Ok(())
            },
        )?;
        Ok((
            8.0 * compressed.len() as f64 / entries,
            rate(encode),
            rate(decode),
        ))
    };
    let (z1_bits, z1_enc, z1_dec) = zstd_level(1)?;
    let (z3_bits, z3_enc, z3_dec) = zstd_level(3)?;
    Ok(Baselines {
        kind: "baselines",
        entries: entries as u64,
        tensors: update.tensors.len(),
        threads,
        memcpy_mentries_per_s: rate(memcpy),
        zstd1_bits_per_entry: z1_bits,
        zstd1_encode_mentries_per_s: z1_enc,
        zstd1_decode_mentries_per_s: z1_dec,
        zstd3_bits_per_entry: z3_bits,
        zstd3_encode_mentries_per_s: z3_enc,
        zstd3_decode_mentries_per_s: z3_dec,
    })
}

fn measure(
    pipeline: &std::sync::Arc<gradcodec::Pipeline>,
    update: &Update,
    threads: usize,
    min_time: Duration,
) -> anyhow::Result<PipelinePerf> {
    // The composed stages leave the symbols for the entropy figures (a fused
    // pair writes the same bytes without them; timed below as configured).
    let mut encoder = pipeline.encoder();
    encoder.set_fused(false);
    let message = encoder.encode(update)?;
    let stats = encoder.last_stats().clone();
    let entries = update.entries() as f64;
    let mut streams: HashMap<String, (f64, f64)> = HashMap::new();
    let mut entropy_total = 0.0;
    let streams_of = encoder.last_symbol_streams();
    let coded_sizes = stats
        .tensors
        .iter()
        .filter(|t| !t.raw)
        .flat_map(|t| t.streams.iter().map(|s| s.2));
    for ((_, stream), bytes) in streams_of.iter().zip(coded_sizes) {
        let h = stream_information_bits(stream);
        entropy_total += h;
        let slot = streams.entry(stream.role.as_str().to_string()).or_default();
        slot.0 += 8.0 * bytes as f64;
        slot.1 += h;
    }
    let payload: u64 = stats
        .tensors
        .iter()
        .flat_map(|t| t.streams.iter().map(|s| s.2))
        .sum();
    let side_info: u64 = stats.tensors.iter().map(|t| t.side_info_bytes).sum();
    let mut decoder = pipeline.decoder();
    let decoded = decoder.decode(&message)?;
    anyhow::ensure!(
        &decoded == encoder.try_last_reconstruction()?,
        "{}: the decoder's output differs from the encoder's reconstruction",
        pipeline.name()
    );
    // Timed as configured (fused unless GRADCODEC_FUSED=off); every repetition
    // must give the composed path's bytes.
    encoder.set_fused(gradcodec::fused::fused_enabled_by_default());
    let (encode, repetitions) = time_checked(
        min_time,
        || {
            encoder.reset();
            Ok(encoder.encode(update)?)
        },
        |again| {
            anyhow::ensure!(
                again == message,
                "{}: encoding is not deterministic",
                pipeline.name()
            );
            Ok(())
        },
    )?;
    let (decode, _) = time_checked(
        min_time,
        || {
            decoder.reset();
            Ok(decoder.decode(&message)?)
        },
        |again| {
            anyhow::ensure!(
                again == decoded,
                "{}: decoding is not deterministic",
                pipeline.name()
            );
            Ok(())
        },
    )?;
    let rate = |seconds: f64| entries / seconds.max(1e-12) / 1e6;
    Ok(PipelinePerf {
        fused: pipeline
            .fused()
            .filter(|_| gradcodec::fused::fused_enabled_by_default())
            .map(|f| f.label()),
        kind: "pipeline",
        pipeline: pipeline.name().to_string(),
        entries: entries as u64,
        threads,
        bits_per_entry: 8.0 * message.len() as f64 / entries,
        symbol_entropy_bits_per_entry: entropy_total / entries,
        payload_over_entropy: (entropy_total > 0.0).then(|| 8.0 * payload as f64 / entropy_total),
        overhead_fraction: (message.len() as f64 - payload as f64) / message.len() as f64,
        container_fraction: (message.len() as f64 - payload as f64 - side_info as f64)
            / message.len() as f64,
        streams,
        encode_mentries_per_s: rate(encode),
        decode_mentries_per_s: rate(decode),
        repetitions,
    })
}

/// One pipeline's `--scaling` line.
#[derive(Serialize)]
struct Scaling {
    kind: &'static str,
    pipeline: String,
    entries: u64,
    tensors: usize,
    threads: usize,
    encode_mentries_per_s_1: f64,
    encode_mentries_per_s_n: f64,
    encode_speedup: f64,
    decode_mentries_per_s_1: f64,
    decode_mentries_per_s_n: f64,
    decode_speedup: f64,
    repetitions: usize,
}

/// Medians of `run(0)` … `run(variants − 1)` timed round-robin (one repetition of
/// each in turn, so all see the same machine), for at least `min_time` per variant
/// and `min_repetitions`, after one warm-up each.
fn time_alternating(
    min_time: Duration,
    variants: usize,
    min_repetitions: usize,
    run: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<f64>, usize)> {
    time_alternating_checked(min_time, variants, min_repetitions, run, |_, ()| Ok(()))
}

/// Medians of alternating repetitions of `run(variant)`, each timed alone:
/// `check(variant, output)` runs after the clock stops (comparing the bytes,
/// dropping the output), so the figures are the codec's time, not the check's.
fn time_alternating_checked<T>(
    min_time: Duration,
    variants: usize,
    min_repetitions: usize,
    mut run: impl FnMut(usize) -> anyhow::Result<T>,
    mut check: impl FnMut(usize, T) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<f64>, usize)> {
    for variant in 0..variants {
        let output = run(variant)?;
        check(variant, output)?;
    }
    let started = Instant::now();
    let mut samples = vec![Vec::new(); variants];
    let budget = min_time * variants as u32;
    while samples[0].len() < min_repetitions
        || (started.elapsed() < budget && samples[0].len() < 1000)
    {
        for (variant, times) in samples.iter_mut().enumerate() {
            let start = Instant::now();
            let output = run(variant)?;
            times.push(start.elapsed().as_secs_f64());
            check(variant, output)?;
        }
    }
    let count = samples[0].len();
    let medians = samples
        .into_iter()
        .map(|mut times| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        })
        .collect();
    Ok((medians, count))
}

fn scaling(
    pipeline: &std::sync::Arc<gradcodec::Pipeline>,
    update: &Update,
    threads: usize,
    min_time: Duration,
) -> anyhow::Result<Scaling> {
    let pools = [
        rayon::ThreadPoolBuilder::new().num_threads(1).build()?,
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?,
    ];
    let mut encoder = pipeline.encoder();
    let message = encoder.encode(update)?;
    let mut decoder = pipeline.decoder();
    let (encode, repetitions) = time_alternating_checked(
        min_time,
        2,
        5,
        |variant| {
            encoder.reset();
            Ok(pools[variant].install(|| encoder.encode(update))?)
        },
        |_, again| {
            anyhow::ensure!(
                again == message,
                "{}: the bytes depend on the thread count",
                pipeline.name()
            );
            Ok(())
        },
    )?;
    let (decode, _) = time_alternating_checked(
        min_time,
        2,
        5,
        |variant| {
            decoder.reset();
            Ok(pools[variant].install(|| decoder.decode(&message))?)
        },
        |_, decoded| {
            black_box(decoded);
            Ok(())
        },
    )?;
    let entries = update.entries() as f64;
    let rate = |seconds: f64| entries / seconds.max(1e-12) / 1e6;
    Ok(Scaling {
        kind: "scaling",
        pipeline: pipeline.name().to_string(),
        entries: entries as u64,
        tensors: update.tensors.len(),
        threads,
        encode_mentries_per_s_1: rate(encode[0]),
        encode_mentries_per_s_n: rate(encode[1]),
        encode_speedup: encode[0] / encode[1],
        decode_mentries_per_s_1: rate(decode[0]),
        decode_mentries_per_s_n: rate(decode[1]),
        decode_speedup: decode[0] / decode[1],
        repetitions,
    })
}

pub fn run(plugin_args: &PluginArgs, args: &PerfArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.threads >= 1, "--threads must be at least 1");
    let registry = plugin_args.registry()?;
    let mut update = Update::read(&args.input)?;
    if let Some(entries) = args.tile {
        update = if args.tile_as_tensors {
            tile_as_tensors(update, entries)?
        } else if args.tile_as_one {
            tile_as_one(update, entries)?
        } else {
            tile(update, entries)?
        };
    }
    let min_time = Duration::from_secs_f64(args.min_time.max(0.0));
    if let Some(threads) = args.scaling {
        anyhow::ensure!(threads >= 2, "--scaling needs at least 2 threads");
        for path in &args.pipeline {
            let pipeline = registry.build(&PipelineSpec::from_file(path)?)?;
            let line = scaling(&pipeline, &update, threads, min_time)?;
            println!("{}", serde_json::to_string(&line)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("building the thread pool")?;
    println!(
        "{}",
        serde_json::to_string(&baselines(&update, args.threads, min_time)?)?
    );
    for path in &args.pipeline {
        let pipeline = registry.build(&PipelineSpec::from_file(path)?)?;
        let line = pool.install(|| measure(&pipeline, &update, args.threads, min_time))?;
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(ExitCode::SUCCESS)
}
