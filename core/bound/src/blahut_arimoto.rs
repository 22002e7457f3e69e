//! The rate-distortion function of one continuous source, computed numerically.
//!
//! Sources are generalized normal (GenNorm, ALGORITHMS.md §1.2) with density
//! `f(x) = β/(2αΓ(1/β))·exp(−(|x|/α)^β)`; the Gaussian (`β = 2`, `α = σ√2`) and the
//! Laplacian (`β = 1`, `α = b`) are special cases. The distortion is the M-magnitude
//! weighted error of ALGORITHMS.md §2, `d(x, y) = |x|^M (x − y)²` (`M = 0` is MSE).
//!
//! **Method** (Blahut 1972; Arimoto 1972; Cover and Thomas §10.8). Work on the
//! standardized variable `u = x/σ` (`σ²` the source variance), where
//! `d(x, y) = σ^{M+2}·d(u, v)`: rates are unchanged and distortions scale by
//! `σ^{M+2}`. The real line is cut at `±L` where the weighted tail
//! `∫_{|u|>L}|u|^{M+2}f / E|U|^{M+2} = Q((M+3)/β, (L/α)^β)` (regularized upper
//! incomplete gamma) falls below `tail_mass`, and `[−L, L]` into an odd number of
//! cells, uniform in the compander `∫((1 + |u|^M) f(u))^{1/3} du` (the
//! Panter–Dite point density for `M = 0`), symmetric about a centre cell holding 0.
//! The discrete source is the cell index `C` with mass `p_i = P(U ∈ cell i)`; the
//! reproduction alphabet is the cells' midpoints `y_j`; and the distortion between a
//! cell and a reproduction is the exact conditional expectation
//! `d̄_ij = E[|U|^M (U − y_j)² | U ∈ cell i]` (Gauss–Legendre quadrature). Blahut's
//! iteration for a slope `s < 0` (nats per unit of distortion),
//! `Z_i = Σ_j q_j e^{s d̄_ij}`, `c_j = Σ_i p_i e^{s d̄_ij}/Z_i`, `q_j ← q_j c_j`, is run to
//! its fixed point, until Blahut's upper and lower bounds meet,
//! `max_j ln c_j − Σ_j q_j c_j ln c_j < tol`; the
//! returned point is `(I(C; Y), E d̄)` of the final test channel
//! `Q(j|i) = q_j e^{s d̄_ij}/Z_i` (entries below `e^{−40}` of a row's largest are dropped
//! from the channel, which stays a valid channel).
//!
//! Because the channel reaches `U` only through its cell, `U → C → Y`, so
//! `I(U; Y) = I(C; Y)` and `E d(U, Y) = E d̄`: **every returned point is achievable for
//! the continuous source**, i.e. an upper bound on `R(D)`. Its excess over `R(D)` comes
//! from the cells' width (about `½log₂(1 + D_floor/D)` bits for MSE, where `D_floor`
//! is the distortion at infinite rate on the grid; [`BlahutArimoto::rate_at`] refuses
//! `D` below `min_distortion_factor·D_floor`), the finite reproduction alphabet and
//! the stopping tolerance. `rate_at(D)` searches `ln(−s)` (safeguarded Newton steps,
//! then bisection) and time-shares the two bracketing points (the chord of the convex
//! `R(D)`, again achievable, as is a point at a distortion below the target).
//!
//! Plain Blahut iteration crawls on a fine grid whenever the optimal reproduction
//! is discrete (Rose 1994: whenever the Shannon lower bound is not tight, e.g. the
//! Laplacian and every GenNorm with `β ≠ 2`): the fixed point is reached by
//! SQUAREM-accelerated Blahut passes (Varadhan and Roland 2008) alternated with
//! active-set Newton steps after mixSQP (Kim, Carbonetto, Stephens and Anitescu
//! 2020); see the private `solver` module. With the default 401 cells a point costs
//! a few hundred passes (well under a second in an optimized build).
//!
//! The rate is exact only for the source cut at `±L`: the weighted tail beyond
//! (`tail_mass`, 1e-12 by default) is ignored.
//!
//! **Shannon lower bound** for MSE (Shannon 1959; Cover and Thomas Problem 10.8):
//! `R(D) ≥ R_SLB(D) = h(X) − ½log₂(2πeD)`, with the GenNorm differential entropy
//! `h(X) = [1/β + ln(2αΓ(1/β)/β)] / ln 2` bits. It is tight for the Gaussian and
//! asymptotically tight as `D → 0` for every source with finite entropy (Linkov 1965;
//! Linder and Zamir 1994).

