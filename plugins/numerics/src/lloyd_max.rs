//! Weighted Lloyd-Max quantizer design for symmetric models.
//!
//! Distortion `d_M(x, x̂) = |x|^M (x - x̂)²` (M = 0 is the MSE). For a symmetric
//! density f and 2^R cells, the weighted Lloyd-Max conditions are: centroids
//! `c_j = ∫_cell |x|^M x f / ∫_cell |x|^M f` and thresholds `t_j = (c_j + c_{j+1})/2`
//! (the weight is common to both neighbours at a threshold, so it cancels).
//! Liu, Rini, Salehkalaibar, Chen, "M22: rate-distortion inspired gradient
//! compression", 2023 (ALGORITHMS.md §2); Lloyd (1982), Max (1960).
//!
//! Both supported models are, on `x > 0`, generalized gamma densities
//! `g(x) ∝ x^(d-1) exp(-x^p)` at unit scale — GenNorm(β): d = 1, p = β; double
//! Weibull(c): d = c, p = c — so every cell integral is closed-form:
//! `∫_a^b x^k g = Γ((d+k)/p)/Γ(d/p) · [P((d+k)/p, b^p) - P((d+k)/p, a^p)]`.
//! The design is made on the standardized (unit-scale) variable, starts from the
//! high-resolution companding point density `∝ (x^M g)^(1/3)` and iterates the
//! two conditions to convergence; quantizers multiply centroids and thresholds
//! by the fitted scale. [`design_cached`] snaps the shape to a grid of step
//! [`SHAPE_STEP`] and caches designs by (family, shape, R, M).

use crate::special::{gamma_quantile, ln_gamma, reg_lower_diff};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The model a design is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// GenNorm(β, α = 1).
    GenNorm,
    /// Double Weibull(c, λ = 1).
    DoubleWeibull,
}

/// Largest number of bits a design may have.
pub const MAX_BITS: u32 = 12;
/// Step of the shape grid used by [`design_cached`].
pub const SHAPE_STEP: f64 = 0.01;
/// Shapes are clamped to this range by [`snap_shape`].
pub const SHAPE_RANGE: (f64, f64) = (0.1, 10.0);

/// A designed quantizer for the unit-scale model, positive half; the negative
/// half mirrors it.
#[derive(Clone, Debug, PartialEq)]
pub struct Design {
    /// The model.
    pub model: Model,
    /// Its shape (β or c).
    pub shape: f64,
    /// Bits R (2^R cells in all).
    pub bits: u32,
    /// Weight exponent M.
    pub m: f64,
    /// Interior positive thresholds `t_1 < … < t_{K-1}` (K = 2^(R-1)); the cells
    /// are `[0, t_1), …, [t_{K-1}, ∞)`.
    pub thresholds: Vec<f64>,
    /// Positive centroids `c_1 < … < c_K`.
    pub centroids: Vec<f64>,
    /// Probability of each positive cell (they sum to ½).
    pub masses: Vec<f64>,
    /// Lloyd iterations run.
    pub iterations: usize,
}

impl Design {
    /// All 2^R reconstruction levels at unit scale, ascending.
    pub fn levels(&self) -> Vec<f64> {
        let mut levels: Vec<f64> = self.centroids.iter().rev().map(|c| -c).collect();
        levels.extend_from_slice(&self.centroids);
        levels
    }

    /// The probability of each of the 2^R cells, ascending (mirrors [`Self::masses`]).
    pub fn cell_masses(&self) -> Vec<f64> {
        let mut masses: Vec<f64> = self.masses.iter().rev().copied().collect();
        masses.extend_from_slice(&self.masses);
        masses
    }
}

/// Unit-scale generalized gamma half-density `∝ x^(d-1) exp(-x^p)` on x > 0.
#[derive(Clone, Copy, Debug)]
struct HalfDensity {
    d: f64,
    p: f64,
}

