//! Seeded randomness for randomized stages.
//!
//! Both ends derive the same generator from (config seed, round, tensor index,
//! and for a tensor cut into blocks the block index, `ctx.reserved`), so nothing random is ever sent and the same input gives the same bytes. A
//! stage gets its generator with [`call_rng`] and draws only through
//! [`StageRng`]'s methods: the draws depend on ChaCha8's output alone (stable by
//! its specification), never on a `rand` version, and no `rand` type is part of
//! the SDK's API, so a plugin needs no `rand` dependency of its own.
//!
//! ```
//! use gradcodec_sdk::{random::call_rng, CallContext};
//!
//! let ctx = CallContext::new(3, 1); // round 3, tensor 1
//! let mut rng = call_rng(7, &ctx); // the config's seed
//! let u = rng.uniform01();
//! assert!((0.0..1.0).contains(&u));
//! // The receiver derives the same generator and gets the same draws.
//! assert_eq!(call_rng(7, &ctx).next_u64(), call_rng(7, &ctx).next_u64());
//! // Another round or tensor gets other draws.
//! assert_ne!(call_rng(7, &ctx).next_u64(), call_rng(7, &CallContext::new(4, 1)).next_u64());
//! // And so does another block of a tensor cut into blocks.
//! let block = CallContext { reserved: 2, ..ctx };
//! assert_ne!(call_rng(7, &ctx).next_u64(), call_rng(7, &block).next_u64());
//! ```

use gradcodec_abi::CallContext;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator of one stage call: ChaCha8 keyed by the config seed, with the
/// stream selected by round and tensor index.
#[derive(Clone, Debug)]
pub struct StageRng(ChaCha8Rng);

/// The generator for one call (see [`StageRng`]). Block `b > 0` of a tensor
/// cut into blocks keys ChaCha8 with the seed mixed with `b`, so every block
/// draws its own stream; block 0 (and every tensor in one block) keeps the
/// generator it always had.
pub fn call_rng(seed: u64, ctx: &CallContext) -> StageRng {
    let key = match ctx.reserved {
        0 => seed,
        block => seed ^ u64::from(block).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    rng.set_stream((ctx.round << 20) ^ u64::from(ctx.tensor_index));
    StageRng(rng)
}

impl StageRng {
    /// The next raw 32-bit output.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// The next raw 64-bit output.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Fills `out` with the next outputs as bytes: the same stream the
    /// `next_u64` calls would read, each word little-endian (bulk draws).
    #[inline]
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    /// Fills `out` with the next `out.len()` words [`StageRng::next_u64`]
    /// would give, drawn in bulk.
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        let mut bytes = [0u8; 8 * 256];
        for words in out.chunks_mut(256) {
            let bytes = &mut bytes[..8 * words.len()];
            self.0.fill_bytes(bytes);
            for (word, le) in words.iter_mut().zip(bytes.chunks_exact(8)) {
                *word = u64::from_le_bytes(<[u8; 8]>::try_from(le).unwrap_or_default());
            }
        }
    }

    /// A uniform draw in [0, 1) from the next 64-bit output (53 bits).
    #[inline]
    pub fn uniform01(&mut self) -> f64 {
        unit_interval(self.next_u64())
    }

    /// A uniform f32 draw in [0, 1) from the next 32-bit output (24 bits).
    #[inline]
    pub fn uniform01_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A uniform integer in `0..bound` (`bound > 0`), unbiased (Lemire's method).
    pub fn uniform_below(&mut self, bound: u64) -> u64 {
        let mut product = u128::from(self.next_u64()) * u128::from(bound);
        if (product as u64) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (product as u64) < threshold {
                product = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (product >> 64) as u64
    }

    /// A standard normal draw (Box-Muller, two uniform draws).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform01();
        let u2 = self.uniform01();
        let radius = (-2.0 * (1.0 - u1).ln()).sqrt();
        radius * (std::f64::consts::TAU * u2).cos()
    }

    /// `k` distinct indices of `0..n` (`n <= 2^32`), uniformly at random
    /// (Floyd's algorithm), in increasing order.
    pub fn sample_indices(&mut self, n: u64, k: u64) -> Vec<u32> {
        let k = k.min(n);
        let mut chosen = vec![0u64; n.div_ceil(64) as usize];
        let set = |index: u64, chosen: &mut Vec<u64>| -> bool {
            let (word, bit) = ((index / 64) as usize, index % 64);
            let fresh = chosen[word] & (1 << bit) == 0;
            chosen[word] |= 1 << bit;
            fresh
        };
        for j in n - k..n {
            let candidate = self.uniform_below(j + 1);
            if !set(candidate, &mut chosen) {
                set(j, &mut chosen);
            }
        }
        let mut indices = Vec::with_capacity(k as usize);
        for (word_index, word) in chosen.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                indices.push((word_index as u64 * 64 + u64::from(bit)) as u32);
                bits &= bits - 1;
            }
        }
        indices
    }
}

