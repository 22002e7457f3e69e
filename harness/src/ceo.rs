//! The quadratic Gaussian CEO limit beside each round's real uplink bits
//! (ALGORITHMS.md §4).
//!
//! Every aggregation — a fedavg round, a dsgd step — is one instance of the CEO
//! problem: `K` learners observe the true mean update `X` through their own
//! noise and the server estimates `X` from what it decodes. [`Aggregation`]
//! collects the `K` raw updates (before encoding, `K × entries × 4` bytes held
//! until the aggregation ends) and the compression error of the server's
//! aggregate, then [`Aggregation::finish`] gives:
//!
//! - `σ_X²`, `σ_N²` per layer, estimated from the raw updates by
//!   [`estimate_layers`] (needs `K ≥ 2`);
//! - the achieved aggregate distortion `D` (see [`Aggregation::finish`]);
//! - the CEO sum rate at `D` (bits, all learners; 0 when `D` reaches the
//!   entry-weighted mean `σ_X²`) and the unbiased averaging estimator's sum rate
//!   at `D`, both with `D` split across layers by
//!   [`BoundReport`]'s allocation.
//!
//! A round's figures ([`CeoRound`]) add the steps' bits and average their
//! distortions and variances; when an aggregation cannot be evaluated the round
//! records why instead. [`CeoSummary`] sets the run's CEO bits beside its real
//! uplink message bits.

use gradcodec_bound::estimate::{estimate_layers, LayerEstimate};
use gradcodec_bound::report::{BoundReport, RateModel};
use serde::{Deserialize, Serialize};

use crate::metrics::RoundRecord;

/// One aggregation's raw updates and the compression error of its aggregate.
#[derive(Debug, Clone)]
pub struct Aggregation {
    workers: usize,
    names: Vec<String>,
    /// Raw updates, per learner, per layer (empty when `workers < 2`).
    raw: Vec<Vec<Vec<f32>>>,
    /// Per layer and entry: `Σ_k w_k (decoded_k − raw_k)`.
    error: Vec<Vec<f64>>,
}

/// The CEO figures of one aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBound {
    /// Achieved aggregate distortion `D` (MSE per entry).
    pub distortion: f64,
    /// Its compression part, the mean square of the aggregate's coding error.
    pub compression_distortion: f64,
    /// CEO sum rate at `D`, bits (all learners, all entries).
    pub ceo_bits: f64,
    /// Averaging-estimator sum rate at `D`, bits; `None` where undefined
    /// (`D` at or below its lower limit `σ_N²/K`, as for a lossless link).
    pub averaging_bits: Option<f64>,
    /// Entry-weighted mean `σ_X²` over the layers.
    pub sigma_x2: f64,
    /// Entry-weighted mean `σ_N²` over the layers.
    pub sigma_n2: f64,
}

