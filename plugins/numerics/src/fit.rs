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
    let (sum_abs, sum_sq, count) = nonzero_moments(values);
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

/// Lanes of [`nonzero_moments`]: independent sums the CPU adds in parallel.
const MOMENT_LANES: usize = 8;

/// `Σ|v|`, `Σv²` and the count over the finite non-zero entries of `values`:
/// one branch-free pass in [`MOMENT_LANES`] interleaved f64 sums (entry `i`
/// goes to lane `i % 8`), combined pairwise in a fixed order at the end. A
/// single running sum would make every addition wait for the one before it.
/// The AVX2 build computes exactly the same lane sums (a multiply, then an
/// add: no fused multiply-add), so the result never depends on the machine.
pub fn nonzero_moments(values: &[f32]) -> (f64, f64, usize) {
    let split = values.len() - values.len() % MOMENT_LANES;
    let (body, tail) = values.split_at(split);
    let mut lanes = Lanes::default();
    #[cfg(target_arch = "x86_64")]
    if gradcodec_sdk::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above); `moments_avx2` only
        // reads `body` through unaligned loads within its bounds.
        unsafe { moments_avx2(body, &mut lanes) };
    } else {
        moments_portable(body, &mut lanes);
    }
    #[cfg(not(target_arch = "x86_64"))]
    moments_portable(body, &mut lanes);
    for (i, &v) in tail.iter().enumerate() {
        lanes.add(i, v);
    }
    lanes.finish()
}

/// The per-lane sums of [`nonzero_moments`].
#[derive(Default)]
struct Lanes {
    abs: [f64; MOMENT_LANES],
    sq: [f64; MOMENT_LANES],
    count: [u64; MOMENT_LANES],
}

impl Lanes {
    /// |v| of a finite non-zero `v`, else 0 (with whether it counts).
    #[inline(always)]
    fn magnitude(v: f32) -> (f64, u64) {
        let bits = v.to_bits() & 0x7fff_ffff;
        let keep = bits.wrapping_sub(1) < 0x7f7f_ffff;
        let masked = bits & u32::from(keep).wrapping_neg();
        (f64::from(f32::from_bits(masked)), u64::from(keep))
    }

    #[inline(always)]
    fn add(&mut self, lane: usize, v: f32) {
        let (d, kept) = Self::magnitude(v);
        self.abs[lane] += d;
        self.sq[lane] += d * d;
        self.count[lane] += kept;
    }

    fn finish(&self) -> (f64, f64, usize) {
        let combine = |l: &[f64; MOMENT_LANES]| {
            ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
        };
        (
            combine(&self.abs),
            combine(&self.sq),
            self.count.iter().sum::<u64>() as usize,
        )
    }
}

fn moments_portable(body: &[f32], lanes: &mut Lanes) {
    for chunk in body.chunks_exact(MOMENT_LANES) {
        for (i, &v) in chunk.iter().enumerate() {
            lanes.add(i, v);
        }
    }
}

/// [`moments_portable`] with AVX2: lanes 0-3 and 4-7 as two f64x4 vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn moments_avx2(body: &[f32], lanes: &mut Lanes) {
    use std::arch::x86_64::*;
    let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
    let one = _mm256_set1_epi32(1);
    let finite_max = _mm256_set1_epi32(0x7f7f_ffff);
    let (mut abs_lo, mut abs_hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let (mut sq_lo, mut sq_hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    // Counts in i32 lanes, flushed to the u64 lane counts before they could overflow.
    let mut count = _mm256_setzero_si256();
    let mut pending = 0u32;
    let flush = |count: __m256i, lanes: &mut Lanes| {
        let mut counts = [0i32; MOMENT_LANES];
        // SAFETY: `counts` holds exactly eight i32 (an unaligned store is allowed).
        unsafe { _mm256_storeu_si256(counts.as_mut_ptr().cast(), count) };
        for (total, c) in lanes.count.iter_mut().zip(counts) {
            *total += c as u32 as u64;
        }
    };
    for chunk in body.chunks_exact(MOMENT_LANES) {
        // SAFETY: `chunk` holds exactly eight f32 (an unaligned load is allowed).
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let bits = _mm256_and_si256(v, abs_mask);
        // Finite non-zero: bits - 1 < 0x7f7fffff as unsigned, i.e. 1 <= bits <= 0x7f7fffff
        // (bits has no sign bit, so signed compares suffice).
        let keep = _mm256_and_si256(
            _mm256_cmpgt_epi32(bits, _mm256_setzero_si256()),
            _mm256_cmpgt_epi32(_mm256_add_epi32(finite_max, one), bits),
        );
        let masked = _mm256_castsi256_ps(_mm256_and_si256(bits, keep));
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(masked));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps(masked, 1));
        abs_lo = _mm256_add_pd(abs_lo, lo);
        abs_hi = _mm256_add_pd(abs_hi, hi);
        sq_lo = _mm256_add_pd(sq_lo, _mm256_mul_pd(lo, lo));
        sq_hi = _mm256_add_pd(sq_hi, _mm256_mul_pd(hi, hi));
        count = _mm256_sub_epi32(count, keep);
        pending += 1;
        if pending == 1 << 30 {
            flush(count, lanes);
            count = _mm256_setzero_si256();
            pending = 0;
        }
    }
    flush(count, lanes);
    // SAFETY: each array half holds exactly four f64 (unaligned stores are allowed).
    unsafe {
        _mm256_storeu_pd(lanes.abs.as_mut_ptr(), abs_lo);
        _mm256_storeu_pd(lanes.abs.as_mut_ptr().add(4), abs_hi);
        _mm256_storeu_pd(lanes.sq.as_mut_ptr(), sq_lo);
        _mm256_storeu_pd(lanes.sq.as_mut_ptr().add(4), sq_hi);
    }
}

#[cfg(test)]
mod moment_tests {
    use super::*;

    #[test]
    fn the_avx2_and_portable_moments_agree_bit_for_bit() {
        let mut values: Vec<f32> = (0..100_003)
            .map(|i| (i as f32 * 0.618).sin() * 10f32.powi(i % 9 - 6))
            .collect();
        values[5] = 0.0;
        values[6] = -0.0;
        values[7] = f32::NAN;
        values[8] = f32::INFINITY;
        values[9] = f32::MIN_POSITIVE / 4.0;
        values[10] = -f32::MAX;
        let mut portable = Lanes::default();
        let split = values.len() - values.len() % MOMENT_LANES;
        moments_portable(&values[..split], &mut portable);
        for (i, &v) in values[split..].iter().enumerate() {
            portable.add(i, v);
        }
        let expected = portable.finish();
        assert_eq!(nonzero_moments(&values), expected);
        let count = values
            .iter()
            .filter(|v| **v != 0.0 && v.is_finite())
            .count();
        assert_eq!(expected.2, count);
        let sum: f64 = values
            .iter()
            .filter(|v| **v != 0.0 && v.is_finite())
            .map(|v| f64::from(v.abs()))
            .sum();
        assert!((expected.0 - sum).abs() <= 1e-9 * sum);
    }
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
