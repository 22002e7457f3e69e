//! The generalized normal (GenNorm) distribution and its fits.
//!
//! Density `f(x) = β / (2αΓ(1/β)) · exp(-(|x-μ|/α)^β)`: β = 2 is a Normal with
//! variance α²/2, β = 1 a Laplace with scale α; β < 1 has heavier tails. With
//! `G = (|x-μ|/α)^β`, `G ~ Gamma(1/β, 1)`, which gives the CDF through the
//! regularized incomplete gamma function and a sampler
//! (`x = μ ± α·G^(1/β)`). Nadarajah, "A generalized normal distribution",
//! J. Applied Statistics 32(7), 2005; gradients' use of it: Chen, Hernandez,
//! Huang, Rini, "CO3", 2022-2023 (ALGORITHMS.md §1.2).
//!
//! Fits (μ given, 0 for gradients): maximum likelihood ([`fit_mle`], the
//! reference: the profile likelihood in β maximized by a log-grid scan and
//! golden-section refinement, α in closed form) and the moment estimator
//! ([`fit_moments`]: `E|x| / sqrt(E x²) = Γ(2/β)/sqrt(Γ(1/β)Γ(3/β))` solved for β
//! by bisection, α from `E|x|`). Both skip exact zeros (`x = μ`), which carry no
//! information about a continuous fit; [`crate::fit::fit_tensor`] models them as
//! a point mass. β is kept in [`BETA_MIN`, `BETA_MAX`].

use crate::special::{gamma_quantile, ln_gamma, reg_lower_diff, reg_upper};
use rand::Rng;
use rand_distr::{Distribution, Gamma};

/// Smallest shape a fit returns.
pub const BETA_MIN: f64 = 0.05;
/// Largest shape a fit returns.
pub const BETA_MAX: f64 = 20.0;

/// A GenNorm(β, α, μ) distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenNorm {
    /// Shape β > 0.
    pub beta: f64,
    /// Scale α > 0.
    pub alpha: f64,
    /// Location μ.
    pub mu: f64,
}

impl GenNorm {
    /// GenNorm(β, α) centred at 0.
    pub fn new(beta: f64, alpha: f64) -> Self {
        Self {
            beta,
            alpha,
            mu: 0.0,
        }
    }

    /// The Normal with standard deviation `sigma` (β = 2, α = σ√2).
    pub fn normal(sigma: f64) -> Self {
        Self::new(2.0, sigma * std::f64::consts::SQRT_2)
    }

    /// The Laplace with scale `b` (β = 1, α = b).
    pub fn laplace(b: f64) -> Self {
        Self::new(1.0, b)
    }

    /// Density at `x`.
    pub fn pdf(&self, x: f64) -> f64 {
        let z = (x - self.mu).abs() / self.alpha;
        let log_norm = self.beta.ln() - (2.0 * self.alpha).ln() - ln_gamma(1.0 / self.beta);
        (log_norm - z.powf(self.beta)).exp()
    }

    /// Probability of `(μ + α·lo, μ + α·hi)` for `0 <= lo <= hi` in units of α:
    /// half the Gamma(1/β) mass of `(lo^β, hi^β)`.
    fn half_mass(&self, lo: f64, hi: f64) -> f64 {
        0.5 * reg_lower_diff(1.0 / self.beta, lo.powf(self.beta), hi.powf(self.beta))
    }

    /// Cumulative distribution function, accurate in both tails.
    pub fn cdf(&self, x: f64) -> f64 {
        let u = (x - self.mu) / self.alpha;
        let tail = 0.5 * reg_upper(1.0 / self.beta, u.abs().powf(self.beta));
        if u < 0.0 {
            tail
        } else {
            1.0 - tail
        }
    }

    /// Survival function `1 - F(x)`, accurate in the upper tail.
    pub fn sf(&self, x: f64) -> f64 {
        self.cdf(2.0 * self.mu - x)
    }

