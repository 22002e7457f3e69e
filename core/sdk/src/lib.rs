//! The gradcodec plugin SDK.
//!
//! A plugin crate (`crate-type = ["cdylib", "rlib"]`, library named
//! `gradcodec_plugin_<family>`) implements [`Stage`] plus one kind trait per
//! stage type and exports them all with one macro call:
//!
//! ```ignore
//! gradcodec_sdk::export_plugin! {
//!     library: "gradcodec-plugin-example",
//!     quantizers: [MyQuantizer],
//! }
//! gradcodec_sdk::conformance_test!();
//! ```
//!
//! The kinds a library has none of can be left out; those it lists come in the
//! order `predictors`, `error_corrections`, `quantizers`, `entropy_coders`, then
//! optionally `fused: [...]`, the [`FusedPair`]s it implements (ABI 1.1; a
//! library without it exports an empty list and fuses nothing).
//!
//! The macro builds the `abi_stable` root module, wraps every call in a
//! `catch_unwind` guard, and defines `plugin_root()` so tests can run the
//! [`conformance`] kit in-process: `gradcodec_sdk::conformance::check_library(plugin_root())`.

pub mod adapters;
pub mod buffers;
pub mod config;
pub mod conformance;
pub mod dispatch;
pub mod error;
pub mod floats;
pub mod random;
pub mod side_info;
pub mod simd;
pub mod state;
pub mod streams;
mod traits;

/// Everything a stage module usually needs, in one import:
/// `use gradcodec_sdk::prelude::*;` (the traits, the ABI's data types, the error
/// helpers, [`buffers::RVecExt`]'s fast appends, side info and stream helpers,
/// and the seeded generator).
pub mod prelude {
    pub use crate::buffers::RVecExt;
    pub use crate::random::{call_rng, StageRng};
    pub use crate::side_info::{SideInfoReader, SideInfoWriter};
    pub use crate::streams::{
        begin_streams, describe, expect_no_side_info, received_streams, StreamShape,
    };
    pub use crate::{
        corrupt, ensure, ensure_data, ensure_finite, ensure_len, invalid_config, invalid_input,
        parse_config, unsupported, CallContext, CodedStream, EntropyCoder, ErrorCorrection,
        FusedEncoded, FusedPair, JsonSchema, NoParams, Predictor, Quantized, Quantizer, RSlice,
        RString, RVec, SdkResult, Stage, StageConfig, StageFlags, StageInfo, StageKind, StreamRole,
        SymbolStream, TensorSpec,
    };
}

pub use abi_stable::std_types::{RSlice, RString, RVec};
pub use config::{ensure, parse_config, NoParams, StageConfig};
pub use error::{
    corrupt, ensure_data, ensure_finite, ensure_len, invalid_config, invalid_input, unsupported,
    SdkResult,
};
pub use gradcodec_abi as abi;
pub use gradcodec_abi::{
    CallContext, CodedStream, ErrorCode, FusedEncoded, FusedPairDescriptor, Quantized, StageError,
    StageFlags, StageKind, StreamRole, SymbolStream, TensorSpec,
};
pub use schemars::JsonSchema;
pub use traits::{
    EntropyCoder, ErrorCorrection, FusedPair, Predictor, Quantizer, Stage, StageInfo,
};

/// The plugin author's guide, `docs/writing-a-plugin.md`, included only when
/// rustdoc collects doctests, so `cargo test --doc` compiles and runs every
/// Rust block in it.
#[doc = include_str!("../../../docs/writing-a-plugin.md")]
#[cfg(doctest)]
pub struct WritingAPluginGuide;

