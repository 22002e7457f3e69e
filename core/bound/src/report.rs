//! Serializable reports of the limits, for `gradcodec bound`, `bench --bound` and the
//! harness.
//!
//! - [`BoundReport`]: per layer (name, entries, `σ_X²`, `σ_N²`, allocated `D_l`, sum
//!   rate) and totals, for a per-entry mean distortion `D` split across layers by
//!   [`allocate`] (ALGORITHMS.md §4: "for coordinates with different variances, split
//!   D by reverse water-filling", here its generalization to CEO layers).
//! - [`BoundCurve`]: the totals over a list of `D`.
//! - [`SourceCurve`]: the single-source limit of one tensor from
//!   [`BlahutArimoto`], with the Shannon lower bound for MSE beside it.
//!
//! Units: a CEO sum rate counts the bits of all `K` workers together, so
//! `bits_per_entry` is the sum over workers per coordinate and
//! `bits_per_entry_per_worker` divides it by `K` (the figure to set beside one
//! worker's encoded bits per entry, ALGORITHMS.md §8).

use crate::allocation::{allocate, Allocation, AveragingCeo};
use crate::blahut_arimoto::{shannon_lower_bound, BlahutArimoto, SourceDensity};
use crate::ceo::GaussianCeo;
use crate::error::BoundError;
use crate::estimate::LayerEstimate;
use serde::{Deserialize, Serialize};

/// Which server the limit assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateModel {
    /// The optimal (CEO) sum rate, [`GaussianCeo::sum_rate`].
    Ceo,
    /// The unbiased averaging estimator, [`GaussianCeo::averaging_sum_rate`].
    Averaging,
}

/// One layer of a [`BoundReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerBound {
    /// Layer name.
    pub name: String,
    /// Entries per worker.
    pub entries: u64,
    /// Number of workers `K`.
    pub workers: usize,
    /// Estimated source variance `σ_X²`.
    pub sigma_x2: f64,
    /// Estimated observation noise variance `σ_N²`.
    pub sigma_n2: f64,
    /// Distortion (MSE per entry) allocated to the layer.
    pub distortion: f64,
    /// The layer's sum rate, bits (all workers, all entries).
    pub sum_rate_bits: f64,
    /// Sum rate per entry (all workers together), bits.
    pub bits_per_entry: f64,
    /// `bits_per_entry / K`.
    pub bits_per_entry_per_worker: f64,
}

/// The limit for a whole update at one per-entry mean distortion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundReport {
    /// The rate model.
    pub model: RateModel,
    /// The per-entry mean distortion asked for.
    pub distortion: f64,
    /// The per-entry mean distortion of the allocation (below `distortion` only when
    /// every layer is capped at rate 0).
    pub mean_distortion: f64,
    /// Per layer, in input order.
    pub layers: Vec<LayerBound>,
    /// Entries per worker, all layers.
    pub total_entries: u64,
    /// Total sum rate, bits.
    pub total_sum_rate_bits: f64,
    /// `total_sum_rate_bits / total_entries`.
    pub bits_per_entry: f64,
    /// Total bits divided by `Σ_l entries_l·K_l`.
    pub bits_per_entry_per_worker: f64,
}

fn allocation_for(
    estimates: &[LayerEstimate],
    model: RateModel,
    d: f64,
) -> Result<Allocation, BoundError> {
    let ceo: Vec<(u64, GaussianCeo)> = estimates
        .iter()
        .map(|e| Ok((e.entries, e.ceo()?)))
        .collect::<Result<_, BoundError>>()?;
    match model {
        RateModel::Ceo => allocate(&ceo, d),
        RateModel::Averaging => {
            let avg: Vec<_> = ceo.into_iter().map(|(n, c)| (n, AveragingCeo(c))).collect();
            allocate(&avg, d)
        }
    }
}

