//! How many of a sorted list of `f32` thresholds lie below a magnitude, in
//! constant time: the rounding of formats with many levels (fp8: 127
//! thresholds) without a binary search per entry.
//!
//! A non-negative `f32`'s bit pattern orders like its value, so its top bits
//! name a bucket of the line. For every bucket the counter stores how many
//! thresholds lie below the bucket's smallest value; with buckets no wider than
//! half the spacing of the thresholds, at most two more lie inside the bucket,
//! and two compares finish the count. A format with `m` mantissa bits places
//! `2^m` thresholds per octave at most, so `m + 1` bits of the f32 mantissa per
//! bucket suffice (fp8 E4M3: 16 buckets per octave, about 320 for its range).
//! The count is exactly `thresholds.partition_point(|t| *t < magnitude)` for
//! every magnitude, NaN (0) and infinity included; where the thresholds do not
//! fit the scheme, [`ThresholdCounter::new`] declines and the caller keeps its
//! search.
//!
//! No parameters of its own: it serves `float-convert`, e.g.
//!
//! ```yaml
//! quantizer: { name: float-convert, config: { preset: fp8 } }
//! ```

/// Thresholds a bucket may hold beyond its base count (the compares per entry).
const PER_BUCKET: usize = 2;
/// The most buckets a counter keeps (the table stays within a few L1 lines
/// per octave for small formats; wide formats decline).
const MAX_BUCKETS: usize = 1 << 16;
/// The bit pattern of `+inf`; larger patterns are NaN.
const INFINITY_BITS: u32 = 0x7f80_0000;

/// The constant-time count of thresholds below a magnitude (see the module doc).
pub(crate) struct ThresholdCounter {
    /// The thresholds that a finite magnitude can exceed, then `PER_BUCKET`
    /// times `+inf` (so the compares never read past the end).
    crossable: Vec<f32>,
    /// Every threshold, `f32::MAX` ones included (what `+inf` exceeds).
    total: u32,
    /// A magnitude's bucket is its bit pattern shifted right by this.
    shift: u32,
    /// The bucket of the smallest crossable threshold.
    first_bucket: u32,
    /// The bucket of the largest.
    last_bucket: u32,
    /// `base[j]`: thresholds below the smallest value of bucket `first_bucket + j`.
    base: Vec<u16>,
}

impl ThresholdCounter {
    /// The counter of `thresholds` (ascending, non-negative, as
    /// `Rounder`'s are) with buckets of `bucket_bits` f32 mantissa bits; `None`
    /// when some bucket would hold more than two thresholds or the table would
    /// be too large.
    pub(crate) fn new(thresholds: &[f32], bucket_bits: u32) -> Option<Self> {
        if bucket_bits > 23
            || thresholds.len() > usize::from(u16::MAX)
            || !thresholds.windows(2).all(|w| w[0] <= w[1])
            || thresholds.iter().any(|t| t.is_nan() || *t < 0.0)
        {
            return None;
        }
        let shift = 23 - bucket_bits;
        // `f32::MAX` thresholds: no finite magnitude exceeds them.
        let crossable_len = thresholds.partition_point(|t| *t < f32::MAX);
        let crossable = &thresholds[..crossable_len];
        let bucket = |t: f32| (t.to_bits() & !(1 << 31)) >> shift;
        let (first_bucket, last_bucket) = match (crossable.first(), crossable.last()) {
            (Some(first), Some(last)) => (bucket(*first), bucket(*last)),
            _ => (0, 0),
        };
        let buckets = (last_bucket - first_bucket) as usize + 1;
        if buckets > MAX_BUCKETS {
            return None;
        }
        let mut base = Vec::with_capacity(buckets);
        let mut below = 0usize;
        for j in first_bucket..=last_bucket {
            let lowest = f32::from_bits(j << shift);
            while below < crossable.len() && crossable[below] < lowest {
                below += 1;
            }
            base.push(below as u16);
        }
        // Each bucket's own thresholds: the next bucket's base minus its own.
        let fits = base
            .iter()
            .zip(base.iter().skip(1).copied().chain([crossable.len() as u16]))
            .all(|(here, next)| usize::from(next - here) <= PER_BUCKET);
        if !fits {
            return None;
        }
        let mut padded = crossable.to_vec();
        padded.extend([f32::INFINITY; PER_BUCKET]);
        Some(Self {
            crossable: padded,
            total: thresholds.len() as u32,
            shift,
            first_bucket,
            last_bucket,
            base,
        })
    }

