//! FFI-safe data types that cross the plugin boundary.

use abi_stable::{
    std_types::{RSlice, RString, RVec},
    StableAbi,
};
use std::fmt;

/// The four stage kinds, in their canonical pipeline order.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageKind(pub u32);

impl StageKind {
    /// `r = x - P(history)`.
    pub const PREDICTOR: Self = Self(0);
    /// `a = r + γ·e`.
    pub const ERROR_CORRECTION: Self = Self(1);
    /// `a -> symbols (+ side info)`.
    pub const QUANTIZER: Self = Self(2);
    /// `symbols -> bytes`.
    pub const ENTROPY_CODER: Self = Self(3);
    /// All kinds in canonical order.
    pub const ALL: [Self; 4] = [
        Self::PREDICTOR,
        Self::ERROR_CORRECTION,
        Self::QUANTIZER,
        Self::ENTROPY_CODER,
    ];

    /// The spelling used in specs (`error-correction`, ...).
    pub fn as_str(self) -> &'static str {
        match self.0 {
            0 => "predictor",
            1 => "error-correction",
            2 => "quantizer",
            3 => "entropy-coder",
            _ => "unknown-kind",
        }
    }

    /// Parses the spelling used in specs.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Debug for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error kind code of a [`StageError`]. Open set: hosts must accept unknown codes.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Parameters rejected (unknown field, value out of range, ...).
    pub const INVALID_CONFIG: Self = Self(1);
    /// Input data rejected (NaN, wrong length, ...).
    pub const INVALID_INPUT: Self = Self(2);
    /// Coded data is corrupt or inconsistent (bad side info, out-of-range symbol).
    pub const CORRUPT_DATA: Self = Self(3);
    /// The stage does not support what was asked.
    pub const UNSUPPORTED: Self = Self(4);
    /// The stage panicked; the SDK caught it.
    pub const PANIC: Self = Self(5);
    /// Any other failure inside the stage.
    pub const INTERNAL: Self = Self(6);
    /// No stage of that name and kind in this library.
    pub const UNKNOWN_STAGE: Self = Self(7);

    /// Human-readable name of the code.
    pub fn as_str(self) -> &'static str {
        match self.0 {
            1 => "invalid config",
            2 => "invalid input",
            3 => "corrupt data",
            4 => "unsupported",
            5 => "panic",
            6 => "internal error",
            7 => "unknown stage",
            _ => "error",
        }
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.as_str(), self.0)
    }
}

/// A plain-data error returned across the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct StageError {
    /// What went wrong, as a code.
    pub code: ErrorCode,
    /// The stage that failed (its name), if known.
    pub stage: RString,
    /// A message for people; names the offending field or value.
    pub message: RString,
}

impl StageError {
    /// Builds an error.
    pub fn new(code: ErrorCode, stage: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            stage: RString::from(stage.into()),
            message: RString::from(message.into()),
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stage.is_empty() {
            write!(f, "{}: {}", self.code.as_str(), self.message)
        } else {
            write!(
                f,
                "stage `{}`: {}: {}",
                self.stage,
                self.code.as_str(),
                self.message
            )
        }
    }
}

impl std::error::Error for StageError {}

/// The tensor a stage instance is created for.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Tensor name inside the update (e.g. `conv1.weight`).
    pub name: RString,
    /// Shape, outermost dimension first.
    pub shape: RVec<u64>,
}

impl TensorSpec {
    /// The spec of tensor `name` of `shape`.
    pub fn new(name: &str, shape: &[u64]) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec().into(),
        }
    }

    /// Number of entries (product of the shape; 1 for a scalar).
    pub fn len(&self) -> u64 {
        self.shape.iter().product()
    }

    /// True when the tensor has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-call context: which round of the stream and which tensor of the update.
/// Randomized stages derive their random state from (config seed, round, tensor
/// index), so both ends agree without sending it.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// Message sequence number in this stream (0 for the first message).
    pub round: u64,
    /// Position of the tensor inside the update.
    pub tensor_index: u32,
    /// The block index within the tensor when the host cuts a big tensor into
    /// blocks (ABI 1.1: each block is coded by its own stage instances); zero
    /// for a tensor coded whole. Randomized stages mix it into their seed
    /// (`gradcodec_sdk::random::call_rng` does).
    pub reserved: u32,
}

