//! `gradcodec`: list plugins, check pipeline specs, encode and decode updates,
//! inspect messages and benchmark pipelines.

mod bench;
mod bench_bound;
mod bound;
mod check;
mod codec;
mod inspect;
mod perf;
mod plugins;
mod synth;
mod terminal;

use clap::{Args, Parser, Subcommand};
use gradcodec::{PluginSearch, Registry};
use std::path::PathBuf;
use std::process::ExitCode;

/// Pluggable codecs for the model updates of federated and distributed training.
#[derive(Parser)]
#[command(name = "gradcodec", version, about)]
struct Cli {
    #[command(flatten)]
    plugins: PluginArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where plugins are found (besides GRADCODEC_PLUGIN_PATH, the executable's
/// directory and the workspace build output).
#[derive(Args, Clone, Default)]
pub struct PluginArgs {
    /// Load this plugin library (repeatable; highest precedence).
    #[arg(long = "plugin", value_name = "FILE", global = true)]
    files: Vec<PathBuf>,
    /// Search this directory for libgradcodec_plugin_*.so (repeatable).
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    dirs: Vec<PathBuf>,
}

impl PluginArgs {
    /// Loads the registry.
    pub fn registry(&self) -> anyhow::Result<Registry> {
        let mut search = PluginSearch::from_env();
        search.files = self.files.clone();
        search.dirs = self.dirs.clone();
        Ok(Registry::discover(&search)?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// List the stages of every plugin found.
    Plugins(plugins::PluginsArgs),
    /// Validate pipeline specs against the loaded stages.
    Check(check::CheckArgs),
    /// Encode an update (.npy or .safetensors) into a message.
    Encode(codec::EncodeArgs),
    /// Decode a message back into an update (the message describes its pipeline).
    Decode(codec::DecodeArgs),
    /// Show what a message holds.
    Inspect(inspect::InspectArgs),
    /// Measure a pipeline on an input: bits per entry, error, speed.
    Bench(bench::BenchArgs),
    /// Speed and size of pipelines against memcpy and zstd -1/-3 on the same input.
    Perf(perf::PerfArgs),
    /// Write a synthetic GenNorm(beta, alpha) update.
    Synth(synth::SynthArgs),
    /// The rate-distortion limit (quadratic Gaussian CEO) of aggregating K workers' updates.
    Bound(bound::BoundArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Plugins(args) => plugins::run(&cli.plugins, args),
        Command::Check(args) => check::run(&cli.plugins, args),
        Command::Encode(args) => codec::encode(&cli.plugins, args),
        Command::Decode(args) => codec::decode(&cli.plugins, args),
        Command::Inspect(args) => inspect::run(&cli.plugins, args),
        Command::Bench(args) => bench::run(&cli.plugins, args),
        Command::Perf(args) => perf::run(&cli.plugins, args),
        Command::Synth(args) => synth::run(args),
        Command::Bound(args) => bound::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", terminal::safe(&format!("{error:#}")));
            ExitCode::from(1)
        }
    }
}
