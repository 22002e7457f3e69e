//! The encoder/decoder engine: per tensor, and per block of a tensor cut into
//! blocks, the codec chain predictor -> error correction -> quantizer ->
//! entropy coders, and the assembly of one message per update.
//!
//! Modules, each with one job:
//! - [`blocks`]: how a big tensor is cut into independently coded blocks;
//! - [`tensor_codec`]: one block's stages and buffers, its encode and decode;
//! - [`streams`]: the codecs of one stream by tensor name, and checkpoints;
//! - [`checks`]: what the encoder checks before any state changes;
//! - [`encoder`] / [`decoder`]: one update to one message and back;
//! - [`parallel`]: the pieces of a message on the pool, or inline;
//! - [`options`], [`stats`]: encoder settings and message sizes.

mod blocks;
mod checks;
mod decoder;
mod encoder;
mod options;
mod parallel;
mod stats;
mod streams;
mod tensor_codec;

pub use blocks::{DEFAULT_BLOCK_ENTRIES, MIN_BLOCK_ENTRIES};
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use options::{EmbedPipeline, NonFinitePolicy};
pub use stats::{MessageStats, TensorStats};

use crate::pipeline::Pipeline;
use std::sync::Arc;

impl Pipeline {
    /// A new encoder for one stream.
    pub fn encoder(self: &Arc<Self>) -> Encoder {
        Encoder::new(Arc::clone(self))
    }

    /// A new decoder for one stream.
    pub fn decoder(self: &Arc<Self>) -> Decoder {
        Decoder::new(Arc::clone(self))
    }
}