impl CallContext {
    /// Context for `round` and `tensor_index`.
    pub fn new(round: u64, tensor_index: u32) -> Self {
        Self {
            round,
            tensor_index,
            reserved: 0,
        }
    }
}

/// What a symbol stream holds; entropy coders may code roles differently.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRole(pub u32);

impl StreamRole {
    /// Quantization indices (levels).
    pub const VALUES: Self = Self(0);
    /// Strictly increasing positions of kept entries (sparse codes).
    pub const POSITIONS: Self = Self(1);
    /// Raw machine words (e.g. f32 bits); nothing to gain from modelling.
    pub const RAW_WORDS: Self = Self(2);

    /// Name of the role.
    pub fn as_str(self) -> &'static str {
        match self.0 {
            0 => "values",
            1 => "positions",
            2 => "raw-words",
            _ => "unknown-role",
        }
    }
}

impl fmt::Debug for StreamRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stream of symbols produced by a quantizer.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct SymbolStream {
    /// What the symbols are.
    pub role: StreamRole,
    /// Symbols lie in `0..alphabet_size`; `1 << 32` means any `u32`.
    pub alphabet_size: u64,
    /// The symbols.
    pub symbols: RVec<u32>,
    /// Optional model shared by both ends (derived from side info, not sent):
    /// a probability per symbol of the alphabet. Empty when there is none.
    pub model: RVec<f32>,
}

impl SymbolStream {
    /// An empty stream descriptor.
    pub fn new(role: StreamRole, alphabet_size: u64) -> Self {
        Self {
            role,
            alphabet_size,
            symbols: RVec::new(),
            model: RVec::new(),
        }
    }
}

/// A quantizer's output: side info and symbol streams.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Quantized {
    /// Opaque side information (scales, fit parameters, ...), sent in the message.
    pub side_info: RVec<u8>,
    /// The symbol streams, coded one by one by the entropy coder.
    pub streams: RVec<SymbolStream>,
}

impl Quantized {
    /// Clears side info and streams, keeping the two lists' allocations (the
    /// streams' symbol buffers go: [`Quantized::reuse_streams`] keeps them).
    pub fn clear(&mut self) {
        self.side_info.clear();
        self.streams.clear();
    }

    /// Makes the streams `descriptors` (role, alphabet size), empty and
    /// without models, reusing the symbol buffers of the streams already
    /// there; the side info is untouched. A stage that emits the same streams
    /// every call then allocates nothing in the steady state (a fresh
    /// multi-megabyte buffer costs a page fault per 4 KiB, which the kernel
    /// serializes across threads). An inherent method: the ABI layout is the
    /// same.
    pub fn reuse_streams(&mut self, descriptors: impl IntoIterator<Item = (StreamRole, u64)>) {
        let mut used = 0;
        for (role, alphabet_size) in descriptors {
            match self.streams.get_mut(used) {
                Some(stream) => {
                    stream.role = role;
                    stream.alphabet_size = alphabet_size;
                    stream.symbols.clear();
                    stream.model.clear();
                }
                None => self.streams.push(SymbolStream::new(role, alphabet_size)),
            }
            used += 1;
        }
        self.streams.truncate(used);
    }
}

/// Capability flags of a stage (bit set).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StageFlags(pub u32);

impl StageFlags {
    /// Reconstruction is exact.
    pub const LOSSLESS: Self = Self(1);
    /// Keeps state across rounds. The engine always keeps one instance per
    /// tensor and stream and feeds it every round; this flag makes a pipeline
    /// stateful, so its decoder accepts only consecutive rounds (a stage that
    /// keeps state without it would decode a skipped or repeated round wrongly,
    /// without an error).
    pub const STATEFUL: Self = Self(2);
    /// Uses pseudo-randomness (always seeded from its config).
    pub const RANDOMIZED: Self = Self(4);
    /// ABI 1.2, quantizers only: `quantize` (and a fused encode with this
    /// quantizer) fails on a NaN or infinite input entry, changing no state,
    /// and `dequantize` (and a fused decode) fails rather than give a NaN or
    /// infinite entry. The host then skips its own scans where the promise
    /// covers them: the input scan of a stateless pipeline whose first stage is
    /// this quantizer (with the `error` non-finite policy; on a failed encode
    /// the host scans to report the values as it always does), and the scan
    /// of the decoded entries. On an error-correction stage: `compensate`
    /// fails on a NaN or infinite residual entry (it changes no state in any
    /// case); where that stage sees the input first (no predictor), the host
    /// compensates every block before any stage advances and leaves the input
    /// scan to it. Hosts before 1.2 ignore the bit. The conformance kit checks
    /// the promise.
    pub const CHECKS_FINITE: Self = Self(8);

