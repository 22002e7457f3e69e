//! The single-source limit of one tensor at the distortion a codec achieved on it,
//! and of a whole update tensor by tensor (`gradcodec bench --bound`).
//!
//! **Model.** A gradient tensor is treated as i.i.d. draws of a mixture: a point
//! mass at exactly 0 with probability `p₀` (dead ReLUs, masked entries) and a
//! zero-mean GenNorm `(β, α)` fitted to the non-zero entries by the moment
//! estimator (`gradcodec_numerics::gennorm::fit_moments`: β from `E|x|/√(E x²)`, α so
//! that the variance is the data's). Matching the variance keeps the limit honest
//! under model mismatch: a maximum-likelihood fit of gradients follows the mass of
//! tiny entries (β as low as 0.2 on LeNet-5's fully connected layers) and then
//! overstates the tails by orders of magnitude, while the moment fit's `R(D)` never
//! exceeds `½log₂(σ²/D)` of the Gaussian with the data's variance. The distortion is
//! `E|X|^M (X − X̂)²` per entry (`M = 0`: MSE), measured on the codec's own
//! reconstruction.
//!
//! **Limit.** With the zero indicator `Z = 1{X = 0}` known to both ends, the zeros
//! cost nothing and the rate is `(1 − p₀)·R_GN(D/(1 − p₀))`; side information at
//! both ends never raises the rate-distortion function, so this is a lower bound on
//! the mixture's `R(D)` (which is at most `h(p₀)` bits above it). `R_GN` is
//! computed by [`BlahutArimoto::rate_at`] on the fitted source. Where `D` is below
//! the grid's range (near-lossless codecs such as fp16) and `M = 0`, the Shannon
//! lower bound is used instead, which is asymptotically tight as `D → 0`. A tensor
//! reconstructed exactly (`D = 0`) has no finite limit under a continuous model; it
//! is reported as [`LimitMethod::Exact`] and the caller decides how to count it
//! (`bench --bound` counts its real coded bits, so it adds nothing to the gap).
//!
//! Blahut–Arimoto returns achievable points (upper bounds on `R_GN`, a few
//! thousandths of a bit above it on the default grid), so a gap computed against
//! [`TensorLimit::bits_per_entry`] errs on the small side.
//!
//! ```
//! use gradcodec_bound::blahut_arimoto::BaConfig;
//! use gradcodec_bound::tensor_limit::{tensor_limit, LimitMethod};
//!
//! use statrs::distribution::{ContinuousCDF, Normal};
//!
//! // Unit-variance Gaussian quantiles, coded at MSE 0.25: the limit is
//! // ½·log₂(1/0.25) = 1 bit per entry.
//! let normal = Normal::new(0.0, 1.0).unwrap();
//! let values: Vec<f32> = (0..20_000)
//!     .map(|i| normal.inverse_cdf((i as f64 + 0.5) / 20_000.0) as f32)
//!     .collect();
//! let limit = tensor_limit("w", &values, 0.25, 0.0, BaConfig::default())?;
//! assert_eq!(limit.method, LimitMethod::BlahutArimoto);
//! assert!((limit.bits_per_entry.unwrap() - 1.0).abs() < 0.02);
//! # Ok::<(), gradcodec_bound::BoundError>(())
//! ```

use crate::blahut_arimoto::{shannon_lower_bound, BaConfig, BlahutArimoto, SourceDensity};
use crate::error::{non_negative, BoundError};
use gradcodec_numerics::fit::{nonzero_entries, MIN_FIT_ENTRIES};
use gradcodec_numerics::gennorm::fit_moments;
use serde::{Deserialize, Serialize};

/// How a tensor's limit was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMethod {
    /// Blahut–Arimoto on the fitted GenNorm (achievable, within a few
    /// thousandths of a bit of `R(D)`).
    BlahutArimoto,
    /// The Shannon lower bound (distortion below the Blahut–Arimoto grid, MSE).
    ShannonLowerBound,
    /// The distortion is at least the rate-0 distortion: the limit is 0.
    RateZero,
    /// Reconstructed exactly: no finite limit under a continuous model.
    Exact,
    /// The distortion is below the grid and no lower bound applies (weighted
    /// distortion): no figure.
    Unavailable,
}

/// The single-source limit of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorLimit {
    /// Tensor name.
    pub name: String,
    /// Entries.
    pub entries: u64,
    /// Fraction of exact zeros `p₀`.
    pub zero_fraction: f64,
    /// Fitted GenNorm shape β of the non-zero entries.
    pub beta: f64,
    /// Fitted GenNorm scale α.
    pub alpha: f64,
    /// False when the tensor has fewer non-zero entries than a reliable shape
    /// estimate needs (`MIN_FIT_ENTRIES`); the fit is still used.
    pub fitted: bool,
    /// Weight exponent `M` of the distortion.
    pub m: f64,
    /// The achieved distortion `E|X|^M (X − X̂)²` per entry.
    pub distortion: f64,
    /// The same relative to `E|X|^{M+2}` of the data.
    pub relative_distortion: f64,
    /// How the limit was obtained.
    pub method: LimitMethod,
    /// The limit, bits per entry (`None` for `Exact` and `Unavailable`).
    pub bits_per_entry: Option<f64>,
    /// `(1 − p₀)·max(0, R_SLB)` beside it, for MSE (`None` otherwise or when exact).
    pub shannon_lower_bound_bits: Option<f64>,
}