    /// Probability of the interval `[lo, hi]` (either end may be infinite),
    /// computed without cancellation in the tails.
    pub fn interval_mass(&self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            return 0.0;
        }
        let (a, b) = ((lo - self.mu) / self.alpha, (hi - self.mu) / self.alpha);
        if a >= 0.0 {
            self.half_mass(a, b)
        } else if b <= 0.0 {
            self.half_mass(-b, -a)
        } else {
            self.half_mass(0.0, -a) + self.half_mass(0.0, b)
        }
    }

    /// The `p`-quantile, `0 < p < 1`.
    pub fn quantile(&self, p: f64) -> f64 {
        let q = (2.0 * p - 1.0).abs();
        let g = gamma_quantile(1.0 / self.beta, q);
        let magnitude = self.alpha * g.powf(1.0 / self.beta);
        if p < 0.5 {
            self.mu - magnitude
        } else {
            self.mu + magnitude
        }
    }

    /// `E|x - μ| = α Γ(2/β) / Γ(1/β)`.
    pub fn mean_abs(&self) -> f64 {
        self.alpha * (ln_gamma(2.0 / self.beta) - ln_gamma(1.0 / self.beta)).exp()
    }

    /// Variance `α² Γ(3/β) / Γ(1/β)`.
    pub fn variance(&self) -> f64 {
        self.alpha * self.alpha * (ln_gamma(3.0 / self.beta) - ln_gamma(1.0 / self.beta)).exp()
    }

    /// Median of `|x - μ|`: `α · Q_Gamma(1/β)(1/2)^(1/β)`.
    pub fn median_abs(&self) -> f64 {
        self.alpha * gamma_quantile(1.0 / self.beta, 0.5).powf(1.0 / self.beta)
    }

    /// Draws `n` samples: `|x-μ|^β / α^β ~ Gamma(1/β, 1)` with a fair sign.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, n: usize) -> Vec<f64> {
        let gamma = Gamma::new(1.0 / self.beta, 1.0).expect("shape 1/β must be positive");
        (0..n)
            .map(|_| {
                let g: f64 = gamma.sample(rng);
                let magnitude = self.alpha * g.powf(1.0 / self.beta);
                if rng.random::<bool>() {
                    self.mu + magnitude
                } else {
                    self.mu - magnitude
                }
            })
            .collect()
    }
}

/// `E|x| / sqrt(E x²)` of a GenNorm(β): `Γ(2/β) / sqrt(Γ(1/β) Γ(3/β))`,
/// increasing in β from 0 (β → 0) to √3/2 (β → ∞).
pub fn moment_ratio(beta: f64) -> f64 {
    (ln_gamma(2.0 / beta) - 0.5 * (ln_gamma(1.0 / beta) + ln_gamma(3.0 / beta))).exp()
}