impl Aggregation {
    /// An empty aggregation of `workers` learners' updates of layers `names`
    /// with `lens` entries each.
    pub fn new(names: &[String], lens: &[usize], workers: usize) -> Aggregation {
        Aggregation {
            workers,
            names: names.to_vec(),
            raw: Vec::with_capacity(if workers >= 2 { workers } else { 0 }),
            error: lens.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// Adds one learner: its raw update, what the server decoded of it, and the
    /// weight the server gives it in the aggregate.
    pub fn add(&mut self, weight: f64, raw: Vec<Vec<f32>>, decoded: &[Vec<f32>]) {
        for ((acc, x), y) in self.error.iter_mut().zip(&raw).zip(decoded) {
            for ((e, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                *e += weight * (f64::from(y) - f64::from(x));
            }
        }
        if self.workers >= 2 {
            self.raw.push(raw);
        }
    }

    /// The CEO figures, or why there are none.
    ///
    /// The achieved aggregate distortion is the MSE per entry of the server's
    /// estimate of the true mean update `X`:
    ///
    /// `D = (1/n) Σ_i (Σ_k w_k ŷ_{k,i} − Σ_k w_k y_{k,i})² + (1/n) Σ_l n_l σ_N,l²/K`,
    ///
    /// with `y_k` learner `k`'s raw update, `ŷ_k` what the server decoded of it,
    /// `w_k` the server's aggregation weights and `n = Σ_l n_l` the entries of all
    /// layers. The first term is what coding added to the aggregate; the second is
    /// the CEO model's irreducible error of averaging `K` raw observations, which
    /// no codec can remove (the extra error of weighting unequal shards,
    /// `σ_N²(Σ_k w_k² − 1/K)`, is not counted). A lossless link therefore gives
    /// `D = σ_N²/K` exactly, where the averaging estimator's rate diverges
    /// (recorded as `None`).
    pub fn finish(self) -> Result<StepBound, String> {
        if self.workers < 2 {
            return Err(format!(
                "K = {} learner(s): sigma_N^2 cannot be estimated, the CEO limit needs at \
                 least 2",
                self.workers
            ));
        }
        if self.raw.len() != self.workers {
            return Err(format!(
                "{} of {} learners' updates collected",
                self.raw.len(),
                self.workers
            ));
        }
        let layers = self.names.iter().enumerate().map(|(l, name)| {
            let workers: Vec<&[f32]> = self.raw.iter().map(|u| u[l].as_slice()).collect();
            (name, workers)
        });
        let estimates =
            estimate_layers(layers).map_err(|e| format!("estimating sigma_X^2, sigma_N^2: {e}"))?;
        let entries: f64 = estimates.iter().map(|e| e.entries as f64).sum();
        let squared: f64 = self.error.iter().flatten().map(|e| e * e).sum();
        let compression_distortion = squared / entries;
        let kf = self.workers as f64;
        let irreducible = weighted_mean(&estimates, |e| e.sigma_n2 / kf);
        let distortion = compression_distortion + irreducible;
        let ceo_bits = BoundReport::new(&estimates, RateModel::Ceo, distortion)
            .map_err(|e| format!("CEO sum rate at D = {distortion:e}: {e}"))?
            .total_sum_rate_bits;
        let averaging_bits = if compression_distortion > 0.0 {
            BoundReport::new(&estimates, RateModel::Averaging, distortion)
                .ok()
                .map(|r| r.total_sum_rate_bits)
                .filter(|b| b.is_finite())
        } else {
            None
        };
        Ok(StepBound {
            distortion,
            compression_distortion,
            ceo_bits,
            averaging_bits,
            sigma_x2: weighted_mean(&estimates, |e| e.sigma_x2),
            sigma_n2: weighted_mean(&estimates, |e| e.sigma_n2),
        })
    }
}

/// `Σ_l n_l f(l) / Σ_l n_l`.
fn weighted_mean(estimates: &[LayerEstimate], f: impl Fn(&LayerEstimate) -> f64) -> f64 {
    let n: f64 = estimates.iter().map(|e| e.entries as f64).sum();
    estimates
        .iter()
        .map(|e| e.entries as f64 * f(e))
        .sum::<f64>()
        / n
}

/// A round's CEO figures (`metrics.csv` columns of the same names). All `None`
/// in round 0 and in rounds that could not be evaluated (then `skip_reason`
/// says why).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CeoRound {
    /// Achieved aggregate distortion `D` ([`Aggregation::finish`]), mean over the
    /// round's aggregations.
    pub achieved_distortion: Option<f64>,
    /// CEO sum rate at `D`, bits, summed over the round's aggregations.
    pub ceo_bits: Option<f64>,
    /// Averaging-estimator sum rate at `D`, bits, summed over the round's
    /// aggregations; `None` when undefined in any of them.
    pub averaging_bits: Option<f64>,
    /// Entry-weighted mean `σ_X²`, mean over the round's aggregations.
    pub sigma_x2: Option<f64>,
    /// Entry-weighted mean `σ_N²`, mean over the round's aggregations.
    pub sigma_n2: Option<f64>,
    /// Why the round has no CEO figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
}

impl CeoRound {
    /// Combines the round's aggregations (in order); the first that failed makes
    /// the round a skipped one.
    pub fn from_steps(steps: Vec<Result<StepBound, String>>) -> CeoRound {
        let many = steps.len() > 1;
        let mut ok = Vec::with_capacity(steps.len());
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Ok(s) => ok.push(s),
                Err(reason) => {
                    return CeoRound {
                        skip_reason: Some(if many {
                            format!("aggregation {}: {reason}", i + 1)
                        } else {
                            reason
                        }),
                        ..Default::default()
                    }
                }
            }
        }
        if ok.is_empty() {
            return CeoRound {
                skip_reason: Some("no aggregation this round".into()),
                ..Default::default()
            };
        }
        let n = ok.len() as f64;
        let mean = |f: fn(&StepBound) -> f64| Some(ok.iter().map(f).sum::<f64>() / n);
        CeoRound {
            achieved_distortion: mean(|s| s.distortion),
            ceo_bits: Some(ok.iter().map(|s| s.ceo_bits).sum()),
            averaging_bits: ok.iter().map(|s| s.averaging_bits).sum(),
            sigma_x2: mean(|s| s.sigma_x2),
            sigma_n2: mean(|s| s.sigma_n2),
            skip_reason: None,
        }
    }
}

