//! `gradcodec bench`: bits per entry, relative MSE, M-weighted distortion, and
//! encode / decode throughput of a pipeline on an input; with `--bound`, the bits
//! per entry next to the rate-distortion limit at the distortion achieved
//! (see `bench_bound`). By default the input is coded as round 0 of a fresh
//! stream (stateful stages start empty); `--rounds N` codes a stream of N rounds
//! (the input repeated, or a folder's updates in name order, cycled).

use crate::bench_bound::{self, InputSources};
use crate::PluginArgs;
use clap::Args;
use gradcodec::{bench, PipelineSpec, Update};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Options of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Pipeline spec (YAML); repeat to compare several on the same input.
    #[arg(long, required = true)]
    pipeline: Vec<PathBuf>,
    /// Update (.npy or .safetensors), or a folder of them (with --rounds, the
    /// stream's rounds in file-name order, cycled).
    #[arg(long)]
    input: PathBuf,
    /// Code a stream of N rounds on one fresh encoder and decoder, so stateful
    /// stages (error feedback, predictors) warm up: bits and errors are means
    /// over the rounds (the last round's in JSON), speeds cover the stream.
    /// Default: one round, i.e. an error-feedback pipeline measures like the
    /// plain one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rounds: u32,
    /// Minimum timing per direction, seconds.
    #[arg(long, default_value_t = 1.0)]
    min_time: f64,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Compare each pipeline's bits per entry with the single-source
    /// rate-distortion limit at the distortion it achieved (no timing).
    #[arg(long)]
    bound: bool,
    /// With --bound: the distortion's weight exponent M, |x|^M (x - y)^2 (0: MSE).
    #[arg(long, default_value_t = 0.0, requires = "bound")]
    weight_m: f64,
    /// With --bound: a Markdown table instead of plain text.
    #[arg(long, requires = "bound", conflicts_with = "json")]
    markdown: bool,
}

fn run_bound(
    registry: &gradcodec::Registry,
    update: &Update,
    args: &BenchArgs,
) -> anyhow::Result<ExitCode> {
    if !(args.weight_m.is_finite() && (0.0..=16.0).contains(&args.weight_m)) {
        anyhow::bail!("--weight-m must be in [0, 16], got {}", args.weight_m);
    }
    let mut sources = InputSources::fit(update, args.weight_m)?;
    if args.markdown {
        println!("{}", bench_bound::markdown_header());
    } else if !args.json {
        println!("{}", bench_bound::table_header());
    }
    for path in &args.pipeline {
        let pipeline = registry.build(&PipelineSpec::from_file(path)?)?;
        let comparison = bench_bound::compare(&mut sources, pipeline.encoder(), update)?;
        if args.json {
            println!("{}", serde_json::to_string(&comparison)?);
        } else if args.markdown {
            println!("{}", bench_bound::markdown_row(&comparison));
        } else {
            println!("{}", bench_bound::table_row(&comparison));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The input's updates: the file, or every tensor file of the folder in name order.
fn read_inputs(input: &Path) -> anyhow::Result<Vec<Update>> {
    if !input.is_dir() {
        return Ok(vec![Update::read(input)?]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "npy" || e == "safetensors")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{}: no .npy or .safetensors file", input.display());
    }
    files.iter().map(|f| Ok(Update::read(f)?)).collect()
}

pub fn run(plugin_args: &PluginArgs, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let registry = plugin_args.registry()?;
    let updates = read_inputs(&args.input)?;
    if args.bound {
        if updates.len() > 1 || args.rounds > 1 {
            anyhow::bail!("--bound compares one update: give a file and no --rounds");
        }
        return run_bound(&registry, &updates[0], args);
    }
    if updates.len() > 1 && args.rounds == 1 {
        anyhow::bail!(
            "{} holds {} updates: give --rounds N to code them as a stream",
            args.input.display(),
            updates.len()
        );
    }
    if !args.json {
        if args.rounds == 1 {
            println!("one round per pipeline, fresh encoder (stateful stages start empty; --rounds N for a stream)");
        } else {
            println!(
                "a stream of {} rounds per pipeline ({}), one fresh encoder and decoder; bits and errors: means over the rounds",
                args.rounds,
                if updates.len() == 1 {
                    "the same update each round".to_string()
                } else {
                    format!("{} updates in name order, cycled", updates.len())
                }
            );
        }
        println!(
            "{:<22} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "pipeline", "entries", "bits/entry", "rel. MSE", "M=2 dist.", "enc. M/s", "dec. M/s"
        );
    }
    for path in &args.pipeline {
        let pipeline = registry.build(&PipelineSpec::from_file(path)?)?;
        let min_time = Duration::from_secs_f64(args.min_time.max(0.0));
        let report = if args.rounds == 1 {
            bench::measure(&pipeline, &updates[0], min_time)?
        } else {
            bench::measure_stream(&pipeline, &updates, args.rounds as usize, min_time)?
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{:<22} {:>10} {:>12.4} {:>12.3e} {:>12.3e} {:>12.1} {:>12.1}",
                report.pipeline,
                report.entries,
                report.bits_per_entry,
                report.relative_mse,
                report.weighted_distortion_m2,
                report.encode_mentries_per_s,
                report.decode_mentries_per_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