mod solver;

use crate::error::{non_negative, positive, BoundError};
use serde::{Deserialize, Serialize};
use solver::{Kernel, Row};
use statrs::function::gamma::{checked_gamma_ur, ln_gamma};
use std::f64::consts::{E, LN_2, PI};

/// A symmetric, zero-mean continuous source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SourceDensity {
    /// Normal with standard deviation `sigma`.
    Gaussian {
        /// Standard deviation `σ > 0`.
        sigma: f64,
    },
    /// Laplace with scale `scale` (density `e^{−|x|/b}/(2b)`, variance `2b²`).
    Laplacian {
        /// Scale `b > 0`.
        scale: f64,
    },
    /// Generalized normal, density `β/(2αΓ(1/β))·exp(−(|x|/α)^β)`.
    GenNorm {
        /// Shape `β > 0`.
        beta: f64,
        /// Scale `α > 0`.
        alpha: f64,
    },
}

impl SourceDensity {
    /// The source as GenNorm `(β, α)`, after checking the parameters.
    pub fn gen_norm(&self) -> Result<(f64, f64), BoundError> {
        match *self {
            SourceDensity::Gaussian { sigma } => {
                Ok((2.0, positive("sigma", sigma)? * std::f64::consts::SQRT_2))
            }
            SourceDensity::Laplacian { scale } => Ok((1.0, positive("scale", scale)?)),
            SourceDensity::GenNorm { beta, alpha } => {
                positive("beta", beta)?;
                positive("alpha", alpha)?;
                if beta < 0.05 {
                    return Err(BoundError::InvalidParameter {
                        name: "beta",
                        value: beta,
                        requirement: "at least 0.05",
                    });
                }
                Ok((beta, alpha))
            }
        }
    }

    /// The density at `x`.
    pub fn pdf(&self, x: f64) -> Result<f64, BoundError> {
        let (beta, alpha) = self.gen_norm()?;
        Ok(gen_norm_pdf(beta, alpha, x))
    }

    /// `E|X|^p = α^p Γ((p+1)/β)/Γ(1/β)`, for `p ≥ 0`.
    pub fn absolute_moment(&self, p: f64) -> Result<f64, BoundError> {
        let (beta, alpha) = self.gen_norm()?;
        non_negative("p", p)?;
        Ok((p * alpha.ln() + ln_gamma((p + 1.0) / beta) - ln_gamma(1.0 / beta)).exp())
    }

    /// The variance `α²Γ(3/β)/Γ(1/β)`.
    pub fn variance(&self) -> Result<f64, BoundError> {
        self.absolute_moment(2.0)
    }

    /// Differential entropy in bits, `[1/β + ln(2αΓ(1/β)/β)] / ln 2`.
    pub fn differential_entropy_bits(&self) -> Result<f64, BoundError> {
        let (beta, alpha) = self.gen_norm()?;
        Ok((1.0 / beta + (2.0 * alpha / beta).ln() + ln_gamma(1.0 / beta)) / LN_2)
    }
}

fn gen_norm_pdf(beta: f64, alpha: f64, x: f64) -> f64 {
    let log_c = (beta / (2.0 * alpha)).ln() - ln_gamma(1.0 / beta);
    (log_c - (x.abs() / alpha).powf(beta)).exp()
}

/// The Shannon lower bound for MSE, `h(X) − ½log₂(2πeD)` bits (may be negative at
/// large `D`; `R(D) ≥ max(0, R_SLB(D))`).
pub fn shannon_lower_bound(source: &SourceDensity, d: f64) -> Result<f64, BoundError> {
    let h = source.differential_entropy_bits()?;
    positive("distortion", d)?;
    Ok(h - 0.5 * (2.0 * PI * E * d).log2())
}