/// Per-round arrays of [`CeoSummary`], one entry per trained round (1, 2, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CeoPerRound {
    /// Round numbers.
    pub round: Vec<usize>,
    /// Real uplink message bits (`8 × Σ` message bytes, batch-norm buffers not
    /// included).
    pub real_bits: Vec<f64>,
    /// CEO sum rate at the achieved distortion, bits.
    pub ceo_bits: Vec<Option<f64>>,
    /// Averaging-estimator sum rate at the achieved distortion, bits.
    pub averaging_bits: Vec<Option<f64>>,
    /// Achieved aggregate distortion.
    pub achieved_distortion: Vec<Option<f64>>,
}

/// The run's real uplink bits against the CEO limit (`summary.json`, `ceo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CeoSummary {
    /// Trained rounds with CEO figures.
    pub rounds_evaluated: usize,
    /// Trained rounds without (see `skip_reason`).
    pub rounds_skipped: usize,
    /// Why the first skipped round was skipped.
    pub skip_reason: Option<String>,
    /// Real uplink message bits over the evaluated rounds.
    pub total_real_bits: f64,
    /// CEO bits over the evaluated rounds.
    pub total_ceo_bits: f64,
    /// `total_real_bits / total_ceo_bits` (`None` when no CEO bits).
    pub real_over_ceo: Option<f64>,
    /// Averaging-estimator bits over the evaluated rounds (`None` when undefined
    /// in any of them).
    pub total_averaging_bits: Option<f64>,
    /// `total_real_bits / total_averaging_bits`.
    pub real_over_averaging: Option<f64>,
    /// Mean achieved aggregate distortion over the evaluated rounds.
    pub mean_achieved_distortion: Option<f64>,
    /// Per round.
    pub per_round: CeoPerRound,
}

