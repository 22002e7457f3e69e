//! The discrete rate-distortion problem at one slope, `min_q −Σ_i p_i ln Σ_j q_j A_ij`
//! over the simplex with `A_ij = e^{s(d_ij − min_j d_ij)}` (Blahut 1972): its minimizer
//! `q` is the optimal output distribution, and the test channel is
//! `Q(j|i) = q_j A_ij / Z_i`, `Z_i = Σ_j q_j A_ij`.
//!
//! Two methods, alternated until Blahut's gap `max_j ln c_j − Σ_j q_j c_j ln c_j`
//! (`c_j = Σ_i p_i A_ij / Z_i`) is below the tolerance:
//! - Blahut's update `q_j ← q_j c_j`, accelerated by SQUAREM (Varadhan and Roland
//!   2008, scheme S3) with a monotone safeguard. Fast when the optimal output has a
//!   density (the Gaussian).
//! - Active-set Newton (sequential quadratic programming), after mixSQP (Kim,
//!   Carbonetto, Stephens and Anitescu 2020): minimize
//!   `f(x) = −Σ_i p_i ln (Ax)_i + Σ_j x_j` over `x ≥ 0` (its minimizer sums to 1 and is
//!   Blahut's fixed point). Each step solves the quadratic model
//!   `min ½yᵀHy + (∇f − Hx)ᵀy`, `y ≥ 0`, with `H = Aᵀ diag(p/(Ax)²) A` (so `Hx = c`),
//!   by a primal active-set method on an incrementally updated Cholesky factor, then
//!   backtracks along `y − x` (Armijo). Fast when the optimal output is discrete
//!   (Rose 1994: whenever the Shannon lower bound is not tight, as for the Laplacian),
//!   where Blahut's iteration crawls.

/// Blahut passes per SQUAREM round before the Newton method takes over.
const SQUAREM_ROUND: usize = 60;

/// One row of the banded kernel: a source cell with positive mass.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    /// The cell's index (for the distortion function).
    pub cell: usize,
    /// The cell's probability.
    pub p: f64,
    /// First reproduction index in the band.
    pub lo: usize,
    /// Offset of the band in `Kernel::a`.
    pub off: usize,
    /// Band length.
    pub len: usize,
    /// `min_j d_ij` (the kernel is `e^{s(d_ij − dmin)}`, at most 1).
    pub dmin: f64,
}

/// The banded kernel at one slope.
#[derive(Debug, Clone, Default)]
pub(super) struct Kernel {
    /// Rows with positive mass.
    pub rows: Vec<Row>,
    /// The band entries, row after row.
    pub a: Vec<f64>,
}

impl Kernel {
    fn band(&self, r: &Row) -> &[f64] {
        &self.a[r.off..r.off + r.len]
    }

    /// `out_r = (A x)_r`.
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        for (o, r) in out.iter_mut().zip(&self.rows) {
            *o = self
                .band(r)
                .iter()
                .zip(&x[r.lo..r.lo + r.len])
                .map(|(a, x)| a * x)
                .sum();
        }
    }

    /// `out_j = (Aᵀ v)_j`.
    fn apply_t(&self, v: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        for (&v, r) in v.iter().zip(&self.rows) {
            for (o, a) in out[r.lo..r.lo + r.len].iter_mut().zip(self.band(r)) {
                *o += v * a;
            }
        }
    }

    /// Fills `z = A q` and `c = Aᵀ(p/z)`; returns `−Σ p ln z` and Blahut's gap for
    /// `q / Σq` (nats).
    fn pass(&self, q: &[f64], z: &mut [f64], c: &mut [f64]) -> (f64, f64) {
        self.apply(q, z);
        let mut objective = 0.0;
        let v: Vec<f64> = self
            .rows
            .iter()
            .zip(z.iter())
            .map(|(r, &z)| {
                objective -= r.p * z.ln();
                r.p / z
            })
            .collect();
        self.apply_t(&v, c);
        let sq: f64 = q.iter().sum();
        let (mut max_ln, mut mean_ln) = (f64::NEG_INFINITY, 0.0);
        for (qj, cj) in q.iter().zip(c.iter()) {
            let cq = cj * sq;
            if cq > 0.0 {
                let l = cq.ln();
                max_ln = max_ln.max(l);
                mean_ln += qj / sq * cq * l;
            }
        }
        (objective, max_ln - mean_ln)
    }
}

