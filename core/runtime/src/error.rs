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