/// The draw in [0, 1) that [`StageRng::uniform01`] makes of the 64-bit output
/// `word` (for loops that draw raw words in blocks).
#[inline]
pub fn unit_interval(word: u64) -> f64 {
    (word >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// [`unit_interval`] in operations that vectorize (no u64 -> f64 instruction
/// before AVX-512): `word >> 11 < 2^53` converts as its two 32-bit halves, each
/// exact through the exponent trick, whose sum is below 2^53 and so exact too.
/// Equal to [`unit_interval`] for every word.
#[inline(always)]
pub fn unit_interval_lanes(word: u64) -> f64 {
    const TWO_52: u64 = 0x4330_0000_0000_0000; // the bits of 2^52
    const TWO_84: u64 = 0x4530_0000_0000_0000; // the bits of 2^84
    let k = word >> 11;
    let high =
        f64::from_bits((k >> 32) | TWO_84) - (f64::from_bits(TWO_84) + f64::from_bits(TWO_52));
    let low = f64::from_bits((k & 0xffff_ffff) | TWO_52);
    (high + low) * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_words_and_lane_draws_are_the_scalar_ones() {
        let mut rng = call_rng(9, &CallContext::new(2, 1));
        let mut reference = rng.clone();
        let mut words = vec![0u64; 1000];
        rng.fill_u64(&mut words[..3]);
        rng.fill_u64(&mut words[3..]);
        let mut edge = vec![
            0,
            1,
            2047,
            2048,
            u64::MAX,
            1 << 63,
            (1 << 63) - 1,
            0xffff_f800,
        ];
        for word in &words {
            assert_eq!(*word, reference.next_u64());
        }
        assert_eq!(rng.next_u64(), reference.next_u64());
        edge.extend(&words);
        for word in edge {
            assert_eq!(
                unit_interval_lanes(word).to_bits(),
                unit_interval(word).to_bits(),
                "{word:#x}"
            );
        }
    }

    #[test]
    fn streams_differ_by_round_and_tensor_and_repeat_exactly() {
        let draw =
            |round, tensor| call_rng(7, &CallContext::new(round, tensor)).uniform_below(1 << 40);
        assert_eq!(draw(3, 1), draw(3, 1));
        assert_ne!(draw(3, 1), draw(4, 1));
        assert_ne!(draw(3, 1), draw(3, 2));
        let mut rng = call_rng(1, &CallContext::new(0, 0));
        let mean = (0..20_000).map(|_| rng.uniform01()).sum::<f64>() / 20_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!((0..1000).all(|_| rng.uniform_below(7) < 7));
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.uniform01_f32())));
    }

    #[test]
    fn the_draws_are_chacha8s_words() {
        // Pinned: the bitstreams of randomized stages depend on these values.
        let mut rng = call_rng(5, &CallContext::new(0, 0));
        let mut reference = ChaCha8Rng::seed_from_u64(5);
        reference.set_stream(0);
        assert_eq!(rng.next_u64(), reference.next_u64());
        assert_eq!(rng.next_u32(), reference.next_u32());
        let mut bulk = [0u8; 16];
        rng.fill_bytes(&mut bulk);
        assert_eq!(bulk[..8], reference.next_u64().to_le_bytes());
    }

    #[test]
    fn draws_are_uniform_and_samples_distinct() {
        let mut rng = call_rng(5, &CallContext::new(0, 0));
        let mut hits = [0u32; 10];
        for _ in 0..100_000 {
            hits[rng.uniform_below(10) as usize] += 1;
        }
        assert!(hits.iter().all(|h| (9_500..10_500).contains(h)), "{hits:?}");
        let mean = (0..100_000).map(|_| rng.uniform01()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.005);
        for (n, k) in [(10u64, 10u64), (1000, 7), (1000, 993), (5, 0)] {
            let indices = rng.sample_indices(n, k);
            assert_eq!(indices.len() as u64, k);
            assert!(indices.windows(2).all(|w| w[0] < w[1]));
            assert!(indices.iter().all(|i| u64::from(*i) < n));
        }
        // Every index equally likely: 4 of 8, 40000 times.
        let mut counts = [0u32; 8];
        for _ in 0..40_000 {
            for i in rng.sample_indices(8, 4) {
                counts[i as usize] += 1;
            }
        }
        assert!(
            counts.iter().all(|c| (19_400..20_600).contains(c)),
            "{counts:?}"
        );
    }
}