/// The result at one slope.
#[derive(Debug, Clone)]
pub(super) struct Solution {
    /// Output distribution of the final channel (the next warm start).
    pub output: Vec<f64>,
    /// `I(C; Y)`, nats.
    pub info: f64,
    /// `E d`, standardized units.
    pub distortion: f64,
    /// Blahut's gap at the final `q`, nats.
    pub gap: f64,
    /// Blahut passes plus Newton steps.
    pub iterations: usize,
}

/// Solves the problem at slope `s` from the warm start `q` (positive, any scale),
/// within `budget` iterations, and evaluates the final channel with `dist(i, j)`.
pub(super) fn solve(
    kernel: &Kernel,
    s: f64,
    mut q: Vec<f64>,
    dist: impl Fn(usize, usize) -> f64,
    tol: f64,
    budget: usize,
) -> Solution {
    let budget = budget.max(1);
    let (mut gap, mut used) = squarem(kernel, &mut q, tol, SQUAREM_ROUND.min(budget));
    let mut newton_failures = 0;
    while gap >= tol && used < budget {
        if newton_failures < 2 {
            let (g, u) = newton(kernel, &mut q, tol, budget - used);
            newton_failures = if g < gap { 0 } else { newton_failures + 1 };
            gap = g;
            used += u;
        }
        if gap < tol || used >= budget {
            break;
        }
        let (g, u) = squarem(kernel, &mut q, tol, SQUAREM_ROUND.min(budget - used));
        gap = g;
        used += u;
    }
    // The test channel Q(j|i) = q_j a_ij / Z_i; its output q'_j = q_j c_j.
    let n = q.len();
    let sum: f64 = q.iter().sum();
    q.iter_mut().for_each(|v| *v /= sum);
    let (mut z, mut c) = (vec![0.0; kernel.rows.len()], vec![0.0; n]);
    let (_, gap) = kernel.pass(&q, &mut z, &mut c);
    let (mut distortion, mut info) = (0.0, 0.0);
    for (r, &zr) in kernel.rows.iter().zip(&z) {
        let ln_z = zr.ln();
        let (mut dr, mut ir) = (0.0, 0.0);
        for (k, &a) in kernel.band(r).iter().enumerate() {
            let j = r.lo + k;
            let qij = q[j] * a / zr;
            if qij > 0.0 {
                let d = dist(r.cell, j);
                dr += qij * d;
                ir += qij * (s * (d - r.dmin) - ln_z - c[j].ln());
            }
        }
        distortion += r.p * dr;
        info += r.p * ir;
    }
    Solution {
        output: q.iter().zip(&c).map(|(q, c)| q * c).collect(),
        info: info.max(0.0),
        distortion,
        gap: gap.max(0.0),
        iterations: used,
    }
}

