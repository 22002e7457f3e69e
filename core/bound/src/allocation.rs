//! Splitting a distortion budget across layers.
//!
//! Problem: minimize `Σ_l n_l R_l(D_l)` subject to `Σ_l n_l D_l = n·D` (`n = Σ n_l`,
//! `D` the per-entry mean distortion), each `R_l` convex and decreasing.
//!
//! - Independent Gaussian components, `R_l(D_l) = ½log₂(σ_l²/D_l)`: reverse
//!   water-filling, `D_l = min(θ, σ_l²)` with `θ` chosen to meet the budget (Cover and
//!   Thomas, Theorem 10.3.3; ALGORITHMS.md §4). [`reverse_water_filling`] computes `θ`
//!   exactly by sorting the variances.
//! - General convex layers such as CEO layers (ALGORITHMS.md §4): the Lagrangian
//!   (KKT) conditions give `R_l'(D_l) = −λ` for every layer below its cap, and
//!   `D_l = D_max,l` (rate 0) where `−R_l'(D_max,l) ≤ λ`. [`allocate`] bisects on `ln λ`
//!   (the total distortion is decreasing in `λ`), solving each layer's `D_l(λ)` in
//!   closed form where one exists ([`RateCurve::distortion_at_slope`]) and by
//!   bisection otherwise. With Gaussian components this reduces to reverse
//!   water-filling, `θ = 1/(2λ ln 2)`.

use crate::ceo::GaussianCeo;
use crate::error::{positive, BoundError};
use serde::{Deserialize, Serialize};
use std::f64::consts::LN_2;

/// A convex, decreasing rate-distortion curve of one layer, in bits per entry.
pub trait RateCurve {
    /// Lower end of the valid distortions (exclusive): the rate diverges there.
    fn min_distortion(&self) -> f64;
    /// Distortion from which the rate is 0 (`f64::INFINITY` if it only tends to 0).
    fn max_distortion(&self) -> f64;
    /// Rate in bits per entry at distortion `d`, `min < d ≤ max`.
    fn rate(&self, d: f64) -> Result<f64, BoundError>;
    /// `dR/dD` in bits per entry per unit of distortion (negative), `min < d ≤ max`.
    fn rate_derivative(&self, d: f64) -> Result<f64, BoundError>;

    /// The distortion where the slope is `−lambda` (`lambda > 0`), capped at
    /// [`max_distortion`](Self::max_distortion). The default bisects on
    /// `ln(D − min)`; implementations with a closed form override it.
    fn distortion_at_slope(&self, lambda: f64) -> Result<f64, BoundError> {
        positive("lambda", lambda)?;
        let (min, max) = (self.min_distortion(), self.max_distortion());
        let steep = |d: f64| -> Result<bool, BoundError> { Ok(-self.rate_derivative(d)? > lambda) };
        // Upper bracket: the cap, or an expanding search where the slope is flatter.
        let mut hi_gap = if max.is_finite() {
            if steep(max)? {
                return Ok(max);
            }
            max - min
        } else {
            let mut gap = min.abs().max(1.0);
            while steep(min + gap)? {
                gap *= 4.0;
                if !gap.is_finite() {
                    return Ok(f64::MAX);
                }
            }
            gap
        };
        // Lower bracket: shrink towards `min`, where the slope diverges.
        let mut lo_gap = hi_gap;
        loop {
            lo_gap *= 1e-3;
            let d = min + lo_gap;
            if d <= min {
                return Ok(min + hi_gap.min(lo_gap * 1e3));
            }
            if steep(d)? {
                break;
            }
            hi_gap = lo_gap;
        }
        let (mut lo, mut hi) = (lo_gap.ln(), hi_gap.ln());
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if steep(min + mid.exp())? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(min + (0.5 * (lo + hi)).exp())
    }
}

/// One independent Gaussian component per entry: `R(D) = ½log₂(σ²/D)` for
/// `0 < D ≤ σ²`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaussianComponent {
    /// The entries' variance `σ² > 0`.
    pub variance: f64,
}

