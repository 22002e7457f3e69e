//! Seeded randomness for randomized stages.
//!
//! Both ends derive the same generator from (config seed, round, tensor index),
//! so nothing random is ever sent and the same input gives the same bytes.

use gradcodec_abi::CallContext;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator for one call: ChaCha8 keyed by the config seed, with the
/// stream selected by round and tensor index.
pub fn call_rng(seed: u64, ctx: &CallContext) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((ctx.round << 20) ^ u64::from(ctx.tensor_index));
    rng
}

/// A uniform draw in [0, 1) from the generator's raw 64-bit output (53 bits).
///
/// Stages use these helpers instead of `rand`'s distributions so that their
/// bitstreams depend only on ChaCha8's output, not on a `rand` version.
pub fn uniform01(rng: &mut impl rand::RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform f32 draw in [0, 1) (24 bits).
pub fn uniform01_f32(rng: &mut impl rand::RngCore) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// A uniform integer in `0..bound` (`bound > 0`), unbiased (Lemire's method).
pub fn uniform_below(rng: &mut impl rand::RngCore, bound: u64) -> u64 {
    let mut product = u128::from(rng.next_u64()) * u128::from(bound);
    if (product as u64) < bound {
        let threshold = bound.wrapping_neg() % bound;
        while (product as u64) < threshold {
            product = u128::from(rng.next_u64()) * u128::from(bound);
        }
    }
    (product >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_round_and_tensor_and_repeat_exactly() {
        let draw = |round, tensor| {
            uniform_below(&mut call_rng(7, &CallContext::new(round, tensor)), 1 << 40)
        };
        assert_eq!(draw(3, 1), draw(3, 1));
        assert_ne!(draw(3, 1), draw(4, 1));
        assert_ne!(draw(3, 1), draw(3, 2));
        let mut rng = call_rng(1, &CallContext::new(0, 0));
        let mean = (0..20_000).map(|_| uniform01(&mut rng)).sum::<f64>() / 20_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!((0..1000).all(|_| uniform_below(&mut rng, 7) < 7));
        assert!((0..1000).all(|_| (0.0..1.0).contains(&uniform01_f32(&mut rng))));
    }
}
