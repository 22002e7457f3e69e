//! Thin, total wrappers over `statrs`' special functions.
//!
//! `statrs` panics on arguments outside the open domain (`x <= 0`, `x = ∞`); the
//! wrappers here give the limits instead, and [`reg_lower_diff`] returns a
//! difference of regularized incomplete gamma functions that stays accurate in
//! the upper tail (it subtracts upper functions there, never `1 - tiny`).

use statrs::distribution::{ContinuousCDF, Gamma};
use statrs::function::gamma;

/// `ln Γ(x)` for `x > 0`.
pub fn ln_gamma(x: f64) -> f64 {
    gamma::ln_gamma(x)
}

/// Regularized lower incomplete gamma `P(a, x)`, with `P(a, 0) = 0`, `P(a, ∞) = 1`.
pub fn reg_lower(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else if x.is_infinite() {
        1.0
    } else {
        gamma::gamma_lr(a, x)
    }
}

/// Regularized upper incomplete gamma `Q(a, x) = 1 - P(a, x)`, with `Q(a, 0) = 1`,
/// `Q(a, ∞) = 0`; accurate when `Q` is tiny.
pub fn reg_upper(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        1.0
    } else if x.is_infinite() {
        0.0
    } else {
        gamma::gamma_ur(a, x)
    }
}

/// `P(a, hi) - P(a, lo)` for `0 <= lo <= hi <= ∞`, accurate in both tails.
pub fn reg_lower_diff(a: f64, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return 0.0;
    }
    let diff = if lo >= a {
        reg_upper(a, lo) - reg_upper(a, hi)
    } else {
        reg_lower(a, hi) - reg_lower(a, lo)
    };
    diff.max(0.0)
}

/// The `p`-quantile of Gamma(shape `a`, rate 1), `0 <= p <= 1`.
pub fn gamma_quantile(a: f64, p: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    match Gamma::new(a, 1.0) {
        Ok(distribution) => distribution.inverse_cdf(p),
        Err(_) => f64::NAN,
    }
}

/// `2^n` exactly, as an `f64` (subnormal, `0` or `∞` outside the normal range).
pub fn exp2i(n: i64) -> f64 {
    if n > 1023 {
        f64::INFINITY
    } else if n >= -1022 {
        f64::from_bits(((n + 1023) as u64) << 52)
    } else if n >= -1074 {
        f64::from_bits(1u64 << (n + 1074))
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_tails() {
        assert_eq!(reg_lower(0.5, 0.0), 0.0);
        assert_eq!(reg_lower(0.5, f64::INFINITY), 1.0);
        assert_eq!(reg_upper(2.0, f64::INFINITY), 0.0);
        // Exponential: P(1, x) = 1 - e^-x.
        assert!((reg_lower(1.0, 0.7) - (1.0 - (-0.7f64).exp())).abs() < 1e-14);
        // Far tail keeps its relative accuracy.
        let tail = reg_lower_diff(1.0, 40.0, f64::INFINITY);
        assert!((tail / (-40.0f64).exp() - 1.0).abs() < 1e-10, "{tail}");
        assert!((gamma_quantile(1.0, 0.5) - std::f64::consts::LN_2).abs() < 1e-9);
    }

    #[test]
    fn powers_of_two_are_exact() {
        assert_eq!(exp2i(0), 1.0);
        assert_eq!(exp2i(-16), 1.0 / 65536.0);
        assert_eq!(exp2i(1023), 2f64.powi(1023));
        assert_eq!(exp2i(1024), f64::INFINITY);
        assert_eq!(exp2i(-1074), f64::from_bits(1));
        assert_eq!(exp2i(-1075), 0.0);
        assert_eq!(exp2i(-1030), 2f64.powi(-1030));
    }
}