impl RateCurve for GaussianComponent {
    fn min_distortion(&self) -> f64 {
        0.0
    }
    fn max_distortion(&self) -> f64 {
        self.variance
    }
    fn rate(&self, d: f64) -> Result<f64, BoundError> {
        positive("variance", self.variance)?;
        check_range("Gaussian rate-distortion function", d, 0.0, self.variance)?;
        Ok((0.5 * (self.variance / d).log2()).max(0.0))
    }
    fn rate_derivative(&self, d: f64) -> Result<f64, BoundError> {
        positive("variance", self.variance)?;
        check_range("Gaussian rate-distortion function", d, 0.0, self.variance)?;
        Ok(-1.0 / (2.0 * LN_2 * d))
    }
    fn distortion_at_slope(&self, lambda: f64) -> Result<f64, BoundError> {
        positive("variance", self.variance)?;
        positive("lambda", lambda)?;
        Ok((1.0 / (2.0 * LN_2 * lambda)).min(self.variance))
    }
}

impl RateCurve for GaussianCeo {
    fn min_distortion(&self) -> f64 {
        GaussianCeo::min_distortion(self)
    }
    fn max_distortion(&self) -> f64 {
        GaussianCeo::max_distortion(self)
    }
    fn rate(&self, d: f64) -> Result<f64, BoundError> {
        self.sum_rate(d)
    }
    fn rate_derivative(&self, d: f64) -> Result<f64, BoundError> {
        self.sum_rate_derivative(d)
    }
    fn distortion_at_slope(&self, lambda: f64) -> Result<f64, BoundError> {
        GaussianCeo::distortion_at_slope(self, lambda)
    }
}

/// A CEO layer whose server uses the unbiased averaging estimator
/// ([`GaussianCeo::averaging_sum_rate`]); the rate never reaches 0, so there is no cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AveragingCeo(pub GaussianCeo);

impl RateCurve for AveragingCeo {
    fn min_distortion(&self) -> f64 {
        self.0.averaging_min_distortion()
    }
    fn max_distortion(&self) -> f64 {
        f64::INFINITY
    }
    fn rate(&self, d: f64) -> Result<f64, BoundError> {
        self.0.averaging_sum_rate(d)
    }
    fn rate_derivative(&self, d: f64) -> Result<f64, BoundError> {
        self.0.averaging_sum_rate_derivative(d)
    }
}

fn check_range(function: &'static str, d: f64, min: f64, max: f64) -> Result<(), BoundError> {
    if d.is_finite() && d > min && d <= max {
        Ok(())
    } else {
        Err(BoundError::DistortionOutOfRange {
            function,
            distortion: d,
            min,
            min_inclusive: false,
            max,
        })
    }
}

/// The result of an allocation: one distortion and rate per layer, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// Distortion (MSE per entry) given to each layer.
    pub distortions: Vec<f64>,
    /// Each layer's rate at its distortion, bits per entry.
    pub rates: Vec<f64>,
    /// `Σ n_l R_l(D_l)`, bits.
    pub total_bits: f64,
    /// The entry-weighted mean distortion reached, `Σ n_l D_l / n` (equal to the
    /// budget up to about 1e-12 relative, or below it when every layer is capped).
    pub mean_distortion: f64,
    /// The multiplier `λ` (bits per unit of distortion per entry); 0 when every
    /// layer sits at its cap.
    pub slope: f64,
}

/// Reverse water-filling: the water level `θ` and the allocation it gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaterFilling {
    /// Water level: every layer gets `min(θ, σ_l²)`.
    pub theta: f64,
    /// The allocation.
    pub allocation: Allocation,
}

fn check_budget(d_mean: f64) -> Result<(), BoundError> {
    if d_mean.is_finite() && d_mean > 0.0 {
        Ok(())
    } else {
        Err(BoundError::InvalidParameter {
            name: "distortion",
            value: d_mean,
            requirement: "finite and > 0",
        })
    }
}

fn total_entries(entries: impl Iterator<Item = u64>) -> Result<f64, BoundError> {
    let n: f64 = entries.map(|n| n as f64).sum();
    if n > 0.0 {
        Ok(n)
    } else {
        Err(BoundError::NoLayers)
    }
}

