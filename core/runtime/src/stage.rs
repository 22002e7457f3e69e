//! A stage as a loaded library offers it (shared by the registry, which lists
//! them, and pipelines, which bind them).

use crate::loader::LoadedLibrary;
use gradcodec_abi::StageDescriptor;
use std::sync::Arc;

/// One stage offered by a loaded library.
#[derive(Clone)]
pub struct RegisteredStage {
    /// What the library says about it.
    pub descriptor: StageDescriptor,
    /// The library (shared by its stages).
    pub library: Arc<LoadedLibrary>,
}