    /// The number of thresholds `t` with `t < magnitude` (`magnitude` as
    /// `a.abs()`: non-negative, or NaN).
    #[inline(always)]
    pub(crate) fn count(&self, magnitude: f32) -> u32 {
        let bits = magnitude.to_bits();
        let bucket = (bits >> self.shift).clamp(self.first_bucket, self.last_bucket);
        let k = usize::from(self.base[(bucket - self.first_bucket) as usize]);
        // Sorted: the two compares count the bucket's own thresholds below it.
        let inside =
            u32::from(self.crossable[k] < magnitude) + u32::from(self.crossable[k + 1] < magnitude);
        match bits {
            INFINITY_BITS => self.total,
            b if b > INFINITY_BITS => 0,
            _ => k as u32 + inside,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn searched(thresholds: &[f32], magnitude: f32) -> u32 {
        thresholds.partition_point(|t| *t < magnitude) as u32
    }

    /// Magnitudes around every threshold and bucket edge, and special values.
    fn probes(thresholds: &[f32], rng: &mut impl Rng) -> Vec<f32> {
        let mut out = vec![
            0.0,
            -0.0,
            1e-45,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            f32::from_bits(0x7fc0_0001),
        ];
        for t in thresholds {
            out.extend([*t, t.next_up(), t.next_down().max(0.0), t * 1.5, t * 0.7]);
        }
        out.extend((0..2_000).map(|_| f32::from_bits(rng.random_range(0..INFINITY_BITS))));
        out
    }

    #[test]
    fn counts_are_the_binary_search_for_every_magnitude() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut built = 0;
        // Steps narrower than a bucket (1.02 at 4 bits) put two thresholds in some.
        let configs = [
            (4u32, 1.09f32),
            (4, 1.02),
            (3, 1.19),
            (8, 1.004),
            (1, 1.5),
            (23, 1.0000003),
        ];
        for (bits, step) in configs {
            for _ in 0..20 {
                let mut t = rng.random_range(-40.0f32..40.0).exp2();
                let mut thresholds = Vec::new();
                for _ in 0..rng.random_range(1..130) {
                    thresholds.push(t);
                    t *= step * rng.random_range(1.0f32..1.2);
                }
                if rng.random_bool(0.3) {
                    thresholds.insert(0, 0.0);
                }
                if rng.random_bool(0.3) {
                    thresholds.extend([f32::MAX, f32::MAX]);
                }
                let Some(counter) = ThresholdCounter::new(&thresholds, bits) else {
                    continue;
                };
                built += 1;
                for m in probes(&thresholds, &mut rng) {
                    assert_eq!(
                        counter.count(m),
                        searched(&thresholds, m),
                        "{m:e}, {bits} bits"
                    );
                }
            }
        }
        assert!(
            built >= 60,
            "only {built} of 120 threshold sets fit a counter"
        );
    }

    #[test]
    fn two_thresholds_in_one_bucket_are_both_counted() {
        // Buckets of 4 bits: [1, 1.0625) holds 1.0 and 1.01, [1.5, 1.5625) 1.5 and 1.51.
        let thresholds = [1.0f32, 1.01, 1.5, 1.51];
        let counter = ThresholdCounter::new(&thresholds, 4).expect("two per bucket fit");
        for (m, count) in [(1.005f32, 1), (1.02, 2), (1.505, 3), (1.52, 4), (1.01, 1)] {
            assert_eq!(counter.count(m), count, "{m}");
            assert_eq!(searched(&thresholds, m), count, "{m}");
        }
    }

    #[test]
    fn empty_and_uncrossable_thresholds_count_like_the_search() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for thresholds in [vec![], vec![f32::MAX], vec![0.0, f32::MAX, f32::MAX]] {
            let counter = ThresholdCounter::new(&thresholds, 4).expect("fits");
            for m in probes(&thresholds, &mut rng) {
                assert_eq!(counter.count(m), searched(&thresholds, m), "{m:e}");
            }
        }
    }

    #[test]
    fn crowded_or_unsorted_thresholds_are_declined() {
        let crowded = [1.0f32, 1.0f32.next_up(), 1.0f32.next_up().next_up()];
        assert!(ThresholdCounter::new(&crowded, 4).is_none());
        assert!(ThresholdCounter::new(&[2.0, 1.0], 4).is_none());
        assert!(ThresholdCounter::new(&[f32::NAN], 4).is_none());
        // Three thresholds in one bucket of 1 bit, but not of 8; 23 bits: too many buckets.
        assert!(ThresholdCounter::new(&[1.0, 1.1, 1.2], 1).is_none());
        assert!(ThresholdCounter::new(&[1.0, 1.1, 1.2], 8).is_some());
        assert!(ThresholdCounter::new(&[1.0, 1.1, 1.2], 23).is_none());
    }
}