/// SQUAREM-accelerated Blahut passes on `q` (normalized on return); returns the gap
/// and the passes used.
fn squarem(kernel: &Kernel, q: &mut Vec<f64>, tol: f64, budget: usize) -> (f64, usize) {
    let n = q.len();
    let sum: f64 = q.iter().sum();
    q.iter_mut().for_each(|v| *v /= sum);
    let (mut z, mut c) = (vec![0.0; kernel.rows.len()], vec![0.0; n]);
    let (mut q1, mut q2, mut qx) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut used = 0;
    let mut step_max = 4.0;
    let mut gap;
    'outer: loop {
        let (_, g) = kernel.pass(q, &mut z, &mut c);
        used += 1;
        gap = g;
        if gap < tol || used >= budget {
            break;
        }
        for ((q1, q0), c) in q1.iter_mut().zip(q.iter()).zip(&c) {
            *q1 = q0 * c;
        }
        let (obj1, g) = kernel.pass(&q1, &mut z, &mut c);
        used += 1;
        if g < tol || used >= budget {
            gap = g;
            std::mem::swap(q, &mut q1);
            break;
        }
        for ((q2, q1), c) in q2.iter_mut().zip(&q1).zip(&c) {
            *q2 = q1 * c;
        }
        // r = q1 − q0, v = q2 − 2q1 + q0, α = −‖r‖/‖v‖ clamped to [−step_max, −1].
        let (mut rr, mut vv) = (0.0, 0.0);
        for ((a, b), c) in q.iter().zip(&q1).zip(&q2) {
            let r = b - a;
            let v = c - 2.0 * b + a;
            rr += r * r;
            vv += v * v;
        }
        let mut alpha = if vv > 0.0 { -(rr / vv).sqrt() } else { -1.0 };
        alpha = alpha.max(-step_max);
        while alpha < -1.0 {
            let mut ok = true;
            for (((x, a), b), c) in qx.iter_mut().zip(q.iter()).zip(&q1).zip(&q2) {
                let r = b - a;
                let v = c - 2.0 * b + a;
                *x = a - 2.0 * alpha * r + alpha * alpha * v;
                ok &= x.is_finite() && *x > 0.0;
            }
            if ok {
                let sum: f64 = qx.iter().sum();
                qx.iter_mut().for_each(|x| *x /= sum);
                let (obj, g) = kernel.pass(&qx, &mut z, &mut c);
                used += 1;
                if obj <= obj1 {
                    if g < tol || used >= budget {
                        gap = g;
                        std::mem::swap(q, &mut qx);
                        break 'outer;
                    }
                    if alpha <= -step_max {
                        step_max *= 4.0;
                    }
                    for ((q0, x), c) in q.iter_mut().zip(&qx).zip(&c) {
                        *q0 = x * c;
                    }
                    continue 'outer;
                }
                if used >= budget {
                    break;
                }
            }
            alpha = 0.5 * (alpha - 1.0);
            if alpha > -1.01 {
                break;
            }
        }
        // Fall back to the plain Blahut step.
        std::mem::swap(q, &mut q2);
    }
    (gap, used)
}

/// A Cholesky factor `L Lᵀ = H_FF + ridge·diag(H_FF)` of the free set, kept in the
/// free set's order; rows are stored ragged (`l[r]` has `r + 1` entries). The ridge
/// is relative to each diagonal entry, so it does not depend on how differently the
/// variables are scaled.
struct Cholesky {
    l: Vec<Vec<f64>>,
    ridge: f64,
}

impl Cholesky {
    /// Appends a variable with cross terms `col` (against the current order) and
    /// diagonal `diag` (without the ridge).
    fn push(&mut self, col: &[f64], diag: f64) {
        let m = self.l.len();
        let mut w = col.to_vec();
        for r in 0..m {
            let dot: f64 = (0..r).map(|k| self.l[r][k] * w[k]).sum();
            w[r] = (w[r] - dot) / self.l[r][r];
        }
        let ridge = self.ridge * diag + f64::MIN_POSITIVE;
        let d = diag + ridge - w.iter().map(|v| v * v).sum::<f64>();
        w.push(d.max(ridge).sqrt());
        self.l.push(w);
    }

    /// Deletes the variable at position `k`: drop its row and column, then restore the
    /// trailing block by a rank-one update with the dropped column.
    fn remove(&mut self, k: usize) {
        let mut x: Vec<f64> = self.l[k + 1..].iter().map(|row| row[k]).collect();
        self.l.remove(k);
        for row in &mut self.l[k..] {
            row.remove(k);
        }
        let m = self.l.len();
        for (i, xi) in (k..m).zip(0..) {
            let lii = self.l[i][i];
            let r = lii.hypot(x[xi]);
            let (c, s) = (r / lii, x[xi] / lii);
            self.l[i][i] = r;
            for (j, xj) in (i + 1..m).zip(xi + 1..) {
                let v = (self.l[j][i] + s * x[xj]) / c;
                x[xj] = c * x[xj] - s * v;
                self.l[j][i] = v;
            }
        }
    }

