//! The double (two-sided, symmetric) Weibull distribution and its fit.
//!
//! Density `f(x) = c/(2λ) · (|x|/λ)^(c-1) · exp(-(|x|/λ)^c)`: `|x|` is
//! Weibull(c, λ) and the sign is fair; c = 1 is a Laplace. CDF for x >= 0:
//! `1 - ½exp(-(x/λ)^c)`. Balakrishnan & Kocherlakota, "On the double Weibull
//! distribution", Sankhyā B 47, 1985; used as the alternative gradient model of
//! the M-magnitude weighted quantizer (Liu, Rini, Salehkalaibar, Chen, 2023;
//! ALGORITHMS.md §2). The fit is maximum likelihood on the non-zero `|x|`: the
//! shape solves `Σx^c ln x / Σx^c - 1/c = mean ln x` (bisection on `ln c`, the
//! left side increases with c), then `λ = (mean x^c)^(1/c)`.

use crate::gennorm::{log_sum_pow, BETA_MAX, BETA_MIN};
use rand::Rng;

/// A double Weibull distribution centred at 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DoubleWeibull {
    /// Shape c > 0.
    pub shape: f64,
    /// Scale λ > 0.
    pub scale: f64,
}

impl DoubleWeibull {
    /// Double Weibull with shape `c` and scale `λ`.
    pub fn new(shape: f64, scale: f64) -> Self {
        Self { shape, scale }
    }

    /// Density at `x` (infinite at 0 when c < 1).
    pub fn pdf(&self, x: f64) -> f64 {
        let z = x.abs() / self.scale;
        0.5 * self.shape / self.scale * z.powf(self.shape - 1.0) * (-z.powf(self.shape)).exp()
    }

    /// Cumulative distribution function.
    pub fn cdf(&self, x: f64) -> f64 {
        let tail = 0.5 * (-(x.abs() / self.scale).powf(self.shape)).exp();
        if x < 0.0 {
            tail
        } else {
            1.0 - tail
        }
    }

    /// Median of `|x|`: `λ (ln 2)^(1/c)`.
    pub fn median_abs(&self) -> f64 {
        self.scale * std::f64::consts::LN_2.powf(1.0 / self.shape)
    }

    /// Draws `n` samples (`|x| = λ E^(1/c)` with `E ~ Exp(1)`, fair sign).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let uniform: f64 = 1.0 - rng.random::<f64>();
                let magnitude = self.scale * (-uniform.ln()).powf(1.0 / self.shape);
                if rng.random::<bool>() {
                    magnitude
                } else {
                    -magnitude
                }
            })
            .collect()
    }
}

/// Maximum-likelihood fit on the non-zero entries of `data` (shape kept in the
/// GenNorm range [`BETA_MIN`, `BETA_MAX`]). `None` without non-zero entries.
pub fn fit_mle(data: &[f64]) -> Option<DoubleWeibull> {
    let logs = crate::gennorm::log_deviations(data, 0.0);
    if logs.is_empty() {
        return None;
    }
    let n = logs.len() as f64;
    let mean_log = logs.iter().sum::<f64>() / n;
    // h(c) = Σ x^c ln x / Σ x^c - 1/c - mean ln x, increasing in c.
    let h = |c: f64| {
        let top = logs.iter().fold(f64::NEG_INFINITY, |m, l| m.max(*l));
        let (mut weights, mut weighted) = (0.0f64, 0.0f64);
        for l in &logs {
            let w = (c * (l - top)).exp();
            weights += w;
            weighted += w * l;
        }
        weighted / weights - 1.0 / c - mean_log
    };
    let (mut lo, mut hi) = (BETA_MIN.ln(), BETA_MAX.ln());
    let shape = if h(lo.exp()) >= 0.0 {
        BETA_MIN
    } else if h(hi.exp()) <= 0.0 {
        BETA_MAX
    } else {
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if h(mid.exp()) < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
            if hi - lo < 1e-12 {
                break;
            }
        }
        (0.5 * (lo + hi)).exp()
    };
    let scale = ((log_sum_pow(&logs, shape) - n.ln()) / shape).exp();
    Some(DoubleWeibull { shape, scale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn density_and_cdf_agree() {
        let model = DoubleWeibull::new(0.7, 1.5);
        let (a, b, steps) = (0.3, 2.0, 20_000);
        let h = (b - a) / steps as f64;
        let integral: f64 = (0..=steps)
            .map(|i| {
                let w = if i == 0 || i == steps { 0.5 } else { 1.0 };
                w * model.pdf(a + h * i as f64)
            })
            .sum::<f64>()
            * h;
        assert!((integral - (model.cdf(b) - model.cdf(a))).abs() < 1e-8);
        assert!((model.cdf(-a) - (1.0 - model.cdf(a))).abs() < 1e-15);
        assert!((model.cdf(model.median_abs()) - 0.75).abs() < 1e-12);
        // c = 1 is a Laplace.
        let laplace = DoubleWeibull::new(1.0, 2.0);
        let reference = crate::GenNorm::laplace(2.0);
        assert!((laplace.pdf(0.8) - reference.pdf(0.8)).abs() < 1e-14);
    }

    #[test]
    fn fit_recovers_shape_and_scale() {
        for (shape, scale) in [(0.6, 0.02), (1.0, 1.0), (1.8, 3.0)] {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let data = DoubleWeibull::new(shape, scale).sample(&mut rng, 200_000);
            let fit = fit_mle(&data).unwrap();
            assert!(
                (fit.shape / shape - 1.0).abs() < 0.02,
                "{fit:?} for c={shape}"
            );
            assert!(
                (fit.scale / scale - 1.0).abs() < 0.02,
                "{fit:?} for λ={scale}"
            );
        }
        assert!(fit_mle(&[0.0; 4]).is_none());
    }
}
