//! A resolved pipeline: stages bound to their libraries with canonical configs,
//! its canonical JSON form (embedded in messages) and its fingerprint.

use crate::error::{Error, Result};
use crate::stage::RegisteredStage;
use abi_stable::std_types::{RResult, RStr};
use gradcodec_abi::{
    EntropyCoderBox, ErrorCorrectionBox, PluginRootRef, PredictorBox, QuantizerBox, StageFlags,
    StageKind, StreamRole, TensorSpec,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the canonical pipeline JSON layout.
pub const CANONICAL_FORMAT: u32 = 1;

/// One stage of a pipeline.
#[derive(Clone)]
pub struct ResolvedStage {
    /// Kind.
    pub kind: StageKind,
    /// Name.
    pub name: String,
    /// Stage version.
    pub version: u32,
    /// Bitstream version.
    pub format_version: u32,
    /// Capability flags.
    pub flags: StageFlags,
    /// Canonical config.
    pub config: serde_json::Value,
    /// Stream roles (entropy coders; empty = default coder).
    pub roles: Vec<StreamRole>,
    /// The library file.
    pub library_path: PathBuf,
    /// The library's manifest name.
    pub library: String,
    /// The library's version.
    pub library_version: String,
    root: PluginRootRef,
}

impl ResolvedStage {
    pub(crate) fn new(
        found: &RegisteredStage,
        config: serde_json::Value,
        roles: Vec<StreamRole>,
    ) -> Self {
        Self {
            kind: found.descriptor.kind,
            name: found.descriptor.name.to_string(),
            version: found.descriptor.version,
            format_version: found.descriptor.format_version,
            flags: found.descriptor.flags,
            config,
            roles,
            library_path: found.library.path.clone(),
            library: found.library.manifest.library.to_string(),
            library_version: found.library.manifest.library_version.to_string(),
            root: found.library.root,
        }
    }

    fn describe(&self) -> CanonicalStage {
        CanonicalStage {
            kind: self.kind.as_str().to_string(),
            name: self.name.clone(),
            version: self.version,
            format_version: self.format_version,
            config: self.config.clone(),
            roles: self.roles.iter().map(|r| r.as_str().to_string()).collect(),
        }
    }

    fn context(&self, tensor: &TensorSpec) -> String {
        format!(
            "creating {} `{}` for tensor `{}`",
            self.kind, self.name, tensor.name
        )
    }

    pub(crate) fn new_predictor(&self, tensor: &TensorSpec) -> Result<PredictorBox> {
        let config = self.config.to_string();
        match (self.root.new_predictor())(
            RStr::from(self.name.as_str()),
            RStr::from(config.as_str()),
            tensor,
        ) {
            RResult::ROk(stage) => Ok(stage),
            RResult::RErr(err) => Err(Error::stage(self.context(tensor), err)),
        }
    }

    pub(crate) fn new_error_correction(&self, tensor: &TensorSpec) -> Result<ErrorCorrectionBox> {
        let config = self.config.to_string();
        match (self.root.new_error_correction())(
            RStr::from(self.name.as_str()),
            RStr::from(config.as_str()),
            tensor,
        ) {
            RResult::ROk(stage) => Ok(stage),
            RResult::RErr(err) => Err(Error::stage(self.context(tensor), err)),
        }
    }

    pub(crate) fn new_quantizer(&self, tensor: &TensorSpec) -> Result<QuantizerBox> {
        let config = self.config.to_string();
        match (self.root.new_quantizer())(
            RStr::from(self.name.as_str()),
            RStr::from(config.as_str()),
            tensor,
        ) {
            RResult::ROk(stage) => Ok(stage),
            RResult::RErr(err) => Err(Error::stage(self.context(tensor), err)),
        }
    }

    pub(crate) fn new_entropy_coder(&self, tensor: &TensorSpec) -> Result<EntropyCoderBox> {
        let config = self.config.to_string();
        match (self.root.new_entropy_coder())(
            RStr::from(self.name.as_str()),
            RStr::from(config.as_str()),
            tensor,
        ) {
            RResult::ROk(stage) => Ok(stage),
            RResult::RErr(err) => Err(Error::stage(self.context(tensor), err)),
        }
    }
}

/// A stage in canonical JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CanonicalStage {
    /// Kind (`quantizer`, ...).
    pub kind: String,
    /// Name.
    #[serde(rename = "use")]
    pub name: String,
    /// Stage version.
    pub version: u32,
    /// Bitstream version.
    pub format_version: u32,
    /// Canonical config.
    pub config: serde_json::Value,
    /// Roles (entropy coders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The codec part of a canonical pipeline (what the fingerprint covers).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CanonicalCodec {
    /// Layout version of this JSON.
    pub format: u32,
    /// Stages in order.
    pub stages: Vec<CanonicalStage>,
    /// Tensors with fewer entries are sent raw.
    pub uncompressed_below: u64,
    /// Block size set by the spec (absent: the format's default, 2^20 entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_entries: Option<u64>,
}

