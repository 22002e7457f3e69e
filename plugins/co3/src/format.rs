//! Tiny floating-point formats: (sign = 1, exponent bits E, mantissa bits M).
//!
//! Bias `2^(E-1) - 1`; the all-ones exponent is reserved (no inf/NaN); normals
//! `(1 + f/2^M)·2^(e-bias)` for `e` in `1..=2^E-2`; subnormals
//! `(f/2^M)·2^(1-bias)` for `f >= 1`; one zero. A positive level is indexed by
//! its bit pattern without the sign, `k = e·2^M + f` (`1..=K`,
//! `K = (2^E-1)·2^M - 1`), which is monotone in the value, so rounding works on
//! the index directly. Levels beyond the range of `f64` (E >= 12) read as `∞`
//! or `0`; no finite `f32` input times an `f32` scale ever rounds to them.

use gradcodec_numerics::special::exp2i;

/// A float format and its positive levels.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatFormat {
    exponent_bits: u32,
    mantissa_bits: u32,
    bias: i64,
    max_index: u32,
    /// `levels[k]` is the value of index `k` (`levels[0] = 0`).
    levels: Vec<f64>,
    min_normal: f64,
    subnormal_step: f64,
}

impl FloatFormat {
    /// The format with `e` exponent and `m` mantissa bits; needs `e >= 1`,
    /// `1 + e + m <= 16` and at least one non-zero level.
    pub fn new(e: u32, m: u32) -> Result<Self, String> {
        if e == 0 {
            return Err("field `exponent_bits`: must be at least 1".into());
        }
        if 1 + e + m > 16 {
            return Err(format!(
                "field `exponent_bits`: 1 + exponent_bits + mantissa_bits = {} exceeds 16 \
                 (exponent_bits {e}, mantissa_bits {m})",
                1 + e + m
            ));
        }
        let max_index = ((1u32 << e) - 1) * (1u32 << m) - 1;
        if max_index == 0 {
            return Err(format!(
                "field `mantissa_bits`: exponent_bits {e} with mantissa_bits {m} has no non-zero level"
            ));
        }
        let bias = (1i64 << (e - 1)) - 1;
        let levels = (0..=max_index).map(|k| level_value(k, m, bias)).collect();
        Ok(Self {
            exponent_bits: e,
            mantissa_bits: m,
            bias,
            max_index,
            levels,
            min_normal: exp2i(1 - bias),
            subnormal_step: exp2i(1 - bias - i64::from(m)),
        })
    }

    /// Exponent bits E.
    pub fn exponent_bits(&self) -> u32 {
        self.exponent_bits
    }

    /// Mantissa bits M.
    pub fn mantissa_bits(&self) -> u32 {
        self.mantissa_bits
    }

    /// Index K of the largest level.
    pub fn max_index(&self) -> u32 {
        self.max_index
    }

    /// Number of symbols: every level with its sign, and one zero (2K + 1).
    pub fn alphabet_size(&self) -> u64 {
        2 * u64::from(self.max_index) + 1
    }

    /// The positive level of index `k` (0 for k = 0).
    pub fn level(&self, k: u32) -> f64 {
        self.levels[k as usize]
    }

    /// The largest level.
    pub fn max_level(&self) -> f64 {
        self.levels[self.max_index as usize]
    }

    /// The smallest non-zero level.
    pub fn min_level(&self) -> f64 {
        self.levels[1]
    }

    /// Every level with its sign, ascending (the value of each symbol).
    pub fn signed_levels(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self.levels[1..].iter().rev().map(|v| -v).collect();
        all.extend_from_slice(&self.levels);
        all
    }

    /// Index of the level nearest to the magnitude `m >= 0`. Decision edges are
    /// the midpoints between neighbouring levels; a tie goes to the smaller
    /// magnitude; beyond the largest level the result saturates. Exact: `m` is
    /// split by its binary exponent, no rounding error enters.
    pub fn round_magnitude(&self, m: f64) -> u32 {
        if m >= self.max_level() {
            return self.max_index;
        }
        if m.is_nan() || m <= 0.0 {
            return 0;
        }
        let k = if m < self.min_normal {
            // Subnormal range: uniform steps, and index 2^M is the first normal.
            round_half_down(m / self.subnormal_step)
        } else {
            let exponent = ((m.to_bits() >> 52) & 0x7ff) as i64 - 1023;
            let significand = m / exp2i(exponent);
            let fraction =
                round_half_down((significand - 1.0) * exp2i(i64::from(self.mantissa_bits)));
            (exponent + self.bias) as u64 * (1u64 << self.mantissa_bits) + fraction
        };
        k.min(u64::from(self.max_index)) as u32
    }

