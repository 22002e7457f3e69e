//! What a run records: one [`RoundRecord`] per round (`metrics.csv`) and a
//! [`Summary`] per run (`summary.json`): rounds and bits to reach the target
//! accuracy, per-bit accuracy, the accuracy loss against a baseline, and the
//! real uplink bits against the CEO limit ([`crate::ceo`]).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ceo::{CeoRound, CeoSummary};

/// Measurements of one round (round 0 is the initial model, before training).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// Round number (0 = initial model).
    pub round: usize,
    /// Test accuracy of the global model after the round.
    pub test_accuracy: f64,
    /// Mean test cross-entropy.
    pub test_loss: f64,
    /// Mean training loss over the round's local steps.
    pub train_loss: f64,
    /// Learners that took part.
    pub participants: usize,
    /// Uplink messages sent this round.
    pub uplink_messages: u64,
    /// Uplink bytes: the real message sizes, all learners.
    pub uplink_bytes: u64,
    /// Uplink bytes of uncompressed buffers (batch-norm statistics), all learners.
    pub uplink_buffer_bytes: u64,
    /// Downlink bytes (messages and buffers), all learners.
    pub downlink_bytes: u64,
    /// Cumulative uplink bits since round 0 (messages and buffers).
    pub cum_uplink_bits: f64,
    /// Cumulative downlink bits since round 0.
    pub cum_downlink_bits: f64,
    /// Uplink bits per entry: `8 × message bytes / entries`.
    pub uplink_bits_per_entry: f64,
    /// Downlink bits per entry.
    pub downlink_bits_per_entry: f64,
    /// Relative MSE of the uplink update (mean over messages).
    pub rel_mse: f64,
    /// Relative M-weighted distortion of the uplink update (mean over messages).
    pub weighted_distortion: f64,
    /// Relative MSE of the downlink model (mean over messages; 0 if uncompressed).
    pub downlink_rel_mse: f64,
    /// Encoding time, all streams, milliseconds.
    pub encode_ms: f64,
    /// Decoding time, all streams, milliseconds.
    pub decode_ms: f64,
    /// Training (forward/backward/step) time, seconds.
    pub train_s: f64,
    /// Wall time of the whole round, seconds.
    pub wall_s: f64,
    /// Mem-AOP-GD: share of the linear layers' weight-gradient multiply-adds
    /// skipped this round (0 when off).
    pub aop_saved_fraction: f64,
    /// The CEO limit at the round's achieved aggregate distortion.
    #[serde(default)]
    pub ceo: CeoRound,
}

impl RoundRecord {
    /// Column names of `metrics.csv`.
    ///
    /// The last six: `uplink_message_bits` (`8 × uplink_bytes`) and the
    /// [`CeoRound`] fields (distortion and variances in exponent notation); an
    /// empty field is `None`.
    pub const COLUMNS: [&'static str; 27] = [
        "round",
        "test_accuracy",
        "test_loss",
        "train_loss",
        "participants",
        "uplink_messages",
        "uplink_bytes",
        "uplink_buffer_bytes",
        "downlink_bytes",
        "cum_uplink_bits",
        "cum_downlink_bits",
        "uplink_bits_per_entry",
        "downlink_bits_per_entry",
        "rel_mse",
        "weighted_distortion",
        "downlink_rel_mse",
        "encode_ms",
        "decode_ms",
        "train_s",
        "wall_s",
        "aop_saved_fraction",
        "uplink_message_bits",
        "ceo_bits",
        "averaging_bits",
        "achieved_distortion",
        "sigma_x2",
        "sigma_n2",
    ];

    fn csv_row(&self) -> String {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        let opt_e = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{}",
            self.round,
            self.test_accuracy,
            self.test_loss,
            self.train_loss,
            self.participants,
            self.uplink_messages,
            self.uplink_bytes,
            self.uplink_buffer_bytes,
            self.downlink_bytes,
            self.cum_uplink_bits,
            self.cum_downlink_bits,
            self.uplink_bits_per_entry,
            self.downlink_bits_per_entry,
            self.rel_mse,
            self.weighted_distortion,
            self.downlink_rel_mse,
            self.encode_ms,
            self.decode_ms,
            self.train_s,
            self.wall_s,
            self.aop_saved_fraction,
            8 * self.uplink_bytes,
            opt(self.ceo.ceo_bits),
            opt(self.ceo.averaging_bits),
            opt_e(self.ceo.achieved_distortion),
            opt_e(self.ceo.sigma_x2),
            opt_e(self.ceo.sigma_n2),
        )
    }
}

/// Writes `metrics.csv`.
pub fn write_csv(path: &Path, records: &[RoundRecord]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{}", RoundRecord::COLUMNS.join(","))?;
    for r in records {
        writeln!(out, "{}", r.csv_row())?;
    }
    out.flush()
}

