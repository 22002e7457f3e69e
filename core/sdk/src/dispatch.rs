//! Generic pieces of the root module that `export_plugin!` assembles.

use crate::adapters::{Guarded, GuardedFused};
use crate::config::{canonical_json, parse_config, schema_json};
use crate::error::SdkResult;
use crate::traits::{EntropyCoder, ErrorCorrection, FusedPair, Predictor, Quantizer, Stage};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RString, RVec},
};
use gradcodec_abi::{
    EntropyCoderBox, EntropyCoderStage_TO, ErrorCode, ErrorCorrectionBox, ErrorCorrectionStage_TO,
    FusedBox, FusedPairDescriptor, FusedStage_TO, PluginManifest, PredictorBox, PredictorStage_TO,
    QuantizerBox, QuantizerStage_TO, StageDescriptor, StageError, StageKind, TensorSpec,
    ABI_VERSION,
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

/// The `fused_pairs` entry of fused pair `F`.
pub fn fused_descriptor<F: FusedPair>() -> FusedPairDescriptor {
    FusedPairDescriptor {
        quantizer_library: RString::from(F::QUANTIZER_LIBRARY),
        quantizer: RString::from(F::QUANTIZER),
        coder_library: RString::from(F::CODER_LIBRARY),
        coder: RString::from(F::CODER),
        doc: RString::from(F::DOC),
    }
}

/// Whether fused pair `F` is the pair of stages `quantizer` + `coder`.
pub fn is_fused_pair<F: FusedPair>(quantizer: &str, coder: &str) -> bool {
    F::QUANTIZER == quantizer && F::CODER == coder
}

/// A guarded instance of fused pair `F` for these canonical configs, or `None`
/// when `F` does not fuse them.
pub fn make_fused<F: FusedPair>(
    quantizer_config: &str,
    coder_config: &str,
    tensor: &TensorSpec,
) -> SdkResult<ROption<FusedBox>> {
    Ok(match F::new(quantizer_config, coder_config, tensor)? {
        Some(fused) => ROption::RSome(FusedStage_TO::from_value(
            GuardedFused::new(fused, tensor.len()),
            TD_Opaque,
        )),
        None => ROption::RNone,
    })
}

/// The fused pairs list, or an empty one when building it panicked.
pub fn fused_pairs_guarded(
    build: impl FnOnce() -> Vec<FusedPairDescriptor>,
) -> RVec<FusedPairDescriptor> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
        .map(RVec::from)
        .unwrap_or_default()
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
