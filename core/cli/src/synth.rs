//! `gradcodec synth`: synthetic GenNorm(β, α) updates for trying codecs.
//!
//! Samples `x = s·α·G^(1/β)` with `G ~ Gamma(1/β, 1)` and a random sign `s`,
//! which is exactly generalized-normal distributed; real DNN gradients
//! typically fit β < 1. Seeded: the same arguments give the same file.

use clap::Args;
use gradcodec::{NamedTensor, Update};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// Shape, comma separated (e.g. 1000,1000).
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    shape: Vec<usize>,
    /// GenNorm shape β (> 0; 2 is Normal, 1 is Laplace).
    #[arg(long, default_value_t = 0.8)]
    beta: f64,
    /// GenNorm scale α (> 0).
    #[arg(long, default_value_t = 1e-3)]
    alpha: f64,
    /// Fraction of exact zeros (dead ReLUs), in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    zeros: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file (.npy or .safetensors).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: &SynthArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.beta > 0.0 && args.beta.is_finite(),
        "--beta must be positive"
    );
    anyhow::ensure!(
        args.alpha > 0.0 && args.alpha.is_finite(),
        "--alpha must be positive"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&args.zeros),
        "--zeros must be in [0, 1)"
    );
    let entries: usize = args.shape.iter().product();
    anyhow::ensure!(
        entries > 0 && entries <= 1 << 30,
        "--shape must give 1..=2^30 entries"
    );
    let gamma = Gamma::new(1.0 / args.beta, 1.0)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let values: Vec<f32> = (0..entries)
        .map(|_| {
            if args.zeros > 0.0 && rng.random::<f64>() < args.zeros {
                return 0.0;
            }
            let magnitude = args.alpha * gamma.sample(&mut rng).powf(1.0 / args.beta);
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            (sign * magnitude) as f32
        })
        .collect();
    let name = args
        .output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("synthetic")
        .to_string();
    Update::new(vec![NamedTensor::from_vec(name, &args.shape, values)?]).write(&args.output)?;
    eprintln!(
        "wrote {entries} GenNorm(beta={}, alpha={}) entries to {}",
        args.beta,
        args.alpha,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