/// Exports a plugin library's stages as its `abi_stable` root module.
///
/// The calling crate must depend on `abi_stable` (pinned like the workspace).
#[macro_export]
macro_rules! export_plugin {
    (
        library: $library:expr
        $(, predictors: [$($predictor:ty),* $(,)?])?
        $(, error_corrections: [$($correction:ty),* $(,)?])?
        $(, quantizers: [$($quantizer:ty),* $(,)?])?
        $(, entropy_coders: [$($coder:ty),* $(,)?])?
        $(, fused: [$($fused:ty),* $(,)?])?
        $(,)?
    ) => {
        /// This library's root module, built in-process (tests use it with the
        /// conformance kit; hosts load it through `abi_stable`).
        pub fn plugin_root() -> $crate::abi::PluginRootRef {
            use $crate::abi::abi_stable::prefix_type::PrefixTypeTrait;
            use $crate::abi::abi_stable::std_types::{RStr, RString};
            use $crate::abi::{StageKind, StageResult, TensorSpec};
            use $crate::dispatch;

            extern "C" fn manifest() -> $crate::abi::PluginManifest {
                dispatch::manifest_guarded(
                    || {
                        #[allow(unused_mut)]
                        let mut stages = ::std::vec::Vec::new();
                        $($( stages.push(dispatch::descriptor::<$predictor>(StageKind::PREDICTOR)); )*)?
                        $($( stages.push(dispatch::descriptor::<$correction>(StageKind::ERROR_CORRECTION)); )*)?
                        $($( stages.push(dispatch::descriptor::<$quantizer>(StageKind::QUANTIZER)); )*)?
                        $($( stages.push(dispatch::descriptor::<$coder>(StageKind::ENTROPY_CODER)); )*)?
                        dispatch::manifest($library, env!("CARGO_PKG_VERSION"), stages)
                    },
                    $library,
                )
            }

            extern "C" fn canonical_config(
                kind: StageKind,
                name: RStr<'_>,
                params: RStr<'_>,
            ) -> StageResult<RString> {
                $crate::adapters::guard(name.as_str(), || {
                    $($( if kind == StageKind::PREDICTOR
                        && name.as_str() == <$predictor as $crate::Stage>::INFO.name {
                        return dispatch::canonical::<$predictor>(params.as_str());
                    } )*)?
                    $($( if kind == StageKind::ERROR_CORRECTION
                        && name.as_str() == <$correction as $crate::Stage>::INFO.name {
                        return dispatch::canonical::<$correction>(params.as_str());
                    } )*)?
                    $($( if kind == StageKind::QUANTIZER
                        && name.as_str() == <$quantizer as $crate::Stage>::INFO.name {
                        return dispatch::canonical::<$quantizer>(params.as_str());
                    } )*)?
                    $($( if kind == StageKind::ENTROPY_CODER
                        && name.as_str() == <$coder as $crate::Stage>::INFO.name {
                        return dispatch::canonical::<$coder>(params.as_str());
                    } )*)?
                    Err(dispatch::unknown_stage(kind, name.as_str()))
                })
            }

            extern "C" fn new_predictor(
                name: RStr<'_>,
                params: RStr<'_>,
                tensor: &TensorSpec,
            ) -> StageResult<$crate::abi::PredictorBox> {
                $crate::adapters::guard(name.as_str(), || {
                    $($( if name.as_str() == <$predictor as $crate::Stage>::INFO.name {
                        return dispatch::make_predictor::<$predictor>(params.as_str(), tensor);
                    } )*)?
                    let _ = (params, tensor);
                    Err(dispatch::unknown_stage(StageKind::PREDICTOR, name.as_str()))
                })
            }

            extern "C" fn new_error_correction(
                name: RStr<'_>,
                params: RStr<'_>,
                tensor: &TensorSpec,
            ) -> StageResult<$crate::abi::ErrorCorrectionBox> {
                $crate::adapters::guard(name.as_str(), || {
                    $($( if name.as_str() == <$correction as $crate::Stage>::INFO.name {
                        return dispatch::make_error_correction::<$correction>(params.as_str(), tensor);
                    } )*)?
                    let _ = (params, tensor);
                    Err(dispatch::unknown_stage(StageKind::ERROR_CORRECTION, name.as_str()))
                })
            }

            extern "C" fn new_quantizer(
                name: RStr<'_>,
                params: RStr<'_>,
                tensor: &TensorSpec,
            ) -> StageResult<$crate::abi::QuantizerBox> {
                $crate::adapters::guard(name.as_str(), || {
                    $($( if name.as_str() == <$quantizer as $crate::Stage>::INFO.name {
                        return dispatch::make_quantizer::<$quantizer>(params.as_str(), tensor);
                    } )*)?
                    let _ = (params, tensor);
                    Err(dispatch::unknown_stage(StageKind::QUANTIZER, name.as_str()))
                })
            }

            extern "C" fn new_entropy_coder(
                name: RStr<'_>,
                params: RStr<'_>,
                tensor: &TensorSpec,
            ) -> StageResult<$crate::abi::EntropyCoderBox> {
                $crate::adapters::guard(name.as_str(), || {
                    $($( if name.as_str() == <$coder as $crate::Stage>::INFO.name {
                        return dispatch::make_entropy_coder::<$coder>(params.as_str(), tensor);
                    } )*)?
                    let _ = (params, tensor);
                    Err(dispatch::unknown_stage(StageKind::ENTROPY_CODER, name.as_str()))
                })
            }

            extern "C" fn fused_pairs(
            ) -> $crate::abi::abi_stable::std_types::RVec<$crate::abi::FusedPairDescriptor> {
                dispatch::fused_pairs_guarded(|| {
                    #[allow(unused_mut)]
                    let mut pairs = ::std::vec::Vec::new();
                    $($( pairs.push(dispatch::fused_descriptor::<$fused>()); )*)?
                    pairs
                })
            }

            extern "C" fn new_fused(
                quantizer: RStr<'_>,
                quantizer_config: RStr<'_>,
                coder: RStr<'_>,
                coder_config: RStr<'_>,
                tensor: &TensorSpec,
            ) -> StageResult<$crate::abi::abi_stable::std_types::ROption<$crate::abi::FusedBox>> {
                use $crate::abi::abi_stable::std_types::ROption;
                let label = ::std::format!("fused {}+{}", quantizer.as_str(), coder.as_str());
                $crate::adapters::guard(&label, || {
                    $($( if dispatch::is_fused_pair::<$fused>(quantizer.as_str(), coder.as_str()) {
                        if let ROption::RSome(fused) = dispatch::make_fused::<$fused>(
                            quantizer_config.as_str(),
                            coder_config.as_str(),
                            tensor,
                        )? {
                            return Ok(ROption::RSome(fused));
                        }
                    } )*)?
                    let _ = (quantizer_config, coder_config, tensor);
                    Ok(ROption::RNone)
                })
            }

            $crate::abi::PluginRoot {
                manifest,
                canonical_config,
                new_predictor,
                new_error_correction,
                new_quantizer,
                new_entropy_coder,
                fused_pairs,
                new_fused,
            }
            .leak_into_prefix()
        }

        /// The exported root module (`abi_stable`). Building with
        /// `--cfg gradcodec_in_process`, or with the SDK's `in-process` feature,
        /// leaves it out, so several plugins can be linked into one binary as
        /// rlibs (fuzzing, the Python extension).
        #[allow(unexpected_cfgs)]
        mod gradcodec_plugin_export {
            $crate::__export_root_module!();
        }
    };
}

