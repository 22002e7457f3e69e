//! Sweeps: the same configuration (seed, data split, model) run once per
//! uplink pipeline, then one markdown comparison table and one plot with every
//! curve, under `runs/<sweep>/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gradcodec::Registry;
use serde::Serialize;

use crate::config::RunConfig;
use crate::metrics::{self, RoundRecord, Summary};
use crate::plot;
use crate::train::run::{run, RunOptions};

/// One entry of a sweep: a label and an uplink spec (None: uncompressed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepEntry {
    /// Label (the run's folder name).
    pub label: String,
    /// Uplink pipeline spec.
    pub spec: Option<PathBuf>,
}

impl SweepEntry {
    /// `none` is the uncompressed link; anything else a spec file, labelled by
    /// its file stem.
    pub fn parse(arg: &str) -> SweepEntry {
        if arg == "none" {
            return SweepEntry {
                label: "none".into(),
                spec: None,
            };
        }
        let path = PathBuf::from(arg);
        SweepEntry {
            label: path
                .file_stem()
                .map_or_else(|| arg.to_string(), |s| s.to_string_lossy().into_owned()),
            spec: Some(path),
        }
    }
}

/// The outcome of a sweep.
pub struct SweepResult {
    /// The sweep folder.
    pub dir: PathBuf,
    /// The comparison table (markdown).
    pub table: String,
    /// Each entry's summary, in order.
    pub summaries: Vec<Summary>,
}

/// Runs every entry with `base` (its name is the sweep's folder name), compares
/// them with the `baseline` entry (default: the first), and writes
/// `comparison.md`, `comparison.{png,svg}` and `sweep.json`.
pub fn sweep(
    base: &RunConfig,
    entries: &[SweepEntry],
    baseline: Option<&str>,
    registry: Option<&Registry>,
    opts: &RunOptions,
) -> anyhow::Result<SweepResult> {
    anyhow::ensure!(!entries.is_empty(), "a sweep needs at least one pipeline");
    base.validate()?;
    let mut labels = std::collections::BTreeSet::new();
    for e in entries {
        anyhow::ensure!(labels.insert(&e.label), "pipeline {} listed twice", e.label);
    }
    let baseline = baseline.unwrap_or(&entries[0].label).to_string();
    anyhow::ensure!(
        labels.contains(&baseline),
        "baseline {baseline} is not one of the sweep's pipelines"
    );
    let dir = opts.out_dir.join(&base.name);
    let mut sub_opts = opts.clone();
    sub_opts.out_dir = dir.clone();
    sub_opts.baseline = None;

    let mut runs: Vec<(String, Vec<RoundRecord>, Summary)> = Vec::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    for e in entries {
        let cfg = RunConfig {
            name: e.label.clone(),
            uplink: e.spec.clone(),
            ..base.clone()
        };
        if opts.progress {
            eprintln!("== sweep {}: {}", base.name, e.label);
        }
        // A run that fails is recorded and the sweep goes on with the others
        // (a diverged run is not a failure: its summary says where it stopped).
        let result = match run(&cfg, registry, &sub_opts) {
            Ok(result) => result,
            Err(error) => {
                let reason = crate::error_text(&error);
                eprintln!("sweep {}: pipeline {} failed: {reason}", base.name, e.label);
                failures.push((e.label.clone(), reason));
                continue;
            }
        };
        let Some(summary) = result.summary else {
            anyhow::bail!("sweep {}: run {} stopped early", base.name, e.label);
        };
        runs.push((e.label.clone(), result.records, summary));
    }

    let baseline_run = runs
        .iter()
        .position(|r| r.0 == baseline)
        .map(|bi| (runs[bi].1.clone(), runs[bi].2.clone()));
    for (label, records, summary) in runs.iter_mut() {
        if let Some((brec, bsum)) = &baseline_run {
            metrics::compare_with_baseline(summary, records, &baseline, brec, bsum);
        }
        std::fs::write(
            dir.join(label.as_str()).join("summary.json"),
            serde_json::to_string_pretty(summary)?,
        )?;
    }
    let mut table = table(&runs, base, &baseline);
    for (label, reason) in &failures {
        let _ = writeln!(table, "\n`{label}` failed: {reason}");
    }
    std::fs::write(dir.join("comparison.md"), &table).context("writing comparison.md")?;
    let series: Vec<plot::Series<'_>> = runs
        .iter()
        .map(|(l, r, _)| (l.as_str(), r.as_slice()))
        .collect();
    let title = format!(
        "{}: {} on {}, {} clients, {}",
        base.name,
        base.model,
        base.dataset.name(),
        base.clients,
        base.partition
    );
    plot::comparison_plot(&dir, "comparison", &title, &series, base.target_accuracy)?;
    let summaries: Vec<Summary> = runs.into_iter().map(|r| r.2).collect();
    std::fs::write(
        dir.join("sweep.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "config": base,
            "baseline": baseline,
            "entries": entries,
            "summaries": summaries,
            "failures": failures,
        }))?,
    )?;
    Ok(SweepResult {
        dir,
        table,
        summaries,
    })
}