impl CeoSummary {
    /// Summarizes the trained rounds (round > 0) of `records`.
    pub fn from_records(records: &[RoundRecord]) -> CeoSummary {
        let mut s = CeoSummary::default();
        let mut avg: Option<f64> = Some(0.0);
        let mut distortion = 0.0;
        for r in records.iter().filter(|r| r.round > 0) {
            let real = 8.0 * r.uplink_bytes as f64;
            let c = &r.ceo;
            s.per_round.round.push(r.round);
            s.per_round.real_bits.push(real);
            s.per_round.ceo_bits.push(c.ceo_bits);
            s.per_round.averaging_bits.push(c.averaging_bits);
            s.per_round.achieved_distortion.push(c.achieved_distortion);
            match (c.ceo_bits, c.achieved_distortion) {
                (Some(bits), Some(d)) => {
                    s.rounds_evaluated += 1;
                    s.total_real_bits += real;
                    s.total_ceo_bits += bits;
                    distortion += d;
                    avg = avg.zip(c.averaging_bits).map(|(a, b)| a + b);
                }
                _ => {
                    s.rounds_skipped += 1;
                    if s.skip_reason.is_none() {
                        s.skip_reason = Some(
                            c.skip_reason
                                .clone()
                                .unwrap_or_else(|| "not recorded".into()),
                        );
                    }
                }
            }
        }
        if s.rounds_evaluated > 0 {
            s.total_averaging_bits = avg;
            s.mean_achieved_distortion = Some(distortion / s.rounds_evaluated as f64);
            s.real_over_ceo = ratio(s.total_real_bits, s.total_ceo_bits);
            s.real_over_averaging = s
                .total_averaging_bits
                .and_then(|bits| ratio(s.total_real_bits, bits));
        }
        s
    }
}

