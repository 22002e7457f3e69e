//! The quadratic Gaussian CEO problem: the minimum sum rate of model aggregation.
//!
//! Model (ALGORITHMS.md §4, after Zhang, Tao, Wang and Xu, 2022): every coordinate of
//! the true update `X ~ N(0, σ_X²)` is observed by `K` workers as `Y_k = X + N_k` with
//! independent `N_k ~ N(0, σ_N²)`; the server wants `E(X − X̂)² ≤ D`. All rates here are
//! **sum rates in bits per coordinate**, summed over the `K` workers.
//!
//! - Optimal (CEO) sum rate, valid for `σ_X²σ_N²/(Kσ_X² + σ_N²) < D ≤ σ_X²`
//!   (Oohama 1998; Prabhakaran, Tse and Ramchandran 2004; ALGORITHMS.md §4):
//!
//!   `R(D) = ½log₂(σ_X²/D) + (K/2)·log₂(K D σ_X² / (K D σ_X² − σ_N²σ_X² + σ_N² D))`.
//!
//!   Its derivative, with `δ = D/σ_X²`, `r = σ_N²/σ_X²`:
//!   `dR/dD = [(K−1)/(2δ) − (K/2)(K+r)/((K+r)δ − r)] / (σ_X² ln 2)`.
//!
//! - Unbiased averaging estimator, valid for `D > σ_N²/K` (ALGORITHMS.md §4):
//!
//!   `R(D) = ½log₂(1 + σ_X²/D) + (K/2)·log₂(K D / (K D − σ_N²))`.
//!
//! - Independent coding (the baseline behind the "2.9x, 2.0x, 1.35x" of
//!   ALGORITHMS.md §4): every worker rate-distortion codes its own `Y_k`
//!   (`σ_Y² = σ_X² + σ_N²`) with the Gaussian backward channel at distortion `d_w`,
//!   rate `½log₂(σ_Y²/d_w)` each. The reconstruction is `Ŷ_k = a(Y_k + W_k)` with
//!   `W_k ~ N(0, σ_W²)`, `σ_W² = σ_Y² d_w/(σ_Y² − d_w)` (Cover and Thomas, §10.3), so the
//!   server sees `X` through `K` independent noises of variance `σ_E² = σ_N² + σ_W²`
//!   and its MMSE is `D = (1/σ_X² + K/σ_E²)⁻¹`. `d_w` is found for a target `D` by
//!   bisection; the sum rate is `K·½log₂(σ_Y²/d_w)`.
//!
//! Internally everything is computed on the ratios `δ = D/σ_X²` and `r = σ_N²/σ_X²`,
//! so tiny or huge variances do not underflow.

use crate::error::{non_negative, positive, BoundError};
use serde::{Deserialize, Serialize};
use std::f64::consts::LN_2;

/// One quadratic Gaussian CEO source: per-coordinate source variance, observation
/// noise variance and number of workers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaussianCeo {
    /// Variance of the true update per coordinate, `σ_X² > 0`.
    pub sigma_x2: f64,
    /// Variance of each worker's observation noise, `σ_N² ≥ 0`.
    pub sigma_n2: f64,
    /// Number of workers, `K ≥ 1`.
    pub k: usize,
}

impl GaussianCeo {
    /// A validated model: `sigma_x2` finite and > 0, `sigma_n2` finite and ≥ 0, `k ≥ 1`.
    pub fn new(sigma_x2: f64, sigma_n2: f64, k: usize) -> Result<Self, BoundError> {
        let model = GaussianCeo {
            sigma_x2,
            sigma_n2,
            k,
        };
        model.validate()?;
        Ok(model)
    }

    /// Checks the fields (they are public, so every method re-checks them).
    pub fn validate(&self) -> Result<(), BoundError> {
        positive("sigma_x2", self.sigma_x2)?;
        non_negative("sigma_n2", self.sigma_n2)?;
        if self.k == 0 {
            return Err(BoundError::InvalidParameter {
                name: "k",
                value: 0.0,
                requirement: "at least 1",
            });
        }
        Ok(())
    }

    fn kf(&self) -> f64 {
        self.k as f64
    }

    /// `r = σ_N²/σ_X²`.
    fn noise_ratio(&self) -> f64 {
        self.sigma_n2 / self.sigma_x2
    }