/// A `#[test]` that runs the whole [`conformance`] kit over every stage of the
/// library [`export_plugin!`] defined in the same module (`plugin_root()`);
/// with variants, a second one runs it again per `(stage name, params JSON)`
/// of the kind named (`QUANTIZER`, `ENTROPY_CODER`, ...):
///
/// ```ignore
/// gradcodec_sdk::conformance_test! {
///     QUANTIZER: [("uniform", r#"{"bits": 1}"#), ("qsgd", r#"{"levels": 1}"#)],
/// }
/// ```
#[macro_export]
macro_rules! conformance_test {
    () => {
        #[cfg(test)]
        #[test]
        fn every_stage_passes_the_conformance_kit() {
            $crate::conformance::check_library(plugin_root());
        }
    };
    ($kind:ident: [$(($name:expr, $params:expr)),* $(,)?] $(,)?) => {
        $crate::conformance_test!();

        /// The kit again with other parameters than the examples.
        #[cfg(test)]
        #[test]
        fn other_parameters_pass_the_conformance_kit() {
            $crate::conformance::check_variants(
                plugin_root(),
                $crate::StageKind::$kind,
                &[$(($name, $params)),*],
            );
        }
    };
}

/// The `#[export_root_module]` of [`export_plugin!`]; empty when the SDK is
/// built with its `in-process` feature (a host that links every plugin as an
/// rlib into one library, where the fixed export symbol would clash).
#[cfg(not(feature = "in-process"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root_module {
    () => {
        #[cfg(not(gradcodec_in_process))]
        #[::abi_stable::export_root_module]
        pub fn gradcodec_plugin_root_module() -> $crate::abi::PluginRootRef {
            super::plugin_root()
        }
    };
}

/// The `#[export_root_module]` of [`export_plugin!`]; empty when the SDK is
/// built with its `in-process` feature (a host that links every plugin as an
/// rlib into one library, where the fixed export symbol would clash).
#[cfg(feature = "in-process")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root_module {
    () => {};
}