    /// The symbol of `x` (its level index in ascending signed order; zero is K).
    pub fn symbol(&self, x: f64) -> u32 {
        let k = self.round_magnitude(x.abs());
        if x < 0.0 {
            self.max_index - k
        } else {
            self.max_index + k
        }
    }

    /// Value of a symbol (`None` outside the alphabet).
    pub fn symbol_value(&self, symbol: u32) -> Option<f64> {
        let zero = self.max_index;
        if symbol >= zero {
            let k = symbol - zero;
            (k <= self.max_index).then(|| self.level(k))
        } else {
            Some(-self.level(zero - symbol))
        }
    }

    /// Upper decision edge of positive index `k` (the midpoint to the next
    /// level; `∞` for the largest level).
    pub fn upper_edge(&self, k: u32) -> f64 {
        if k >= self.max_index {
            f64::INFINITY
        } else {
            0.5 * (self.level(k) + self.level(k + 1))
        }
    }
}

/// Rounds magnitudes to level indices by counting the decision edges below
/// them: for every `m >= 0` the same index as [`FloatFormat::round_magnitude`]
/// (the edges are the exact midpoints, a tie stays below), without its
/// exponent split; branch-free for small formats. Used where one format rounds
/// many values (the pre-scale search, the quantizer's threshold table).
pub struct EdgeRounder {
    edges: Vec<f64>,
}

/// Formats with at most this many positive edges are counted, not searched.
pub const SMALL_EDGE_COUNT: usize = 16;

impl EdgeRounder {
    /// The rounder of `format`.
    pub fn new(format: &FloatFormat) -> Self {
        Self {
            edges: (0..format.max_index())
                .map(|k| format.upper_edge(k))
                .collect(),
        }
    }

