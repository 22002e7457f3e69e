//! `gradcodec bench`: bits per entry, relative MSE, M-weighted distortion, and
//! encode / decode throughput of a pipeline on an input; with `--bound`, the bits
//! per entry next to the rate-distortion limit at the distortion achieved
//! (see `bench_bound`).

use crate::bench_bound::{self, InputSources};
use crate::PluginArgs;
use clap::Args;
use gradcodec::{bench, PipelineSpec, Update};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Pipeline spec (YAML); repeat to compare several on the same input.
    #[arg(long, required = true)]
    pipeline: Vec<PathBuf>,
    /// Update (.npy or .safetensors).
    #[arg(long)]
    input: PathBuf,
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

pub fn run(plugin_args: &PluginArgs, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let registry = plugin_args.registry()?;
    let update = Update::read(&args.input)?;
    if args.bound {
        return run_bound(&registry, &update, args);
    }
    if !args.json {
        println!(
            "{:<22} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "pipeline", "entries", "bits/entry", "rel. MSE", "M=2 dist.", "enc. M/s", "dec. M/s"
        );
    }
    for path in &args.pipeline {
        let pipeline = registry.build(&PipelineSpec::from_file(path)?)?;
        let report = bench::measure(
            &pipeline,
            &update,
            Duration::from_secs_f64(args.min_time.max(0.0)),
        )?;
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
