//! The stable plugin ABI of gradcodec.
//!
//! Every plugin library exports one [`PluginRootRef`] root module (an `abi_stable`
//! prefix type). It lists its stages in a [`PluginManifest`] and creates stage
//! instances through one typed factory per stage kind. Stages are `#[sabi_trait]`
//! trait objects: [`PredictorBox`], [`ErrorCorrectionBox`], [`QuantizerBox`] and
//! [`EntropyCoderBox`]; since ABI 1.1 a library may also implement fused pairs
//! (a quantizer and an entropy coder in one pass, [`FusedBox`]).
//!
//! Rules of the boundary (see DESIGN.md):
//! - parameters cross as JSON text, and the plugin answers with its canonical config;
//! - inputs are borrowed ([`RSlice`]), outputs are written into caller-owned [`RVec`]
//!   buffers that the host reuses across calls;
//! - errors are plain data ([`StageError`]) and a panic never crosses the boundary
//!   (the SDK catches it and turns it into an error of kind [`ErrorCode::PANIC`]);
//! - the ABI grows only by appending root-module fields (read as optional by the
//!   host) and trait methods below `#[sabi(last_prefix_field)]`; nothing that
//!   exists changes.
//!
//! This crate's version is the ABI version (docs/abi.md): a host of 1.m loads a
//! library built against 1.k for every k <= m ([`check_abi_version`]), through
//! [`init_root_module`], which checks the library's root module against the
//! layout of the minor it was built for ([`v1_0`] keeps the 1.0 layout).

// The `#[sabi_trait]` macro generates impls the lint flags; they are abi_stable's design.
#![allow(non_local_definitions)]

mod types;
pub mod v1_0;
mod versions;

pub use abi_stable;
pub use types::*;
pub use versions::{check_abi_version, init_root_module, RootModuleLoadError};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// The ABI version string (this crate's package version).
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The most symbols one stream of a tensor of `len` entries may hold. Part of
/// the contract on both sides: the host refuses a quantizer that emits more,
/// and entropy decoders refuse larger counts before allocating anything.
pub const fn max_stream_symbols(len: u64) -> u64 {
    len.saturating_mul(4).saturating_add(65_536)
}

/// Result type of every call across the boundary.
pub type StageResult<T> = RResult<T, StageError>;

/// A predictor keeps the trajectory of reconstructions and predicts the next one.
///
/// Encode: `r = x - predict()`, and after coding `commit(x̂)` with the receiver's
/// reconstruction. Decode: `x̂ = predict() + r̂`, then `commit(x̂)`. Both ends are fed
/// the same reconstructions, so they cannot drift.
#[sabi_trait]
pub trait PredictorStage: Send {
    /// Writes the prediction of the next tensor into `out` (cleared and resized
    /// by the callee to the tensor's length). Before any history: zeros.
    fn predict(&mut self, ctx: &CallContext, out: &mut RVec<f32>) -> StageResult<()>;

