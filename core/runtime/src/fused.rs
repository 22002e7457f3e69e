//! Fused pairs (ABI 1.1): a quantizer and an entropy coder that one library
//! implements in a single pass, used in place of the two stages when a
//! pipeline's canonical configs match, with byte-identical output.
//!
//! The engine uses a fused pair when the pipeline has exactly one entropy
//! coder (it codes every stream), neither stage is stateful, the fusing library
//! is the quantizer's or the coder's own, both stages' libraries are at the
//! same version (one source tree, so the fused code is the composed code), and
//! the library's `new_fused` accepts the two canonical configs. Set
//! `GRADCODEC_FUSED=off` (or call `Encoder::set_fused(false)` /
//! `Decoder::set_fused(false)`) to run the composed stages instead, e.g. to
//! compare the two.

use crate::error::{Error, Result};
use crate::loader::LoadedLibrary;
use crate::pipeline::ResolvedStage;
use abi_stable::std_types::{ROption, RResult, RStr};
use gradcodec_abi::{
    FusedBox, FusedPairDescriptor, PluginRootRef, StageFlags, StageKind, TensorSpec,
};
use std::sync::Arc;

/// Environment variable that turns fused pairs off (`off`, `0` or `false`).
pub const FUSED_ENV: &str = "GRADCODEC_FUSED";

/// True unless [`FUSED_ENV`] turns fused pairs off.
pub fn fused_enabled_by_default() -> bool {
    !matches!(
        std::env::var(FUSED_ENV).as_deref(),
        Ok("off" | "0" | "false" | "no")
    )
}

/// A fused pair one loaded library offers.
#[derive(Clone, Debug)]
pub struct OfferedFusedPair {
    /// The library file that implements it.
    pub library_path: std::path::PathBuf,
    /// Its manifest name.
    pub library: String,
    /// What it fuses.
    pub descriptor: FusedPairDescriptor,
}

/// The fused pairs every library of `libraries` offers (none for an ABI 1.0 library).
pub fn offered(libraries: &[Arc<LoadedLibrary>]) -> Vec<OfferedFusedPair> {
    let mut pairs = Vec::new();
    for library in libraries {
        if let Some(fused_pairs) = library.root.fused_pairs() {
            for descriptor in fused_pairs() {
                pairs.push(OfferedFusedPair {
                    library_path: library.path.clone(),
                    library: library.manifest.library.to_string(),
                    descriptor,
                });
            }
        }
    }
    pairs
}

/// The fused implementation a pipeline's quantizer and coder may use.
#[derive(Clone)]
pub struct FusedFactory {
    root: PluginRootRef,
    /// The fusing library's manifest name.
    pub library: String,
    quantizer: String,
    quantizer_config: String,
    coder: String,
    coder_config: String,
    /// The library's description of the pair.
    pub doc: String,
}

impl FusedFactory {
    /// The fused pair for `stages`, if a loaded library offers one under the rules above.
    pub fn find(libraries: &[Arc<LoadedLibrary>], stages: &[ResolvedStage]) -> Option<Self> {
        let quantizer = stages.iter().find(|s| s.kind == StageKind::QUANTIZER)?;
        let mut coders = stages.iter().filter(|s| s.kind == StageKind::ENTROPY_CODER);
        let coder = coders.next()?;
        if coders.next().is_some()
            || !coder.roles.is_empty()
            || quantizer.flags.contains(StageFlags::STATEFUL)
            || coder.flags.contains(StageFlags::STATEFUL)
            || quantizer.library_version != coder.library_version
        {
            return None;
        }
        offered(libraries).into_iter().find_map(|pair| {
            let d = &pair.descriptor;
            let matches = d.quantizer.as_str() == quantizer.name
                && d.quantizer_library.as_str() == quantizer.library
                && d.coder.as_str() == coder.name
                && d.coder_library.as_str() == coder.library
                && (pair.library == quantizer.library || pair.library == coder.library);
            if !matches {
                return None;
            }
            let library = libraries.iter().find(|l| l.path == pair.library_path)?;
            library.root.new_fused()?;
            Some(Self {
                root: library.root,
                library: pair.library.clone(),
                quantizer: quantizer.name.clone(),
                quantizer_config: quantizer.config.to_string(),
                coder: coder.name.clone(),
                coder_config: coder.config.to_string(),
                doc: d.doc.to_string(),
            })
        })
    }

    /// `quantizer + coder`, for messages.
    pub fn label(&self) -> String {
        format!("{} + {} ({})", self.quantizer, self.coder, self.library)
    }

    /// A fused instance for one block, or `None` when the library does not
    /// fuse these configs.
    pub fn create(&self, tensor: &TensorSpec) -> Result<Option<FusedBox>> {
        let new_fused = self
            .root
            .new_fused()
            .ok_or_else(|| Error::Spec(format!("{}: no new_fused", self.label())))?;
        match new_fused(
            RStr::from(self.quantizer.as_str()),
            RStr::from(self.quantizer_config.as_str()),
            RStr::from(self.coder.as_str()),
            RStr::from(self.coder_config.as_str()),
            tensor,
        ) {
            RResult::ROk(ROption::RSome(fused)) => Ok(Some(fused)),
            RResult::ROk(ROption::RNone) => Ok(None),
            RResult::RErr(error) => Err(Error::stage(
                format!("tensor `{}`: create fused {}", tensor.name, self.label()),
                error,
            )),
        }
    }
}
