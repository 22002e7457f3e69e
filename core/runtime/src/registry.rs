//! The registry: every stage of every loaded plugin library, by kind, name and
//! version, and the resolution of specs into pipelines.

use crate::error::{Error, Result};
use crate::fused::{FusedFactory, OfferedFusedPair};
use crate::loader::{load_library, LoadedLibrary, PluginSearch};
use crate::pipeline::{CanonicalPipeline, Pipeline, ResolvedStage};
use crate::spec::PipelineSpec;
pub use crate::stage::RegisteredStage;
use abi_stable::std_types::{RResult, RStr};
use gradcodec_abi::StageKind;
use std::path::PathBuf;
use std::sync::Arc;

/// A library file that failed to load, and why.
#[derive(Clone, Debug)]
pub struct LoadFailure {
    /// The file.
    pub path: PathBuf,
    /// Why it was refused.
    pub message: String,
}

/// All stages of all loaded libraries.
#[derive(Clone, Default)]
pub struct Registry {
    libraries: Vec<Arc<LoadedLibrary>>,
    stages: Vec<RegisteredStage>,
    failures: Vec<LoadFailure>,
    searched: Vec<PathBuf>,
}

impl Registry {
    /// Loads every plugin library the search finds. Per-file failures are kept
    /// (see [`Registry::failures`]), never fatal here.
    pub fn discover(search: &PluginSearch) -> Result<Self> {
        let mut registry = Self {
            searched: search.directories(),
            ..Self::default()
        };
        let explicit: std::collections::BTreeSet<PathBuf> = search.files.iter().cloned().collect();
        let mut loaded_names = std::collections::BTreeSet::new();
        for path in search.candidates() {
            let name = path
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            if !explicit.contains(&path) && loaded_names.contains(&name) {
                continue; // shadowed by a copy loaded from a higher-precedence place
            }
            match load_library(&path) {
                Ok(library) => {
                    loaded_names.insert(name);
                    registry.add_library(library);
                }
                Err(message) => registry.failures.push(LoadFailure { path, message }),
            }
        }
        Ok(registry)
    }

    /// Adds a loaded library; its stages come after those already registered
    /// (earlier registrations take precedence for the same kind, name and version).
    pub fn add_library(&mut self, library: LoadedLibrary) {
        let library = Arc::new(library);
        for descriptor in library.manifest.stages.iter() {
            self.stages.push(RegisteredStage {
                descriptor: descriptor.clone(),
                library: Arc::clone(&library),
            });
        }
        self.libraries.push(library);
    }

    /// Loaded libraries, in precedence order.
    pub fn libraries(&self) -> &[Arc<LoadedLibrary>] {
        &self.libraries
    }

    /// Every registered stage, in precedence order.
    pub fn stages(&self) -> &[RegisteredStage] {
        &self.stages
    }

    /// Files that failed to load.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// Records a place searched (named in unknown-stage errors), for hosts that
    /// register libraries themselves with [`Registry::add_library`].
    pub fn add_searched(&mut self, place: PathBuf) {
        if !self.searched.contains(&place) {
            self.searched.push(place);
        }
    }

    /// Directories searched.
    pub fn searched(&self) -> &[PathBuf] {
        &self.searched
    }

    /// Finds a stage: the highest-precedence one of that kind and name, with the
    /// pinned version if given.
    pub fn find(
        &self,
        kind: StageKind,
        name: &str,
        version: Option<u32>,
    ) -> Result<&RegisteredStage> {
        let matches =
            |s: &&RegisteredStage| s.descriptor.kind == kind && s.descriptor.name.as_str() == name;
        if let Some(found) = self
            .stages
            .iter()
            .filter(matches)
            .find(|s| version.is_none_or(|v| s.descriptor.version == v))
        {
            return Ok(found);
        }
        let versions: Vec<String> = self
            .stages
            .iter()
            .filter(matches)
            .map(|s| s.descriptor.version.to_string())
            .collect();
        if let (Some(pinned), false) = (version, versions.is_empty()) {
            return Err(Error::UnknownStage(format!(
                "{kind} `{name}@{pinned}` is not available; loaded versions: {}",
                versions.join(", ")
            )));
        }
        Err(Error::UnknownStage(self.unknown_stage_message(kind, name)))
    }

    fn unknown_stage_message(&self, kind: StageKind, name: &str) -> String {
        let mut known: Vec<(f64, &str)> = self
            .stages
            .iter()
            .filter(|s| s.descriptor.kind == kind)
            .map(|s| {
                (
                    strsim::jaro_winkler(name, &s.descriptor.name),
                    s.descriptor.name.as_str(),
                )
            })
            .collect();
        known.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        known.dedup_by(|a, b| a.1 == b.1);
        let closest: Vec<&str> = known.iter().take(3).map(|(_, n)| *n).collect();
        let mut message = format!("unknown {kind} `{name}`");
        if closest.is_empty() {
            message.push_str(&format!("; no {kind} is loaded"));
        } else {
            message.push_str(&format!("; closest known: {}", closest.join(", ")));
        }
        let dirs: Vec<String> = self
            .searched
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        message.push_str(&format!(
            "; searched: {}",
            if dirs.is_empty() {
                "(no directory)".to_string()
            } else {
                dirs.join(", ")
            }
        ));
        if !self.failures.is_empty() {
            let failed: Vec<String> = self
                .failures
                .iter()
                .map(|f| format!("{} ({})", f.path.display(), f.message))
                .collect();
            message.push_str(&format!(
                "; libraries that failed to load: {}",
                failed.join("; ")
            ));
        }
        message
    }