/// `real / bits`, `None` when `bits` is not positive.
fn ratio(real: f64, bits: f64) -> Option<f64> {
    (bits > 0.0).then_some(real / bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_bound::ceo::GaussianCeo;

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    /// Two learners, two layers (1 and 2 entries).
    fn updates() -> [Vec<Vec<f32>>; 2] {
        [
            vec![vec![1.0], vec![2.0, -1.0]],
            vec![vec![3.0], vec![2.0, -3.0]],
        ]
    }

    #[test]
    fn lossless_links_give_the_averaging_floor() {
        let mut agg = Aggregation::new(&names(), &[1, 2], 2);
        for u in updates() {
            let copy = u.clone();
            agg.add(0.5, u, &copy);
        }
        let s = agg.finish().unwrap();
        assert_eq!(s.compression_distortion, 0.0);
        // σN²: layer a (1 + 1)/1 = 2; layer b (0 + (1 + 1)/1)/2 = 1. Mean (2 + 2)/3.
        assert!((s.sigma_n2 - 4.0 / 3.0).abs() < 1e-15);
        assert!((s.distortion - s.sigma_n2 / 2.0).abs() < 1e-15);
        assert_eq!(s.averaging_bits, None);
        assert!(s.ceo_bits.is_finite() && s.ceo_bits > 0.0, "{s:?}");
    }

    #[test]
    fn coding_error_adds_to_the_distortion_and_rates_are_ordered() {
        let mut agg = Aggregation::new(&names(), &[1, 2], 2);
        for u in updates() {
            let decoded: Vec<Vec<f32>> = u
                .iter()
                .map(|l| l.iter().map(|v| v + 0.25).collect())
                .collect();
            agg.add(0.5, u, &decoded);
        }
        let s = agg.finish().unwrap();
        // Aggregate error 0.25 on every entry.
        assert!((s.compression_distortion - 0.0625).abs() < 1e-15);
        assert!((s.distortion - 0.0625 - s.sigma_n2 / 2.0).abs() < 1e-15);
        let avg = s.averaging_bits.unwrap();
        assert!(s.ceo_bits > 0.0 && avg > s.ceo_bits, "{s:?}");
    }

    #[test]
    fn one_layer_matches_the_closed_form_and_caps_at_zero() {
        // One layer, K = 2: entries (1, 3) and (−1, −3): mean (2, −2), spread 2 and 2.
        let names = vec!["w".to_string()];
        let raw = [vec![vec![1.0f32, -1.0]], vec![vec![3.0f32, -3.0]]];
        let run = |shift: f32| {
            let mut agg = Aggregation::new(&names, &[2], 2);
            for u in raw.clone() {
                let d = vec![u[0].iter().map(|v| v + shift).collect()];
                agg.add(0.5, u, &d);
            }
            agg.finish().unwrap()
        };
        let s = run(0.5);
        // σN² = 2, σX² = 4 − 2/2 = 3, D = 0.25 + 1.
        assert!((s.sigma_x2 - 3.0).abs() < 1e-15 && (s.sigma_n2 - 2.0).abs() < 1e-15);
        let model = GaussianCeo::new(3.0, 2.0, 2).unwrap();
        let want = 2.0 * model.sum_rate(1.25).unwrap();
        assert!(
            (s.ceo_bits / want - 1.0).abs() < 1e-9,
            "{} vs {want}",
            s.ceo_bits
        );
        let want = 2.0 * model.averaging_sum_rate(1.25).unwrap();
        assert!((s.averaging_bits.unwrap() / want - 1.0).abs() < 1e-9);
        // D = 4 + 1 ≥ σX²: rate 0.
        assert_eq!(run(2.0).ceo_bits, 0.0);
    }

    #[test]
    fn too_few_learners_and_bad_values_are_reasons() {
        let mut agg = Aggregation::new(&names(), &[1, 2], 1);
        let u = updates()[0].clone();
        let copy = u.clone();
        agg.add(1.0, u, &copy);
        assert!(agg.raw.is_empty());
        let reason = agg.finish().unwrap_err();
        assert!(reason.contains("K = 1"), "{reason}");
        let mut agg = Aggregation::new(&names(), &[1, 2], 2);
        for mut u in updates() {
            u[1][0] = f32::NAN;
            let copy = u.clone();
            agg.add(0.5, u, &copy);
        }
        let reason = agg.finish().unwrap_err();
        assert!(reason.contains("\"b\""), "{reason}");
        let round = CeoRound::from_steps(vec![
            Ok(StepBound {
                distortion: 1.0,
                compression_distortion: 0.0,
                ceo_bits: 1.0,
                averaging_bits: None,
                sigma_x2: 1.0,
                sigma_n2: 1.0,
            }),
            Err("bad".into()),
        ]);
        assert_eq!(round.ceo_bits, None);
        assert_eq!(round.skip_reason.as_deref(), Some("aggregation 2: bad"));
    }

    #[test]
    fn rounds_add_steps_and_the_summary_adds_rounds() {
        let step = |d: f64, bits: f64, avg: Option<f64>| StepBound {
            distortion: d,
            compression_distortion: 0.0,
            ceo_bits: bits,
            averaging_bits: avg,
            sigma_x2: 1.0,
            sigma_n2: 0.5,
        };
        let r1 = CeoRound::from_steps(vec![
            Ok(step(1.0, 10.0, Some(20.0))),
            Ok(step(3.0, 30.0, Some(40.0))),
        ]);
        assert_eq!(r1.achieved_distortion, Some(2.0));
        assert_eq!((r1.ceo_bits, r1.averaging_bits), (Some(40.0), Some(60.0)));
        let r2 = CeoRound::from_steps(vec![Ok(step(1.0, 60.0, None))]);
        assert_eq!(r2.averaging_bits, None);
        let rec = |round: usize, bytes: u64, ceo: CeoRound| RoundRecord {
            round,
            uplink_bytes: bytes,
            ceo,
            ..Default::default()
        };
        let skipped = CeoRound::from_steps(vec![Err("why".into())]);
        let records = [
            rec(0, 0, CeoRound::default()),
            rec(1, 100, r1),
            rec(2, 50, r2),
            rec(3, 70, skipped),
        ];
        let s = CeoSummary::from_records(&records);
        assert_eq!((s.rounds_evaluated, s.rounds_skipped), (2, 1));
        assert_eq!(s.skip_reason.as_deref(), Some("why"));
        assert_eq!(s.total_real_bits, 1200.0);
        assert_eq!(s.total_ceo_bits, 100.0);
        assert_eq!(s.real_over_ceo, Some(12.0));
        assert_eq!(s.total_averaging_bits, None);
        assert_eq!(s.per_round.round, vec![1, 2, 3]);
        assert_eq!(s.per_round.real_bits, vec![800.0, 400.0, 560.0]);
        assert_eq!(s.per_round.ceo_bits, vec![Some(40.0), Some(60.0), None]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<CeoSummary>(&json).unwrap(), s);
    }
}