impl HalfDensity {
    fn new(model: Model, shape: f64) -> Self {
        match model {
            Model::GenNorm => Self { d: 1.0, p: shape },
            Model::DoubleWeibull => Self { d: shape, p: shape },
        }
    }

    /// `∫_a^b x^k g(x) dx` up to the constant `1/Γ(d/p)`, as
    /// `(ln Γ((d+k)/p), P-difference)`.
    fn partial_moment(&self, k: f64, a: f64, b: f64) -> (f64, f64) {
        let s = (self.d + k) / self.p;
        (
            ln_gamma(s),
            reg_lower_diff(s, a.powf(self.p), b.powf(self.p)),
        )
    }

    /// Weighted centroid of `[a, b)` for the weight `x^m`.
    fn centroid(&self, m: f64, a: f64, b: f64) -> f64 {
        let (ln_num, num) = self.partial_moment(m + 1.0, a, b);
        let (ln_den, den) = self.partial_moment(m, a, b);
        let c = (ln_num - ln_den).exp() * num / den;
        if den > 0.0 && c.is_finite() && c >= a && (b.is_infinite() || c <= b) {
            c
        } else if b.is_finite() {
            0.5 * (a + b)
        } else {
            a
        }
    }

    /// Half of the probability of `[a, b)` (the model's mass on the positive side).
    fn mass(&self, a: f64, b: f64) -> f64 {
        0.5 * self.partial_moment(0.0, a, b).1
    }

    /// `x` with `(x^m g)^(1/3)`-mass fraction `q` of the positive half (the
    /// companding start of the iteration).
    fn companding_point(&self, m: f64, q: f64) -> f64 {
        let s = (m + self.d + 2.0) / (3.0 * self.p);
        (3.0 * gamma_quantile(s, q)).powf(1.0 / self.p)
    }
}

/// Centroid of a cell and its derivatives with respect to the cell's ends.
struct CellStats {
    centroid: f64,
    d_lower: f64,
    d_upper: f64,
}

impl HalfDensity {
    /// `x^m g(x) / ∫_cell x^m g` at `x` (finite, > 0), given the cell's
    /// `ln Γ((d+m)/p)` and P-difference.
    fn weight_ratio(&self, m: f64, x: f64, ln_gamma_s: f64, diff: f64) -> f64 {
        if !(x.is_finite() && x > 0.0 && diff > 0.0) {
            return 0.0;
        }
        let log = self.p.ln() + (m + self.d - 1.0) * x.ln() - x.powf(self.p) - ln_gamma_s;
        let ratio = log.exp() / diff;
        if ratio.is_finite() {
            ratio
        } else {
            0.0
        }
    }

    fn cell(&self, m: f64, a: f64, b: f64) -> CellStats {
        let centroid = self.centroid(m, a, b);
        let (ln_gamma_s, diff) = self.partial_moment(m, a, b);
        CellStats {
            centroid,
            d_lower: self.weight_ratio(m, a, ln_gamma_s, diff) * (centroid - a),
            d_upper: self.weight_ratio(m, b, ln_gamma_s, diff) * (b - centroid),
        }
    }
}

/// Cells of the positive half for the interior thresholds `t`.
fn cells(density: &HalfDensity, m: f64, t: &[f64]) -> Vec<CellStats> {
    (0..=t.len())
        .map(|j| {
            let a = if j == 0 { 0.0 } else { t[j - 1] };
            let b = t.get(j).copied().unwrap_or(f64::INFINITY);
            density.cell(m, a, b)
        })
        .collect()
}

/// Lloyd residual `r_j = (c_j + c_{j+1})/2 - t_j` and its size.
fn residual(t: &[f64], cells: &[CellStats]) -> (Vec<f64>, f64) {
    let r: Vec<f64> = t
        .iter()
        .enumerate()
        .map(|(j, tj)| 0.5 * (cells[j].centroid + cells[j + 1].centroid) - tj)
        .collect();
    let size = r
        .iter()
        .zip(t)
        .fold(0.0f64, |acc, (rj, tj)| acc.max(rj.abs() / tj.max(1.0)));
    (r, size)
}