/// The achieved distortion `mean |x|^M (x − x̂)²` of a reconstruction, and the
/// data's `mean |x|^{M+2}`. Errors for different lengths or a negative `m`.
pub fn achieved_distortion(
    original: &[f32],
    reconstructed: &[f32],
    m: f64,
) -> Result<(f64, f64), BoundError> {
    non_negative("m", m)?;
    if original.len() != reconstructed.len() {
        return Err(BoundError::ShapeMismatch {
            layer: "reconstruction".into(),
            worker: 1,
            expected: original.len(),
            found: reconstructed.len(),
        });
    }
    let (mut error, mut energy) = (0.0f64, 0.0f64);
    for (&x, &y) in original.iter().zip(reconstructed) {
        let (x, y) = (f64::from(x), f64::from(y));
        let weight = if m == 0.0 { 1.0 } else { x.abs().powf(m) };
        error += weight * (x - y) * (x - y);
        energy += weight * x * x;
    }
    let n = original.len().max(1) as f64;
    Ok((error / n, energy / n))
}

/// A tensor's fitted source, ready to give its limit at any distortion (the fit
/// and the Blahut–Arimoto grid are built once; successive solves start warm).
#[derive(Debug, Clone)]
pub struct TensorSource {
    name: String,
    entries: u64,
    zero_fraction: f64,
    beta: f64,
    alpha: f64,
    fitted: bool,
    m: f64,
    /// `mean |x|^{M+2}` of the data.
    energy: f64,
    /// `None` when the tensor holds no non-zero entry.
    solver: Option<BlahutArimoto>,
}

impl TensorSource {
    /// Fits the model of the module documentation to `values` for the weight
    /// `|x|^m`. Errors for non-finite values or invalid settings.
    pub fn fit(name: &str, values: &[f32], m: f64, config: BaConfig) -> Result<Self, BoundError> {
        non_negative("m", m)?;
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(BoundError::NonFinite {
                layer: name.to_string(),
                worker: 0,
                index,
            });
        }
        // (Every value is finite: checked above.)
        let (nonzero, zero_fraction) = nonzero_entries(values);
        let model = fit_moments(&nonzero, 0.0);
        let energy = values
            .iter()
            .map(|&x| f64::from(x).abs().powf(m + 2.0))
            .sum::<f64>()
            / values.len().max(1) as f64;
        let (beta, alpha) = model.map_or((1.0, 0.0), |g| (g.beta, g.alpha));
        let solver = if alpha > 0.0 && alpha.is_finite() {
            let source = SourceDensity::GenNorm {
                beta: beta.max(0.05),
                alpha,
            };
            Some(BlahutArimoto::new(source, m, config)?)
        } else {
            None
        };
        Ok(TensorSource {
            name: name.to_string(),
            entries: values.len() as u64,
            zero_fraction,
            beta,
            alpha,
            fitted: nonzero.len() >= MIN_FIT_ENTRIES,
            m,
            energy,
            solver,
        })
    }

    /// The limit at the per-entry distortion `distortion` (see the module
    /// documentation). Errors for a negative or non-finite distortion.
    pub fn limit_at(&mut self, distortion: f64) -> Result<TensorLimit, BoundError> {
        if !(distortion.is_finite() && distortion >= 0.0) {
            return Err(BoundError::InvalidParameter {
                name: "distortion",
                value: distortion,
                requirement: "finite and >= 0",
            });
        }
        let mut limit = TensorLimit {
            name: self.name.clone(),
            entries: self.entries,
            zero_fraction: self.zero_fraction,
            beta: self.beta,
            alpha: self.alpha,
            fitted: self.fitted,
            m: self.m,
            distortion,
            relative_distortion: if self.energy > 0.0 {
                distortion / self.energy
            } else {
                0.0
            },
            method: LimitMethod::RateZero,
            bits_per_entry: Some(0.0),
            shannon_lower_bound_bits: None,
        };
        let Some(solver) = self.solver.as_mut() else {
            // All zeros: nothing to send whatever the distortion.
            return Ok(limit);
        };
        if distortion == 0.0 {
            limit.method = LimitMethod::Exact;
            limit.bits_per_entry = None;
            return Ok(limit);
        }
        let nonzero = 1.0 - self.zero_fraction;
        let d_source = distortion / nonzero;
        if self.m == 0.0 {
            let slb = shannon_lower_bound(&solver.source(), d_source)?.max(0.0);
            limit.shannon_lower_bound_bits = Some(nonzero * slb);
        }
        if d_source >= solver.max_distortion() {
            return Ok(limit);
        }
        if d_source >= solver.min_distortion() {
            let point = solver.rate_at(d_source)?;
            limit.method = LimitMethod::BlahutArimoto;
            limit.bits_per_entry = Some(nonzero * point.rate_bits);
        } else if let Some(slb) = limit.shannon_lower_bound_bits {
            limit.method = LimitMethod::ShannonLowerBound;
            limit.bits_per_entry = Some(slb);
        } else {
            limit.method = LimitMethod::Unavailable;
            limit.bits_per_entry = None;
        }
        Ok(limit)
    }
}