    /// Commits the receiver-side reconstruction of the tensor just coded.
    fn commit(&mut self, ctx: &CallContext, reconstruction: RSlice<'_, f32>) -> StageResult<()>;

    /// Feeds what this side received on the opposite link (for predictors such as
    /// ResFed Res-1 that use both trajectories). Stages that ignore it return Ok.
    fn observe(&mut self, ctx: &CallContext, received: RSlice<'_, f32>) -> StageResult<()>;

    /// Serializes the state (for checkpoints) into `out`.
    fn save_state(&self, out: &mut RVec<u8>) -> StageResult<()>;

    /// Restores a state written by `save_state`; on error the state is unchanged.
    fn load_state(&mut self, state: RSlice<'_, u8>) -> StageResult<()>;

    /// Forgets all history.
    #[sabi(last_prefix_field)]
    fn reset(&mut self);
}

/// Error correction (error feedback) adds remembered quantization error to the
/// next input: `a = r + γ·e`, then learns `e = a - â` from the reconstruction.
#[sabi_trait]
pub trait ErrorCorrectionStage: Send {
    /// Writes the compensated tensor `a` for the residual `r` into `out`.
    /// Does not change the state (only `feedback` does).
    fn compensate(
        &mut self,
        ctx: &CallContext,
        residual: RSlice<'_, f32>,
        out: &mut RVec<f32>,
    ) -> StageResult<()>;

    /// Updates the memory from the compensated tensor and its reconstruction.
    fn feedback(
        &mut self,
        ctx: &CallContext,
        compensated: RSlice<'_, f32>,
        reconstructed: RSlice<'_, f32>,
    ) -> StageResult<()>;

    /// Serializes the state (for checkpoints) into `out`.
    fn save_state(&self, out: &mut RVec<u8>) -> StageResult<()>;

    /// Restores a state written by `save_state`; on error the state is unchanged.
    fn load_state(&mut self, state: RSlice<'_, u8>) -> StageResult<()>;

    /// Forgets the memory.
    #[sabi(last_prefix_field)]
    fn reset(&mut self);
}

/// A quantizer maps a tensor to one or more symbol streams plus side information,
/// and back.
#[sabi_trait]
pub trait QuantizerStage: Send {
    /// Quantizes `input` into `out` (side info and streams; the callee clears and
    /// refills them, reusing their capacity).
    fn quantize(
        &mut self,
        ctx: &CallContext,
        input: RSlice<'_, f32>,
        out: &mut Quantized,
    ) -> StageResult<()>;

    /// Decoder side, before entropy decoding: from `out.side_info` (already set by
    /// the caller), fills the stream descriptors (role, alphabet, model) of `out`
    /// with empty symbol vectors. Must reject side info it cannot parse. (The
    /// engine calls it with no streams in `out`, then lends each new stream
    /// without a buffer of its own the previous message's symbol buffer.)
    fn describe_streams(&self, ctx: &CallContext, out: &mut Quantized) -> StageResult<()>;

    /// Reconstructs the tensor from side info and symbols into `out` (resized to the
    /// tensor's length). Must reject out-of-range symbols and wrong stream lengths.
    fn dequantize(
        &mut self,
        ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> StageResult<()>;

    /// A short JSON summary of the side info (for `inspect` and snapshots).
    fn summarize_side_info(&self, side_info: RSlice<'_, u8>) -> StageResult<RString>;

    /// Serializes the state kept across rounds (empty for stateless quantizers).
    fn save_state(&self, out: &mut RVec<u8>) -> StageResult<()>;

    /// Restores a state written by `save_state`; on error the state is unchanged.
    fn load_state(&mut self, state: RSlice<'_, u8>) -> StageResult<()>;

    /// Forgets any state.
    #[sabi(last_prefix_field)]
    fn reset(&mut self);
}

/// An entropy coder turns one symbol stream into bytes and back, losslessly.
#[sabi_trait]
pub trait EntropyCoderStage: Send {
    /// Appends the coded bytes of `stream.symbols` to `out`.
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> StageResult<()>;

    /// Decodes exactly `count` symbols from `bytes` into `stream.symbols` (the
    /// descriptor fields of `stream` are set by the caller). Never allocates more
    /// than `count` symbols; rejects symbols outside the alphabet.
    fn decode(
        &mut self,
        bytes: RSlice<'_, u8>,
        count: u64,
        stream: &mut SymbolStream,
    ) -> StageResult<()>;

    /// Forgets any adaptive state.
    #[sabi(last_prefix_field)]
    fn reset(&mut self);
}

/// A fused pair (ABI 1.1): one library's single-pass implementation of a
/// quantizer followed by an entropy coder, byte-identical to the composed path.
/// Only for stateless quantizers and coders (no STATEFUL flag): the host keeps no
/// separate quantizer or coder state beside a fused instance.
#[sabi_trait]
pub trait FusedStage: Send {
    /// Quantizes, codes and reconstructs `input` in one pass; clears and refills
    /// `out` (reusing capacity).
    fn encode(
        &mut self,
        ctx: &CallContext,
        input: RSlice<'_, f32>,
        out: &mut FusedEncoded,
    ) -> StageResult<()>;

    /// Decodes: `described` holds the side info and the stream descriptors (from
    /// the quantizer's `describe_streams`), `streams` the coded bytes and symbol
    /// count of each stream; writes â into `out` (resized to the tensor length).
    /// Must reject anything the composed path rejects (bad bytes,
    /// out-of-alphabet symbols, wrong counts).
    fn decode(
        &mut self,
        ctx: &CallContext,
        described: &Quantized,
        streams: RSlice<'_, CodedStream<'_>>,
        out: &mut RVec<f32>,
    ) -> StageResult<()>;

    /// Forgets any state.
    #[sabi(last_prefix_field)]
    fn reset(&mut self);
}

/// A predictor instance behind the boundary.
pub type PredictorBox = PredictorStage_TO<'static, RBox<()>>;
/// An error-correction instance behind the boundary.
pub type ErrorCorrectionBox = ErrorCorrectionStage_TO<'static, RBox<()>>;
/// A quantizer instance behind the boundary.
pub type QuantizerBox = QuantizerStage_TO<'static, RBox<()>>;
/// An entropy-coder instance behind the boundary.
pub type EntropyCoderBox = EntropyCoderStage_TO<'static, RBox<()>>;
/// A fused quantizer + entropy coder instance behind the boundary (ABI 1.1).
pub type FusedBox = FusedStage_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
///
/// Fields after `new_entropy_coder` (the last field of ABI 1.0) were appended by
/// later minors: their accessors return `None` for a library built against an
/// older minor, which the host must handle (e.g. `fused_pairs` absent: the
/// library fuses nothing).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(option))]
pub struct PluginRoot {
    /// The library's manifest: name, version, ABI version, and every stage.
    pub manifest: extern "C" fn() -> PluginManifest,

    /// Validates parameters (JSON) of a stage and returns its canonical config
    /// (JSON, every default filled in, keys in a fixed order).
    pub canonical_config: extern "C" fn(
        kind: StageKind,
        name: RStr<'_>,
        params_json: RStr<'_>,
    ) -> StageResult<RString>,

    /// Creates a predictor.
    pub new_predictor: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<PredictorBox>,
    /// Creates an error-correction stage.
    pub new_error_correction: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<ErrorCorrectionBox>,
    /// Creates a quantizer.
    pub new_quantizer: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<QuantizerBox>,
    /// Creates an entropy coder.
    #[sabi(last_prefix_field)]
    pub new_entropy_coder: extern "C" fn(
        name: RStr<'_>,
        params_json: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<EntropyCoderBox>,

    /// ABI 1.1: the fused pairs this library implements.
    pub fused_pairs: extern "C" fn() -> RVec<FusedPairDescriptor>,
    /// ABI 1.1: the fused implementation of a pair for the stages' canonical
    /// configs (JSON), or `ROk(RNone)` when this library does not fuse those configs.
    pub new_fused: extern "C" fn(
        quantizer: RStr<'_>,
        quantizer_config: RStr<'_>,
        coder: RStr<'_>,
        coder_config: RStr<'_>,
        tensor: &TensorSpec,
    ) -> StageResult<ROption<FusedBox>>,
}

/// How many fields the root module of this ABI version has.
pub const ROOT_MODULE_FIELDS: usize = 8;

impl RootModule for PluginRootRef {
    declare_root_module_statics! {PluginRootRef}
    const BASE_NAME: &'static str = "gradcodec_plugin";
    const NAME: &'static str = "gradcodec plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
