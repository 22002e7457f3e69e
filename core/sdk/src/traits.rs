//! The safe traits a plugin author implements, one per stage kind.
//!
//! Every stage type implements [`Stage`] (its name, versions, config type and
//! constructor) and one of [`Predictor`], [`ErrorCorrection`], [`Quantizer`] or
//! [`EntropyCoder`]. The export macro wraps them in panic-guarded adapters.
//! A library may also implement [`FusedPair`]s (ABI 1.1): a quantizer and an
//! entropy coder in one pass, byte-identical to the two stages composed.

use crate::config::StageConfig;
use crate::error::SdkResult;
use abi_stable::std_types::RVec;
use gradcodec_abi::{
    CallContext, CodedStream, FusedEncoded, Quantized, StageFlags, SymbolStream, TensorSpec,
};

/// Static facts about a stage, published in the library manifest.
#[derive(Clone, Copy, Debug)]
pub struct StageInfo {
    /// Name used in specs (`use: <name>`).
    pub name: &'static str,
    /// Stage version: bump when the config or behaviour changes.
    pub version: u32,
    /// Bitstream version: bump when side info or bytes change.
    pub format_version: u32,
    /// What it computes and where the method comes from.
    pub doc: &'static str,
    /// Example parameters as JSON (also exercised by the conformance kit).
    pub example_params: &'static str,
    /// Capability flags.
    pub flags: StageFlags,
}

impl StageInfo {
    /// Version 1 of stage `name` and of its bitstream, no flags, no parameters
    /// (`{}` as example); the `with_*` methods set the rest:
    ///
    /// ```
    /// use gradcodec_sdk::{StageFlags, StageInfo};
    ///
    /// const INFO: StageInfo = StageInfo::new("my-quantizer", "What it computes; the paper.")
    ///     .with_example(r#"{"bits": 4}"#)
    ///     .with_flags(StageFlags::RANDOMIZED);
    /// assert_eq!((INFO.version, INFO.format_version), (1, 1));
    /// ```
    pub const fn new(name: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            version: 1,
            format_version: 1,
            doc,
            example_params: "{}",
            flags: StageFlags::NONE,
        }
    }

    /// With example parameters (JSON).
    pub const fn with_example(mut self, example_params: &'static str) -> Self {
        self.example_params = example_params;
        self
    }

    /// With capability flags.
    pub const fn with_flags(mut self, flags: StageFlags) -> Self {
        self.flags = flags;
        self
    }

    /// With a stage version and a bitstream version.
    pub const fn with_versions(mut self, version: u32, format_version: u32) -> Self {
        self.version = version;
        self.format_version = format_version;
        self
    }
}

/// Common part of every stage: facts, config type, constructor.
pub trait Stage: Send + Sized + 'static {
    /// The strict parameter type.
    type Config: StageConfig;
    /// Static facts.
    const INFO: StageInfo;
    /// Creates an instance for one tensor.
    fn new(config: Self::Config, tensor: &TensorSpec) -> SdkResult<Self>;
}

/// See [`gradcodec_abi::PredictorStage`].
pub trait Predictor: Stage {
    /// Writes the prediction (tensor length) into `out`.
    fn predict(&mut self, ctx: &CallContext, out: &mut RVec<f32>) -> SdkResult<()>;
    /// Commits the receiver's reconstruction.
    fn commit(&mut self, ctx: &CallContext, reconstruction: &[f32]) -> SdkResult<()>;
    /// Observes the opposite link's received tensor (default: ignored).
    fn observe(&mut self, _ctx: &CallContext, _received: &[f32]) -> SdkResult<()> {
        Ok(())
    }
    /// Serializes the state.
    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()>;
    /// Restores the state; on error leaves it unchanged.
    fn load_state(&mut self, state: &[u8]) -> SdkResult<()>;
    /// Forgets all history.
    fn reset(&mut self);
}

/// See [`gradcodec_abi::ErrorCorrectionStage`].
pub trait ErrorCorrection: Stage {
    /// `out = residual + γ·memory`. Must not change the state: only
    /// [`ErrorCorrection::feedback`] does (the engine may call `compensate`
    /// again for the same round, e.g. to retry).
    fn compensate(
        &mut self,
        ctx: &CallContext,
        residual: &[f32],
        out: &mut RVec<f32>,
    ) -> SdkResult<()>;
    /// Learns from the compensated tensor and its reconstruction.
    fn feedback(
        &mut self,
        ctx: &CallContext,
        compensated: &[f32],
        reconstructed: &[f32],
    ) -> SdkResult<()>;
    /// Serializes the state.
    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()>;
    /// Restores the state; on error leaves it unchanged.
    fn load_state(&mut self, state: &[u8]) -> SdkResult<()>;
    /// Forgets the memory.
    fn reset(&mut self);
}

