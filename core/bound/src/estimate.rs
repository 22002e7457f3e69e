//! Estimating the CEO model's variances from real updates.
//!
//! Given the updates of `K ≥ 2` workers for the same step, per layer (ALGORITHMS.md §4:
//! "estimate σ_X² from the mean gradient across workers and σ_N² from the spread of
//! workers' gradients around it"), with `g_{k,i}` worker `k`'s entry `i` of a layer of
//! `n` entries:
//!
//! - `ḡ_i = (1/K) Σ_k g_{k,i}`;
//! - `σ_N² = (1/n) Σ_i (1/(K−1)) Σ_k (g_{k,i} − ḡ_i)²` (the unbiased sample variance
//!   across workers, averaged over entries);
//! - `σ_X² = (1/n) Σ_i ḡ_i² − σ_N²/K`, since `E ḡ_i² = σ_X² + σ_N²/K` for a zero-mean
//!   `X`; floored at `max(1e-12·max(mean ḡ², σ_N²), f64::MIN_POSITIVE)` so the model
//!   stays valid when the workers' noise swamps the common signal.
//!
//! Sums are accumulated in `f64`.

use crate::ceo::GaussianCeo;
use crate::error::BoundError;
use serde::{Deserialize, Serialize};

/// Relative floor for `σ_X²` (see the module documentation).
pub const SIGMA_X2_RELATIVE_FLOOR: f64 = 1e-12;

/// One layer's estimated CEO model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerEstimate {
    /// The layer's name.
    pub name: String,
    /// Entries per worker.
    pub entries: u64,
    /// Number of workers `K`.
    pub workers: usize,
    /// `(1/n) Σ_i ḡ_i²`, the mean square of the workers' average.
    pub mean_square: f64,
    /// Estimated source variance `σ_X²` (after the floor).
    pub sigma_x2: f64,
    /// Estimated observation noise variance `σ_N²`.
    pub sigma_n2: f64,
    /// Whether `σ_X²` was raised to the floor (the raw estimate was below it).
    pub sigma_x2_floored: bool,
}

impl LayerEstimate {
    /// The layer's quadratic Gaussian CEO model.
    pub fn ceo(&self) -> Result<GaussianCeo, BoundError> {
        GaussianCeo::new(self.sigma_x2, self.sigma_n2, self.workers)
    }
}

/// Estimates `σ_X²` and `σ_N²` for one layer from `workers`, one equal-length slice
/// per worker. Errors for fewer than 2 workers, lengths that differ, an empty layer
/// and non-finite values, each naming the layer.
pub fn estimate_layer<S: AsRef<[f32]>>(
    name: &str,
    workers: &[S],
) -> Result<LayerEstimate, BoundError> {
    let k = workers.len();
    if k < 2 {
        return Err(BoundError::TooFewWorkers {
            layer: name.to_owned(),
            workers: k,
        });
    }
    let n = workers[0].as_ref().len();
    for (w, slice) in workers.iter().enumerate() {
        let slice = slice.as_ref();
        if slice.len() != n {
            return Err(BoundError::ShapeMismatch {
                layer: name.to_owned(),
                worker: w,
                expected: n,
                found: slice.len(),
            });
        }
        if let Some(index) = slice.iter().position(|v| !v.is_finite()) {
            return Err(BoundError::NonFinite {
                layer: name.to_owned(),
                worker: w,
                index,
            });
        }
    }
    if n == 0 {
        return Err(BoundError::EmptyLayer {
            layer: name.to_owned(),
        });
    }
    let kf = k as f64;
    let mut mean = vec![0.0f64; n];
    for slice in workers {
        for (m, &v) in mean.iter_mut().zip(slice.as_ref()) {
            *m += f64::from(v);
        }
    }
    for m in &mut mean {
        *m /= kf;
    }
    let mut spread = 0.0f64;
    for slice in workers {
        for (m, &v) in mean.iter().zip(slice.as_ref()) {
            let e = f64::from(v) - m;
            spread += e * e;
        }
    }
    let nf = n as f64;
    let sigma_n2 = spread / ((kf - 1.0) * nf);
    let mean_square = mean.iter().map(|m| m * m).sum::<f64>() / nf;
    let raw = mean_square - sigma_n2 / kf;
    let floor = (SIGMA_X2_RELATIVE_FLOOR * mean_square.max(sigma_n2)).max(f64::MIN_POSITIVE);
    let sigma_x2_floored = raw.is_nan() || raw < floor;
    Ok(LayerEstimate {
        name: name.to_owned(),
        entries: n as u64,
        workers: k,
        mean_square,
        sigma_x2: if sigma_x2_floored { floor } else { raw },
        sigma_n2,
        sigma_x2_floored,
    })
}

