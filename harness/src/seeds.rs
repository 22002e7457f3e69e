//! Multi-seed comparisons: the same pipelines trained with several seeds (each
//! seed a different data split and initialisation), one `train` run per
//! (pipeline, seed) in a folder `<label>@seed<s>`, summarized as the mean and
//! spread over the seeds of final accuracy, uplink bits to the target accuracy
//! and the saving against a baseline, in `comparison.md`, with one plot of every
//! pipeline's mean curve and its min-max band (accuracy against cumulative
//! uplink volume) in `comparison.{png,svg}`. A run that failed or diverged is
//! reported as such and left out of the statistics.
//!
//! ```text
//! gradcodec-harness aggregate --dir runs/demo --baseline f32 --target-accuracy 0.8
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::metrics::{self, RoundRecord, Summary};
use crate::plot;

/// One (pipeline, seed) run folder.
#[derive(Debug, Clone)]
pub struct SeedRun {
    /// The pipeline's label (folder name before `@seed`).
    pub label: String,
    /// The seed.
    pub seed: u64,
    /// Its records (empty when it failed).
    pub records: Vec<RoundRecord>,
    /// Its summary (None when it failed before finishing).
    pub summary: Option<Summary>,
    /// Why it failed: the last line of its `train.log`, if any.
    pub failure: Option<String>,
}

/// Mean, sample standard deviation, min and max.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Of `values` (None when empty).
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Some(Spread {
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One pipeline over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStats {
    /// Label.
    pub label: String,
    /// Seeds run.
    pub seeds: Vec<u64>,
    /// Runs that finished every round.
    pub finished: usize,
    /// Runs that diverged (round and reason).
    pub diverged: Vec<String>,
    /// Runs that failed (reason).
    pub failed: Vec<String>,
    /// Final accuracy over the finished runs.
    pub final_accuracy: Option<Spread>,
    /// Total uplink MB over the finished runs.
    pub uplink_mb: Option<Spread>,
    /// Uplink MB to the target over the finished runs that reached it.
    pub mb_to_target: Option<Spread>,
    /// Finished runs that reached the target.
    pub reached_target: usize,
    /// 1 - mean MB to target / the baseline's mean MB to target.
    pub saving_vs_baseline: Option<f64>,
}

/// Every `<label>@seed<s>` folder of `dir`, sorted by label then seed.
pub fn collect(dir: &Path) -> anyhow::Result<Vec<SeedRun>> {
    let mut runs = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading the runs in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((label, seed)) = name.split_once("@seed") else {
            continue;
        };
        let Ok(seed) = seed.parse::<u64>() else {
            continue;
        };
        runs.push(read_seed_run(&path, label, seed));
    }
    runs.sort_by(|a, b| (&a.label, a.seed).cmp(&(&b.label, b.seed)));
    anyhow::ensure!(
        !runs.is_empty(),
        "{} holds no <pipeline>@seed<N> run folder",
        dir.display()
    );
    Ok(runs)
}

fn read_seed_run(path: &Path, label: &str, seed: u64) -> SeedRun {
    let summary: Option<Summary> = std::fs::read_to_string(path.join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let records = metrics::read_csv(&path.join("metrics.csv")).unwrap_or_default();
    let failure = summary
        .is_none()
        .then(|| last_log_line(&path.join("train.log")));
    SeedRun {
        label: label.to_string(),
        seed,
        records,
        summary,
        failure,
    }
}

fn last_log_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("no summary.json and no {}", log.display()))
}

/// The statistics of each pipeline, in label order, against `baseline`.
pub fn stats(runs: &[SeedRun], baseline: &str) -> Vec<PipelineStats> {
    let mut by_label: BTreeMap<&str, Vec<&SeedRun>> = BTreeMap::new();
    for run in runs {
        by_label.entry(&run.label).or_default().push(run);
    }
    let mut all: Vec<PipelineStats> = by_label
        .into_iter()
        .map(|(label, runs)| pipeline_stats(label, &runs))
        .collect();
    // The baseline first, the others in label order.
    all.sort_by_key(|s| s.label != baseline);
    let base_mb = all
        .iter()
        .find(|s| s.label == baseline)
        .and_then(|s| s.mb_to_target.map(|m| m.mean));
    for s in &mut all {
        s.saving_vs_baseline = match (s.mb_to_target, base_mb) {
            (Some(m), Some(b)) if b > 0.0 => Some(1.0 - m.mean / b),
            _ => None,
        };
    }
    all
}

fn pipeline_stats(label: &str, runs: &[&SeedRun]) -> PipelineStats {
    let mut stats = PipelineStats {
        label: label.to_string(),
        seeds: runs.iter().map(|r| r.seed).collect(),
        finished: 0,
        diverged: Vec::new(),
        failed: Vec::new(),
        final_accuracy: None,
        uplink_mb: None,
        mb_to_target: None,
        reached_target: 0,
        saving_vs_baseline: None,
    };
    let (mut accuracy, mut volume, mut to_target) = (Vec::new(), Vec::new(), Vec::new());
    for run in runs {
        match (&run.summary, &run.failure) {
            (Some(summary), _) => match &summary.diverged {
                Some(d) => stats.diverged.push(format!(
                    "seed {}: round {}, {}",
                    run.seed, d.round, d.reason
                )),
                None => {
                    stats.finished += 1;
                    accuracy.push(summary.final_accuracy);
                    volume.push(summary.total_uplink_bits / 8e6);
                    if let Some(bits) = summary.uplink_bits_to_target {
                        to_target.push(bits / 8e6);
                    }
                }
            },
            (None, failure) => stats.failed.push(format!(
                "seed {}: {}",
                run.seed,
                failure.as_deref().unwrap_or("no summary")
            )),
        }
    }
    stats.reached_target = to_target.len();
    stats.final_accuracy = Spread::of(&accuracy);
    stats.uplink_mb = Spread::of(&volume);
    stats.mb_to_target = Spread::of(&to_target);
    stats
}