    /// The positive decision edges, ascending (`max_index` of them).
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Index of the level nearest to `m >= 0` (ties to the smaller magnitude,
    /// saturating).
    #[inline]
    pub fn index(&self, m: f64) -> u32 {
        if self.edges.len() <= SMALL_EDGE_COUNT {
            self.edges.iter().map(|e| u32::from(m > *e)).sum()
        } else {
            self.edges.partition_point(|e| *e < m) as u32
        }
    }
}

/// `⌈t - ½⌉` for `t >= 0`: nearest integer, ties down.
fn round_half_down(t: f64) -> u64 {
    (t - 0.5).ceil().max(0.0) as u64
}

fn level_value(k: u32, m: u32, bias: i64) -> f64 {
    let fraction_count = 1u32 << m;
    if k < fraction_count {
        f64::from(k) * exp2i(1 - bias - i64::from(m))
    } else {
        let e = i64::from(k >> m);
        let f = k & (fraction_count - 1);
        f64::from(fraction_count + f) * exp2i(e - bias - i64::from(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp4_has_the_eleven_reference_levels() {
        let fp4 = FloatFormat::new(2, 1).unwrap();
        assert_eq!(fp4.alphabet_size(), 11);
        assert_eq!(
            fp4.signed_levels(),
            vec![-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
        );
    }

    #[test]
    fn fp8_e5m2_has_247_levels_from_2_pow_minus_16_to_57344() {
        let fp8 = FloatFormat::new(5, 2).unwrap();
        assert_eq!(fp8.alphabet_size(), 247);
        assert_eq!(fp8.min_level(), 2f64.powi(-16));
        assert_eq!(fp8.max_level(), 57344.0);
        let levels = fp8.signed_levels();
        assert!(levels.windows(2).all(|w| w[0] < w[1]));
        // E4M3 (the other common fp8): largest 240 with the all-ones exponent reserved.
        let e4m3 = FloatFormat::new(4, 3).unwrap();
        assert_eq!((e4m3.alphabet_size(), e4m3.max_level()), (239, 240.0));
        assert_eq!(e4m3.min_level(), 2f64.powi(-9));
    }

    #[test]
    fn rounding_is_nearest_with_ties_to_the_smaller_magnitude_and_saturates() {
        let fp4 = FloatFormat::new(2, 1).unwrap();
        let cases = [
            (0.0, 0.0),
            (0.25, 0.0),
            (0.2500001, 0.5),
            (0.74, 0.5),
            (0.75, 0.5),
            (0.76, 1.0),
            (1.25, 1.0),
            (1.75, 1.5),
            (1.76, 2.0),
            (2.5, 2.0),
            (2.51, 3.0),
            (7.0, 3.0),
            (1e30, 3.0),
            (-1.3, -1.5),
            (-0.25, 0.0),
        ];
        for (x, expected) in cases {
            let value = fp4.symbol_value(fp4.symbol(x)).unwrap();
            assert_eq!(value, expected, "x = {x}");
        }
        // Against a brute-force nearest search on a format with subnormals and
        // several binades.
        let format = FloatFormat::new(4, 3).unwrap();
        let levels = format.signed_levels();
        for i in 0..20_000 {
            let x = (i as f64 - 10_000.0) * 0.0137 + 0.0001;
            let got = format.symbol_value(format.symbol(x)).unwrap();
            let best = levels
                .iter()
                .copied()
                .min_by(|a, b| (a - x).abs().total_cmp(&(b - x).abs()))
                .unwrap();
            assert_eq!(got, best, "x = {x}");
        }
        for k in 0..format.max_index() {
            // The midpoint ties to the smaller magnitude; just above goes up.
            let edge = format.upper_edge(k);
            assert_eq!(format.round_magnitude(edge), k);
            assert_eq!(format.round_magnitude(edge * (1.0 + 1e-12)), k + 1);
        }
    }

    #[test]
    fn the_edge_rounder_matches_round_magnitude() {
        for (e, m) in [(2, 1), (3, 2), (4, 3), (5, 2), (2, 3)] {
            let format = FloatFormat::new(e, m).unwrap();
            let rounder = EdgeRounder::new(&format);
            let mut probes = vec![0.0, f64::INFINITY, 1e300, format.max_level()];
            for k in 0..format.max_index() {
                let edge = format.upper_edge(k);
                probes.extend([edge, edge * (1.0 + 1e-15), edge * (1.0 - 1e-15)]);
                probes.push(format.level(k));
            }
            probes.extend((0..20_000).map(|i| f64::from(i) * format.max_level() / 15_000.0));
            for probe in probes {
                assert_eq!(
                    rounder.index(probe),
                    format.round_magnitude(probe),
                    "E{e}M{m} at {probe}"
                );
            }
        }
    }

    #[test]
    fn every_size_up_to_sixteen_bits_works_and_larger_is_refused() {
        for e in 1..=15u32 {
            for m in 0..=(15 - e) {
                match FloatFormat::new(e, m) {
                    Ok(format) => {
                        assert!(format.alphabet_size() <= 1 << 16);
                        let x = 0.3f64;
                        let symbol = format.symbol(x);
                        assert!(u64::from(symbol) < format.alphabet_size());
                        assert!(format.symbol_value(symbol).unwrap().is_finite());
                    }
                    Err(message) => {
                        assert_eq!((e, m), (1, 0), "{message}");
                        assert!(message.contains("mantissa_bits"));
                    }
                }
            }
        }
        let error = FloatFormat::new(8, 8).unwrap_err();
        assert!(
            error.contains("exponent_bits") && error.contains("17"),
            "{error}"
        );
        assert!(FloatFormat::new(0, 3)
            .unwrap_err()
            .contains("exponent_bits"));
        // E = 15: levels beyond f64 read as infinite, inputs never reach them.
        let wide = FloatFormat::new(15, 0).unwrap();
        assert_eq!(wide.symbol_value(wide.symbol(1.0)), Some(1.0));
        assert!(wide.max_level().is_infinite());
    }
}
