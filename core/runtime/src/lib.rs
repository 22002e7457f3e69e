//! gradcodec runtime: plugin discovery and loading, the stage registry, YAML
//! pipeline specs, the encoder/decoder engine and the message container.
//!
//! ```no_run
//! use gradcodec::{NamedTensor, PipelineSpec, PluginSearch, Registry, Update};
//! # fn main() -> gradcodec::Result<()> {
//! let registry = Registry::discover(&PluginSearch::from_env())?;
//! let spec = PipelineSpec::from_file("pipelines/f32.yaml")?;
//! let pipeline = registry.build(&spec)?;
//! let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
//! let update = Update::new(vec![NamedTensor::from_vec("w", &[2], vec![0.5, -1.0])?]);
//! let message = encoder.encode(&update)?;
//! assert_eq!(decoder.decode(&message)?, *encoder.last_reconstruction());
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod container;
mod engine;
mod error;
pub mod fused;
mod layout;
pub mod loader;
pub mod metrics;
mod pipeline;
pub mod probe;
mod registry;
pub mod report;
mod scan;
pub mod spec;
mod stage;
mod state;
pub mod trial;
mod update;

pub use container::Limits;
pub use engine::{Decoder, EmbedPipeline, Encoder, MessageStats, NonFinitePolicy, TensorStats};
pub use error::{Error, Result};
pub use gradcodec_abi as abi;
pub use layout::ExpectedLayout;
pub use loader::{LoadedLibrary, PluginSearch};
pub use pipeline::{CanonicalPipeline, Pipeline, ResolvedStage};
pub use registry::{LoadFailure, RegisteredStage, Registry};
pub use spec::PipelineSpec;
pub use update::{NamedTensor, Update};

/// A decoder for a self-describing message: rebuilds the pipeline embedded in it.
pub fn decoder_for_message(registry: &Registry, message: &[u8]) -> Result<Decoder> {
    decoder_for_message_with_limits(registry, message, &Limits::default())
}

/// [`decoder_for_message`], reading the message under `limits` (the decoder
/// returned has the default limits; set them with `Decoder::set_limits`).
pub fn decoder_for_message_with_limits(
    registry: &Registry,
    message: &[u8],
    limits: &Limits,
) -> Result<Decoder> {
    let parsed = container::parse(message, limits)?;
    let json = parsed.pipeline_json.ok_or_else(|| {
        Error::Message(
            "the message does not embed its pipeline; decode it with the pipeline's spec".into(),
        )
    })?;
    let canonical = CanonicalPipeline::parse(json)?;
    let pipeline = registry.build_canonical(&canonical)?;
    if pipeline.fingerprint() != parsed.fingerprint {
        return Err(Error::Message(
            "the embedded pipeline does not match the message fingerprint".into(),
        ));
    }
    Ok(pipeline.decoder())
}