/// [`TensorSource::fit`] then [`TensorSource::limit_at`], for one distortion.
pub fn tensor_limit(
    name: &str,
    values: &[f32],
    distortion: f64,
    m: f64,
    config: BaConfig,
) -> Result<TensorLimit, BoundError> {
    TensorSource::fit(name, values, m, config)?.limit_at(distortion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    fn gaussian(n: usize, sigma: f64, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0, sigma).unwrap();
        (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
    }

    #[test]
    fn gaussian_tensor_limit_is_half_log_ratio() {
        let values = gaussian(50_000, 0.01, 1);
        let variance = 1e-4;
        for ratio in [0.5, 0.1, 0.02] {
            let d = ratio * variance;
            let limit = tensor_limit("w", &values, d, 0.0, BaConfig::default()).unwrap();
            assert_eq!(limit.method, LimitMethod::BlahutArimoto);
            let expected = 0.5 * (1.0 / ratio).log2();
            let got = limit.bits_per_entry.unwrap();
            // The fit on 50k samples moves σ² by well under 1%; β close to 2.
            assert!(
                (got - expected).abs() < 0.03,
                "{ratio}: {got} vs {expected}"
            );
            assert!((limit.beta - 2.0).abs() < 0.1, "beta {}", limit.beta);
            let slb = limit.shannon_lower_bound_bits.unwrap();
            assert!(slb <= got + 1e-3 && (got - slb) < 0.03, "{slb} vs {got}");
        }
    }

    #[test]
    fn zeros_scale_the_limit_and_edges_are_reported() {
        let mut values = gaussian(20_000, 1.0, 2);
        let dense = tensor_limit("w", &values, 0.1, 0.0, BaConfig::default()).unwrap();
        for v in values.iter_mut().take(10_000) {
            *v = 0.0;
        }
        let sparse = tensor_limit("w", &values, 0.05, 0.0, BaConfig::default()).unwrap();
        assert!((sparse.zero_fraction - 0.5).abs() < 1e-9);
        // Half the entries at the same per-non-zero distortion: half the rate.
        let (a, b) = (
            dense.bits_per_entry.unwrap(),
            sparse.bits_per_entry.unwrap(),
        );
        assert!((b - 0.5 * a).abs() < 0.03 * a, "{a} {b}");

        let exact = tensor_limit("w", &values, 0.0, 0.0, BaConfig::default()).unwrap();
        assert_eq!(
            (exact.method, exact.bits_per_entry),
            (LimitMethod::Exact, None)
        );
        let zero = tensor_limit("w", &values, 10.0, 0.0, BaConfig::default()).unwrap();
        assert_eq!(
            (zero.method, zero.bits_per_entry),
            (LimitMethod::RateZero, Some(0.0))
        );
        let tiny = tensor_limit("w", &values, 1e-12, 0.0, BaConfig::default()).unwrap();
        assert_eq!(tiny.method, LimitMethod::ShannonLowerBound);
        assert!(tiny.bits_per_entry.unwrap() > 8.0);
        let weighted = tensor_limit("w", &values, 1e-14, 2.0, BaConfig::default()).unwrap();
        assert_eq!(weighted.method, LimitMethod::Unavailable);
    }

    #[test]
    fn bad_input_is_an_error() {
        let values = gaussian(1000, 1.0, 3);
        assert!(tensor_limit("w", &values, -1.0, 0.0, BaConfig::default()).is_err());
        assert!(tensor_limit("w", &values, f64::NAN, 0.0, BaConfig::default()).is_err());
        assert!(tensor_limit("w", &values, 0.1, -2.0, BaConfig::default()).is_err());
        let mut bad = values.clone();
        bad[7] = f32::NAN;
        let err = tensor_limit("conv1", &bad, 0.1, 0.0, BaConfig::default()).unwrap_err();
        assert!(err.to_string().contains("conv1"), "{err}");
        assert!(achieved_distortion(&values, &values[1..], 0.0).is_err());
        let (d, e) = achieved_distortion(&[1.0, -2.0], &[1.5, -2.0], 0.0).unwrap();
        assert_eq!((d, e), (0.125, 2.5));
        let (d, _) = achieved_distortion(&[1.0, -2.0], &[1.0, -1.0], 2.0).unwrap();
        assert_eq!(d, 2.0);
    }
}