/// See [`gradcodec_abi::QuantizerStage`].
pub trait Quantizer: Stage {
    /// Quantizes `input` into side info and streams (clear `out` first).
    fn quantize(&mut self, ctx: &CallContext, input: &[f32], out: &mut Quantized) -> SdkResult<()>;
    /// Fills stream descriptors (empty symbols) from `out.side_info`.
    fn describe_streams(&self, ctx: &CallContext, out: &mut Quantized) -> SdkResult<()>;
    /// Reconstructs the tensor into `out`; validates symbols and lengths.
    fn dequantize(
        &mut self,
        ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()>;
    /// JSON summary of the side info (default: `{}`).
    fn summarize_side_info(&self, _side_info: &[u8]) -> SdkResult<String> {
        Ok("{}".to_string())
    }
    /// Serializes state kept across rounds (default: stateless, writes nothing).
    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()> {
        out.clear();
        Ok(())
    }
    /// Restores state (default: stateless, accepts only an empty state).
    fn load_state(&mut self, state: &[u8]) -> SdkResult<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(crate::error::corrupt("this quantizer keeps no state"))
        }
    }
    /// Forgets any state (default: nothing to forget).
    fn reset(&mut self) {}
}

/// See [`gradcodec_abi::EntropyCoderStage`].
pub trait EntropyCoder: Stage {
    /// Appends the coded bytes of `stream.symbols` to `out`.
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()>;
    /// Decodes exactly `count` symbols into `stream.symbols`. The role,
    /// alphabet and model of `stream` are set (as the quantizer described them)
    /// and its symbols are empty; `count` was checked against
    /// [`crate::abi::max_stream_symbols`] before the call, but the bytes are
    /// untrusted: never allocate more than `count` symbols, refuse symbols
    /// outside the alphabet and truncated or trailing data.
    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()>;
    /// Forgets adaptive state (default: nothing to forget).
    fn reset(&mut self) {}
}

/// A fused pair (ABI 1.1): a quantizer and an entropy coder, possibly of other
/// libraries, implemented together in one pass. Its output must be exactly the
/// composed path's (side info, stream descriptors, coded bytes, reconstruction,
/// bit for bit), and its decoder must accept and reject what the composed
/// decoder does: [`crate::conformance::check_fused_pair`] checks it.
///
/// Only for stateless stages: neither the quantizer nor the coder may be
/// STATEFUL (the host keeps no separate stage state beside a fused instance).
/// Listed in `export_plugin!`'s `fused: [...]`; the host asks for an instance
/// with both stages' canonical configs and uses the composed path when
/// [`FusedPair::new`] gives `None`.
pub trait FusedPair: Send + Sized + 'static {
    /// Manifest library name of the quantizer's library.
    const QUANTIZER_LIBRARY: &'static str;
    /// The quantizer's stage name.
    const QUANTIZER: &'static str;
    /// Manifest library name of the entropy coder's library.
    const CODER_LIBRARY: &'static str;
    /// The entropy coder's stage name.
    const CODER: &'static str;
    /// What the fused implementation does (for `gradcodec plugins --verbose`).
    const DOC: &'static str;

    /// `Some(Self)` when this implementation fuses these canonical configs (JSON
    /// strings as the stages' `canonical_config` returns them), `None` otherwise
    /// (the host then composes the two stages).
    fn new(
        quantizer_config: &str,
        coder_config: &str,
        tensor: &TensorSpec,
    ) -> SdkResult<Option<Self>>;

    /// Quantizes, codes and reconstructs `input`: `out.quantized` gets the side
    /// info and stream descriptors with empty symbols, `out.symbol_counts` and
    /// `out.coded` one entry per stream, `out.reconstruction` â. Clear `out`
    /// first (`FusedEncoded::clear`). Where the host set
    /// `out.skip_reconstruction`, `out.reconstruction` may be left empty.
    fn encode(&mut self, ctx: &CallContext, input: &[f32], out: &mut FusedEncoded)
        -> SdkResult<()>;

    /// Decodes `streams` (coded bytes and symbol count per stream; each count
    /// already checked against [`crate::abi::max_stream_symbols`]) with the side
    /// info and descriptors of `described`, writing â into `out` (tensor length).
    /// The bytes are untrusted: reject what the composed decoder rejects.
    fn decode(
        &mut self,
        ctx: &CallContext,
        described: &Quantized,
        streams: &[CodedStream<'_>],
        out: &mut RVec<f32>,
    ) -> SdkResult<()>;

    /// Forgets any state (default: nothing to forget).
    fn reset(&mut self) {}
}
