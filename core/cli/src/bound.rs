//! `gradcodec bound`: the rate-distortion limit of aggregating K workers'
//! updates (the quadratic Gaussian CEO problem, Zhang, Tao, Wang, Xu 2022;
//! ALGORITHMS.md §4), estimated per layer from the updates of one step.
//!
//! Per layer: σ_X² from the mean update across workers, σ_N² from the workers'
//! spread around it; the distortion is split across layers by the Lagrangian
//! allocation (reverse water-filling for the Gaussian case); the sum rate is
//! reported in bits per entry and in total bits.

use anyhow::{bail, Context};
use clap::Args;
use gradcodec::Update;
use gradcodec_bound::estimate::{estimate_layers, LayerEstimate};
use gradcodec_bound::report::{BoundCurve, BoundReport, RateModel};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `bound`.
#[derive(Args)]
pub struct BoundArgs {
    /// One worker's update for the step (repeat: at least two).
    #[arg(long = "worker", value_name = "FILE", required = true)]
    workers: Vec<PathBuf>,
    /// Mean squared error per entry the server may accept (absolute).
    #[arg(long, conflicts_with = "relative_distortion")]
    distortion: Option<f64>,
    /// The same, as a fraction of the entry-weighted mean σ_X² (0 < r <= 1).
    #[arg(long)]
    relative_distortion: Option<f64>,
    /// Without a distortion: number of points of the curve over D.
    #[arg(long, default_value_t = 8)]
    points: usize,
    /// The unbiased averaging estimator instead of the optimal (CEO) one.
    #[arg(long)]
    averaging: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn read_workers(paths: &[PathBuf]) -> anyhow::Result<Vec<Update>> {
    if paths.len() < 2 {
        bail!(
            "the CEO limit needs the updates of at least 2 workers (got {})",
            paths.len()
        );
    }
    let updates: Vec<Update> = paths.iter().map(Update::read).collect::<Result<_, _>>()?;
    let first = &updates[0];
    for (path, update) in paths.iter().zip(&updates).skip(1) {
        if update.tensors.len() != first.tensors.len() {
            bail!(
                "{} has {} tensors, {} has {}",
                path.display(),
                update.tensors.len(),
                paths[0].display(),
                first.tensors.len()
            );
        }
        for (a, b) in first.tensors.iter().zip(&update.tensors) {
            if a.name != b.name || a.data.shape() != b.data.shape() {
                bail!(
                    "{}: tensor `{}` {:?} does not match `{}` {:?} of {}",
                    path.display(),
                    b.name,
                    b.data.shape(),
                    a.name,
                    a.data.shape(),
                    paths[0].display()
                );
            }
        }
    }
    Ok(updates)
}

fn estimates(updates: &[Update]) -> anyhow::Result<Vec<LayerEstimate>> {
    let layers: Vec<(String, Vec<Vec<f32>>)> = (0..updates[0].tensors.len())
        .map(|index| {
            let name = updates[0].tensors[index].name.clone();
            let workers = updates
                .iter()
                .map(|u| u.tensors[index].data.iter().copied().collect())
                .collect();
            (name, workers)
        })
        .collect();
    Ok(estimate_layers(layers)?)
}

pub fn run(args: &BoundArgs) -> anyhow::Result<ExitCode> {
    let updates = read_workers(&args.workers)?;
    let estimates = estimates(&updates).context("estimating sigma_X^2 and sigma_N^2")?;
    let model = if args.averaging {
        RateModel::Averaging
    } else {
        RateModel::Ceo
    };
    let entries: f64 = estimates.iter().map(|e| e.entries as f64).sum();
    let mean_sigma_x2 = estimates
        .iter()
        .map(|e| e.entries as f64 * e.sigma_x2)
        .sum::<f64>()
        / entries;
    let distortion = match (args.distortion, args.relative_distortion) {
        (Some(d), _) => Some(d),
        (None, Some(r)) => {
            if !(r > 0.0 && r <= 1.0) {
                bail!("--relative-distortion must be in (0, 1], got {r}");
            }
            Some(r * mean_sigma_x2)
        }
        (None, None) => None,
    };
    match distortion {
        Some(d) => {
            let report = BoundReport::new(&estimates, model, d)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} workers, {} entries, model {:?}, D = {d:.4e} per entry (mean sigma_X^2 = {mean_sigma_x2:.4e})",
                updates.len(),
                report.total_entries,
                report.model
            );
            println!(
                "{:<28} {:>9} {:>11} {:>11} {:>11} {:>11}",
                "layer", "entries", "sigma_X^2", "sigma_N^2", "D", "bits/entry"
            );
            for layer in &report.layers {
                println!(
                    "{:<28} {:>9} {:>11.3e} {:>11.3e} {:>11.3e} {:>11.4}",
                    layer.name,
                    layer.entries,
                    layer.sigma_x2,
                    layer.sigma_n2,
                    layer.distortion,
                    layer.bits_per_entry
                );
            }
            println!(
                "sum rate: {:.1} bits in total, {:.4} bits per entry ({:.4} per worker and entry)",
                report.total_sum_rate_bits, report.bits_per_entry, report.bits_per_entry_per_worker
            );
        }
        None => {
            let distortions = BoundCurve::default_distortions(&estimates, model, args.points)?;
            let curve = BoundCurve::new(&estimates, model, &distortions)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&curve)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>12} {:>12} {:>14} {:>16}",
                "D", "D/sigma_X^2", "bits/entry", "total bits"
            );
            for point in &curve.points {
                println!(
                    "{:>12.4e} {:>12.4} {:>14.4} {:>16.1}",
                    point.distortion,
                    point.distortion / mean_sigma_x2,
                    point.bits_per_entry,
                    point.total_sum_rate_bits
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