/// Solves [`moment_ratio`]`(β) = ratio` for β by bisection on `ln β` (clamped
/// to [`BETA_MIN`, `BETA_MAX`]).
pub fn beta_from_moment_ratio(ratio: f64) -> f64 {
    let (mut lo, mut hi) = (BETA_MIN.ln(), BETA_MAX.ln());
    if ratio.is_nan() || ratio <= moment_ratio(BETA_MIN) {
        return BETA_MIN;
    }
    if ratio >= moment_ratio(BETA_MAX) {
        return BETA_MAX;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if moment_ratio(mid.exp()) < ratio {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 {
            break;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// Maximum-likelihood α for a known β: `α^β = (β/n) Σ|x-μ|^β`, over the non-zero
/// deviations. `None` when there is none.
pub fn fit_scale_for_shape(data: &[f64], beta: f64, mu: f64) -> Option<f64> {
    let logs = log_deviations(data, mu);
    if logs.is_empty() {
        return None;
    }
    Some(scale_from_logs(&logs, beta))
}

/// Fast moment estimator with location `mu`. `None` without non-zero deviations.
pub fn fit_moments(data: &[f64], mu: f64) -> Option<GenNorm> {
    let (mut sum_abs, mut sum_sq, mut count) = (0.0f64, 0.0f64, 0usize);
    for &x in data {
        let d = (x - mu).abs();
        if d > 0.0 && d.is_finite() {
            sum_abs += d;
            sum_sq += d * d;
            count += 1;
        }
    }
    if count == 0 {
        return None;
    }
    Some(GenNorm {
        mu,
        ..moments_model(sum_abs, sum_sq, count)
    })
}

/// The zero-centred moment fit from `Σ|x|`, `Σx²` over `count > 0` entries.
pub fn moments_model(sum_abs: f64, sum_sq: f64, count: usize) -> GenNorm {
    let (m1, m2) = (sum_abs / count as f64, sum_sq / count as f64);
    let beta = beta_from_moment_ratio(m1 / m2.sqrt());
    let alpha = m1 * (ln_gamma(1.0 / beta) - ln_gamma(2.0 / beta)).exp();
    GenNorm {
        beta,
        alpha,
        mu: 0.0,
    }
}

/// Maximum-likelihood fit with location `mu` (the reference estimator).
/// `None` without non-zero deviations.
pub fn fit_mle(data: &[f64], mu: f64) -> Option<GenNorm> {
    let logs = log_deviations(data, mu);
    if logs.is_empty() {
        return None;
    }
    let objective = |t: f64| profile_log_likelihood(&logs, t.exp());
    let t = maximize_on_log_grid(objective, BETA_MIN.ln(), BETA_MAX.ln(), 48);
    let beta = t.exp();
    Some(GenNorm {
        beta,
        alpha: scale_from_logs(&logs, beta),
        mu,
    })
}

/// `ln|x - μ|` of the non-zero, finite deviations.
pub(crate) fn log_deviations(data: &[f64], mu: f64) -> Vec<f64> {
    data.iter()
        .map(|x| (x - mu).abs())
        .filter(|d| *d > 0.0 && d.is_finite())
        .map(f64::ln)
        .collect()
}

/// `ln Σ exp(β·l)` without overflow.
pub(crate) fn log_sum_pow(logs: &[f64], beta: f64) -> f64 {
    let top = logs.iter().fold(f64::NEG_INFINITY, |m, l| m.max(*l));
    let sum: f64 = logs.iter().map(|l| (beta * (l - top)).exp()).sum();
    beta * top + sum.ln()
}

fn scale_from_logs(logs: &[f64], beta: f64) -> f64 {
    let n = logs.len() as f64;
    ((beta.ln() + log_sum_pow(logs, beta) - n.ln()) / beta).exp()
}

/// Per-sample log-likelihood with α at its maximum for this β.
fn profile_log_likelihood(logs: &[f64], beta: f64) -> f64 {
    let n = logs.len() as f64;
    let log_alpha = (beta.ln() + log_sum_pow(logs, beta) - n.ln()) / beta;
    beta.ln() - std::f64::consts::LN_2 - ln_gamma(1.0 / beta) - log_alpha - 1.0 / beta
}

/// Maximizes a function of one variable over `[lo, hi]`: a scan of `points`
/// points, then golden-section search between the best point's neighbours.
pub(crate) fn maximize_on_log_grid(f: impl Fn(f64) -> f64, lo: f64, hi: f64, points: usize) -> f64 {
    let step = (hi - lo) / (points - 1) as f64;
    let mut best = (0usize, f64::NEG_INFINITY);
    for i in 0..points {
        let value = f(lo + step * i as f64);
        if value > best.1 {
            best = (i, value);
        }
    }
    let a = lo + step * best.0.saturating_sub(1) as f64;
    let b = lo + step * (best.0 + 1).min(points - 1) as f64;
    golden_section_max(f, a, b, 1e-9)
}

/// Golden-section search for the maximum of a unimodal function on `[a, b]`.
pub fn golden_section_max(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64, tolerance: f64) -> f64 {
    const INV_PHI: f64 = 0.618_033_988_749_894_8;
    let mut c = b - INV_PHI * (b - a);
    let mut d = a + INV_PHI * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..200 {
        if (b - a).abs() <= tolerance {
            break;
        }
        if fc >= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - INV_PHI * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + INV_PHI * (b - a);
            fd = f(d);
        }
    }
    if fc >= fd {
        c
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn relative_error(estimate: f64, truth: f64) -> f64 {
        (estimate / truth - 1.0).abs()
    }

    #[test]
    fn density_integrates_to_the_cdf() {
        for beta in [0.5, 1.0, 2.0, 3.5] {
            let model = GenNorm::new(beta, 1.7);
            // Trapezoid integral of the pdf on [0.2, 1.9] against the CDF.
            let (a, b, steps) = (0.2, 1.9, 20_000);
            let h = (b - a) / steps as f64;
            let integral: f64 = (0..=steps)
                .map(|i| {
                    let w = if i == 0 || i == steps { 0.5 } else { 1.0 };
                    w * model.pdf(a + h * i as f64)
                })
                .sum::<f64>()
                * h;
            let mass = model.cdf(b) - model.cdf(a);
            assert!(
                (integral - mass).abs() < 1e-8,
                "β={beta}: {integral} vs {mass}"
            );
            assert!((model.interval_mass(a, b) - mass).abs() < 1e-12);
            assert!((model.interval_mass(-b, -a) - mass).abs() < 1e-12);
            assert!((model.interval_mass(f64::NEG_INFINITY, f64::INFINITY) - 1.0).abs() < 1e-12);
            assert!((model.cdf(0.0) - 0.5).abs() < 1e-15);
            assert!((model.sf(1.1) - (1.0 - model.cdf(1.1))).abs() < 1e-14);
            assert!(model.sf(6.0) > 0.0 && model.sf(6.0) == model.cdf(-6.0));
            let p = model.cdf(1.3);
            assert!((model.quantile(p) - 1.3).abs() < 1e-7);
        }
        // β = 2 is a Normal: the 97.5% quantile of N(0, 1) is 1.959964.
        let normal = GenNorm::normal(1.0);
        assert!((normal.quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal.variance() - 1.0).abs() < 1e-12);
        // β = 1 is a Laplace: E|x| = b, median |x| = b ln 2.
        let laplace = GenNorm::laplace(2.0);
        assert!((laplace.mean_abs() - 2.0).abs() < 1e-12);
        assert!((laplace.median_abs() - 2.0 * std::f64::consts::LN_2).abs() < 1e-9);
    }

    #[test]
    fn moment_ratio_matches_the_known_shapes() {
        assert!((moment_ratio(2.0) - (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-12);
        assert!((moment_ratio(1.0) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        for beta in [0.3, 0.7, 1.0, 1.6, 4.0] {
            assert!((beta_from_moment_ratio(moment_ratio(beta)) - beta).abs() < 1e-9);
        }
    }

    #[test]
    fn fits_recover_shape_and_scale_of_a_million_samples() {
        for (index, (beta, alpha)) in [(0.5, 0.01), (1.0, 2.0), (2.0, 0.3)]
            .into_iter()
            .enumerate()
        {
            let mut rng = ChaCha8Rng::seed_from_u64(40 + index as u64);
            let data = GenNorm::new(beta, alpha).sample(&mut rng, 1_000_000);
            let mle = fit_mle(&data, 0.0).unwrap();
            let moments = fit_moments(&data, 0.0).unwrap();
            for (name, fit) in [("MLE", mle), ("moments", moments)] {
                let (beta_error, alpha_error) = (
                    relative_error(fit.beta, beta),
                    relative_error(fit.alpha, alpha),
                );
                println!(
                    "β={beta} α={alpha}: {name} β̂={:.5} ({:.3}%) α̂={:.6} ({:.3}%)",
                    fit.beta,
                    100.0 * beta_error,
                    fit.alpha,
                    100.0 * alpha_error
                );
                assert!(beta_error < 0.02, "{name}: β̂ = {} for β = {beta}", fit.beta);
                assert!(
                    alpha_error < 0.02,
                    "{name}: α̂ = {} for α = {alpha}",
                    fit.alpha
                );
            }
        }
    }

    #[test]
    fn fixed_shape_scale_is_the_closed_form() {
        let data = [1.0, -2.0, 3.0, 0.0];
        // β = 1: α = mean |x| over the non-zero entries.
        assert!((fit_scale_for_shape(&data, 1.0, 0.0).unwrap() - 2.0).abs() < 1e-12);
        // β = 2: α = sqrt(2 mean x²).
        let expected = (2.0 * 14.0 / 3.0f64).sqrt();
        assert!((fit_scale_for_shape(&data, 2.0, 0.0).unwrap() - expected).abs() < 1e-12);
        assert!(fit_scale_for_shape(&[0.0, 0.0], 1.0, 0.0).is_none());
        assert!(fit_mle(&[], 0.0).is_none());
        assert!(fit_moments(&[0.0], 0.0).is_none());
    }

    #[test]
    fn golden_section_finds_a_parabola_peak() {
        let x = golden_section_max(|x| -(x - 0.3) * (x - 0.3), -2.0, 5.0, 1e-10);
        assert!((x - 0.3).abs() < 1e-8);
    }
}