fn finish<R: RateCurve>(
    layers: &[(u64, R)],
    distortions: Vec<f64>,
    slope: f64,
) -> Result<Allocation, BoundError> {
    let n = total_entries(layers.iter().map(|(n, _)| *n))?;
    let mut rates = Vec::with_capacity(layers.len());
    let (mut total_bits, mut sum_d) = (0.0, 0.0);
    for ((entries, curve), &d) in layers.iter().zip(&distortions) {
        let rate = curve.rate(d)?;
        total_bits += *entries as f64 * rate;
        sum_d += *entries as f64 * d;
        rates.push(rate);
    }
    Ok(Allocation {
        distortions,
        rates,
        total_bits,
        mean_distortion: sum_d / n,
        slope,
    })
}

/// Reverse water-filling over independent Gaussian layers given as
/// `(entries, variance)`, for the per-entry mean distortion `d_mean`. `θ` is exact: the
/// variances are sorted and the capped prefix found in one pass. When `d_mean` is at
/// least the mean variance, every layer is capped (`θ` = the largest variance, rate 0).
pub fn reverse_water_filling(
    layers: &[(u64, f64)],
    d_mean: f64,
) -> Result<WaterFilling, BoundError> {
    check_budget(d_mean)?;
    for &(_, v) in layers {
        positive("variance", v)?;
    }
    let n = total_entries(layers.iter().map(|(n, _)| *n))?;
    let mut order: Vec<usize> = (0..layers.len()).filter(|&i| layers[i].0 > 0).collect();
    order.sort_by(|&a, &b| layers[a].1.total_cmp(&layers[b].1));
    let budget = n * d_mean;
    // With the m smallest variances capped: θ = (budget − Σ_capped n σ²) / Σ_rest n.
    let mut capped_sum = 0.0;
    let mut rest: f64 = n;
    let mut theta = layers[*order.last().ok_or(BoundError::NoLayers)?].1;
    for &i in &order {
        let (entries, variance) = layers[i];
        let candidate = (budget - capped_sum) / rest;
        if candidate <= variance {
            theta = candidate;
            break;
        }
        capped_sum += entries as f64 * variance;
        rest -= entries as f64;
    }
    let components: Vec<(u64, GaussianComponent)> = layers
        .iter()
        .map(|&(n, variance)| (n, GaussianComponent { variance }))
        .collect();
    let distortions = layers.iter().map(|&(_, v)| theta.min(v)).collect();
    let slope = if theta >= layers[order[order.len() - 1]].1 {
        0.0
    } else {
        1.0 / (2.0 * LN_2 * theta)
    };
    Ok(WaterFilling {
        theta,
        allocation: finish(&components, distortions, slope)?,
    })
}

/// Every layer at the same distortion `d` (capped at its `max_distortion`): the
/// baseline an optimized allocation must beat. Errors when `d` is at or below a
/// layer's lower limit. Its `slope` is NaN (no common multiplier).
pub fn equal_distortion<R: RateCurve>(
    layers: &[(u64, R)],
    d: f64,
) -> Result<Allocation, BoundError> {
    check_budget(d)?;
    let distortions = layers
        .iter()
        .map(|(_, c)| d.min(c.max_distortion()))
        .collect();
    finish(layers, distortions, f64::NAN)
}

