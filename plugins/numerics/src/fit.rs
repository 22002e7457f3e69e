//! Fitting a model to one tensor of an update, and measuring the fit.
//!
//! Real gradients break a naive fit in two ways (ALGORITHMS.md §1.2): layers
//! behind dead ReLUs hold many exact zeros, which drive a GenNorm MLE to β → 0,
//! and tiny tensors (biases, norms) have too few entries for a shape estimate.
//! [`fit_tensor`] therefore fits the non-zero entries only and reports the zero
//! fraction as a separate point mass, and below [`MIN_FIT_ENTRIES`] non-zero
//! entries it skips the fit: the shape takes its default (1, a Laplace, unless
//! fixed) and the scale comes from the median `|x|` (robust to outliers).
//!
//! Fit quality ([`fit_quality`]) is the Wasserstein-2 distance between the
//! standardized non-zero data (divided by their RMS) and each model rescaled the
//! same way, for the GenNorm fit, the Normal (β = 2) and the Laplace (β = 1)
//! maximum-likelihood fits.

use crate::gennorm::{self, GenNorm};
use crate::weibull::{self, DoubleWeibull};

/// Fewer non-zero entries than this: no shape fit, robust scale only.
pub const MIN_FIT_ENTRIES: usize = 256;

/// How a GenNorm is estimated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Estimator {
    /// The moment estimator (`E|x| / sqrt(E x²)`), fast.
    Moment,
    /// Maximum likelihood, the reference.
    Mle,
}

/// The model family fitted to a tensor's non-zero entries (all centred at 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Family {
    /// GenNorm with the shape estimated.
    GenNorm(Estimator),
    /// GenNorm with a fixed shape (2: Normal, 1: Laplace); scale by MLE.
    FixedShape(f64),
    /// Double Weibull, by maximum likelihood.
    DoubleWeibull,
}

/// The fit of one tensor: a continuous model of the non-zero entries plus a
/// point mass at zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorFit {
    /// Shape (GenNorm β or Weibull c).
    pub shape: f64,
    /// Scale (GenNorm α or Weibull λ); 0 when the tensor has no non-zero entry.
    pub scale: f64,
    /// Fraction of exact zeros (0 for an empty tensor).
    pub zero_fraction: f64,
    /// Number of non-zero entries.
    pub nonzero: usize,
    /// False when the tiny-tensor guard replaced the fit by the robust scale.
    pub fitted: bool,
}

/// Fits `family` to the non-zero entries of `values` (see the module doc).
pub fn fit_tensor(values: &[f32], family: Family) -> TensorFit {
    if family == Family::GenNorm(Estimator::Moment) {
        if let Some(fit) = fit_moments_in_place(values) {
            return fit;
        }
    }
    let (nonzero, zero_fraction) = nonzero_entries(values);
    let mut fit = TensorFit {
        shape: default_shape(family),
        scale: 0.0,
        zero_fraction,
        nonzero: nonzero.len(),
        fitted: false,
    };
    if nonzero.is_empty() {
        return fit;
    }
    if nonzero.len() < MIN_FIT_ENTRIES {
        let median = median_abs(&nonzero);
        let unit_median = match family {
            Family::DoubleWeibull => DoubleWeibull::new(fit.shape, 1.0).median_abs(),
            _ => GenNorm::new(fit.shape, 1.0).median_abs(),
        };
        fit.scale = median / unit_median;
        return fit;
    }
    let (shape, scale) = match family {
        Family::GenNorm(Estimator::Moment) => {
            let model = gennorm::fit_moments(&nonzero, 0.0).expect("non-zero data");
            (model.beta, model.alpha)
        }
        Family::GenNorm(Estimator::Mle) => {
            let model = gennorm::fit_mle(&nonzero, 0.0).expect("non-zero data");
            (model.beta, model.alpha)
        }
        Family::FixedShape(beta) => (
            beta,
            gennorm::fit_scale_for_shape(&nonzero, beta, 0.0).expect("non-zero data"),
        ),
        Family::DoubleWeibull => {
            let model = weibull::fit_mle(&nonzero).expect("non-zero data");
            (model.shape, model.scale)
        }
    };
    fit.shape = shape;
    fit.scale = scale;
    fit.fitted = true;
    fit
}

