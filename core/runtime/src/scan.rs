//! Whole-slice checks the engine runs on every tensor and stream, written
//! without early exits inside blocks so the compiler vectorizes them (a plain
//! `iter().find` / `iter().any` runs one element per step).

/// Elements per block: an early exit between blocks, none inside.
const BLOCK: usize = 1024;

/// The first symbol at or above `alphabet`, if any.
pub fn first_outside_alphabet(symbols: &[u32], alphabet: u64) -> Option<u32> {
    let largest = symbols.iter().copied().max()?;
    if u64::from(largest) < alphabet {
        return None;
    }
    symbols.iter().copied().find(|s| u64::from(*s) >= alphabet)
}

/// Whether every value is finite.
pub fn all_finite(values: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); the function only
        // reads `values` through safe slice code compiled for AVX2.
        return unsafe { all_finite_avx2(values) };
    }
    all_finite_kernel(values)
}

/// How many values are NaN or infinite.
pub fn count_non_finite(values: &[f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: as in `all_finite`.
        return unsafe { count_non_finite_avx2(values) };
    }
    count_non_finite_kernel(values)
}

/// A finite f32 has an exponent other than all ones: `|v|` as bits below
/// `0x7f80_0000` (integer compares, which vectorize on any x86-64).
#[inline(always)]
fn finite_bits(v: f32) -> bool {
    v.to_bits() & 0x7fff_ffff < 0x7f80_0000
}

#[inline(always)]
fn all_finite_kernel(values: &[f32]) -> bool {
    values
        .chunks(BLOCK)
        .all(|block| block.iter().fold(true, |ok, v| ok & finite_bits(*v)))
}

#[inline(always)]
fn count_non_finite_kernel(values: &[f32]) -> usize {
    values
        .chunks(BLOCK)
        .map(|block| {
            block
                .iter()
                .map(|v| u32::from(!finite_bits(*v)))
                .sum::<u32>() as usize
        })
        .sum()
}

/// [`all_finite_kernel`] compiled for AVX2 (the same result).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn all_finite_avx2(values: &[f32]) -> bool {
    all_finite_kernel(values)
}

/// [`count_non_finite_kernel`] compiled for AVX2 (the same result).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_non_finite_avx2(values: &[f32]) -> usize {
    count_non_finite_kernel(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_find_what_a_plain_search_finds() {
        let mut symbols: Vec<u32> = (0..5000).map(|i| i % 11).collect();
        assert_eq!(first_outside_alphabet(&symbols, 11), None);
        assert_eq!(first_outside_alphabet(&[], 0), None);
        symbols[3000] = 40;
        symbols[4000] = 12;
        assert_eq!(first_outside_alphabet(&symbols, 11), Some(40));
        assert_eq!(first_outside_alphabet(&symbols, 41), None);
        assert_eq!(first_outside_alphabet(&[0], 0), Some(0));

        let mut values: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5 - 10.0).collect();
        assert!(all_finite(&values) && all_finite(&[]));
        assert_eq!(count_non_finite(&values), 0);
        values[2999] = f32::NAN;
        values[5] = f32::NEG_INFINITY;
        values[1500] = f32::INFINITY;
        assert!(!all_finite(&values));
        assert_eq!(count_non_finite(&values), 3);
        assert_eq!(count_non_finite_kernel(&values), 3);
        assert!(!all_finite_kernel(&values));
        for special in [f32::MAX, -f32::MAX, f32::MIN_POSITIVE, 1e-45, -0.0] {
            assert!(finite_bits(special) && all_finite(&[special; 9]));
        }
        for special in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(!finite_bits(special) && count_non_finite(&[special; 9]) == 9);
        }
    }
}