    /// Solves `L Lᵀ y = rhs`.
    fn solve(&self, rhs: &[f64]) -> Vec<f64> {
        let m = self.l.len();
        let mut y = rhs.to_vec();
        for r in 0..m {
            let dot: f64 = (0..r).map(|k| self.l[r][k] * y[k]).sum();
            y[r] = (y[r] - dot) / self.l[r][r];
        }
        for r in (0..m).rev() {
            let dot: f64 = (r + 1..m).map(|k| self.l[k][r] * y[k]).sum();
            y[r] = (y[r] - dot) / self.l[r][r];
        }
        y
    }
}

/// The Hessian `H = Aᵀ diag(w) A` on demand, one column at a time.
struct Hessian<'a> {
    kernel: &'a Kernel,
    w: Vec<f64>,
    /// Rows whose band covers each column.
    covering: Vec<Vec<usize>>,
}

impl Hessian<'_> {
    /// `H_jk` for every `k` in `others`, and `H_jj`.
    fn column(&self, j: usize, others: &[usize]) -> (Vec<f64>, f64) {
        let mut col = vec![0.0; others.len()];
        let mut diag = 0.0;
        for &ri in &self.covering[j] {
            let r = &self.kernel.rows[ri];
            let band = self.kernel.band(r);
            let t = self.w[ri] * band[j - r.lo];
            diag += t * band[j - r.lo];
            for (c, &k) in col.iter_mut().zip(others) {
                if k >= r.lo && k < r.lo + r.len {
                    *c += t * band[k - r.lo];
                }
            }
        }
        (col, diag)
    }
}