/// [`estimate_layer`] over `(name, workers' slices)` pairs, in order; stops at the
/// first layer in error.
pub fn estimate_layers<I, N, W, S>(layers: I) -> Result<Vec<LayerEstimate>, BoundError>
where
    I: IntoIterator<Item = (N, W)>,
    N: AsRef<str>,
    W: AsRef<[S]>,
    S: AsRef<[f32]>,
{
    layers
        .into_iter()
        .map(|(name, workers)| estimate_layer(name.as_ref(), workers.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_estimate() {
        // Entry 0: workers 1, 3 → mean 2, spread (1 + 1)/(2−1) = 2.
        // Entry 1: workers −2, −2 → mean −2, spread 0.
        let est = estimate_layer("fc", &[vec![1.0f32, -2.0], vec![3.0, -2.0]]).unwrap();
        assert_eq!(est.entries, 2);
        assert_eq!(est.workers, 2);
        assert!((est.sigma_n2 - 1.0).abs() < 1e-15);
        assert!((est.mean_square - 4.0).abs() < 1e-15);
        assert!((est.sigma_x2 - 3.5).abs() < 1e-15);
        assert!(!est.sigma_x2_floored);
        let ceo = est.ceo().unwrap();
        assert_eq!((ceo.sigma_x2, ceo.sigma_n2, ceo.k), (3.5, 1.0, 2));
    }

    #[test]
    fn recovers_variances_of_synthetic_ceo_data() {
        // Deterministic pseudo-Gaussian data (sum of 12 uniforms from an LCG).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut normal = move || {
            let mut s = 0.0;
            for _ in 0..12 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                s += (state >> 11) as f64 / (1u64 << 53) as f64;
            }
            s - 6.0
        };
        let (n, k, sx, sn) = (20_000, 8, 0.5f64, 0.3f64);
        let x: Vec<f64> = (0..n).map(|_| sx * normal()).collect();
        let workers: Vec<Vec<f32>> = (0..k)
            .map(|_| x.iter().map(|&v| (v + sn * normal()) as f32).collect())
            .collect();
        let est = estimate_layer("conv1", &workers).unwrap();
        assert!((est.sigma_x2 / (sx * sx) - 1.0).abs() < 0.03, "{est:?}");
        assert!((est.sigma_n2 / (sn * sn) - 1.0).abs() < 0.02, "{est:?}");
    }

    #[test]
    fn pure_noise_is_floored() {
        // ḡ = 0 everywhere but workers disagree: σX² raw = −σN²/K.
        let est = estimate_layer("bias", &[vec![1.0f32, -1.0], vec![-1.0, 1.0]]).unwrap();
        assert!(est.sigma_x2_floored);
        assert!(est.sigma_x2 > 0.0 && est.sigma_x2 <= 2e-12);
        assert!(est.ceo().is_ok());
        // Identical workers: σN² = 0, σX² = mean square.
        let est = estimate_layer("same", &[vec![2.0f32], vec![2.0]]).unwrap();
        assert_eq!((est.sigma_n2, est.sigma_x2), (0.0, 4.0));
    }

    #[test]
    fn bad_inputs_name_the_layer() {
        let err = estimate_layer("fc.weight", &[vec![1.0f32, 2.0]]).unwrap_err();
        assert!(matches!(err, BoundError::TooFewWorkers { workers: 1, .. }));
        assert!(err.to_string().contains("\"fc.weight\""), "{err}");
        let none: [&[f32]; 0] = [];
        assert!(estimate_layer("x", &none).is_err());

        let err =
            estimate_layer("conv2", &[vec![1.0f32; 3], vec![1.0; 3], vec![1.0; 2]]).unwrap_err();
        assert_eq!(
            err,
            BoundError::ShapeMismatch {
                layer: "conv2".into(),
                worker: 2,
                expected: 3,
                found: 2
            }
        );
        assert!(err.to_string().contains("conv2"), "{err}");

        let err = estimate_layer("e", &[Vec::<f32>::new(), Vec::new()]).unwrap_err();
        assert!(matches!(err, BoundError::EmptyLayer { .. }));
        let err = estimate_layer("nan", &[vec![0.0f32, f32::NAN], vec![0.0, 0.0]]).unwrap_err();
        assert!(matches!(
            err,
            BoundError::NonFinite {
                worker: 0,
                index: 1,
                ..
            }
        ));

        let layers = vec![
            ("a", vec![vec![1.0f32], vec![2.0]]),
            ("b", vec![vec![1.0f32, 2.0], vec![2.0]]),
        ];
        let err = estimate_layers(layers).unwrap_err();
        assert!(err.to_string().contains("\"b\""), "{err}");
        let ok = estimate_layers(vec![("a", vec![vec![1.0f32], vec![2.0]])]).unwrap();
        assert_eq!(ok[0].name, "a");
    }
}