/// Columns of a `metrics.csv` written before the CEO columns (still read, with
/// empty [`CeoRound`]s).
const COLUMNS_BEFORE_CEO: usize = 21;

/// Reads a `metrics.csv` written by [`write_csv`] (or by a harness without the
/// CEO columns).
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<RoundRecord>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    anyhow::ensure!(
        header == RoundRecord::COLUMNS || header == RoundRecord::COLUMNS[..COLUMNS_BEFORE_CEO],
        "{}: not a metrics.csv of this harness version (columns differ)",
        path.display()
    );
    lines
        .enumerate()
        .map(|(i, line)| {
            let at = |what: &str| anyhow::anyhow!("{} line {}: {what}", path.display(), i + 2);
            let f: Vec<Option<f64>> = line
                .split(',')
                .map(|v| (!v.is_empty()).then(|| v.parse::<f64>()).transpose())
                .collect::<Result<_, _>>()
                .map_err(|e| at(&e.to_string()))?;
            if f.len() != header.len() {
                return Err(at(&format!(
                    "{} fields, expected {}",
                    f.len(),
                    header.len()
                )));
            }
            let g = |j: usize| f[j].ok_or_else(|| at(&format!("{} is empty", header[j])));
            Ok(RoundRecord {
                round: g(0)? as usize,
                test_accuracy: g(1)?,
                test_loss: g(2)?,
                train_loss: g(3)?,
                participants: g(4)? as usize,
                uplink_messages: g(5)? as u64,
                uplink_bytes: g(6)? as u64,
                uplink_buffer_bytes: g(7)? as u64,
                downlink_bytes: g(8)? as u64,
                cum_uplink_bits: g(9)?,
                cum_downlink_bits: g(10)?,
                uplink_bits_per_entry: g(11)?,
                downlink_bits_per_entry: g(12)?,
                rel_mse: g(13)?,
                weighted_distortion: g(14)?,
                downlink_rel_mse: g(15)?,
                encode_ms: g(16)?,
                decode_ms: g(17)?,
                train_s: g(18)?,
                wall_s: g(19)?,
                aop_saved_fraction: g(20)?,
                // f[21], uplink_message_bits, is 8 × uplink_bytes.
                ceo: CeoRound {
                    ceo_bits: f.get(22).copied().flatten(),
                    averaging_bits: f.get(23).copied().flatten(),
                    achieved_distortion: f.get(24).copied().flatten(),
                    sigma_x2: f.get(25).copied().flatten(),
                    sigma_n2: f.get(26).copied().flatten(),
                    skip_reason: None,
                },
            })
        })
        .collect()
}

/// Per-run results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Run name.
    pub name: String,
    /// Uplink pipeline name (`none` when uncompressed).
    pub uplink_pipeline: String,
    /// Downlink pipeline name (`none` when uncompressed).
    pub downlink_pipeline: String,
    /// Whether every uplink message decoded exactly (lossless pipeline).
    pub uplink_lossless: bool,
    /// Rounds run.
    pub rounds: usize,
    /// Trainable parameters (entries per update).
    pub parameters: usize,
    /// Accuracy of the initial model, Acc(0).
    pub initial_accuracy: f64,
    /// Accuracy after the last round.
    pub final_accuracy: f64,
    /// Best accuracy over the rounds.
    pub best_accuracy: f64,
    /// Mean accuracy of the last 5 rounds (fewer when the run is shorter): less
    /// noisy than the last round's when non-IID training oscillates.
    pub tail_accuracy: f64,
    /// Target accuracy.
    pub target_accuracy: f64,
    /// First round whose accuracy reaches the target.
    pub rounds_to_target: Option<usize>,
    /// Cumulative uplink bits when the target was first reached.
    pub uplink_bits_to_target: Option<f64>,
    /// Cumulative downlink bits when the target was first reached.
    pub downlink_bits_to_target: Option<f64>,
    /// Total uplink bits (messages and buffers).
    pub total_uplink_bits: f64,
    /// Total downlink bits.
    pub total_downlink_bits: f64,
    /// Mean uplink bits per entry.
    pub mean_uplink_bits_per_entry: f64,
    /// Uplink compression ratio against 32 bits per entry.
    pub uplink_compression: f64,
    /// Per-bit accuracy `max_t (Acc(t) - Acc(0)) / B(t)`, accuracy per megabit.
    pub pba_per_megabit: f64,
    /// The round where the PBA maximum is reached.
    pub pba_round: usize,
    /// Mean relative MSE of the uplink updates.
    pub mean_rel_mse: f64,
    /// Mean M-weighted distortion of the uplink updates.
    pub mean_weighted_distortion: f64,
    /// Baseline run the next two fields compare against.
    pub baseline: Option<String>,
    /// Baseline accuracy minus this run's accuracy at this run's last round.
    pub accuracy_loss_vs_baseline: Option<f64>,
    /// The same over the mean of the last 5 rounds (equal rounds in both runs).
    pub tail_accuracy_loss_vs_baseline: Option<f64>,
    /// Uplink bits to target relative to the baseline's (1 - ratio = saving).
    pub uplink_bits_to_target_vs_baseline: Option<f64>,
    /// Mem-AOP-GD: share of the weight-gradient multiply-adds skipped.
    pub aop_saved_fraction: f64,
    /// Total encode time, seconds.
    pub encode_s: f64,
    /// Total decode time, seconds.
    pub decode_s: f64,
    /// Total wall time, seconds.
    pub wall_s: f64,
    /// Real uplink message bits against the CEO limit, per round and in total.
    #[serde(default)]
    pub ceo: CeoSummary,
    /// Set when training diverged: the run stopped at that round, and the
    /// other fields describe the rounds before it.
    #[serde(default)]
    pub diverged: Option<Divergence>,
}