impl BoundReport {
    /// Allocates the per-entry mean distortion `d` across the estimated layers with
    /// [`allocate`] and reports each layer's rate and the totals.
    pub fn new(
        estimates: &[LayerEstimate],
        model: RateModel,
        d: f64,
    ) -> Result<BoundReport, BoundError> {
        let alloc = allocation_for(estimates, model, d)?;
        let mut layers = Vec::with_capacity(estimates.len());
        let (mut entries, mut worker_entries, mut bits) = (0u64, 0.0, 0.0);
        for ((est, &dl), &rate) in estimates.iter().zip(&alloc.distortions).zip(&alloc.rates) {
            let sum_rate_bits = est.entries as f64 * rate;
            entries += est.entries;
            worker_entries += est.entries as f64 * est.workers as f64;
            bits += sum_rate_bits;
            layers.push(LayerBound {
                name: est.name.clone(),
                entries: est.entries,
                workers: est.workers,
                sigma_x2: est.sigma_x2,
                sigma_n2: est.sigma_n2,
                distortion: dl,
                sum_rate_bits,
                bits_per_entry: rate,
                bits_per_entry_per_worker: rate / est.workers as f64,
            });
        }
        Ok(BoundReport {
            model,
            distortion: d,
            mean_distortion: alloc.mean_distortion,
            layers,
            total_entries: entries,
            total_sum_rate_bits: bits,
            bits_per_entry: bits / entries as f64,
            bits_per_entry_per_worker: bits / worker_entries,
        })
    }
}

/// One point of a [`BoundCurve`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Per-entry mean distortion.
    pub distortion: f64,
    /// Total sum rate, bits.
    pub total_sum_rate_bits: f64,
    /// Sum rate per entry (all workers together), bits.
    pub bits_per_entry: f64,
    /// Total bits divided by `Σ_l entries_l·K_l`.
    pub bits_per_entry_per_worker: f64,
}

/// The totals of [`BoundReport`] over a list of distortions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundCurve {
    /// The rate model.
    pub model: RateModel,
    /// Entries per worker, all layers.
    pub total_entries: u64,
    /// One point per distortion asked, in order.
    pub points: Vec<CurvePoint>,
}

impl BoundCurve {
    /// Computes a [`BoundReport`] at each of `distortions` and keeps the totals.
    pub fn new(
        estimates: &[LayerEstimate],
        model: RateModel,
        distortions: &[f64],
    ) -> Result<BoundCurve, BoundError> {
        let mut points = Vec::with_capacity(distortions.len());
        let mut total_entries = 0;
        for &d in distortions {
            let report = BoundReport::new(estimates, model, d)?;
            total_entries = report.total_entries;
            points.push(CurvePoint {
                distortion: d,
                total_sum_rate_bits: report.total_sum_rate_bits,
                bits_per_entry: report.bits_per_entry,
                bits_per_entry_per_worker: report.bits_per_entry_per_worker,
            });
        }
        Ok(BoundCurve {
            model,
            total_entries,
            points,
        })
    }

    /// `points` distortions spaced evenly in `log D` over the useful range: from
    /// just above the layers' entry-weighted lower limit (or `1e-4` of the upper
    /// end, whichever is larger) to the entry-weighted mean `σ_X²` (where the CEO
    /// rate reaches 0).
    pub fn default_distortions(
        estimates: &[LayerEstimate],
        model: RateModel,
        points: usize,
    ) -> Result<Vec<f64>, BoundError> {
        let mut n = 0.0;
        let (mut floor, mut top) = (0.0, 0.0);
        for est in estimates {
            let c = est.ceo()?;
            let e = est.entries as f64;
            n += e;
            top += e * c.sigma_x2;
            floor += e * match model {
                RateModel::Ceo => c.min_distortion(),
                RateModel::Averaging => c.averaging_min_distortion(),
            };
        }
        if n == 0.0 {
            return Err(BoundError::NoLayers);
        }
        let (floor, top) = (floor / n, top / n);
        let lo = (floor * 1.01).max(top * 1e-4);
        if points < 2 || lo >= top {
            return Ok(vec![top]);
        }
        let step = (top / lo).ln() / (points - 1) as f64;
        Ok((0..points)
            .map(|i| {
                if i + 1 == points {
                    top
                } else {
                    lo * (step * i as f64).exp()
                }
            })
            .collect())
    }
}

/// One point of a [`SourceCurve`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourcePoint {
    /// Distortion `E|X|^M (X − Y)²`.
    pub distortion: f64,
    /// Blahut–Arimoto rate (achievable, an upper bound on `R(D)`), bits per entry.
    pub rate_bits: f64,
    /// `max(0, R_SLB(D))` for MSE (`M = 0`); `None` for weighted distortions.
    pub shannon_lower_bound_bits: Option<f64>,
    /// Blahut's gap on the discrete problem when the iteration stopped, bits.
    pub gap_bits: f64,
}