    /// Lower end (exclusive) of the CEO sum rate's range: the MMSE of `X` from all `K`
    /// uncompressed observations, `σ_X²σ_N²/(Kσ_X² + σ_N²)`.
    pub fn min_distortion(&self) -> f64 {
        let r = self.noise_ratio();
        self.sigma_x2 * r / (self.kf() + r)
    }

    /// Upper end (inclusive) of the CEO sum rate's range, `σ_X²`: the rate is 0 there.
    pub fn max_distortion(&self) -> f64 {
        self.sigma_x2
    }

    /// Lower end (exclusive) of the averaging estimator's range, `σ_N²/K`.
    pub fn averaging_min_distortion(&self) -> f64 {
        self.sigma_n2 / self.kf()
    }

    fn check_ceo_range(&self, d: f64, function: &'static str) -> Result<f64, BoundError> {
        self.validate()?;
        let min = self.min_distortion();
        let max = self.max_distortion();
        if d.is_finite() && d > min && d <= max {
            Ok(d / self.sigma_x2)
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

    fn check_averaging_range(&self, d: f64, function: &'static str) -> Result<f64, BoundError> {
        self.validate()?;
        let min = self.averaging_min_distortion();
        if d.is_finite() && d > min && d > 0.0 {
            Ok(d / self.sigma_x2)
        } else {
            Err(BoundError::DistortionOutOfRange {
                function,
                distortion: d,
                min,
                min_inclusive: false,
                max: f64::INFINITY,
            })
        }
    }

    /// Minimum sum rate (bits per coordinate, all workers together) at MSE `d`, for
    /// `min_distortion() < d ≤ max_distortion()`; 0 at `d = σ_X²`.
    pub fn sum_rate(&self, d: f64) -> Result<f64, BoundError> {
        let delta = self.check_ceo_range(d, "CEO sum rate")?;
        if delta >= 1.0 {
            return Ok(0.0);
        }
        let (r, k) = (self.noise_ratio(), self.kf());
        // (K/2) log2(Kδ/(Kδ − r + rδ)) = −(K/2) log2(1 − r(1−δ)/(Kδ)).
        let nats = -0.5 * delta.ln() - 0.5 * k * (-r * (1.0 - delta) / (k * delta)).ln_1p();
        Ok((nats / LN_2).max(0.0))
    }

    /// `dR/dD` of [`sum_rate`](Self::sum_rate), bits per unit of distortion (negative),
    /// on the same range; at `d = σ_X²` the left derivative.
    pub fn sum_rate_derivative(&self, d: f64) -> Result<f64, BoundError> {
        let delta = self.check_ceo_range(d, "CEO sum rate")?;
        Ok(self.ceo_derivative_normalized(delta) / (self.sigma_x2 * LN_2))
    }

    /// `dR/dδ` in nats for `δ = D/σ_X²`.
    fn ceo_derivative_normalized(&self, delta: f64) -> f64 {
        let (r, k) = (self.noise_ratio(), self.kf());
        (k - 1.0) / (2.0 * delta) - 0.5 * k * (k + r) / ((k + r) * delta - r)
    }

    /// The distortion where the CEO sum rate has slope `−lambda` (bits per unit of
    /// distortion, `lambda > 0`), capped at `σ_X²` (where the rate is 0): the positive
    /// root of `2μaδ² − (2μr + a)δ − (K−1)r = 0` with `a = K + r`, `μ = λσ_X² ln 2`,
    /// `δ = D/σ_X²`, obtained by setting the derivative above to `−λ`.
    pub fn distortion_at_slope(&self, lambda: f64) -> Result<f64, BoundError> {
        self.validate()?;
        positive("lambda", lambda)?;
        let (r, k) = (self.noise_ratio(), self.kf());
        let mu = lambda * self.sigma_x2 * LN_2;
        let a = k + r;
        let b = 2.0 * mu * r + a;
        let delta = (b + (b * b + 8.0 * mu * a * (k - 1.0) * r).sqrt()) / (4.0 * mu * a);
        Ok(self.sigma_x2 * delta.min(1.0))
    }

    /// Sum rate (bits per coordinate) when the server uses the unbiased averaging
    /// estimator, for `d > σ_N²/K` (no upper limit: the rate only tends to 0 as
    /// `d → ∞`).
    pub fn averaging_sum_rate(&self, d: f64) -> Result<f64, BoundError> {
        let delta = self.check_averaging_range(d, "averaging-estimator sum rate")?;
        let (r, k) = (self.noise_ratio(), self.kf());
        // ½log2(1 + 1/δ) − (K/2) log2(1 − r/(Kδ)).
        let nats = 0.5 * (1.0 / delta).ln_1p() - 0.5 * k * (-r / (k * delta)).ln_1p();
        Ok(nats / LN_2)
    }

    /// `dR/dD` of [`averaging_sum_rate`](Self::averaging_sum_rate), bits per unit of
    /// distortion: `[−1/(2δ(1+δ)) − (K/2)·r/(δ(Kδ − r))] / (σ_X² ln 2)`.
    pub fn averaging_sum_rate_derivative(&self, d: f64) -> Result<f64, BoundError> {
        let delta = self.check_averaging_range(d, "averaging-estimator sum rate")?;
        let (r, k) = (self.noise_ratio(), self.kf());
        let nats = -1.0 / (2.0 * delta * (1.0 + delta)) - 0.5 * k * r / (delta * (k * delta - r));
        Ok(nats / (self.sigma_x2 * LN_2))
    }

    /// Server MSE, normalized by `σ_X²`, when each worker codes its observation at
    /// normalized distortion `omega = d_w/σ_X²` (`0 < omega < 1 + r`).
    fn independent_delta(&self, omega: f64) -> f64 {
        let (r, k) = (self.noise_ratio(), self.kf());
        let y = 1.0 + r;
        let w = y * omega / (y - omega);
        let e = r + w;
        e / (e + k)
    }

    /// The per-worker distortion `d_w` (MSE of each worker's reconstruction of its own
    /// observation) at which independent coding gives the server MSE `d`; same range
    /// as the CEO sum rate, `σ_X² + σ_N²` at `d = σ_X²`. Found by bisection on
    /// `ln d_w` (the server MSE is increasing in `d_w`).
    pub fn independent_worker_distortion(&self, d: f64) -> Result<f64, BoundError> {
        let delta = self.check_ceo_range(d, "independent-coding sum rate")?;
        let y = 1.0 + self.noise_ratio();
        if delta >= 1.0 {
            return Ok(self.sigma_x2 * y);
        }
        let (mut lo, mut hi) = ((y * 1e-300).ln(), y.ln());
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if self.independent_delta(mid.exp()) < delta {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(self.sigma_x2 * (0.5 * (lo + hi)).exp())
    }

    /// Sum rate (bits per coordinate) of independent coding followed by MMSE
    /// estimation at the server: `K·½log₂(σ_Y²/d_w)` with `d_w` from
    /// [`independent_worker_distortion`](Self::independent_worker_distortion).
    pub fn independent_sum_rate(&self, d: f64) -> Result<f64, BoundError> {
        let d_w = self.independent_worker_distortion(d)?;
        let sigma_y2 = self.sigma_x2 + self.sigma_n2;
        Ok((0.5 * self.kf() * (sigma_y2 / d_w).log2()).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> GaussianCeo {
        GaussianCeo::new(1.0, 0.1, 16).unwrap()
    }

    #[test]
    fn joint_coding_gains_match_algorithms_md() {
        let m = example();
        // ALGORITHMS.md §4: 2.9x, 2.0x, 1.35x; the unrounded values 2.899, 1.973, 1.349.
        for (d, printed, printed_tol, exact) in [
            (0.05, 2.9, 0.01, 2.899),
            (0.2, 2.0, 0.05, 1.973),
            (0.5, 1.35, 0.005, 1.349),
        ] {
            let ratio = m.independent_sum_rate(d).unwrap() / m.sum_rate(d).unwrap();
            assert!(
                (ratio - printed).abs() < printed_tol,
                "D={d}: ratio {ratio} vs {printed}"
            );
            assert!(
                (ratio - exact).abs() < 5e-4,
                "D={d}: ratio {ratio} vs {exact}"
            );
        }
    }

    #[test]
    fn independent_bisection_matches_closed_form() {
        let m = example();
        for d in [0.01, 0.05, 0.2, 0.5, 0.9] {
            // D = (1/σX² + K/σE²)⁻¹  ⇒  σE² = K/(1/D − 1/σX²); σW² = σE² − σN²;
            // d_w = σW²σY²/(σY² + σW²).
            let e = 16.0 / (1.0 / d - 1.0);
            let w = e - 0.1;
            let y = 1.1;
            let d_w = w * y / (y + w);
            let got = m.independent_worker_distortion(d).unwrap();
            assert!((got / d_w - 1.0).abs() < 1e-12, "D={d}: {got} vs {d_w}");
        }
    }

    #[test]
    fn ceo_with_one_worker_is_remote_source_coding() {
        // K = 1: R = ½log2((σX² − d0)/(D − d0)), d0 = σX²σN²/(σX² + σN²).
        let m = GaussianCeo::new(2.0, 0.5, 1).unwrap();
        let d0: f64 = 2.0 * 0.5 / 2.5;
        for d in [0.45, 0.6, 1.0, 1.9] {
            let want = 0.5 * ((2.0 - d0) / (d - d0)).log2();
            let got = m.sum_rate(d).unwrap();
            assert!((got - want).abs() < 1e-12, "D={d}: {got} vs {want}");
        }
    }

    #[test]
    fn noiseless_ceo_is_gaussian_rate_distortion() {
        let m = GaussianCeo::new(3.0, 0.0, 8).unwrap();
        for d in [1e-6, 0.3, 2.9] {
            let got = m.sum_rate(d).unwrap();
            assert!((got - 0.5 * (3.0 / d).log2()).abs() < 1e-12);
        }
    }

    #[test]
    fn rate_is_zero_at_source_variance_and_ordered() {
        let m = example();
        assert_eq!(m.sum_rate(1.0).unwrap(), 0.0);
        assert_eq!(m.independent_sum_rate(1.0).unwrap(), 0.0);
        for d in [0.01, 0.05, 0.2, 0.5, 0.99] {
            let ceo = m.sum_rate(d).unwrap();
            let avg = m.averaging_sum_rate(d).unwrap();
            let ind = m.independent_sum_rate(d).unwrap();
            assert!(
                ceo > 0.0 && ceo < avg && ceo < ind,
                "D={d}: {ceo} {avg} {ind}"
            );
        }
    }

    #[test]
    fn out_of_range_distortions_name_the_range() {
        let m = example();
        let min = m.min_distortion();
        assert!((min - 0.1 / 16.1).abs() < 1e-15);
        for d in [min, min * 0.5, 1.0 + 1e-9, -1.0, f64::NAN] {
            let err = m.sum_rate(d).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("(6.2111801242236") && text.contains(", 1e0]"),
                "{text}"
            );
            assert!(m.independent_sum_rate(d).is_err());
        }
        let err = m.averaging_sum_rate(0.1 / 16.0).unwrap_err().to_string();
        assert!(err.contains("(6.25e-3, inf)"), "{err}");
        assert!(m.averaging_sum_rate(0.0063).is_ok());
        assert!(GaussianCeo::new(0.0, 0.1, 2).is_err());
        assert!(GaussianCeo::new(1.0, -0.1, 2).is_err());
        assert!(GaussianCeo::new(1.0, 0.1, 0).is_err());
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let m = example();
        for d in [0.01, 0.05, 0.2, 0.5, 0.9] {
            let h = d * 1e-6;
            let fd = (m.sum_rate(d + h).unwrap() - m.sum_rate(d - h).unwrap()) / (2.0 * h);
            let an = m.sum_rate_derivative(d).unwrap();
            assert!((fd / an - 1.0).abs() < 1e-6, "D={d}: {fd} vs {an}");
            let fd = (m.averaging_sum_rate(d + h).unwrap() - m.averaging_sum_rate(d - h).unwrap())
                / (2.0 * h);
            let an = m.averaging_sum_rate_derivative(d).unwrap();
            assert!((fd / an - 1.0).abs() < 1e-6, "D={d}: {fd} vs {an}");
        }
    }

    #[test]
    fn distortion_at_slope_inverts_the_derivative() {
        for m in [example(), GaussianCeo::new(0.02, 0.3, 4).unwrap()] {
            for frac in [0.01, 0.1, 0.5, 0.9, 0.999] {
                let d = m.min_distortion() + frac * (m.max_distortion() - m.min_distortion());
                let lambda = -m.sum_rate_derivative(d).unwrap();
                let back = m.distortion_at_slope(lambda).unwrap();
                assert!((back / d - 1.0).abs() < 1e-9, "{m:?} D={d}: {back}");
            }
            // A slope flatter than the one at D = σX² gives the cap.
            let flat = -m.sum_rate_derivative(m.max_distortion()).unwrap() * 0.5;
            assert_eq!(m.distortion_at_slope(flat).unwrap(), m.max_distortion());
        }
    }
}