/// Settings of the discretization and of the iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BaConfig {
    /// Number of cells (and of reproduction points); odd, at least 5.
    pub cells: usize,
    /// Relative weighted tail `E[|U|^{M+2}; |U| > L]/E|U|^{M+2}` left outside the grid.
    pub tail_mass: f64,
    /// Stop when Blahut's upper and lower bounds on the discrete problem's rate are
    /// this close, bits.
    pub tolerance_bits: f64,
    /// Iteration limit per slope (the point is returned with its gap if reached).
    pub max_iterations: usize,
    /// `rate_at` accepts `D ≥ min_distortion_factor · D_floor` (see the module
    /// documentation); the excess rate from the grid is then at most about
    /// `½log₂(1 + 1/factor)` bits for MSE.
    pub min_distortion_factor: f64,
    /// `rate_at` stops when two computed points bracket the target with distortions
    /// within this relative distance of each other; the chord between them then
    /// exceeds the curve by about `tolerance²/(16 ln 2)` bits (Gaussian curvature).
    pub distortion_tolerance: f64,
}

impl Default for BaConfig {
    fn default() -> Self {
        BaConfig {
            cells: 401,
            tail_mass: 1e-12,
            tolerance_bits: 1e-4,
            max_iterations: 5_000,
            min_distortion_factor: 50.0,
            distortion_tolerance: 1e-2,
        }
    }
}

/// One point of a computed rate-distortion curve, in the source's own units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RdPoint {
    /// Rate, bits per sample (an achievable rate: an upper bound on `R(D)`).
    pub rate_bits: f64,
    /// Distortion `E|X|^M (X − Y)²`.
    pub distortion: f64,
    /// The slope `dR/dD` the point was computed for (bits per unit of distortion,
    /// ≤ 0); for [`BlahutArimoto::rate_at`] the slope of the time-sharing chord.
    pub slope: f64,
    /// Blahut's gap between the upper and lower bounds of the discrete problem when
    /// the iteration stopped, bits.
    pub gap_bits: f64,
    /// Blahut passes plus Newton steps spent (summed over the slope search for
    /// `rate_at`).
    pub iterations: usize,
}

/// A discretized source ready for Blahut–Arimoto (see the module documentation).
#[derive(Debug, Clone)]
pub struct BlahutArimoto {
    source: SourceDensity,
    m: f64,
    config: BaConfig,
    /// `σ^{M+2}`: standardized distortion → source units.
    distortion_scale: f64,
    /// Cell masses (sum 1).
    p: Vec<f64>,
    /// Cell midpoints = reproduction points (ascending).
    y: Vec<f64>,
    /// Per cell, conditional `E[|U|^M]`, `E[|U|^M (U − m)]`, `E[|U|^M (U − m)²]`.
    w0: Vec<f64>,
    v1: Vec<f64>,
    v2: Vec<f64>,
    /// Standardized distortion at rate 0 and at infinite rate on the grid.
    d_max_std: f64,
    d_floor_std: f64,
    /// Warm start for the next slope.
    q: Vec<f64>,
}

/// 8-point Gauss–Legendre nodes and weights on [−1, 1].
const GL_NODES: [f64; 4] = [
    0.183_434_642_495_649_8,
    0.525_532_409_916_329,
    0.796_666_477_413_626_7,
    0.960_289_856_497_536_3,
];
const GL_WEIGHTS: [f64; 4] = [
    0.362_683_783_378_362,
    0.313_706_645_877_887_3,
    0.222_381_034_453_374_5,
    0.101_228_536_290_376_3,
];

/// `∫_a^b g` by composite 8-point Gauss–Legendre on `pieces` equal sub-intervals.
fn integrate<const K: usize>(
    g: impl Fn(f64) -> [f64; K],
    a: f64,
    b: f64,
    pieces: usize,
) -> [f64; K] {
    let mut sum = [0.0; K];
    let h = (b - a) / pieces as f64;
    for piece in 0..pieces {
        let lo = a + h * piece as f64;
        let (mid, half) = (lo + 0.5 * h, 0.5 * h);
        for (&x, &w) in GL_NODES.iter().zip(&GL_WEIGHTS) {
            for u in [mid - half * x, mid + half * x] {
                let v = g(u);
                for (s, v) in sum.iter_mut().zip(v) {
                    *s += w * half * v;
                }
            }
        }
    }
    sum
}

/// Entries of a test-channel row below `e^{−BAND_CUT}` of the row's largest are dropped.
const BAND_CUT: f64 = 40.0;