/// The single-source limit of one tensor over a list of distortions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCurve {
    /// The source model (for example a fitted GenNorm).
    pub source: SourceDensity,
    /// Weight exponent `M` of the distortion (0 for MSE).
    pub m: f64,
    /// One point per distortion asked, in order.
    pub points: Vec<SourcePoint>,
}

impl SourceCurve {
    /// Evaluates `solver.rate_at` (and the Shannon lower bound when `M = 0`) at each
    /// of `distortions`.
    pub fn new(solver: &mut BlahutArimoto, distortions: &[f64]) -> Result<SourceCurve, BoundError> {
        let source = solver.source();
        let m = solver.weight_exponent();
        let mut points = Vec::with_capacity(distortions.len());
        for &d in distortions {
            let point = solver.rate_at(d)?;
            let slb = if m == 0.0 {
                Some(shannon_lower_bound(&source, d)?.max(0.0))
            } else {
                None
            };
            points.push(SourcePoint {
                distortion: d,
                rate_bits: point.rate_bits,
                shannon_lower_bound_bits: slb,
                gap_bits: point.gap_bits,
            });
        }
        Ok(SourceCurve { source, m, points })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, entries: u64, sigma_x2: f64, sigma_n2: f64) -> LayerEstimate {
        LayerEstimate {
            name: name.into(),
            entries,
            workers: 16,
            mean_square: sigma_x2 + sigma_n2 / 16.0,
            sigma_x2,
            sigma_n2,
            sigma_x2_floored: false,
        }
    }

    #[test]
    fn single_layer_report_is_the_closed_form() {
        let est = [layer("fc", 1000, 1.0, 0.1)];
        let report = BoundReport::new(&est, RateModel::Ceo, 0.2).unwrap();
        let rate = GaussianCeo::new(1.0, 0.1, 16)
            .unwrap()
            .sum_rate(0.2)
            .unwrap();
        assert!((report.layers[0].distortion / 0.2 - 1.0).abs() < 1e-9);
        assert!((report.bits_per_entry / rate - 1.0).abs() < 1e-9);
        assert!((report.total_sum_rate_bits / (1000.0 * rate) - 1.0).abs() < 1e-9);
        assert!((report.bits_per_entry_per_worker * 16.0 / rate - 1.0).abs() < 1e-9);
        let avg = BoundReport::new(&est, RateModel::Averaging, 0.2).unwrap();
        assert!(avg.bits_per_entry > report.bits_per_entry);
    }

    #[test]
    fn reports_serialize_and_curves_decrease() {
        let est = [
            layer("conv", 4096, 1e-4, 5e-4),
            layer("fc", 512, 2e-3, 1e-3),
        ];
        let ds = BoundCurve::default_distortions(&est, RateModel::Ceo, 6).unwrap();
        assert_eq!(ds.len(), 6);
        let curve = BoundCurve::new(&est, RateModel::Ceo, &ds).unwrap();
        for w in curve.points.windows(2) {
            assert!(w[1].total_sum_rate_bits < w[0].total_sum_rate_bits);
        }
        assert_eq!(curve.points.last().unwrap().total_sum_rate_bits, 0.0);
        let json = serde_json::to_string(&curve).unwrap();
        assert!(json.contains("\"model\":\"ceo\""), "{json}");
        let back: BoundCurve = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (back.model, back.points.len()),
            (curve.model, curve.points.len())
        );
        for (a, b) in back.points.iter().zip(&curve.points) {
            assert!(
                (a.total_sum_rate_bits - b.total_sum_rate_bits).abs()
                    <= 1e-12 * b.total_sum_rate_bits
            );
        }
        let report = BoundReport::new(&est, RateModel::Ceo, ds[2]).unwrap();
        let json = serde_json::to_string(&report).unwrap();
        let back: BoundReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.layers[1].name, "fc");
        assert_eq!(back.total_entries, 4608);
        assert!((back.bits_per_entry / report.bits_per_entry - 1.0).abs() < 1e-12);
        // Below the feasible range: a clear error.
        let err = BoundReport::new(&est, RateModel::Ceo, 1e-9).unwrap_err();
        assert!(err.to_string().contains("not reachable"), "{err}");
    }
}
