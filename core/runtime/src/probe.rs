//! What an entropy coder accepts, found by trying: each probe stream (values of
//! growing alphabets, with and without a model, positions, raw words) is
//! encoded and decoded through the coder's library, and counts as accepted when
//! the symbols come back exactly. `gradcodec plugins` prints the result, so a
//! pipeline author sees which coders can follow which quantizer without reading
//! the coder's source, and a third-party coder needs to declare nothing.

use crate::registry::RegisteredStage;
use gradcodec_abi::abi_stable::std_types::{RResult, RStr, RVec};
use gradcodec_abi::{StageKind, StreamRole, SymbolStream, TensorSpec};
use serde::Serialize;

/// The alphabet sizes probed for values streams.
pub const PROBED_ALPHABETS: [u64; 6] = [2, 1 << 8, 1 << 12, 1 << 16, 1 << 20, 1 << 32];

/// What a coder was found to accept, with the parameters it was probed with.
#[derive(Clone, Debug, Serialize)]
pub struct CoderCapabilities {
    /// The parameters (JSON) the coder was created with.
    pub params: String,
    /// The largest probed alphabet of a values stream it codes (none: not even 2).
    pub max_values_alphabet: Option<u64>,
    /// Whether it codes a values stream without a model (quantizers such as
    /// `topk` give none); false means it needs the quantizer's model.
    pub works_without_model: bool,
    /// Whether it codes positions streams (strictly increasing indices).
    pub positions: bool,
    /// Whether it codes raw-word streams (f32 bit patterns, alphabet 2^32).
    pub raw_words: bool,
}

impl CoderCapabilities {
    /// One line: `values <= 2^12 (model needed), positions, no raw words`.
    pub fn summary(&self) -> String {
        let values = match self.max_values_alphabet {
            None => "no values streams".to_string(),
            Some(a) => format!("values <= 2^{}", a.trailing_zeros()),
        };
        let model = if self.works_without_model {
            ""
        } else {
            " (only with the quantizer's model)"
        };
        let yes_no = |ok: bool, what: &str| {
            if ok {
                what.to_string()
            } else {
                format!("no {what}")
            }
        };
        format!(
            "{values}{model}, {}, {}",
            yes_no(self.positions, "positions"),
            yes_no(self.raw_words, "raw words")
        )
    }
}

/// A deterministic probe stream of `count` symbols.
fn probe_stream(role: StreamRole, alphabet: u64, count: u64, model: bool) -> SymbolStream {
    let mut stream = SymbolStream::new(role, alphabet);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let symbols: Vec<u32> = match role {
        StreamRole::POSITIONS => (0..count).map(|i| (i * 7 + next() % 5) as u32).collect(),
        StreamRole::RAW_WORDS => (0..count)
            .map(|i| (((i as f32) - 100.0) * 1.37e-3).to_bits())
            .collect(),
        _ => (0..count)
            .map(|i| {
                // Mostly small symbols, some large: the shape of quantized gradients.
                let r = next();
                let symbol = if i % 10 == 0 {
                    r % alphabet
                } else {
                    (r % 4).min(alphabet - 1)
                };
                symbol as u32
            })
            .collect(),
    };
    stream.symbols = symbols.into();
    if model && alphabet <= 1 << 12 {
        // A pmf over the alphabet (more mass on small symbols).
        let weights: Vec<f32> = (0..alphabet).map(|s| 1.0 / (1.0 + s as f32)).collect();
        let total: f32 = weights.iter().sum();
        stream.model = weights.iter().map(|w| w / total).collect::<Vec<_>>().into();
    }
    stream
}

/// Whether `stream` survives an encode and decode by a fresh instance of the coder.
fn round_trips(stage: &RegisteredStage, params: &str, stream: &SymbolStream) -> bool {
    let root = stage.library.root;
    let tensor = TensorSpec::new("probe", &[stream.symbols.len().max(1) as u64 * 8]);
    let make = || {
        (root.new_entropy_coder())(
            RStr::from(stage.descriptor.name.as_str()),
            RStr::from(params),
            &tensor,
        )
    };
    let (RResult::ROk(mut encoder), RResult::ROk(mut decoder)) = (make(), make()) else {
        return false;
    };
    let mut bytes = RVec::new();
    if encoder.encode(stream, &mut bytes).is_err() {
        return false;
    }
    let mut decoded = SymbolStream::new(stream.role, stream.alphabet_size);
    decoded.model = stream.model.clone();
    decoder
        .decode(
            bytes.as_slice().into(),
            stream.symbols.len() as u64,
            &mut decoded,
        )
        .is_ok()
        && decoded.symbols == stream.symbols
}

/// Probes an entropy coder with `params` (JSON); `None` for another kind.
pub fn probe_coder(stage: &RegisteredStage, params: &str) -> Option<CoderCapabilities> {
    if stage.descriptor.kind != StageKind::ENTROPY_CODER {
        return None;
    }
    let values = |alphabet, model| {
        round_trips(
            stage,
            params,
            &probe_stream(StreamRole::VALUES, alphabet, 2000, model),
        )
    };
    let max_values_alphabet = PROBED_ALPHABETS
        .into_iter()
        .take_while(|a| values(*a, *a <= 1 << 12))
        .last();
    Some(CoderCapabilities {
        params: params.to_string(),
        max_values_alphabet,
        works_without_model: values(16, false),
        positions: round_trips(
            stage,
            params,
            &probe_stream(StreamRole::POSITIONS, 100_000, 2000, false),
        ),
        raw_words: round_trips(
            stage,
            params,
            &probe_stream(StreamRole::RAW_WORDS, 1 << 32, 2000, false),
        ),
    })
}