/// Solves the tridiagonal system `(I - J) δ = r` of one Newton step (Thomas
/// algorithm); `None` if it is singular.
fn newton_step(cells: &[CellStats], r: &[f64]) -> Option<Vec<f64>> {
    let n = r.len();
    // Row j: t'_j = (c_j(t_{j-1}, t_j) + c_{j+1}(t_j, t_{j+1})) / 2.
    let lower = |j: usize| -0.5 * cells[j].d_lower;
    let diag = |j: usize| 1.0 - 0.5 * (cells[j].d_upper + cells[j + 1].d_lower);
    let upper = |j: usize| -0.5 * cells[j + 1].d_upper;
    let mut c_prime = vec![0.0; n];
    let mut d_prime = vec![0.0; n];
    for j in 0..n {
        let sub = if j == 0 { 0.0 } else { lower(j) };
        let denominator = diag(j) - if j == 0 { 0.0 } else { sub * c_prime[j - 1] };
        if denominator.abs() < 1e-300 || !denominator.is_finite() {
            return None;
        }
        c_prime[j] = if j + 1 < n {
            upper(j) / denominator
        } else {
            0.0
        };
        let previous = if j == 0 { 0.0 } else { sub * d_prime[j - 1] };
        d_prime[j] = (r[j] - previous) / denominator;
    }
    for j in (0..n.saturating_sub(1)).rev() {
        d_prime[j] -= c_prime[j] * d_prime[j + 1];
    }
    d_prime.iter().all(|v| v.is_finite()).then_some(d_prime)
}

fn increasing_and_positive(t: &[f64]) -> bool {
    t.first().is_none_or(|first| *first > 0.0) && t.windows(2).all(|w| w[0] < w[1])
}

/// Converged when every threshold is within this (relative) of its midpoint.
const TOLERANCE: f64 = 1e-12;
/// Below this residual a failed Newton step means the precision floor is reached.
const STALL_TOLERANCE: f64 = 1e-10;
/// Iteration cap (Lloyd fallback steps converge slowly).
const MAX_ITERATIONS: usize = 2_000;

/// Designs the weighted Lloyd-Max quantizer with `2^bits` cells for the
/// unit-scale `model` of `shape`, weight exponent `m`.
///
/// The fixed point of the Lloyd map is found by Newton's method on the
/// thresholds (the Jacobian is tridiagonal and closed-form), falling back to a
/// plain Lloyd step whenever a Newton step would not shrink the residual.
///
/// # Panics
/// If `bits` is 0 or above [`MAX_BITS`], or `shape`/`m` is not finite and
/// positive (resp. non-negative); callers validate these first.
pub fn design(model: Model, shape: f64, bits: u32, m: f64) -> Design {
    assert!(
        (1..=MAX_BITS).contains(&bits),
        "bits must be in 1..={MAX_BITS}"
    );
    assert!(shape.is_finite() && shape > 0.0, "shape must be positive");
    assert!(m.is_finite() && m >= 0.0, "m must be non-negative");
    let density = HalfDensity::new(model, shape);
    let count = 1usize << (bits - 1);
    let mut t: Vec<f64> = (1..count)
        .map(|j| density.companding_point(m, j as f64 / count as f64))
        .collect();
    let mut current = cells(&density, m, &t);
    let (mut r, mut size) = residual(&t, &current);
    let mut iterations = 0;
    while size > TOLERANCE && iterations < MAX_ITERATIONS {
        iterations += 1;
        let newton = newton_step(&current, &r).and_then(|delta| {
            let candidate: Vec<f64> = t.iter().zip(&delta).map(|(tj, dj)| tj + dj).collect();
            if !increasing_and_positive(&candidate) {
                return None;
            }
            let next = cells(&density, m, &candidate);
            let (next_r, next_size) = residual(&candidate, &next);
            (next_size < size).then_some((candidate, next, next_r, next_size))
        });
        let newton_used = newton.is_some();
        let (candidate, next, next_r, next_size) = newton.unwrap_or_else(|| {
            // Plain Lloyd step: thresholds at the centroid midpoints.
            let candidate: Vec<f64> = t.iter().zip(&r).map(|(tj, rj)| tj + rj).collect();
            let next = cells(&density, m, &candidate);
            let (next_r, next_size) = residual(&candidate, &next);
            (candidate, next, next_r, next_size)
        });
        t = candidate;
        current = next;
        r = next_r;
        size = next_size;
        if !newton_used && size <= STALL_TOLERANCE {
            // Newton no longer improves: the residual is at the precision floor.
            break;
        }
    }
    let centroids: Vec<f64> = current.iter().map(|cell| cell.centroid).collect();
    let masses = (0..count)
        .map(|j| {
            let a = if j == 0 { 0.0 } else { t[j - 1] };
            let b = t.get(j).copied().unwrap_or(f64::INFINITY);
            density.mass(a, b)
        })
        .collect();
    Design {
        model,
        shape,
        bits,
        m,
        thresholds: t,
        centroids,
        masses,
        iterations,
    }
}