/// A pipeline in canonical JSON, as embedded in messages.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CanonicalPipeline {
    /// Pipeline name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub about: String,
    /// The codec.
    pub codec: CanonicalCodec,
}

impl CanonicalPipeline {
    /// Parses embedded JSON.
    pub fn parse(text: &str) -> Result<Self> {
        let pipeline: Self = serde_json::from_str(text)
            .map_err(|err| Error::Message(format!("embedded pipeline: {err}")))?;
        if pipeline.codec.format != CANONICAL_FORMAT {
            return Err(Error::Message(format!(
                "embedded pipeline layout {} is not supported (this build reads {CANONICAL_FORMAT})",
                pipeline.codec.format
            )));
        }
        Ok(pipeline)
    }

    /// The codec JSON text (fingerprinted).
    pub fn codec_json(&self) -> Result<String> {
        serde_json::to_string(&self.codec).map_err(|err| Error::Message(err.to_string()))
    }
}

/// A resolved pipeline, shared by all its encoders and decoders.
pub struct Pipeline {
    name: String,
    about: String,
    meant_for: crate::spec::MeantFor,
    stages: Vec<ResolvedStage>,
    uncompressed_below: u64,
    block_entries: Option<u64>,
    fused: Option<crate::fused::FusedFactory>,
    codec_json: String,
    embedded_json: String,
    fingerprint: u64,
}

impl Pipeline {
    pub(crate) fn new(
        name: String,
        about: String,
        stages: Vec<ResolvedStage>,
        uncompressed_below: u64,
        block_entries: Option<u64>,
    ) -> Result<Self> {
        if let Some(entries) = block_entries {
            if entries < crate::engine::MIN_BLOCK_ENTRIES {
                return Err(Error::Spec(format!(
                    "blocks of {entries} entries are smaller than the minimum of {}",
                    crate::engine::MIN_BLOCK_ENTRIES
                )));
            }
        }
        let canonical = CanonicalPipeline {
            name: name.clone(),
            about: about.clone(),
            codec: CanonicalCodec {
                format: CANONICAL_FORMAT,
                stages: stages.iter().map(ResolvedStage::describe).collect(),
                uncompressed_below,
                block_entries,
            },
        };
        let codec_json = canonical.codec_json()?;
        let embedded_json =
            serde_json::to_string(&canonical).map_err(|err| Error::Message(err.to_string()))?;
        let fingerprint = xxhash_rust::xxh3::xxh3_64(codec_json.as_bytes());
        Ok(Self {
            name,
            about,
            meant_for: crate::spec::MeantFor::Any,
            stages,
            uncompressed_below,
            block_entries,
            fused: None,
            codec_json,
            embedded_json,
            fingerprint,
        })
    }

    /// Pipeline name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Description.
    pub fn about(&self) -> &str {
        &self.about
    }

    /// What kind of update the spec says the pipeline was designed for
    /// (`any` for a pipeline rebuilt from a message: messages do not carry it).
    pub fn meant_for(&self) -> crate::spec::MeantFor {
        self.meant_for
    }