/// The finite non-zero entries of `values` (as f64) and the fraction of the
/// others (0 for an empty tensor): what the fits see, and the zero point mass.
pub fn nonzero_entries(values: &[f32]) -> (Vec<f64>, f64) {
    let nonzero: Vec<f64> = values
        .iter()
        .filter(|v| **v != 0.0 && v.is_finite())
        .map(|v| f64::from(*v))
        .collect();
    let zero_fraction = if values.is_empty() {
        0.0
    } else {
        1.0 - nonzero.len() as f64 / values.len() as f64
    };
    (nonzero, zero_fraction)
}

/// The moment fit of [`fit_tensor`] in one pass and without a copy of the data
/// (the hot path of `float-convert`): the same sums in the same order as
/// [`gennorm::fit_moments`], so the same bits. `None` below [`MIN_FIT_ENTRIES`]
/// non-zero entries (the caller's robust path handles those).
fn fit_moments_in_place(values: &[f32]) -> Option<TensorFit> {
    let (mut sum_abs, mut sum_sq, mut count) = (0.0f64, 0.0f64, 0usize);
    for v in values {
        if *v != 0.0 && v.is_finite() {
            let d = f64::from(*v).abs();
            sum_abs += d;
            sum_sq += d * d;
            count += 1;
        }
    }
    if count < MIN_FIT_ENTRIES {
        return None;
    }
    let model = gennorm::moments_model(sum_abs, sum_sq, count);
    Some(TensorFit {
        shape: model.beta,
        scale: model.alpha,
        zero_fraction: 1.0 - count as f64 / values.len() as f64,
        nonzero: count,
        fitted: true,
    })
}

fn default_shape(family: Family) -> f64 {
    match family {
        Family::FixedShape(beta) => beta,
        _ => 1.0,
    }
}

/// Median of `|x|` (upper median for an even count).
fn median_abs(values: &[f64]) -> f64 {
    let mut magnitudes: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    let middle = magnitudes.len() / 2;
    let (_, median, _) = magnitudes.select_nth_unstable_by(middle, f64::total_cmp);
    *median
}

/// Fit quality of one tensor (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitQuality {
    /// The GenNorm fit (data units).
    pub gennorm: GenNorm,
    /// W2 between the standardized data and the standardized GenNorm fit.
    pub w2_gennorm: f64,
    /// W2 against the Normal (β = 2) fit.
    pub w2_normal: f64,
    /// W2 against the Laplace (β = 1) fit.
    pub w2_laplace: f64,
    /// Non-zero entries the distances were measured on.
    pub entries: usize,
}

/// At most this many quantiles enter a W2 estimate.
pub const W2_QUANTILES: usize = 2048;

/// Measures how well GenNorm, Normal and Laplace fits describe the non-zero
/// entries of `values`. `None` with fewer than 2 non-zero entries.
pub fn fit_quality(values: &[f32], estimator: Estimator) -> Option<FitQuality> {
    let mut data: Vec<f64> = values
        .iter()
        .filter(|v| **v != 0.0 && v.is_finite())
        .map(|v| f64::from(*v))
        .collect();
    if data.len() < 2 {
        return None;
    }
    let gennorm = match estimator {
        Estimator::Moment => gennorm::fit_moments(&data, 0.0)?,
        Estimator::Mle => gennorm::fit_mle(&data, 0.0)?,
    };
    let normal = GenNorm::new(2.0, gennorm::fit_scale_for_shape(&data, 2.0, 0.0)?);
    let laplace = GenNorm::new(1.0, gennorm::fit_scale_for_shape(&data, 1.0, 0.0)?);
    let rms = (data.iter().map(|x| x * x).sum::<f64>() / data.len() as f64).sqrt();
    for x in data.iter_mut() {
        *x /= rms;
    }
    data.sort_unstable_by(f64::total_cmp);
    let standardized = |model: GenNorm| GenNorm::new(model.beta, model.alpha / rms);
    Some(FitQuality {
        gennorm,
        w2_gennorm: wasserstein2_sorted(&data, &standardized(gennorm)),
        w2_normal: wasserstein2_sorted(&data, &standardized(normal)),
        w2_laplace: wasserstein2_sorted(&data, &standardized(laplace)),
        entries: data.len(),
    })
}