impl BlahutArimoto {
    /// Discretizes `source` for the weighted distortion `|x|^m (x − y)²` (`m ≥ 0`;
    /// `m = 0` is MSE). Errors for invalid parameters or an even or too small
    /// `config.cells`.
    pub fn new(source: SourceDensity, m: f64, config: BaConfig) -> Result<Self, BoundError> {
        let (beta, alpha) = source.gen_norm()?;
        non_negative("m", m)?;
        if m > 16.0 {
            return Err(BoundError::InvalidParameter {
                name: "m",
                value: m,
                requirement: "at most 16",
            });
        }
        if config.cells < 5 || config.cells % 2 == 0 {
            return Err(BoundError::InvalidParameter {
                name: "cells",
                value: config.cells as f64,
                requirement: "odd and at least 5",
            });
        }
        positive("tail_mass", config.tail_mass)?;
        positive("tolerance_bits", config.tolerance_bits)?;
        positive("min_distortion_factor", config.min_distortion_factor)?;
        positive("distortion_tolerance", config.distortion_tolerance)?;
        if config.tail_mass >= 1e-3 {
            return Err(BoundError::InvalidParameter {
                name: "tail_mass",
                value: config.tail_mass,
                requirement: "below 1e-3",
            });
        }
        let sigma = source.variance()?.sqrt();
        let alpha_u = alpha / sigma;

        // Truncation: Q((M+3)/β, T) = tail_mass, L = α_u T^{1/β}.
        let shape = (m + 3.0) / beta;
        let tail = |t: f64| checked_gamma_ur(shape, t).unwrap_or(0.0);
        let mut t_hi = 1.0;
        while tail(t_hi) > config.tail_mass {
            t_hi *= 2.0;
        }
        let mut t_lo = 0.0;
        for _ in 0..100 {
            let mid = 0.5 * (t_lo + t_hi);
            if tail(mid) > config.tail_mass {
                t_lo = mid;
            } else {
                t_hi = mid;
            }
        }
        let l = alpha_u * t_hi.powf(1.0 / beta);

        // Compander G(u) = ∫_0^u ((1 + u^M) f(u))^{1/3}, on the sub-grid u = L (t/T)².
        let sub = 64 * config.cells;
        let log_lambda = |u: f64| ((u.powf(m)).ln_1p() - (u / alpha_u).powf(beta)) / 3.0;
        let u_of = |t: f64| l * t * t;
        let mut g = Vec::with_capacity(sub + 1);
        g.push(0.0);
        let dt = 1.0 / sub as f64;
        let integrand = |t: f64| log_lambda(u_of(t)).exp() * 2.0 * l * t;
        let mut prev = integrand(0.0);
        for i in 1..=sub {
            let cur = integrand(i as f64 * dt);
            g.push(g[i - 1] + 0.5 * dt * (prev + cur));
            prev = cur;
        }
        let total = g[sub];
        let h = (config.cells - 1) / 2;
        let invert = |target: f64| -> f64 {
            let i = g.partition_point(|&v| v < target).clamp(1, sub);
            let (g0, g1) = (g[i - 1], g[i]);
            let frac = if g1 > g0 {
                (target - g0) / (g1 - g0)
            } else {
                0.0
            };
            u_of((i as f64 - 1.0 + frac) * dt)
        };
        // Positive edges e_1 < … < e_{h+1} = L with G(e_k) = (k − ½)/(h + ½)·G(L).
        let mut edges: Vec<f64> = (1..=h)
            .map(|k| invert((k as f64 - 0.5) / (h as f64 + 0.5) * total))
            .collect();
        edges.push(l);

        // Moments of the positive cells and of the centre cell's right half.
        let pdf = |u: f64| gen_norm_pdf(beta, alpha_u, u);
        let weight = |u: f64| if m == 0.0 { 1.0 } else { u.powf(m) };
        let mut pos = Vec::with_capacity(h); // (midpoint, P, W0, V1, V2)
        for k in 0..h {
            let (a, b) = (edges[k], edges[k + 1]);
            let mid = 0.5 * (a + b);
            let [pm, w0, v1, v2] = integrate(
                |u| {
                    let f = pdf(u);
                    let wf = weight(u) * f;
                    let e = u - mid;
                    [f, wf, wf * e, wf * e * e]
                },
                a,
                b,
                4,
            );
            pos.push((mid, pm, w0, v1, v2));
        }
        // Centre half [0, e_1], substituting u = e_1 w^p so the cusp of |u|^β is smooth.
        let e1 = edges[0];
        let p_sub = (2.0 / beta).ceil().max(1.0);
        let [c_p, c_w0, c_v2] = integrate(
            |w| {
                let u = e1 * w.powf(p_sub);
                let jac = e1 * p_sub * w.powf(p_sub - 1.0);
                let f = pdf(u) * jac;
                let wf = weight(u) * f;
                [f, wf, wf * u * u]
            },
            0.0,
            1.0,
            4,
        );

        let n = config.cells;
        let (mut p, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut w0, mut v1, mut v2) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut push = |mid: f64, pm: f64, a: f64, b: f64, c: f64| {
            y.push(mid);
            p.push(pm);
            let (a, b, c) = if pm > 0.0 {
                (a / pm, b / pm, c / pm)
            } else {
                (0.0, 0.0, 0.0)
            };
            w0.push(a);
            v1.push(b);
            v2.push(c);
        };
        for &(mid, pm, a, b, c) in pos.iter().rev() {
            push(-mid, pm, a, -b, c);
        }
        push(0.0, 2.0 * c_p, 2.0 * c_w0, 0.0, 2.0 * c_v2);
        for &(mid, pm, a, b, c) in &pos {
            push(mid, pm, a, b, c);
        }
        let mass: f64 = p.iter().sum();
        for pm in &mut p {
            *pm /= mass;
        }

        let mut solver = BlahutArimoto {
            source,
            m,
            config,
            distortion_scale: sigma.powf(m + 2.0),
            q: p.clone(),
            p,
            y,
            w0,
            v1,
            v2,
            d_max_std: 0.0,
            d_floor_std: 0.0,
        };
        // Rate 0: the best constant reproduction, min_j Σ_i p_i d̄_ij.
        solver.d_max_std = (0..n)
            .map(|j| (0..n).map(|i| solver.p[i] * solver.dbar(i, j)).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        solver.d_floor_std = (0..n)
            .map(|i| solver.p[i] * solver.dbar(i, solver.nearest(i)))
            .sum();
        Ok(solver)
    }

    /// `d̄_ij = E[|U|^M (U − y_j)² | cell i]`, standardized.
    fn dbar(&self, i: usize, j: usize) -> f64 {
        let e = self.y[j] - self.y[i];
        (self.v2[i] - 2.0 * e * self.v1[i] + e * e * self.w0[i]).max(0.0)
    }

    /// The reproduction index minimizing `d̄_ij` for cell `i`.
    fn nearest(&self, i: usize) -> usize {
        let vertex = if self.w0[i] > 0.0 {
            self.y[i] + self.v1[i] / self.w0[i]
        } else {
            self.y[i]
        };
        let j = self.y.partition_point(|&v| v < vertex);
        let lo = j.saturating_sub(1);
        let hi = j.min(self.y.len() - 1);
        if self.dbar(i, lo) <= self.dbar(i, hi) {
            lo
        } else {
            hi
        }
    }

    /// The source.
    pub fn source(&self) -> SourceDensity {
        self.source
    }

    /// The weight exponent `M`.
    pub fn weight_exponent(&self) -> f64 {
        self.m
    }

    /// The configuration.
    pub fn config(&self) -> BaConfig {
        self.config
    }

    /// Distortion at rate 0 (the best constant reproduction), in source units:
    /// `E|X|^{M+2}` up to the truncation.
    pub fn max_distortion(&self) -> f64 {
        self.d_max_std * self.distortion_scale
    }

    /// Distortion on this grid at unlimited rate, `D_floor`, in source units.
    pub fn grid_floor(&self) -> f64 {
        self.d_floor_std * self.distortion_scale
    }

    /// Smallest distortion [`rate_at`](Self::rate_at) accepts,
    /// `min_distortion_factor · D_floor`.
    pub fn min_distortion(&self) -> f64 {
        self.config.min_distortion_factor * self.grid_floor()
    }

    /// The banded kernel `e^{s(d̄_ij − min_j d̄_ij)}` at the standardized slope `s`.
    fn kernel(&self, s: f64) -> Kernel {
        let n = self.y.len();
        let mut kernel = Kernel::default();
        for i in 0..n {
            if self.p[i] <= 0.0 {
                continue;
            }
            let j0 = self.nearest(i);
            let dmin = self.dbar(i, j0);
            let keep = |j: usize| s * (self.dbar(i, j) - dmin) > -BAND_CUT;
            let mut lo = j0;
            while lo > 0 && keep(lo - 1) {
                lo -= 1;
            }
            let mut hi = j0;
            while hi + 1 < n && keep(hi + 1) {
                hi += 1;
            }
            let off = kernel.a.len();
            kernel
                .a
                .extend((lo..=hi).map(|j| (s * (self.dbar(i, j) - dmin)).exp()));
            kernel.rows.push(Row {
                cell: i,
                p: self.p[i],
                lo,
                off,
                len: hi - lo + 1,
                dmin,
            });
        }
        kernel
    }

    /// Solves at the standardized slope `s` (nats per standardized unit, < 0) from
    /// the previous solution's output distribution, floored so that no reproduction
    /// point is lost for good.
    fn solve_std(&mut self, s: f64) -> RdPoint {
        let kernel = self.kernel(s);
        let floor = 1e-12 / self.y.len() as f64;
        let start: Vec<f64> = self.q.iter().map(|&q| q.max(floor)).collect();
        let solution = solver::solve(
            &kernel,
            s,
            start,
            |i, j| self.dbar(i, j),
            self.config.tolerance_bits * LN_2,
            self.config.max_iterations,
        );
        self.q = solution.output;
        RdPoint {
            rate_bits: solution.info / LN_2,
            distortion: solution.distortion,
            slope: s / LN_2,
            gap_bits: solution.gap / LN_2,
            iterations: solution.iterations,
        }
    }

    fn to_source_units(&self, mut point: RdPoint) -> RdPoint {
        point.distortion *= self.distortion_scale;
        point.slope /= self.distortion_scale;
        point
    }

    /// Runs Blahut–Arimoto for the slope `slope` (`dR/dD`, bits per unit of
    /// distortion in source units, finite and < 0) and returns the achievable point
    /// it finds.
    pub fn at_slope(&mut self, slope: f64) -> Result<RdPoint, BoundError> {
        if !(slope.is_finite() && slope < 0.0) {
            return Err(BoundError::InvalidParameter {
                name: "slope",
                value: slope,
                requirement: "finite and < 0",
            });
        }
        let s = slope * LN_2 * self.distortion_scale;
        let point = self.solve_std(s);
        Ok(self.to_source_units(point))
    }

    /// The rate (bits per sample) at distortion `d` in source units: 0 from
    /// [`max_distortion`](Self::max_distortion) on; below it, the slope is searched
    /// (safeguarded Newton steps on `ln D` against `ln(−s)`, then bisection) until two
    /// computed points bracket `d` within `distortion_tolerance`, and the rate is
    /// their time-sharing chord at `d`. Errors for `d` below
    /// [`min_distortion`](Self::min_distortion).
    pub fn rate_at(&mut self, d: f64) -> Result<RdPoint, BoundError> {
        let min = self.min_distortion();
        let out_of_range = |min: f64| BoundError::DistortionOutOfRange {
            function: "Blahut-Arimoto rate-distortion function on this grid",
            distortion: d,
            min,
            min_inclusive: true,
            max: f64::INFINITY,
        };
        if !(d.is_finite() && d >= min) {
            return Err(out_of_range(min));
        }
        let target = d / self.distortion_scale;
        let zero = RdPoint {
            rate_bits: 0.0,
            distortion: self.d_max_std,
            slope: 0.0,
            gap_bits: 0.0,
            iterations: 0,
        };
        if target >= self.d_max_std {
            return Ok(RdPoint {
                distortion: d,
                ..zero
            });
        }
        let tol = self.config.distortion_tolerance;
        let ln_target = target.ln();
        // t = ln(−s); D decreases as t grows. `above`: D ≥ target (initially the
        // rate-0 point, t = −∞); `below`: D ≤ target.
        let mut above = (f64::NEG_INFINITY, zero);
        let mut below: Option<(f64, RdPoint)> = None;
        let t_start = (0.5 / target).ln();
        let mut t = t_start;
        let mut previous: Option<(f64, f64)> = None;
        let mut slope = -1.0; // d ln D / dt, estimated by secants.
        let mut since_bisection = 0;
        let mut iterations = 0;
        for _ in 0..100 {
            let point = self.solve_std(-t.exp());
            iterations += point.iterations;
            let ln_d = point.distortion.max(f64::MIN_POSITIVE).ln();
            if let Some((t0, l0)) = previous {
                let k = (ln_d - l0) / (t - t0);
                if k.is_finite() && k < -1e-3 {
                    slope = k;
                }
            }
            previous = Some((t, ln_d));
            if point.distortion >= target {
                if point.distortion <= above.1.distortion {
                    above = (t, point);
                }
            } else if below.is_none_or(|b| point.distortion > b.1.distortion) {
                below = Some((t, point));
            }
            let Some(low) = below else {
                // Aim just below the target to bracket it.
                let step = ((ln_target + (-0.25 * tol).ln_1p() - ln_d) / slope).clamp(-4.0, 4.0);
                t += step.max(0.05);
                if t > t_start + 60.0 {
                    return Err(out_of_range(point.distortion * self.distortion_scale));
                }
                continue;
            };
            if above.1.distortion - low.1.distortion <= tol * target {
                break;
            }
            since_bisection += 1;
            let aim = if above.0.is_finite() {
                ln_target
            } else {
                ln_target + (0.25 * tol).ln_1p()
            };
            let newton = t + ((aim - ln_d) / slope).clamp(-4.0, 4.0);
            t = if above.0.is_finite() {
                if since_bisection >= 3 || !(newton > above.0 && newton < low.0) {
                    since_bisection = 0;
                    0.5 * (above.0 + low.0)
                } else {
                    newton
                }
            } else {
                if low.0 < t_start - 60.0 {
                    break;
                }
                newton.min(low.0 - 0.05)
            };
        }
        let Some((_, b)) = below else {
            return Err(out_of_range(min));
        };
        let a = above.1;
        let spread = a.distortion - b.distortion;
        let (rate, slope) = if spread > 0.0 {
            let chord = (a.rate_bits - b.rate_bits) / spread;
            (b.rate_bits + chord * (target - b.distortion), chord)
        } else {
            (b.rate_bits, b.slope)
        };
        let mut point = self.to_source_units(RdPoint {
            rate_bits: rate.max(0.0),
            distortion: target,
            slope,
            gap_bits: a.gap_bits.max(b.gap_bits),
            iterations,
        });
        point.distortion = d;
        Ok(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_norm_moments_and_entropy() {
        let g = SourceDensity::Gaussian { sigma: 3.0 };
        assert!((g.variance().unwrap() - 9.0).abs() < 1e-12);
        let h = 0.5 * (2.0 * PI * E * 9.0).log2();
        assert!((g.differential_entropy_bits().unwrap() - h).abs() < 1e-12);
        let l = SourceDensity::Laplacian { scale: 0.5 };
        assert!((l.variance().unwrap() - 0.5).abs() < 1e-12);
        assert!((l.differential_entropy_bits().unwrap() - (2.0 * E * 0.5).log2()).abs() < 1e-12);
        assert!((l.absolute_moment(1.0).unwrap() - 0.5).abs() < 1e-12);
        assert!((l.pdf(0.0).unwrap() - 1.0).abs() < 1e-12);
        // The Gaussian SLB is its rate-distortion function.
        assert!((shannon_lower_bound(&g, 1.0).unwrap() - 0.5 * 9f64.log2()).abs() < 1e-12);
        assert!(SourceDensity::GenNorm {
            beta: 0.0,
            alpha: 1.0
        }
        .variance()
        .is_err());
    }

    #[test]
    fn discretization_is_consistent() {
        let ba = BlahutArimoto::new(
            SourceDensity::Laplacian { scale: 2.0 },
            0.0,
            BaConfig::default(),
        )
        .unwrap();
        // Rate 0 costs the variance (8); the grid floor is tiny.
        assert!(
            (ba.max_distortion() / 8.0 - 1.0).abs() < 1e-6,
            "{}",
            ba.max_distortion()
        );
        assert!(ba.grid_floor() < 1e-3 * 8.0);
        // M = 2: rate 0 costs E|X|^4 = 24 b^4 for the Laplacian.
        let ba = BlahutArimoto::new(
            SourceDensity::Laplacian { scale: 1.0 },
            2.0,
            BaConfig::default(),
        )
        .unwrap();
        assert!(
            (ba.max_distortion() / 24.0 - 1.0).abs() < 1e-6,
            "{}",
            ba.max_distortion()
        );
        assert!(BlahutArimoto::new(
            SourceDensity::Gaussian { sigma: 1.0 },
            0.0,
            BaConfig {
                cells: 400,
                ..BaConfig::default()
            }
        )
        .is_err());
    }
}