/// Active-set Newton steps on `q` (normalized on return); returns the gap and the
/// steps used. Stops early when a step cannot decrease the objective.
///
/// Each step first drops entries below `1e-9` of the largest (unless that empties a
/// row), then solves the quadratic model for the step `d` itself,
/// `min ½dᵀHd + gᵀd` subject to `x + d ≥ 0` with `g = 1 − c` (which vanishes at the
/// optimum, so `d` is computed to full relative precision even when `H` is
/// ill-conditioned — neighbouring grid points have nearly equal columns).
fn newton(kernel: &Kernel, q: &mut [f64], tol: f64, budget: usize) -> (f64, usize) {
    let n = q.len();
    let rows = kernel.rows.len();
    let mut covering = vec![Vec::new(); n];
    for (ri, r) in kernel.rows.iter().enumerate() {
        for list in &mut covering[r.lo..r.lo + r.len] {
            list.push(ri);
        }
    }
    let objective = |z: &[f64], x: &[f64]| -> f64 {
        let mut f = x.iter().sum::<f64>();
        for (r, &z) in kernel.rows.iter().zip(z) {
            if z <= 0.0 {
                return f64::INFINITY;
            }
            f -= r.p * z.ln();
        }
        f
    };
    let mut x = q.to_vec();
    let (mut z, mut v) = (vec![0.0; rows], vec![0.0; rows]);
    let (mut c, mut hd, mut xt) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut gap = f64::INFINITY;
    let mut steps = 0;
    while steps < budget {
        steps += 1;
        // Drop negligible entries that the gradient does not favour (they would make
        // the free set, and H, needlessly big).
        kernel.pass(&x, &mut z, &mut c);
        let x_max = x.iter().cloned().fold(0.0, f64::max);
        let mut dropped = false;
        for ((t, &x), &c) in xt.iter_mut().zip(&x).zip(&c) {
            *t = if x > 1e-9 * x_max || c > 1.0 { x } else { 0.0 };
            dropped |= *t != x;
        }
        if dropped {
            kernel.apply(&xt, &mut v);
            if v.iter().all(|&z| z > 0.0) {
                std::mem::swap(&mut x, &mut xt);
            }
        }
        let (_, g) = kernel.pass(&x, &mut z, &mut c);
        gap = g;
        if gap < tol {
            break;
        }
        let f0 = objective(&z, &x);
        let grad: Vec<f64> = c.iter().map(|c| 1.0 - c).collect();
        let hess = Hessian {
            kernel,
            w: kernel
                .rows
                .iter()
                .zip(&z)
                .map(|(r, z)| r.p / (z * z))
                .collect(),
            covering: std::mem::take(&mut covering),
        };
        let hess_times = |d: &[f64], v: &mut [f64], out: &mut [f64]| {
            kernel.apply(d, v);
            for (v, w) in v.iter_mut().zip(&hess.w) {
                *v *= w;
            }
            kernel.apply_t(v, out);
        };
        let mut free: Vec<usize> = (0..n).filter(|&j| x[j] > 0.0).collect();
        let mut is_free = vec![false; n];
        let mut chol = Cholesky {
            l: Vec::new(),
            ridge: 1e-12,
        };
        for (k, &j) in free.iter().enumerate() {
            let (col, diag) = hess.column(j, &free[..k]);
            chol.push(&col, diag);
            is_free[j] = true;
        }
        // Primal active set from d = 0. `fixed`: d of released variables (−x_j), and
        // `h_fixed` = H·fixed.
        let mut d = vec![0.0; n];
        let mut fixed = vec![0.0; n];
        let mut h_fixed = vec![0.0; n];
        for _ in 0..2 * n + 10 {
            let rhs: Vec<f64> = free.iter().map(|&j| -grad[j] - h_fixed[j]).collect();
            let dhat = chol.solve(&rhs);
            if free.iter().zip(&dhat).all(|(&j, &v)| x[j] + v >= 0.0) {
                for (&j, &v) in free.iter().zip(&dhat) {
                    d[j] = v;
                }
                // Multipliers of the bounds at 0: λ = (Hd + g)_j; free the most negative.
                hess_times(&d, &mut v, &mut hd);
                let mut best = (usize::MAX, -1e-12);
                for j in 0..n {
                    let lambda = hd[j] + grad[j];
                    if !is_free[j] && lambda < best.1 {
                        best = (j, lambda);
                    }
                }
                if best.0 == usize::MAX {
                    break;
                }
                let j = best.0;
                let (col, diag) = hess.column(j, &free);
                chol.push(&col, diag);
                free.push(j);
                is_free[j] = true;
                if fixed[j] != 0.0 {
                    fixed[j] = 0.0;
                    hess_times(&fixed, &mut v, &mut h_fixed);
                }
            } else {
                // Move towards d̂ until the first free variable reaches 0; release it.
                let mut alpha = 1.0;
                let mut block = 0;
                for (k, (&j, &v)) in free.iter().zip(&dhat).enumerate() {
                    if x[j] + v < 0.0 {
                        let a = (x[j] + d[j]) / (d[j] - v);
                        if a < alpha {
                            alpha = a.max(0.0);
                            block = k;
                        }
                    }
                }
                for (&j, &v) in free.iter().zip(&dhat) {
                    d[j] = (d[j] + alpha * (v - d[j])).max(-x[j]);
                }
                let j = free.remove(block);
                chol.remove(block);
                is_free[j] = false;
                d[j] = -x[j];
                if x[j] != 0.0 {
                    fixed[j] = -x[j];
                    hess_times(&fixed, &mut v, &mut h_fixed);
                }
                if free.is_empty() {
                    break;
                }
            }
        }
        covering = hess.covering;
        // Backtracking line search on f along d.
        let slope: f64 = grad.iter().zip(&d).map(|(g, d)| g * d).sum();
        // Stop when the predicted decrease is below what `f` can resolve.
        if slope.is_nan() || slope >= -1e-15 * f0.abs().max(1.0) {
            break;
        }
        let mut tau = 1.0;
        let mut accepted = false;
        while tau > 1e-12 {
            for j in 0..n {
                xt[j] = (x[j] + tau * d[j]).max(0.0);
            }
            kernel.apply(&xt, &mut v);
            if objective(&v, &xt) <= f0 + 1e-4 * tau * slope {
                accepted = true;
                break;
            }
            tau *= 0.5;
        }
        if !accepted {
            break;
        }
        std::mem::swap(&mut x, &mut xt);
    }
    let sx: f64 = x.iter().sum();
    for (q, x) in q.iter_mut().zip(&x) {
        *q = x / sx;
    }
    (gap, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(m: usize) -> Vec<Vec<f64>> {
        // A Gram matrix of smooth vectors plus identity: well conditioned, dense.
        (0..m)
            .map(|i| {
                (0..m)
                    .map(|j| {
                        let g: f64 = (0..m + 2)
                            .map(|t| {
                                ((i + 1) as f64 * t as f64 * 0.3).sin()
                                    * ((j + 1) as f64 * t as f64 * 0.3).sin()
                            })
                            .sum();
                        g + if i == j { 1.0 } else { 0.0 }
                    })
                    .collect()
            })
            .collect()
    }

    /// A binary source with Hamming distortion: `R(D) = h(p) − h(D)` for
    /// `D ≤ min(p, 1 − p)`, reached at the slope `s = ln(D/(1 − D))`.
    #[test]
    fn binary_source_with_hamming_distortion() {
        for (p1, d) in [(0.5f64, 0.1f64), (0.2, 0.05), (0.3, 0.01)] {
            let s = (d / (1.0 - d)).ln();
            let ps = [1.0 - p1, p1];
            let kernel = Kernel {
                rows: (0..2)
                    .map(|i| Row {
                        cell: i,
                        p: ps[i],
                        lo: 0,
                        off: 2 * i,
                        len: 2,
                        dmin: 0.0,
                    })
                    .collect(),
                a: vec![1.0, s.exp(), s.exp(), 1.0],
            };
            let hamming = |i: usize, j: usize| if i == j { 0.0 } else { 1.0 };
            let sol = solve(&kernel, s, vec![0.5, 0.5], hamming, 1e-12, 10_000);
            let h = |x: f64| -x * x.ln() - (1.0 - x) * (1.0 - x).ln();
            assert!((sol.distortion - d).abs() < 1e-9, "{sol:?}");
            assert!((sol.info - (h(p1) - h(d))).abs() < 1e-9, "{sol:?}");
            assert!(sol.gap < 1e-12);
            // The output distribution: q_1 = (p − D)/(1 − 2D).
            let q1 = (p1 - d) / (1.0 - 2.0 * d);
            assert!((sol.output[1] - q1).abs() < 1e-9, "{sol:?}");
        }
    }

    #[test]
    fn cholesky_updates_match_a_fresh_factor() {
        let h = spd(7);
        let mut chol = Cholesky {
            l: Vec::new(),
            ridge: 0.0,
        };
        let mut order: Vec<usize> = Vec::new();
        for (j, row) in h.iter().enumerate() {
            let col: Vec<f64> = order.iter().map(|&k| row[k]).collect();
            chol.push(&col, row[j]);
            order.push(j);
        }
        chol.remove(2);
        order.remove(2);
        chol.remove(0);
        order.remove(0);
        let rhs: Vec<f64> = (0..order.len()).map(|i| i as f64 - 1.5).collect();
        let y = chol.solve(&rhs);
        // Check H_FF y = rhs.
        for (r, &i) in order.iter().enumerate() {
            let got: f64 = order.iter().zip(&y).map(|(&k, y)| h[i][k] * y).sum();
            assert!((got - rhs[r]).abs() < 1e-9, "{got} vs {}", rhs[r]);
        }
    }
}