    /// No flag.
    pub const NONE: Self = Self(0);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union of two flag sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Names of the set flags.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.contains(Self::LOSSLESS) {
            names.push("lossless");
        }
        if self.contains(Self::STATEFUL) {
            names.push("stateful");
        }
        if self.contains(Self::RANDOMIZED) {
            names.push("randomized");
        }
        if self.contains(Self::CHECKS_FINITE) {
            names.push("checks-finite");
        }
        names
    }
}

impl fmt::Debug for StageFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.names())
    }
}

/// What a library says about one of its stages.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct StageDescriptor {
    /// Stage kind.
    pub kind: StageKind,
    /// Stage name used in specs (`use: <name>`).
    pub name: RString,
    /// Stage version (its config and behaviour; `use: name@version` pins it).
    pub version: u32,
    /// Version of the bitstream the stage writes (side info and bytes).
    pub format_version: u32,
    /// JSON Schema of the parameters.
    pub params_schema: RString,
    /// Example parameters (JSON), used by docs and the conformance kit.
    pub example_params: RString,
    /// One paragraph: what it computes and where the method comes from.
    pub doc: RString,
    /// Capability flags.
    pub flags: StageFlags,
}

/// What a library says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PluginManifest {
    /// Library name.
    pub library: RString,
    /// Library version.
    pub library_version: RString,
    /// Version of gradcodec-abi the library was built against.
    pub abi_version: RString,
    /// Every stage the library provides.
    pub stages: RVec<StageDescriptor>,
}

/// A fused pair: a quantizer and an entropy coder that one library implements
/// in one pass (ABI 1.1).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct FusedPairDescriptor {
    /// Manifest library name that provides the quantizer.
    pub quantizer_library: RString,
    /// Quantizer stage name.
    pub quantizer: RString,
    /// Manifest library name that provides the entropy coder.
    pub coder_library: RString,
    /// Entropy coder stage name.
    pub coder: RString,
    /// What the fused implementation does differently (speed), for people.
    pub doc: RString,
}

/// What a fused encode hands back (ABI 1.1).
#[repr(C)]
#[derive(StableAbi, Default, Debug, Clone, PartialEq)]
pub struct FusedEncoded {
    /// Side info and stream descriptors (role, alphabet_size, model) exactly as
    /// the quantizer's `quantize` gives them, with each stream's `symbols` left
    /// empty.
    pub quantized: Quantized,
    /// Per stream: how many symbols it holds.
    pub symbol_counts: RVec<u64>,
    /// Per stream: the coded bytes, byte-identical to the entropy coder's
    /// `encode` output.
    pub coded: RVec<RVec<u8>>,
    /// â: the quantizer's reconstruction (what `dequantize` gives). Left empty
    /// when the host set `skip_reconstruction` and the pair chose to skip it.
    pub reconstruction: RVec<f32>,
    /// Set by the host before `encode` (kept by [`FusedEncoded::clear`]): true
    /// when nothing in the encode needs â (no error correction, no predictor).
    /// The pair may then leave `reconstruction` empty; the host decodes the
    /// coded streams with the same pair if x̂ is asked for later, which is exact
    /// because fused pairs are stateless. A pair that ignores it stays correct.
    pub skip_reconstruction: bool,
}

impl FusedEncoded {
    /// Clears every part, keeping allocations where the parts allow it.
    pub fn clear(&mut self) {
        self.quantized.clear();
        self.symbol_counts.clear();
        self.coded.clear();
        self.reconstruction.clear();
    }
}

/// One coded stream handed to a fused decode (ABI 1.1).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodedStream<'a> {
    /// The stream's coded bytes.
    pub bytes: RSlice<'a, u8>,
    /// How many symbols the stream holds.
    pub symbols: u64,
}