/// Where and how a run diverged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The round that produced the non-finite value.
    pub round: usize,
    /// What was not finite (the loss, or an update the codec refused).
    pub reason: String,
}

/// Rounds averaged in [`Summary::tail_accuracy`].
pub const TAIL: usize = 5;

/// Computes the summary of a run's records (baseline fields left empty).
pub fn summarize(name: &str, records: &[RoundRecord], target: f64, parameters: usize) -> Summary {
    let first = records.first().cloned().unwrap_or_default();
    let last = records.last().cloned().unwrap_or_default();
    let acc0 = first.test_accuracy;
    let reached = records.iter().find(|r| r.test_accuracy >= target);
    let (mut pba, mut pba_round) = (0f64, 0usize);
    for r in records.iter().filter(|r| r.cum_uplink_bits > 0.0) {
        let v = (r.test_accuracy - acc0) / (r.cum_uplink_bits / 1e6);
        if v > pba {
            pba = v;
            pba_round = r.round;
        }
    }
    let trained: Vec<&RoundRecord> = records.iter().filter(|r| r.round > 0).collect();
    let tail = &trained[trained.len().saturating_sub(TAIL)..];
    let tail_accuracy = if tail.is_empty() {
        acc0
    } else {
        tail.iter().map(|r| r.test_accuracy).sum::<f64>() / tail.len() as f64
    };
    let mean = |f: &dyn Fn(&RoundRecord) -> f64| {
        if trained.is_empty() {
            0.0
        } else {
            trained.iter().map(|r| f(r)).sum::<f64>() / trained.len() as f64
        }
    };
    let messages: u64 = trained.iter().map(|r| r.uplink_messages).sum();
    let message_bytes: u64 = trained.iter().map(|r| r.uplink_bytes).sum();
    let bpe = if messages == 0 || parameters == 0 {
        0.0
    } else {
        8.0 * message_bytes as f64 / (messages as f64 * parameters as f64)
    };
    Summary {
        name: name.to_string(),
        rounds: last.round,
        parameters,
        initial_accuracy: acc0,
        final_accuracy: last.test_accuracy,
        best_accuracy: records.iter().map(|r| r.test_accuracy).fold(0.0, f64::max),
        tail_accuracy,
        target_accuracy: target,
        rounds_to_target: reached.map(|r| r.round),
        uplink_bits_to_target: reached.map(|r| r.cum_uplink_bits),
        downlink_bits_to_target: reached.map(|r| r.cum_downlink_bits),
        total_uplink_bits: last.cum_uplink_bits,
        total_downlink_bits: last.cum_downlink_bits,
        mean_uplink_bits_per_entry: bpe,
        uplink_compression: if bpe > 0.0 { 32.0 / bpe } else { 0.0 },
        pba_per_megabit: pba,
        pba_round,
        mean_rel_mse: mean(&|r| r.rel_mse),
        mean_weighted_distortion: mean(&|r| r.weighted_distortion),
        aop_saved_fraction: mean(&|r| r.aop_saved_fraction),
        encode_s: trained.iter().map(|r| r.encode_ms).sum::<f64>() / 1e3,
        decode_s: trained.iter().map(|r| r.decode_ms).sum::<f64>() / 1e3,
        wall_s: trained.iter().map(|r| r.wall_s).sum(),
        ceo: CeoSummary::from_records(records),
        ..Default::default()
    }
}

