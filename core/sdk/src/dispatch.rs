//! Generic pieces of the root module that `export_plugin!` assembles.

use crate::adapters::Guarded;
use crate::config::{canonical_json, parse_config, schema_json};
use crate::error::SdkResult;
use crate::traits::{EntropyCoder, ErrorCorrection, Predictor, Quantizer, Stage};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RString, RVec},
};
use gradcodec_abi::{
    EntropyCoderBox, EntropyCoderStage_TO, ErrorCode, ErrorCorrectionBox, ErrorCorrectionStage_TO,
    PluginManifest, PredictorBox, PredictorStage_TO, QuantizerBox, QuantizerStage_TO,
    StageDescriptor, StageError, StageKind, TensorSpec, ABI_VERSION,
};

/// The manifest entry of stage `T`.
pub fn descriptor<T: Stage>(kind: StageKind) -> StageDescriptor {
    StageDescriptor {
        kind,
        name: RString::from(T::INFO.name),
        version: T::INFO.version,
        format_version: T::INFO.format_version,
        params_schema: RString::from(schema_json::<T::Config>()),
        example_params: RString::from(T::INFO.example_params),
        doc: RString::from(T::INFO.doc),
        flags: T::INFO.flags,
    }
}

/// Assembles the manifest.
pub fn manifest(library: &str, version: &str, stages: Vec<StageDescriptor>) -> PluginManifest {
    PluginManifest {
        library: RString::from(library),
        library_version: RString::from(version),
        abi_version: RString::from(ABI_VERSION),
        stages: RVec::from(stages),
    }
}

/// Canonical config (JSON) of stage `T` for `params_json`.
pub fn canonical<T: Stage>(params_json: &str) -> SdkResult<RString> {
    let config: T::Config = parse_config(params_json)?;
    canonical_json(&config).map(RString::from)
}

fn build<T: Stage>(params_json: &str, tensor: &TensorSpec) -> SdkResult<Guarded<T>> {
    let config: T::Config = parse_config(params_json)?;
    T::new(config, tensor).map(|stage| Guarded::new(stage, tensor.len()))
}

/// Creates a guarded predictor instance.
pub fn make_predictor<T: Predictor>(params: &str, tensor: &TensorSpec) -> SdkResult<PredictorBox> {
    Ok(PredictorStage_TO::from_value(
        build::<T>(params, tensor)?,
        TD_Opaque,
    ))
}

/// Creates a guarded error-correction instance.
pub fn make_error_correction<T: ErrorCorrection>(
    params: &str,
    tensor: &TensorSpec,
) -> SdkResult<ErrorCorrectionBox> {
    Ok(ErrorCorrectionStage_TO::from_value(
        build::<T>(params, tensor)?,
        TD_Opaque,
    ))
}

/// Creates a guarded quantizer instance.
pub fn make_quantizer<T: Quantizer>(params: &str, tensor: &TensorSpec) -> SdkResult<QuantizerBox> {
    Ok(QuantizerStage_TO::from_value(
        build::<T>(params, tensor)?,
        TD_Opaque,
    ))
}

/// Creates a guarded entropy-coder instance.
pub fn make_entropy_coder<T: EntropyCoder>(
    params: &str,
    tensor: &TensorSpec,
) -> SdkResult<EntropyCoderBox> {
    Ok(EntropyCoderStage_TO::from_value(
        build::<T>(params, tensor)?,
        TD_Opaque,
    ))
}

/// The error for a stage this library does not have.
pub fn unknown_stage(kind: StageKind, name: &str) -> StageError {
    StageError::new(
        ErrorCode::UNKNOWN_STAGE,
        name,
        format!("this library has no {kind} named `{name}`"),
    )
}

/// Catches a panic while building the manifest (returns an empty manifest).
pub fn manifest_guarded(build: impl FnOnce() -> PluginManifest, library: &str) -> PluginManifest {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
        .unwrap_or_else(|_| manifest(library, "?", Vec::new()))
}
