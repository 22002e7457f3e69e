//! The runtime's error type: every failure names what it concerns (file, stage,
//! tensor, field) so a user can act on it.

use gradcodec_abi::StageError;
use std::path::PathBuf;

/// Result alias of the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed. The I/O error is part of the text
    /// and not also a `source`, so `{:#}` does not print it twice.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },

    /// A pipeline spec is malformed or invalid.
    #[error("{0}")]
    Spec(String),

    /// A spec is invalid at a known place: its file, line and column (when the
    /// YAML parser knows them) and the field.
    #[error("{origin}{}: {message}", place(*line, *column))]
    SpecAt {
        /// The spec file (or the name it was parsed under).
        origin: String,
        /// 1-based line, if known.
        line: Option<usize>,
        /// 1-based column, if known.
        column: Option<usize>,
        /// The field (`stages`, `blocks.entries`, ...), if known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },

    /// A stage is not in the registry.
    #[error("{0}")]
    UnknownStage(String),

    /// A plugin library could not be loaded.
    #[error("cannot load plugin {path}: {message}")]
    PluginLoad {
        /// The library file.
        path: PathBuf,
        /// Why.
        message: String,
    },

    /// A stage reported an error (or panicked; the SDK turned it into an error).
    /// The stage's error is part of this one's text and not also its `source`,
    /// so printing the chain (`{:#}`) does not repeat it.
    #[error("{context}: {stage_error}")]
    Stage {
        /// Where (tensor, call).
        context: String,
        /// The stage's error.
        stage_error: StageError,
    },

    /// A message is malformed, truncated, corrupted or foreign.
    #[error("invalid message: {0}")]
    Message(String),

    /// A message of a stateful stream arrived out of order.
    #[error("invalid message: round {got} arrived, this stateful stream expects round {expected}")]
    RoundGap {
        /// The round the stream expects.
        expected: u64,
        /// The round the message carries.
        got: u64,
    },

    /// A message was coded by another pipeline than the decoder's.
    #[error(
        "invalid message: encoded with another pipeline (fingerprint {message:016x}, this \
         decoder's `{pipeline}` is {decoder:016x})"
    )]
    FingerprintMismatch {
        /// The message's pipeline fingerprint.
        message: u64,
        /// The decoder's.
        decoder: u64,
        /// The decoder's pipeline name.
        pipeline: String,
    },

    /// An update exceeds the limits its receiver's decoder checks (the encoder
    /// refuses it before any state changes).
    #[error(
        "invalid update: {subject}{value} {unit}, more than the limit of {limit}; the receiver's \
         decoder would refuse it (raise the limits on both ends to send it)"
    )]
    LimitExceeded {
        /// What has too many (`tensor `w` has `, or empty).
        subject: String,
        /// How many it has.
        value: u64,
        /// Of what (`entries`, `tensors`, ...).
        unit: &'static str,
        /// The limit.
        limit: u64,
    },

    /// An update is invalid (non-finite values, shape change, ...).
    #[error("invalid update: {0}")]
    Update(String),

    /// A tensor file (.npy / .safetensors) is invalid.
    #[error("{path}: {message}")]
    TensorFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

fn place(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

impl Error {
    /// Wraps a stage error with its context.
    pub fn stage(context: impl Into<String>, source: StageError) -> Self {
        Self::Stage {
            context: context.into(),
            stage_error: source,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}