/// Wasserstein-2 distance between the empirical distribution of `sorted` (sorted
/// ascending) and `model`: `sqrt(∫₀¹ (F_n⁻¹(u) - F⁻¹(u))² du)`, estimated at up
/// to [`W2_QUANTILES`] evenly spread order statistics `x_(i)` against the model
/// quantile at `(i + ½)/n`.
pub fn wasserstein2_sorted(sorted: &[f64], model: &GenNorm) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let points = n.min(W2_QUANTILES);
    let sum: f64 = (0..points)
        .map(|j| {
            let i = ((j as f64 + 0.5) / points as f64 * n as f64) as usize;
            let i = i.min(n - 1);
            let u = (i as f64 + 0.5) / n as f64;
            let d = sorted[i] - model.quantile(u);
            d * d
        })
        .sum();
    (sum / points as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn zeros_are_a_point_mass_not_part_of_the_fit() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut data: Vec<f32> = GenNorm::new(0.8, 0.05)
            .sample(&mut rng, 100_000)
            .into_iter()
            .map(|x| x as f32)
            .collect();
        for value in data.iter_mut().step_by(5) {
            *value = 0.0;
        }
        let fit = fit_tensor(&data, Family::GenNorm(Estimator::Mle));
        assert!(fit.fitted);
        assert!((fit.zero_fraction - 0.2).abs() < 1e-9);
        assert!((fit.shape / 0.8 - 1.0).abs() < 0.03, "{fit:?}");
        assert!((fit.scale / 0.05 - 1.0).abs() < 0.03, "{fit:?}");
        // A naive MLE over all entries collapses toward β = 0.
        let all: Vec<f64> = data.iter().map(|v| f64::from(*v) + 1e-30).collect();
        let naive = gennorm::fit_mle(&all, 0.0).unwrap();
        assert!(naive.beta < 0.2, "naive fit β = {}", naive.beta);
    }

    #[test]
    fn tiny_and_empty_tensors_use_the_robust_scale() {
        let fit = fit_tensor(&[0.0; 10], Family::GenNorm(Estimator::Moment));
        assert_eq!((fit.scale, fit.zero_fraction, fit.nonzero), (0.0, 1.0, 0));
        let empty = fit_tensor(&[], Family::DoubleWeibull);
        assert_eq!((empty.scale, empty.zero_fraction), (0.0, 0.0));
        // Median |x| = 2 ln 2 for a Laplace of scale 2: the guard returns α = 2.
        let ln2 = std::f64::consts::LN_2 as f32;
        let tiny = [2.0 * ln2, -1.0, 0.0, 5.0, -2.0 * ln2, 100.0, -0.1];
        let fit = fit_tensor(&tiny, Family::GenNorm(Estimator::Mle));
        assert!(!fit.fitted);
        assert_eq!(fit.shape, 1.0);
        assert!((fit.scale - 2.0).abs() < 1e-6, "{fit:?}");
        let normal = fit_tensor(&tiny, Family::FixedShape(2.0));
        assert_eq!(normal.shape, 2.0);
        assert!(normal.scale > 0.0);
    }

    #[test]
    fn w2_prefers_the_true_family() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let heavy: Vec<f32> = GenNorm::new(0.6, 1e-3)
            .sample(&mut rng, 200_000)
            .into_iter()
            .map(|x| x as f32)
            .collect();
        let quality = fit_quality(&heavy, Estimator::Moment).unwrap();
        println!("β = 0.6 data: {quality:?}");
        assert!(quality.w2_gennorm < quality.w2_laplace);
        assert!(quality.w2_laplace < quality.w2_normal);
        assert!(quality.w2_gennorm < 0.05);
        let gaussian: Vec<f32> = GenNorm::normal(2.0)
            .sample(&mut rng, 200_000)
            .into_iter()
            .map(|x| x as f32)
            .collect();
        let quality = fit_quality(&gaussian, Estimator::Mle).unwrap();
        println!("Normal data: {quality:?}");
        assert!(quality.w2_normal < 0.02 && quality.w2_gennorm < 0.02);
        assert!(quality.w2_laplace > 3.0 * quality.w2_normal);
        assert!(fit_quality(&[0.0, 1.0], Estimator::Mle).is_none());
    }
}
