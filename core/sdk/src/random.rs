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