/// Fills the baseline comparison of `summary` from the baseline's records.
pub fn compare_with_baseline(
    summary: &mut Summary,
    records: &[RoundRecord],
    baseline_name: &str,
    baseline: &[RoundRecord],
    baseline_summary: &Summary,
) {
    summary.baseline = Some(baseline_name.to_string());
    let last = records.last().map(|r| r.round).unwrap_or(0);
    let at = |rs: &[RoundRecord]| rs.iter().find(|r| r.round == last).map(|r| r.test_accuracy);
    if let (Some(b), Some(a)) = (at(baseline), at(records)) {
        summary.accuracy_loss_vs_baseline = Some(b - a);
    }
    // Mean over the same last rounds in both runs.
    let first = last.saturating_sub(TAIL - 1).max(1);
    let mean = |rs: &[RoundRecord]| {
        let v: Vec<f64> = rs
            .iter()
            .filter(|r| r.round >= first && r.round <= last)
            .map(|r| r.test_accuracy)
            .collect();
        (v.len() == last + 1 - first).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    if let (Some(b), Some(a)) = (mean(baseline), mean(records)) {
        summary.tail_accuracy_loss_vs_baseline = Some(b - a);
    }
    if let (Some(mine), Some(theirs)) = (
        summary.uplink_bits_to_target,
        baseline_summary.uplink_bits_to_target,
    ) {
        if theirs > 0.0 {
            summary.uplink_bits_to_target_vs_baseline = Some(mine / theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(round: usize, acc: f64, bits: f64) -> RoundRecord {
        RoundRecord {
            round,
            test_accuracy: acc,
            cum_uplink_bits: bits,
            uplink_messages: if round > 0 { 2 } else { 0 },
            uplink_bytes: if round > 0 { 100 } else { 0 },
            ..Default::default()
        }
    }

    #[test]
    fn ceo_columns_round_trip_with_empty_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut r1 = rec(1, 0.5, 800.0);
        r1.ceo = CeoRound {
            ceo_bits: Some(123.5),
            averaging_bits: None,
            achieved_distortion: Some(1.25e-7),
            sigma_x2: Some(3e-6),
            sigma_n2: Some(0.1 + 0.2),
            skip_reason: None,
        };
        let records = vec![rec(0, 0.1, 0.0), r1];
        write_csv(&path, &records).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let row = text.lines().nth(2).unwrap();
        assert!(
            row.ends_with(",800,123.5,,1.25e-7,3e-6,3.0000000000000004e-1"),
            "{row}"
        );
        assert!(text.lines().nth(1).unwrap().ends_with(",0,,,,,"), "{text}");
        let back = read_csv(&path).unwrap();
        assert_eq!(back[1].ceo, records[1].ceo);
        assert_eq!(back[0].ceo, CeoRound::default());
        // A metrics.csv of the harness before the CEO columns still reads.
        let old: Vec<String> = text
            .lines()
            .map(|l| {
                l.split(',')
                    .take(COLUMNS_BEFORE_CEO)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        std::fs::write(&path, old.join("\n")).unwrap();
        let back = read_csv(&path).unwrap();
        assert_eq!((back.len(), back[1].ceo.ceo_bits), (2, None));
        assert_eq!(back[1].uplink_bytes, 100);
    }

    #[test]
    fn pba_target_and_baseline() {
        let rs = vec![
            rec(0, 0.1, 0.0),
            rec(1, 0.5, 1e6),
            rec(2, 0.7, 4e6),
            rec(3, 0.8, 5e6),
        ];
        let mut s = summarize("x", &rs, 0.7, 50);
        // (0.5-0.1)/1 = 0.4 at round 1 beats 0.6/4 and 0.7/5.
        assert!((s.pba_per_megabit - 0.4).abs() < 1e-12);
        assert_eq!(s.pba_round, 1);
        assert_eq!(s.rounds_to_target, Some(2));
        assert_eq!(s.uplink_bits_to_target, Some(4e6));
        assert!((s.mean_uplink_bits_per_entry - 8.0).abs() < 1e-12);
        let base = vec![rec(0, 0.1, 0.0), rec(1, 0.7, 8e6), rec(3, 0.9, 24e6)];
        let bs = summarize("b", &base, 0.7, 50);
        assert!((s.tail_accuracy - (0.5 + 0.7 + 0.8) / 3.0).abs() < 1e-12);
        compare_with_baseline(&mut s, &rs, "b", &base, &bs);
        assert!((s.accuracy_loss_vs_baseline.unwrap() - 0.1).abs() < 1e-12);
        // The baseline lacks round 2, so no tail comparison over rounds 1..=3.
        assert_eq!(s.tail_accuracy_loss_vs_baseline, None);
        let full = vec![
            rec(0, 0.1, 0.0),
            rec(1, 0.6, 8e6),
            rec(2, 0.8, 16e6),
            rec(3, 0.9, 24e6),
        ];
        compare_with_baseline(&mut s, &rs, "b", &full, &bs);
        assert!((s.tail_accuracy_loss_vs_baseline.unwrap() - 0.1).abs() < 1e-12);
        assert!((s.uplink_bits_to_target_vs_baseline.unwrap() - 0.5).abs() < 1e-12);
    }
}