fn mb(bits: f64) -> String {
    let v = bits / 8e6;
    if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The markdown comparison table.
fn table(runs: &[(String, Vec<RoundRecord>, Summary)], base: &RunConfig, baseline: &str) -> String {
    let pct = base.target_accuracy * 100.0;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Sweep `{}`: {} on {} ({} train examples{}), {}{}, K = {} clients ({}), {} rounds, \
         {} local epoch(s), batch {}, SGD lr {} momentum {}, seed {}. Baseline: `{baseline}`. \
         Volumes are real message sizes (MB = 10^6 bytes), all clients.\n",
        base.name,
        base.model,
        base.dataset.name(),
        base.train_limit.map_or("all".into(), |n| n.to_string()),
        base.test_limit
            .map_or(String::new(), |n| format!(", {n} test")),
        match base.mode {
            crate::config::Mode::Fedavg => "fedavg",
            crate::config::Mode::Dsgd => "dsgd",
        },
        if base.participation < 1.0 {
            format!(" with participation {}", base.participation)
        } else {
            String::new()
        },
        base.clients,
        base.partition,
        base.rounds,
        base.local_epochs,
        base.batch_size,
        base.lr,
        base.momentum,
        base.seed,
    );
    let _ = writeln!(
        t,
        "| pipeline | final acc | acc, mean of last {tail} | acc loss vs {baseline} (final; last {tail}) | \
         uplink total MB | bits/entry | rounds to {pct:.0}% | uplink MB to {pct:.0}% | \
         uplink to {pct:.0}% vs {baseline} | PBA (acc/Mbit) | rel. MSE | codec s |",
        tail = metrics::TAIL
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (label, _, s) in runs {
        let label = match &s.diverged {
            Some(d) => format!("{label} (diverged at round {}: {})", d.round, d.reason),
            None => label.clone(),
        };
        let _ = writeln!(
            t,
            "| {label} | {:.4} | {:.4} | {}; {} | {} | {:.3} | {} | {} | {} | {:.3e} | {:.2e} | {:.1} |",
            s.final_accuracy,
            s.tail_accuracy,
            s.accuracy_loss_vs_baseline
                .map_or("-".into(), |v| format!("{:+.4}", v)),
            s.tail_accuracy_loss_vs_baseline
                .map_or("-".into(), |v| format!("{:+.4}", v)),
            mb(s.total_uplink_bits),
            s.mean_uplink_bits_per_entry,
            s.rounds_to_target.map_or("not reached".into(), |r| r.to_string()),
            s.uplink_bits_to_target.map_or("-".into(), mb),
            s.uplink_bits_to_target_vs_baseline
                .map_or("-".into(), |r| format!("{:.2}% ({:.1}% saved)", r * 100.0, (1.0 - r) * 100.0)),
            s.pba_per_megabit,
            s.mean_rel_mse,
            s.encode_s + s.decode_s,
        );
    }
    t
}

/// The comparison table of a finished sweep folder (for `sweep --report`).
pub fn read_table(dir: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(dir.join("comparison.md"))
        .with_context(|| format!("no comparison.md in {}", dir.display()))
}