    /// Resolves a spec: finds every stage and validates its parameters (the
    /// plugin returns the canonical config).
    pub fn build(&self, spec: &PipelineSpec) -> Result<Arc<Pipeline>> {
        let mut stages = Vec::with_capacity(spec.stages.len());
        for stage in &spec.stages {
            let place = spec.place(stage);
            let found =
                self.find(stage.kind, &stage.name, stage.version)
                    .map_err(|err| match err {
                        Error::UnknownStage(message) => {
                            Error::UnknownStage(format!("{place}: {message}"))
                        }
                        other => Error::Spec(format!("{place}: {other}")),
                    })?;
            let config = canonical_config(found, &stage.params_json).map_err(|message| {
                Error::Spec(format!(
                    "{place}: {} `{}`: {message}",
                    stage.kind, stage.name
                ))
            })?;
            stages.push(ResolvedStage::new(found, config, stage.roles.clone()));
        }
        let fused = self.fused_for(&stages);
        Ok(Arc::new(
            Pipeline::new(
                spec.name.clone(),
                spec.about.clone(),
                stages,
                spec.uncompressed_below,
                spec.block_entries,
            )?
            .with_meant_for(spec.meant_for)
            .with_fused(fused),
        ))
    }

    /// The fused pair a pipeline of `stages` may use (see [`crate::fused`]).
    fn fused_for(&self, stages: &[ResolvedStage]) -> Option<FusedFactory> {
        FusedFactory::find(&self.libraries, stages)
    }

    /// Every fused pair the loaded libraries offer.
    pub fn fused_pairs(&self) -> Vec<OfferedFusedPair> {
        crate::fused::offered(&self.libraries)
    }

    /// Rebuilds a pipeline from its canonical form (as embedded in messages):
    /// every stage must exist with the same version and bitstream version, and
    /// its config must be canonical.
    pub fn build_canonical(&self, canonical: &CanonicalPipeline) -> Result<Arc<Pipeline>> {
        // The same structural rules as a YAML spec, before any stage is looked up.
        let kinds = canonical
            .codec
            .stages
            .iter()
            .map(|stage| {
                StageKind::parse(&stage.kind)
                    .ok_or_else(|| Error::Message(format!("unknown stage kind `{}`", stage.kind)))
            })
            .collect::<Result<Vec<StageKind>>>()?;
        let shapes: Vec<crate::spec::StageShape<'_>> = canonical
            .codec
            .stages
            .iter()
            .zip(&kinds)
            .map(|(stage, &kind)| crate::spec::StageShape {
                kind,
                name: &stage.name,
                has_roles: !stage.roles.is_empty(),
            })
            .collect();
        crate::spec::check_structure(&shapes).map_err(|(at, message)| {
            let place = at.map_or_else(String::new, |i| format!("stage {}: ", i + 1));
            Error::Message(format!("embedded pipeline: {place}{message}"))
        })?;
        let mut stages = Vec::with_capacity(canonical.codec.stages.len());
        for (stage, &kind) in canonical.codec.stages.iter().zip(&kinds) {
            let found = self.find(kind, &stage.name, Some(stage.version))?;
            if found.descriptor.format_version != stage.format_version {
                return Err(Error::Message(format!(
                    "{kind} `{}` writes bitstream version {}, the message needs {}",
                    stage.name, found.descriptor.format_version, stage.format_version
                )));
            }
            let given = stage.config.to_string();
            let config = canonical_config(found, &given)
                .map_err(|message| Error::Message(format!("{kind} `{}`: {message}", stage.name)))?;
            let roles = stage
                .roles
                .iter()
                .map(|r| {
                    crate::spec::parse_role(r)
                        .ok_or_else(|| Error::Message(format!("unknown stream role `{r}`")))
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(ResolvedStage::new(found, config, roles));
        }
        let fused = self.fused_for(&stages);
        let pipeline = Pipeline::new(
            canonical.name.clone(),
            canonical.about.clone(),
            stages,
            canonical.codec.uncompressed_below,
            canonical.codec.block_entries,
        )?
        .with_fused(fused);
        if pipeline.codec_json() != canonical.codec_json()? {
            return Err(Error::Message(
                "the embedded pipeline is not in canonical form (its stages changed their defaults?)"
                    .into(),
            ));
        }
        Ok(Arc::new(pipeline))
    }
}

/// Asks the stage's library for the canonical config of `params_json`.
fn canonical_config(
    stage: &RegisteredStage,
    params_json: &str,
) -> std::result::Result<serde_json::Value, String> {
    let canonical = (stage.library.root.canonical_config())(
        stage.descriptor.kind,
        RStr::from(stage.descriptor.name.as_str()),
        RStr::from(params_json),
    );
    match canonical {
        RResult::ROk(text) => serde_json::from_str(&text).map_err(|err| {
            format!("the plugin returned a canonical config that is not JSON: {err}")
        }),
        RResult::RErr(error) => Err(format!("{}: {}", error.code.as_str(), error.message)),
    }
}
