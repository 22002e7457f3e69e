//! The root module as ABI 1.0 laid it out, kept to check libraries built
//! against 1.0 (see [`crate::init_root_module`]).
//!
//! `abi_stable`'s layout checker accepts a library whose root module has at
//! least the fields the host's type has, never fewer; a 1.0 library lacks the
//! fields that later minors appended, so a host checks it against this frozen
//! copy and then reads it through the current [`crate::PluginRootRef`], whose
//! accessors for the appended fields return `None` for it.
//!
//! Never edit this module: it is what ABI 1.0 was. The stage traits and data
//! types did not change since 1.0, so the frozen root refers to the current ones;
//! a minor that appends a trait method must add a frozen copy of the trait's
//! previous shape here (or in a module for that minor) and refer to it.

use crate::{
    EntropyCoderBox, ErrorCorrectionBox, PluginManifest, PredictorBox, QuantizerBox, StageKind,
    StageResult, TensorSpec,
};
use abi_stable::{
    std_types::{RStr, RString},
    StableAbi,
};

/// The ABI 1.0 root module: the same names (the checker compares type and
/// field names), the same fields, in the same order.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(option))]
pub struct PluginRoot {
    /// See [`crate::PluginRoot`].
    pub manifest: extern "C" fn() -> PluginManifest,
    /// See [`crate::PluginRoot`].
    pub canonical_config: extern "C" fn(
        kind: StageKind,
        name: RStr<'_>,
        params_json: RStr<'_>,
    ) -> StageResult<RString>,
    /// See [`crate::PluginRoot`].
    pub new_predictor: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<PredictorBox>,
    /// See [`crate::PluginRoot`].
    pub new_error_correction: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<ErrorCorrectionBox>,
    /// See [`crate::PluginRoot`].
    pub new_quantizer: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<QuantizerBox>,
    /// See [`crate::PluginRoot`].
    #[sabi(last_prefix_field)]
    pub new_entropy_coder: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<EntropyCoderBox>,
}

/// How many fields the ABI 1.0 root module has.
pub const ROOT_MODULE_FIELDS: usize = 6;