/// Probability of the positive-half cell `[a, b)` of the unit-scale `model`
/// of `shape` (the positive cells of a design sum to ½).
pub fn unit_half_mass(model: Model, shape: f64, a: f64, b: f64) -> f64 {
    HalfDensity::new(model, shape).mass(a, b)
}

/// The grid shape used for `shape`: clamped to [`SHAPE_RANGE`], rounded to a
/// multiple of [`SHAPE_STEP`]. Both ends of a link snap the same `f32` value.
pub fn snap_shape(shape: f64) -> f64 {
    let clamped = if shape.is_finite() {
        shape.clamp(SHAPE_RANGE.0, SHAPE_RANGE.1)
    } else {
        1.0
    };
    (clamped / SHAPE_STEP).round() * SHAPE_STEP
}

type CacheKey = (Model, i64, u32, u64);
static CACHE: LazyLock<Mutex<HashMap<CacheKey, Arc<Design>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// The cache is emptied when it holds this many designs.
const CACHE_LIMIT: usize = 4096;

/// [`design`] for the grid shape [`snap_shape`]`(shape)`, cached by
/// (model, grid shape, bits, m). Identical inputs give the identical design.
pub fn design_cached(model: Model, shape: f64, bits: u32, m: f64) -> Arc<Design> {
    let grid = snap_shape(shape);
    let key = (model, (grid / SHAPE_STEP).round() as i64, bits, m.to_bits());
    if let Some(found) = CACHE.lock().ok().and_then(|cache| cache.get(&key).cloned()) {
        return found;
    }
    let made = Arc::new(design(model, grid, bits, m));
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.entry(key).or_insert_with(|| made.clone());
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round3(x: f64) -> f64 {
        (x * 1000.0).round() / 1000.0
    }

    #[test]
    fn matches_the_reference_table() {
        // ALGORITHMS.md §2, unit-scale GenNorm.
        let one_bit = design(Model::GenNorm, 1.0, 1, 0.0);
        assert_eq!(round3(one_bit.centroids[0]), 1.000);
        assert_eq!(
            round3(design(Model::GenNorm, 1.0, 1, 2.0).centroids[0]),
            3.000
        );
        let cases = [
            (1.0, 0.0, [0.594, 2.594], 1.594),
            (1.0, 2.0, [2.081, 5.095], 3.588),
            (2.0, 0.0, [0.320, 1.068], 0.694),
        ];
        for (beta, m, centres, threshold) in cases {
            let d = design(Model::GenNorm, beta, 2, m);
            println!(
                "β={beta} R=2 M={m}: centres {:.4} {:.4}, threshold {:.4} ({} iterations)",
                d.centroids[0], d.centroids[1], d.thresholds[0], d.iterations
            );
            assert_eq!(round3(d.centroids[0]), centres[0], "β={beta} M={m}");
            assert_eq!(round3(d.centroids[1]), centres[1], "β={beta} M={m}");
            assert_eq!(round3(d.thresholds[0]), threshold, "β={beta} M={m}");
            assert!((d.masses.iter().sum::<f64>() - 0.5).abs() < 1e-12);
        }
    }

    #[test]
    fn matches_the_classic_gaussian_quantizer() {
        // Max (1960), N(0,1), 8 levels: 0.2451, 0.7560, 1.3440, 2.1520.
        // GenNorm(2, α=1) is N(0, ½): scale by √2.
        let d = design(Model::GenNorm, 2.0, 3, 0.0);
        let expected = [0.2451, 0.7560, 1.3440, 2.1520];
        for (c, e) in d.centroids.iter().zip(expected) {
            assert!(
                (c * std::f64::consts::SQRT_2 - e).abs() < 5e-4,
                "{c} vs {e}"
            );
        }
        let levels = d.levels();
        assert_eq!(levels.len(), 8);
        assert!(levels.windows(2).all(|w| w[0] < w[1]));
        assert!((d.cell_masses().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn double_weibull_of_shape_one_is_the_laplace_design() {
        let weibull = design(Model::DoubleWeibull, 1.0, 3, 1.0);
        let laplace = design(Model::GenNorm, 1.0, 3, 1.0);
        for (a, b) in weibull.centroids.iter().zip(&laplace.centroids) {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn designs_satisfy_both_conditions_across_shapes_bits_and_weights() {
        for model in [Model::GenNorm, Model::DoubleWeibull] {
            for shape in [0.2, 0.5, 1.0, 2.0, 5.0] {
                for bits in [1, 2, 3, 5, 8, 10] {
                    for m in [0.0, 1.0, 2.0, 4.0] {
                        let d = design(model, shape, bits, m);
                        let label = format!("{model:?} shape={shape} R={bits} M={m}");
                        assert!(d.iterations < 200, "{label}: {} iterations", d.iterations);
                        assert!(d.centroids.windows(2).all(|w| w[0] < w[1]), "{label}");
                        for (j, t) in d.thresholds.iter().enumerate() {
                            let mid = 0.5 * (d.centroids[j] + d.centroids[j + 1]);
                            assert!((t - mid).abs() <= 1e-9 * t.max(1.0), "{label}: t{j}");
                            assert!(d.centroids[j] < *t && *t < d.centroids[j + 1], "{label}");
                        }
                        let total: f64 = d.masses.iter().sum();
                        assert!((total - 0.5).abs() < 1e-9, "{label}: mass {total}");
                    }
                }
            }
        }
    }

    #[test]
    fn large_designs_converge_and_are_cached() {
        let start = std::time::Instant::now();
        let d = design_cached(Model::GenNorm, 0.7, 8, 2.0);
        println!(
            "R=8 design: {} iterations in {:?}",
            d.iterations,
            start.elapsed()
        );
        assert_eq!(d.centroids.len(), 128);
        assert!(d.centroids.windows(2).all(|w| w[0] < w[1]));
        for (j, t) in d.thresholds.iter().enumerate() {
            assert!((t - 0.5 * (d.centroids[j] + d.centroids[j + 1])).abs() < 1e-9 * t.max(1.0));
        }
        let again = design_cached(Model::GenNorm, 0.704, 8, 2.0);
        assert!(
            Arc::ptr_eq(&d, &again),
            "same grid shape must hit the cache"
        );
        assert_eq!(snap_shape(0.704), snap_shape(0.7));
        assert_eq!(snap_shape(f64::NAN), 1.0);
        assert_eq!(snap_shape(0.01), 0.1);
    }
}
