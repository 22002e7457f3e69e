//! Encoder options: what to do with non-finite values, when to embed the pipeline.

/// What to do with NaN or infinite values in an update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonFinitePolicy {
    /// Refuse the update, naming the tensor (default).
    #[default]
    Error,
    /// Replace them with zero.
    ReplaceWithZero,
}

/// When the canonical pipeline travels inside the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmbedPipeline {
    /// In the first message of the stream (round 0) only (default).
    #[default]
    FirstMessage,
    /// In every message.
    Always,
    /// Never (both ends know the pipeline; the fingerprint still checks it).
    Never,
}
