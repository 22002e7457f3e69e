//! The figures of a run as ratios to the same run's baselines: after the
//! benchmarks, each subject's median throughput next to those of memcpy and
//! zstd measured in the same group, on the same input, read back from
//! criterion's `estimates.json` files (only those written by this run).

use std::path::PathBuf;
use std::time::SystemTime;

/// One subject of one group and the baselines it is compared with.
struct Row {
    group: String,
    entries: u64,
    subject: String,
    baselines: Vec<String>,
}

/// The rows of a run, printed at its end.
pub struct Summary {
    started: SystemTime,
    rows: Vec<Row>,
}

impl Default for Summary {
    /// An empty summary of a run starting now.
    fn default() -> Self {
        Self {
            started: SystemTime::now(),
            rows: Vec::new(),
        }
    }
}

impl Summary {
    /// Adds `subject` of `group` (which processes `entries` per iteration),
    /// compared with `baselines` of the same group.
    pub fn add(&mut self, group: &str, entries: u64, subject: &str, baselines: Vec<String>) {
        self.rows.push(Row {
            group: group.to_string(),
            entries,
            subject: subject.to_string(),
            baselines,
        });
    }

    /// Prints one line per row measured in this run (nothing in test mode,
    /// where criterion measures nothing).
    pub fn print(&self) {
        let dir = output_dir();
        let rate = |row: &Row, function: &str| {
            median_ns(&dir, &row.group, function, self.started)
                .map(|ns| row.entries as f64 / ns * 1e3)
        };
        let mut header = false;
        for row in &self.rows {
            let Some(subject) = rate(row, &row.subject) else {
                continue;
            };
            if !header {
                println!("\nM entries/s (median), and as a multiple of each baseline's in the same group:");
                header = true;
            }
            let mut line = format!("{:<46} {:<10} {subject:>9.1}", row.group, row.subject);
            for baseline in &row.baselines {
                if let Some(reference) = rate(row, baseline) {
                    line.push_str(&format!(
                        " | {:>7.3}x {baseline} ({reference:.1})",
                        subject / reference
                    ));
                }
            }
            println!("{line}");
        }
    }
}

/// Where criterion writes its results (the same rule criterion follows).
fn output_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let build = gradcodec_snapshots::build_dir();
    build.parent().unwrap_or(&build).join("criterion")
}

/// A benchmark id as criterion names its directory.
fn directory_name(id: &str) -> String {
    let mut safe: String = id
        .chars()
        .map(|c| if "?\"/\\*<>:|^".contains(c) { '_' } else { c })
        .collect();
    while safe.len() > 64 {
        safe.pop();
    }
    safe
}

/// Median nanoseconds per iteration of `group`/`function`, if this run wrote it.
fn median_ns(dir: &std::path::Path, group: &str, function: &str, since: SystemTime) -> Option<f64> {
    let path = dir
        .join(directory_name(group))
        .join(directory_name(function))
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .filter(|ns| *ns > 0.0)
}