    pub(crate) fn with_meant_for(mut self, meant_for: crate::spec::MeantFor) -> Self {
        self.meant_for = meant_for;
        self
    }

    /// Stages in order.
    pub fn stages(&self) -> &[ResolvedStage] {
        &self.stages
    }

    /// Tensors with fewer entries are sent raw.
    pub fn uncompressed_below(&self) -> u64 {
        self.uncompressed_below
    }

    /// Canonical codec JSON (the part the fingerprint covers).
    pub fn codec_json(&self) -> &str {
        &self.codec_json
    }

    /// Canonical pipeline JSON as embedded in messages (name, about, codec).
    pub fn embedded_json(&self) -> &str {
        &self.embedded_json
    }

    /// xxh3-64 of the canonical codec JSON.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// True when any stage keeps state across rounds.
    pub fn is_stateful(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.flags.contains(StageFlags::STATEFUL))
    }

    /// True when every stage is lossless.
    pub fn is_lossless(&self) -> bool {
        self.stages
            .iter()
            .filter(|s| s.kind == StageKind::QUANTIZER)
            .all(|s| s.flags.contains(StageFlags::LOSSLESS))
    }

    /// True when the quantizer promises `CHECKS_FINITE`: it refuses non-finite
    /// input and never decodes to a non-finite entry.
    pub fn quantizer_checks_finite(&self) -> bool {
        self.stage(StageKind::QUANTIZER)
            .is_some_and(|s| s.flags.contains(StageFlags::CHECKS_FINITE))
    }

    /// True when the encoder may leave the non-finite scan of coded tensors to
    /// the quantizer: it checks finiteness, it is the first stage that sees the
    /// input (no predictor, no error correction), and no stage keeps state, so
    /// a refused update changes nothing.
    pub fn quantizer_guards_input(&self) -> bool {
        self.quantizer_checks_finite()
            && !self.is_stateful()
            && self.stage(StageKind::PREDICTOR).is_none()
            && self.stage(StageKind::ERROR_CORRECTION).is_none()
    }

    /// True when the encoder may leave the non-finite scan of coded tensors to
    /// the error correction: it checks finiteness in `compensate` (which
    /// changes no state) and sees the input first (no predictor). The encoder
    /// then compensates every block before any stage advances.
    pub fn correction_guards_input(&self) -> bool {
        self.stage(StageKind::PREDICTOR).is_none()
            && self
                .stage(StageKind::ERROR_CORRECTION)
                .is_some_and(|s| s.flags.contains(StageFlags::CHECKS_FINITE))
    }

    /// The stage of `kind` (first one).
    pub fn stage(&self, kind: StageKind) -> Option<&ResolvedStage> {
        self.stages.iter().find(|s| s.kind == kind)
    }

    /// Entropy coders in order.
    pub fn coders(&self) -> impl Iterator<Item = &ResolvedStage> {
        self.stages
            .iter()
            .filter(|s| s.kind == StageKind::ENTROPY_CODER)
    }

    /// Index (among the coders) of the coder for a stream role.
    pub fn coder_for(&self, role: StreamRole) -> Option<usize> {
        self.coders()
            .position(|c| c.roles.contains(&role))
            .or_else(|| self.coders().position(|c| c.roles.is_empty()))
    }

    /// Uses `fused` for the quantizer and coder (see [`crate::fused`]).
    pub(crate) fn with_fused(mut self, fused: Option<crate::fused::FusedFactory>) -> Self {
        self.fused = fused;
        self
    }

    /// The fused pair the quantizer and coder run as, when a library offers one.
    pub fn fused(&self) -> Option<&crate::fused::FusedFactory> {
        self.fused.as_ref()
    }

    /// Tensors of more entries are cut into blocks of about this many
    /// (the spec's `blocks: { entries }`, or the format's default).
    pub fn block_entries(&self) -> u64 {
        self.block_entries
            .unwrap_or(crate::engine::DEFAULT_BLOCK_ENTRIES)
    }
}