fn mean_std(spread: Option<Spread>, digits: usize) -> String {
    spread.map_or("-".into(), |s| {
        format!(
            "{:.d$} ± {:.d$} ({:.d$}–{:.d$})",
            s.mean,
            s.std,
            s.min,
            s.max,
            d = digits
        )
    })
}

/// The markdown table (one row per pipeline), with `about` as its first line.
pub fn table(stats: &[PipelineStats], baseline: &str, target: f64, about: &str) -> String {
    let pct = target * 100.0;
    let mut t = String::new();
    let _ = writeln!(t, "{about}\n");
    let _ = writeln!(
        t,
        "Mean ± standard deviation (min–max) over the seeds that finished. Volumes are real \
         message sizes, all clients (MB = 10^6 bytes). Savings: 1 - mean uplink MB to {pct:.0}% \
         / `{baseline}`'s.\n"
    );
    let _ = writeln!(
        t,
        "| pipeline | seeds finished | final accuracy | uplink MB | reached {pct:.0}% | uplink MB to {pct:.0}% | saved vs {baseline} |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|");
    for s in stats {
        let _ = writeln!(
            t,
            "| {} | {}/{} | {} | {} | {}/{} | {} | {} |",
            s.label,
            s.finished,
            s.seeds.len(),
            mean_std(s.final_accuracy, 4),
            mean_std(s.uplink_mb, 2),
            s.reached_target,
            s.finished,
            mean_std(s.mb_to_target, 2),
            s.saving_vs_baseline
                .map_or("-".into(), |v| format!("{:.1}%", v * 100.0)),
        );
    }
    for s in stats {
        for d in &s.diverged {
            let _ = writeln!(t, "\n`{}` diverged ({d}).", s.label);
        }
        for f in &s.failed {
            let _ = writeln!(t, "\n`{}` failed ({f}).", s.label);
        }
    }
    t
}

/// Per pipeline, per round present in every finished seed: the mean
/// cumulative uplink MB, the mean accuracy and the min and max accuracy.
pub fn bands(runs: &[SeedRun]) -> Vec<plot::Band> {
    let mut by_label: BTreeMap<&str, Vec<&SeedRun>> = BTreeMap::new();
    for run in runs
        .iter()
        .filter(|r| r.summary.as_ref().is_some_and(|s| s.diverged.is_none()))
    {
        by_label.entry(&run.label).or_default().push(run);
    }
    by_label
        .into_iter()
        .map(|(label, runs)| {
            let rounds = runs.iter().map(|r| r.records.len()).min().unwrap_or(0);
            let points = (0..rounds)
                .filter_map(|i| {
                    let mb: Vec<f64> = runs
                        .iter()
                        .map(|r| r.records[i].cum_uplink_bits / 8e6)
                        .collect();
                    let acc: Vec<f64> = runs.iter().map(|r| r.records[i].test_accuracy).collect();
                    let (mb, acc) = (Spread::of(&mb)?, Spread::of(&acc)?);
                    (mb.mean > 0.0).then_some(plot::BandPoint {
                        x: mb.mean,
                        mean: acc.mean,
                        low: acc.min,
                        high: acc.max,
                    })
                })
                .collect();
            plot::Band {
                label: label.to_string(),
                points,
            }
        })
        .collect()
}

/// Collects `dir`'s runs and writes `comparison.md`, `comparison.{png,svg}`
/// and `seeds.json` there; returns the table and the paths written.
pub fn report(
    dir: &Path,
    baseline: &str,
    target: f64,
    about: &str,
) -> anyhow::Result<(String, Vec<PathBuf>)> {
    let runs = collect(dir)?;
    let stats = stats(&runs, baseline);
    let table = table(&stats, baseline, target, about);
    let md = dir.join("comparison.md");
    std::fs::write(&md, &table).context("writing comparison.md")?;
    let seeds: std::collections::BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let title = format!(
        "{} pipelines, {} seeds: mean accuracy and min-max band",
        stats.len(),
        seeds.len()
    );
    plot::band_plot(dir, "comparison", &title, &bands(&runs), target)?;
    let json = dir.join("seeds.json");
    std::fs::write(&json, serde_json::to_string_pretty(&stats)?)?;
    Ok((
        table,
        vec![
            md,
            dir.join("comparison.png"),
            dir.join("comparison.svg"),
            json,
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_mean_sample_std_and_range() {
        let s = Spread::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[5.0]).unwrap().std, 0.0);
        assert!(Spread::of(&[]).is_none());
    }
}