/// The rate-minimizing allocation of the per-entry mean distortion `d_mean` across
/// `(entries, curve)` layers, by bisection on the Lagrange multiplier (see the module
/// documentation). Errors when `d_mean` is not above the entry-weighted mean of the
/// layers' lower limits. When `d_mean` reaches the mean of the caps, every layer is
/// capped and the rate is 0.
pub fn allocate<R: RateCurve>(layers: &[(u64, R)], d_mean: f64) -> Result<Allocation, BoundError> {
    check_budget(d_mean)?;
    let n = total_entries(layers.iter().map(|(n, _)| *n))?;
    let weighted = |f: &dyn Fn(&R) -> f64| -> f64 {
        layers.iter().map(|(e, c)| *e as f64 * f(c)).sum::<f64>() / n
    };
    let floor = weighted(&|c| c.min_distortion());
    if d_mean <= floor {
        return Err(BoundError::Infeasible {
            distortion: d_mean,
            min: floor,
        });
    }
    let cap = weighted(&|c| c.max_distortion());
    if d_mean >= cap {
        let distortions = layers.iter().map(|(_, c)| c.max_distortion()).collect();
        return finish(layers, distortions, 0.0);
    }
    let mean_at = |lambda: f64| -> Result<f64, BoundError> {
        let mut sum = 0.0;
        for (e, c) in layers {
            sum += *e as f64 * c.distortion_at_slope(lambda)?;
        }
        Ok(sum / n)
    };
    // Bracket ln λ: the mean distortion decreases as λ grows.
    let start = layers
        .iter()
        .filter(|(e, _)| *e > 0)
        .map(|(_, c)| {
            let d = d_mean.min(c.max_distortion());
            if d > c.min_distortion() {
                c.rate_derivative(d).map(|s| -s)
            } else {
                Ok(f64::NAN)
            }
        })
        .collect::<Result<Vec<f64>, BoundError>>()?
        .into_iter()
        .filter(|s| s.is_finite() && *s > 0.0)
        .fold(f64::NAN, f64::max);
    let start = if start.is_finite() { start.ln() } else { 0.0 };
    let (mut lo, mut hi) = (start, start);
    while mean_at(lo.exp())? <= d_mean {
        lo -= 4.0;
        if lo < -700.0 {
            break;
        }
    }
    while mean_at(hi.exp())? > d_mean {
        hi += 4.0;
        if hi > 700.0 {
            break;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if mean_at(mid.exp())? > d_mean {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // λ at the upper end of the bracket meets the budget (mean ≤ d_mean).
    let lambda = hi.exp();
    let distortions = layers
        .iter()
        .map(|(_, c)| c.distortion_at_slope(lambda))
        .collect::<Result<Vec<f64>, BoundError>>()?;
    finish(layers, distortions, lambda)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_water_filling_hand_example() {
        // Variances 4, 1, 0.25 (one entry each), mean budget 0.5 → total 1.5.
        // θ = 0.5 would exceed 0.25, so cap the last: 2θ + 0.25 = 1.5 → θ = 0.625.
        let wf = reverse_water_filling(&[(1, 4.0), (1, 1.0), (1, 0.25)], 0.5).unwrap();
        assert!((wf.theta - 0.625).abs() < 1e-15);
        assert_eq!(wf.allocation.distortions, vec![0.625, 0.625, 0.25]);
        let want = 0.5 * (4.0f64 / 0.625).log2() + 0.5 * (1.0f64 / 0.625).log2();
        assert!((wf.allocation.total_bits - want).abs() < 1e-12);
        assert_eq!(wf.allocation.rates[2], 0.0);
        assert!((wf.allocation.mean_distortion - 0.5).abs() < 1e-15);
        // Entry counts weight the budget: 3 entries of variance 1 and 1 of 0.01, D = 0.1
        // → 3θ + 0.01 = 0.4 → θ = 0.13.
        let wf = reverse_water_filling(&[(3, 1.0), (1, 0.01)], 0.1).unwrap();
        assert!((wf.theta - 0.13).abs() < 1e-15);
        // Budget above the mean variance: everything capped, rate 0.
        let wf = reverse_water_filling(&[(1, 4.0), (1, 1.0)], 3.0).unwrap();
        assert_eq!(wf.theta, 4.0);
        assert_eq!(wf.allocation.total_bits, 0.0);
    }

    #[test]
    fn lagrangian_allocation_reduces_to_water_filling() {
        let layers = [(100u64, 4.0), (50, 1.0), (10, 0.25), (1000, 0.01)];
        for d in [0.005, 0.05, 0.3, 1.0] {
            let wf = reverse_water_filling(&layers, d).unwrap();
            let comps: Vec<_> = layers
                .iter()
                .map(|&(n, variance)| (n, GaussianComponent { variance }))
                .collect();
            let lg = allocate(&comps, d).unwrap();
            let (a, b) = (lg.total_bits, wf.allocation.total_bits);
            assert!((a - b).abs() <= 1e-9 * b, "D={d}: {a} vs {b}");
            for (a, b) in lg.distortions.iter().zip(&wf.allocation.distortions) {
                assert!((a / b - 1.0).abs() < 1e-9, "D={d}: {a} vs {b}");
            }
        }
    }

    fn ceo_layers() -> Vec<(u64, GaussianCeo)> {
        vec![
            (4096, GaussianCeo::new(1.0, 0.1, 16).unwrap()),
            (1024, GaussianCeo::new(0.2, 0.5, 16).unwrap()),
            (256, GaussianCeo::new(5.0, 0.05, 16).unwrap()),
            (64, GaussianCeo::new(0.01, 0.02, 16).unwrap()),
        ]
    }

    #[test]
    fn ceo_allocation_beats_equal_distortion() {
        let layers = ceo_layers();
        // Equal distortion needs D above every layer's lower limit (max is 0.0306).
        for d in [0.05, 0.1, 0.2] {
            let opt = allocate(&layers, d).unwrap();
            let eq = equal_distortion(&layers, d).unwrap();
            assert!((opt.mean_distortion / d - 1.0).abs() < 1e-9);
            assert!(eq.mean_distortion <= d + 1e-15);
            assert!(
                opt.total_bits < eq.total_bits,
                "D={d}: {} vs {}",
                opt.total_bits,
                eq.total_bits
            );
            // KKT: uncapped layers share the slope, capped ones are flatter.
            for ((_, c), &dl) in layers.iter().zip(&opt.distortions) {
                assert!(dl > c.min_distortion() && dl <= c.max_distortion());
                let s = -c.sum_rate_derivative(dl).unwrap();
                if dl < c.max_distortion() {
                    assert!((s / opt.slope - 1.0).abs() < 1e-6);
                } else {
                    assert!(s >= opt.slope * (1.0 - 1e-9));
                }
            }
        }
    }

    #[test]
    fn allocation_is_a_minimum_under_perturbation() {
        let layers = ceo_layers();
        let opt = allocate(&layers, 0.1).unwrap();
        // Move distortion between two uncapped layers at constant budget.
        let (i, j) = (0, 1);
        for eps in [1e-4, -1e-4] {
            let mut d = opt.distortions.clone();
            d[i] += eps / layers[i].0 as f64;
            d[j] -= eps / layers[j].0 as f64;
            let bits: f64 = layers
                .iter()
                .zip(&d)
                .map(|((n, c), &dl)| *n as f64 * c.sum_rate(dl).unwrap())
                .sum();
            assert!(bits > opt.total_bits);
        }
    }

    #[test]
    fn default_bisection_matches_closed_forms() {
        struct Plain(GaussianCeo);
        impl RateCurve for Plain {
            fn min_distortion(&self) -> f64 {
                self.0.min_distortion()
            }
            fn max_distortion(&self) -> f64 {
                self.0.max_distortion()
            }
            fn rate(&self, d: f64) -> Result<f64, BoundError> {
                self.0.sum_rate(d)
            }
            fn rate_derivative(&self, d: f64) -> Result<f64, BoundError> {
                self.0.sum_rate_derivative(d)
            }
        }
        for (_, m) in ceo_layers() {
            for lambda in [0.01, 1.0, 10.0, 1e3, 1e6] {
                let a = m.distortion_at_slope(lambda).unwrap();
                let b = Plain(m).distortion_at_slope(lambda).unwrap();
                assert!((a / b - 1.0).abs() < 1e-9, "{m:?} λ={lambda}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn averaging_allocation_meets_budget_and_beats_equal() {
        let layers: Vec<_> = ceo_layers()
            .into_iter()
            .map(|(n, c)| (n, AveragingCeo(c)))
            .collect();
        let opt = allocate(&layers, 0.1).unwrap();
        let eq = equal_distortion(&layers, 0.1).unwrap();
        assert!((opt.mean_distortion / 0.1 - 1.0).abs() < 1e-9);
        assert!(opt.total_bits < eq.total_bits);
        // Never capped, but always costlier than the CEO-optimal allocation.
        let ceo = allocate(&ceo_layers(), 0.1).unwrap();
        assert!(ceo.total_bits < opt.total_bits);
    }

    #[test]
    fn infeasible_and_saturated_budgets() {
        let layers = ceo_layers();
        let err = allocate(&layers, 1e-4).unwrap_err();
        assert!(matches!(err, BoundError::Infeasible { .. }), "{err}");
        let all = allocate(&layers, 10.0).unwrap();
        assert_eq!(all.total_bits, 0.0);
        assert_eq!(all.slope, 0.0);
        assert!(allocate::<GaussianCeo>(&[], 0.1).is_err());
        assert!(allocate(&layers, -1.0).is_err());
        assert!(equal_distortion(&layers, 0.02).is_err());
    }
}
