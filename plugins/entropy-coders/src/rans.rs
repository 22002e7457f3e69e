//! `rans`: a fast static rANS coder with interleaved states, for symbol streams
//! of alphabets up to 4096 (quantization levels), with an empirical or a
//! parametric model.
//!
//! **Model.** Static; where the frequencies `f_s` (summing to
//! `M = 2^precision`) come from is the `model` parameter:
//!
//! - `model: empirical` (the default) — two passes: the encoder counts the
//!   stream's histogram, quantizes it to frequencies `f_s >= 1` (every used
//!   symbol), choosing them to minimize the coded size, and sends them as a
//!   compact table (used symbols as Elias-gamma gaps, frequencies as Exp-Golomb
//!   codes whose order follows the previous frequency; exact layout in
//!   [`crate::rans_table`]). `precision` (10..=15) may be fixed by the
//!   parameters; by default it is chosen per stream: the one of 10..=12 that
//!   minimizes table plus payload bits, or of 13..=15 when that saves more than
//!   0.1% (decoding tables above 2^12 slots leave the L1 cache and decode
//!   slower). A stream with one distinct symbol sends only the table, an empty
//!   stream zero bytes.
//! - `model: parametric` — the table is derived from `stream.model`, the pmf
//!   that the quantizer derives from its side info (e.g. the fitted GenNorm
//!   mass of every fp4 cell in CO3), the same way on both ends, so nothing
//!   but the coded states and words is sent. Every symbol of the alphabet gets
//!   a frequency >= 1, even one the model deems (nearly) impossible; the pmf is
//!   normalized in f64 (correctly rounded operations only) to integer weights
//!   and quantized to `M` in integer arithmetic ([`rans_table::from_model`]),
//!   so every platform builds the same table. `precision` is 12 by default,
//!   raised to `⌈log₂ alphabet⌉ + 3` (at most 15), or as given (raised to
//!   `⌈log₂ alphabet⌉`). A one-symbol alphabet codes to zero bytes. A stream
//!   without a model is refused as unsupported, a model that is not a pmf of
//!   the alphabet as invalid input (corrupt data when decoding). Unlike
//!   `huffman`'s whole bits, this costs the model's cross-entropy plus the
//!   final states (8 or 32 bytes a stream).
//!
//! **Coder.** Four rANS states (64-bit, normalized to `[2^31, 2^63)`, 32-bit
//! renormalization words, as in ryg_rans's `rans64`) take symbols round-robin
//! (symbol `i` goes to state `i mod 4`), so the four dependency chains run in
//! parallel; streams of fewer than 4096 symbols use one state, whose 8 bytes
//! cost less than four states' 32 on small tensors. The encoder runs backward over the symbols; instead of dividing by
//! `f_s` it multiplies by a precomputed reciprocal (Alverson 1991, exact for
//! states below 2^63): `x' = x + bias_s + ⌊x / f_s⌋·(M - f_s)`. The decoder
//! needs no division: `slot = x mod M`, one lookup in a `M`-entry table gives
//! the symbol, `f_s` and `slot - cum_s`, and `x' = f_s·⌊x / M⌋ + slot - cum_s`,
//! then at most one 32-bit word is read (branch-free).
//!
//! **Layout.** The table (bit-packed, zero padded to a byte; `empirical`
//! only); then, unless the table has one symbol, the final encoder states
//! (four, or one below 4096 symbols; u64, little-endian) and the
//! renormalization words (u32, little-endian) in decoding order. The decoder
//! rejects bad tables, symbols outside the alphabet, a payload that is not whole
//! words, counts that the payload cannot hold (each symbol costs at least
//! `log₂(M / f_max)` bits), reads past the end, and data left over: after the
//! last symbol every state must be back at the encoder's initial `2^31` and every
//! word consumed. It allocates at most `count` symbols.
//!
//! Unsupported: alphabets above 4096 symbols and `positions` streams (use
//! `golomb-rice` or `elias-gamma`, or `ans` for large alphabets).
//!
//! Methods: Duda, "Asymmetric numeral systems: entropy coding combining speed
//! of Huffman coding with compression rate of arithmetic coding", 2013;
//! Giesen, "Interleaved entropy coders", 2014, and ryg_rans (2014);
//! Alverson, "Integer division using reciprocals", 1991; the parametric model:
//! CO3, Chen, Hernandez, Huang, Rini, 2022-2023.
//!
//! ```yaml
//! - entropy-coder: { use: rans }
//! - entropy-coder: { use: rans, params: { precision: 12 } }
//! - entropy-coder: { use: rans, params: { model: parametric } }
//! ```

use crate::bits::{BitReader, BitWriter};
use crate::common::{ceil_log2, is_positions};
use crate::rans_table::{self, Table, MAX_PRECISION, MIN_PRECISION};
use gradcodec_sdk::prelude::*;
use gradcodec_sdk::StageError;
use serde::{Deserialize, Serialize};

/// Largest alphabet coded.
pub const MAX_ALPHABET: u64 = 4096;
/// Interleaved states of streams of at least [`INTERLEAVE_MIN`] symbols;
/// shorter ones use one state (8 bytes of state instead of 32).
const LANES: usize = 4;
/// Symbols from which the coder interleaves [`LANES`] states.
const INTERLEAVE_MIN: u64 = 4096;
/// Lower end of the normalized state interval `[L, 2^63)`; also the encoder's
/// initial state.
const L: u64 = 1 << 31;
/// Bytes of the states sent at the start of the payload, for `lanes` states.
const fn state_bytes(lanes: usize) -> usize {
    8 * lanes
}

/// States used for a stream of `count` symbols (both ends know `count`).
fn lanes_for(count: u64) -> usize {
    if count >= INTERLEAVE_MIN {
        LANES
    } else {
        1
    }
}

/// Where the frequency table comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RansModel {
    /// The stream's histogram, quantized and sent as a compact table.
    #[default]
    Empirical,
    /// `stream.model` from the quantizer's side info; only the coded states
    /// and words are sent.
    Parametric,
}

impl RansModel {
    fn is_empirical(&self) -> bool {
        *self == RansModel::Empirical
    }
}

/// Parameters of `rans`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RansConfig {
    /// Probability bits, 10..=15. Absent: chosen per stream (empirical: the
    /// best of 10..=12 for table plus payload bits, or of 13..=15 when that
    /// saves more than 0.1%; parametric: 12, raised to `⌈log₂ alphabet⌉ + 3`
    /// up to 15). Raised when there are more used symbols (empirical) or
    /// alphabet symbols (parametric) than 2^precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u32>,
    /// `empirical` (default: the stream's histogram, table sent) or
    /// `parametric` (the quantizer's model, nothing but the payload sent).
    /// Omitted from the canonical config when `empirical`.
    #[serde(default, skip_serializing_if = "RansModel::is_empirical")]
    pub model: RansModel,
}

impl StageConfig for RansConfig {
    fn validate(&self) -> Result<(), String> {
        match self.precision {
            Some(p) => ensure(
                (MIN_PRECISION..=MAX_PRECISION).contains(&p),
                "precision",
                format!("must be in {MIN_PRECISION}..=15, got {p}"),
            ),
            None => Ok(()),
        }
    }
}

/// The interleaved static rANS coder.
pub struct Rans {
    precision: Option<u32>,
    model: RansModel,
    /// The decoder's slot table, allocated on the first decode and reused.
    slots: Option<Box<Slots>>,
    /// The encoder's tables, allocated on the first encode and reused.
    encoder: Option<Box<EncoderScratch>>,
}

impl Stage for Rans {
    type Config = RansConfig;
    const INFO: StageInfo = StageInfo::new(
        "rans",
        "Static rANS (Duda 2013) with four interleaved 64-bit states (Giesen 2014; \
              ryg_rans) for alphabets up to 4096, reciprocal-based encoder, table-lookup \
              decoder. model: empirical (default) quantizes the stream's histogram to \
              2^precision (10..=15; by default chosen per stream) and sends it as a compact \
              table; model: parametric derives the table from the stream's model (e.g. the \
              GenNorm cell masses of CO3, Chen-Hernandez-Huang-Rini 2022-2023) and sends \
              only the coded states and words. Positions streams and larger alphabets are \
              unsupported.",
    )
    .with_example(r#"{"precision": 12}"#)
    .with_flags(StageFlags::LOSSLESS);

    fn new(config: RansConfig, _tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            precision: config.precision,
            model: config.model,
            slots: None,
            encoder: None,
        })
    }
}

/// Refuses the streams this coder does not handle.
fn check_stream(stream: &SymbolStream) -> SdkResult<()> {
    if is_positions(stream) {
        return Err(unsupported(
            "rans codes values with a static histogram, not positions; route positions \
             streams to golomb-rice or elias-gamma",
        ));
    }
    if stream.alphabet_size > MAX_ALPHABET {
        return Err(unsupported(format!(
            "rans codes alphabets up to {MAX_ALPHABET} symbols, this stream has {}; use ans \
             for larger alphabets",
            stream.alphabet_size
        )));
    }
    Ok(())
}

/// Counts the symbols, failing (invalid input) on one outside the alphabet.
fn histogram(symbols: &[u32], alphabet: usize) -> SdkResult<Vec<u64>> {
    // Partial histograms side by side, so runs of one symbol do not serialize
    // on one counter.
    let mut partial = vec![[0u64; 4]; alphabet];
    let outside = |s: u32| invalid_input(format!("symbol {s} outside 0..{alphabet}"));
    let mut chunks = symbols.chunks_exact(4);
    for chunk in &mut chunks {
        for (lane, &s) in chunk.iter().enumerate() {
            partial.get_mut(s as usize).ok_or_else(|| outside(s))?[lane] += 1;
        }
    }
    for &s in chunks.remainder() {
        partial.get_mut(s as usize).ok_or_else(|| outside(s))?[0] += 1;
    }
    Ok(partial.iter().map(|p| p.iter().sum()).collect())
}

/// The table of a parametric stream, from `stream.model` (both ends): refuses
/// a stream without a model (unsupported) and a model that is not a pmf over
/// the alphabet (`bad`: invalid input when encoding, corrupt when decoding).
fn parametric_table(
    stream: &SymbolStream,
    precision: Option<u32>,
    bad: fn(String) -> StageError,
) -> SdkResult<Table> {
    if stream.model.is_empty() {
        return Err(unsupported(
            "rans (parametric): the stream has no model; use model: empirical or a quantizer \
             that derives a model from its side info",
        ));
    }
    if stream.model.len() as u64 != stream.alphabet_size {
        return Err(bad(format!(
            "rans (parametric): model has {} entries for an alphabet of {}",
            stream.model.len(),
            stream.alphabet_size
        )));
    }
    let lowest = ceil_log2(stream.alphabet_size);
    let precision = match precision {
        Some(p) => p.max(lowest).min(MAX_PRECISION),
        None => rans_table::parametric_precision(stream.alphabet_size),
    };
    rans_table::from_model(&stream.model, precision)
        .map_err(|err| bad(format!("rans (parametric): {err}")))
}

/// Fails (invalid input) on a symbol outside `0..alphabet`.
fn check_alphabet(symbols: &[u32], alphabet: u64) -> SdkResult<()> {
    match symbols.iter().find(|s| u64::from(**s) >= alphabet) {
        Some(bad) => Err(invalid_input(format!("symbol {bad} outside 0..{alphabet}"))),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Encoder

/// Per-symbol encoder constants (ryg_rans's `Rans64EncSymbol`).
#[derive(Clone, Copy, Default)]
struct EncSymbol {
    /// Renormalize (emit 32 bits) when the state is at least this.
    x_max: u64,
    /// Fixed-point reciprocal of the frequency.
    rcp_freq: u64,
    /// `cum` (or `cum + M - 1` for frequency 1).
    bias: u32,
    /// `M - freq`.
    cmpl_freq: u32,
    /// Reciprocal shift.
    rcp_shift: u32,
}

impl EncSymbol {
    fn new(cum: u32, freq: u32, precision: u32) -> Self {
        let m = 1u32 << precision;
        let x_max = ((L >> precision) << 32) * u64::from(freq);
        if freq < 2 {
            // The reciprocal of 1 does not fit; rcp = 2^64 - 1 with shift 0 gives
            // q = x - 1 for 0 < x < 2^64, and x + bias + (x - 1)(M - 1) = x·M + cum
            // for bias = cum + M - 1.
            EncSymbol {
                x_max,
                rcp_freq: u64::MAX,
                bias: cum + m - 1,
                cmpl_freq: m - freq,
                rcp_shift: 0,
            }
        } else {
            // rcp = ⌈2^(63 + shift) / freq⌉ with shift = ⌈log₂ freq⌉; then
            // ⌊x·rcp / 2^(63 + shift)⌋ = ⌊x / freq⌋ for x < 2^63 (Alverson).
            let shift = 32 - (freq - 1).leading_zeros();
            let rcp = (1u128 << (63 + shift)).div_ceil(u128::from(freq));
            EncSymbol {
                x_max,
                rcp_freq: rcp as u64,
                bias: cum,
                cmpl_freq: m - freq,
                rcp_shift: shift - 1,
            }
        }
    }

    /// Codes this symbol into state `x` (in `[L, x_max)`): `⌊x/f⌋·M + cum + x mod f`.
    #[inline(always)]
    fn put(&self, x: u64) -> u64 {
        let q = ((u128::from(x) * u128::from(self.rcp_freq)) >> 64) as u64 >> self.rcp_shift;
        x.wrapping_add(u64::from(self.bias))
            .wrapping_add(q.wrapping_mul(u64::from(self.cmpl_freq)))
    }
}

/// Symbols encoded between flushes of the word buffer (a multiple of `LANES`).
const BLOCK: usize = 1024;
/// Size of the word buffer: a power of two above `BLOCK`, so that masking the
/// position keeps it in bounds without a check (it never exceeds `BLOCK`).
const BUFFER: usize = 2 * BLOCK;

/// The encoder's buffers, kept from call to call: the symbol table of the
/// largest alphabet (indexing it with `s & (MAX - 1)` needs no bounds check;
/// the histogram has checked that s < alphabet <= MAX, and only the entries of
/// the current table are read) and the words in encoding order.
pub(crate) struct EncoderScratch {
    enc: Box<[EncSymbol; MAX_ALPHABET as usize]>,
    words: Vec<u32>,
}

impl EncoderScratch {
    pub(crate) fn new() -> Box<Self> {
        let enc = vec![EncSymbol::default(); MAX_ALPHABET as usize]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("the vector has MAX_ALPHABET entries"));
        Box::new(Self {
            enc,
            words: Vec::new(),
        })
    }
}

/// Encodes one symbol into each of the `N` states, lane `N - 1` first. A state
/// that would overflow first pushes its low 32 bits to `buffer[*pos]`
/// (branch-free: the word is always stored, the position advances only when
/// it is needed). Every lane's overflow test comes first, then the words in
/// lane order, then the states, so no state waits on another lane's word
/// position.
#[inline(always)]
fn encode_round<const N: usize>(
    x: &mut [u64; N],
    symbols: [&EncSymbol; N],
    buffer: &mut [u32; BUFFER],
    pos: &mut usize,
) {
    let mut emit = [false; N];
    for lane in 0..N {
        emit[lane] = x[lane] >= symbols[lane].x_max;
    }
    for lane in (0..N).rev() {
        buffer[*pos & (BUFFER - 1)] = x[lane] as u32;
        *pos += usize::from(emit[lane]);
    }
    for lane in 0..N {
        let state = if emit[lane] { x[lane] >> 32 } else { x[lane] };
        x[lane] = symbols[lane].put(state);
    }
}

/// The rANS payload of `symbols` (all in the table) with `N` states: states,
/// then words.
fn encode_payload<const N: usize>(
    symbols: &[u32],
    table: &Table,
    scratch: &mut EncoderScratch,
    out: &mut RVec<u8>,
) {
    let EncoderScratch { enc, words } = scratch;
    let index = |s: u32| s as usize & (MAX_ALPHABET as usize - 1);
    let mut cum = 0u32;
    for &(symbol, freq) in &table.entries {
        enc[index(symbol)] = EncSymbol::new(cum, freq, table.precision);
        cum += freq;
    }
    // Words in encoding order (the decoder reads them backward).
    words.clear();
    let mut buffer = [0u32; BUFFER];
    let mut x = [L; N];
    let split = symbols.len() - symbols.len() % N;
    let mut pos = 0;
    for (lane, &s) in symbols[split..].iter().enumerate().rev() {
        let state = std::array::from_mut(&mut x[lane]);
        encode_round(state, [&enc[index(s)]], &mut buffer, &mut pos);
    }
    words.extend_from_slice(&buffer[..pos]);
    for block in symbols[..split].rchunks(BLOCK) {
        let mut pos = 0;
        for chunk in block.chunks_exact(N).rev() {
            let coded: [&EncSymbol; N] = std::array::from_fn(|lane| &enc[index(chunk[lane])]);
            encode_round(&mut x, coded, &mut buffer, &mut pos);
        }
        words.extend_from_slice(&buffer[..pos.min(BUFFER)]);
    }
    out.reserve(state_bytes(N) + 4 * words.len());
    for state in x {
        out.extend_copied(&state.to_le_bytes());
    }
    // Little-endian words, last first, a stack buffer at a time (one memcpy
    // each; `RVec::extend_from_slice` pushes byte by byte).
    let mut staged = [0u8; 4 * BLOCK];
    for part in words.rchunks(BLOCK) {
        let bytes = &mut staged[..4 * part.len()];
        for (word, le) in part.iter().rev().zip(bytes.chunks_exact_mut(4)) {
            le.copy_from_slice(&word.to_le_bytes());
        }
        out.extend_copied(bytes);
    }
}

// ---------------------------------------------------------------------------
// Decoder

/// One slot of the decoding table.
#[derive(Clone, Copy, Default)]
struct Slot {
    freq: u16,
    /// `slot - cum` of the slot's symbol.
    bias: u16,
    symbol: u16,
}

/// Slots of the largest table.
const MAX_SLOTS: usize = 1 << MAX_PRECISION;

/// A slot table of the largest precision: a smaller table uses its first
/// `2^precision` slots. Its fixed length lets the decoder index it with
/// `slot & (MAX_SLOTS - 1)`, with no bounds check.
type Slots = [Slot; MAX_SLOTS];

/// An empty slot table on the heap.
fn new_slots() -> Box<Slots> {
    vec![Slot::default(); MAX_SLOTS]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("the vector has MAX_SLOTS slots"))
}

/// Fills the first `2^precision` slots of `slots` with the slot → symbol
/// table; false when the table's frequencies do not sum to `2^precision`.
fn slot_table(table: &Table, slots: &mut Slots) -> bool {
    if table.precision > MAX_PRECISION {
        return false;
    }
    let size = 1usize << table.precision;
    let mut next = 0usize;
    for &(symbol, freq) in &table.entries {
        let freq = freq as usize;
        if next + freq > size {
            return false;
        }
        for (bias, slot) in slots[next..next + freq].iter_mut().enumerate() {
            *slot = Slot {
                freq: freq as u16,
                bias: bias as u16,
                symbol: symbol as u16,
            };
        }
        next += freq;
    }
    next == size
}

/// Decodes one symbol from each of the `N` states into `out` (`N` long) and
/// renormalizes them from `words[*pos..]`. The lanes' table lookups and
/// products do not depend on one another; only the word positions do (lane
/// `k` reads the word after those lanes `0..k` took), so the states advance
/// first and the words are read after, the `N` chains overlapping instead of
/// waiting on each other's renormalization. A read past the end takes a zero
/// word and still advances `pos`, which the final check catches.
#[inline(always)]
fn decode_round<const N: usize>(
    x: &mut [u64; N],
    slots: &Slots,
    mask: u64,
    precision: u32,
    words: &[u32],
    pos: &mut usize,
    out: &mut [u32],
) {
    let mut next = [0u64; N];
    for lane in 0..N {
        let slot = slots[(x[lane] & mask) as usize & (MAX_SLOTS - 1)];
        // freq < 2^precision and x < 2^63, so this stays below 2^63.
        next[lane] = u64::from(slot.freq) * (x[lane] >> precision) + u64::from(slot.bias);
        out[lane] = u32::from(slot.symbol);
    }
    for lane in 0..N {
        let need = next[lane] < L;
        let word = u64::from(words.get(*pos).copied().unwrap_or(0));
        x[lane] = if need {
            (next[lane] << 32) | word
        } else {
            next[lane]
        };
        *pos += usize::from(need);
    }
}

/// The most symbols a payload of `words` renormalization words can hold when
/// the largest frequency is `max_freq` out of `2^precision`.
///
/// Let Φ be Σ log₂ x over the states plus 32 bits per unread word. Decoding a
/// symbol of frequency f from x >= 2^31 gives x' < f·(x/M + 1), so Φ drops by
/// at least `log₂(M/f) - log₂(1 + M/2^31)`; a renormalization of x' >= 2^16
/// raises it by at most `log₂(1 + 2^-16)`. Φ starts below 4·63 + 32·W and ends
/// at 4·31, so `count · c <= 32·(W + 4)` with c the net drop per symbol.
fn max_count(words: usize, max_freq: u32, precision: u32, lanes: usize) -> u64 {
    let m = (1u64 << precision) as f64;
    let per_symbol = (m / f64::from(max_freq)).log2()
        - (m / L as f64).ln_1p() / std::f64::consts::LN_2
        - (2f64.powi(-16)).ln_1p() / std::f64::consts::LN_2;
    // Margin for rounding in the logarithms.
    let per_symbol = per_symbol * (1.0 - 1e-6) - 1e-12;
    if per_symbol <= 0.0 {
        return u64::MAX;
    }
    let bound = 32.0 * (words as f64 + lanes as f64) / per_symbol + lanes as f64;
    if bound >= u64::MAX as f64 {
        u64::MAX
    } else {
        bound.ceil() as u64
    }
}

/// Appends `count` symbols decoded from the payload after the table (`N`
/// states) to `out`, which keeps its capacity from call to call (a fresh
/// buffer per call costs a page fault per 4 KiB, which the kernel serializes
/// across threads).
fn decode_payload<const N: usize>(
    payload: &[u8],
    table: &Table,
    slots: &mut Slots,
    count: usize,
    out: &mut RVec<u32>,
) -> SdkResult<()> {
    let states = state_bytes(N);
    ensure_data(payload.len() >= states && payload.len() & 3 == 0, || {
        format!(
            "rans payload of {} bytes is not {states} bytes of states plus whole words",
            payload.len()
        )
    })?;
    let (state_bytes, word_bytes) = payload.split_at(states);
    let mut x = [0u64; N];
    for (state, bytes) in x.iter_mut().zip(state_bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        *state = u64::from_le_bytes(le);
        ensure_data((L..1 << 63).contains(state), || {
            format!("rans state {state:#x} outside [2^31, 2^63)")
        })?;
    }
    let words: Vec<u32> = word_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    ensure_data(slot_table(table, slots), || {
        "rans table does not fill the slots".into()
    })?;
    let slots: &Slots = slots;
    let precision = table.precision;
    let mask = (1u64 << precision) - 1;
    let mut pos = 0usize;
    out.extend_filled(count, |out| {
        let split = out.len() - out.len() % N;
        let (body, tail) = out.split_at_mut(split);
        for chunk in body.chunks_exact_mut(N) {
            decode_round(&mut x, slots, mask, precision, &words, &mut pos, chunk);
        }
        for (lane, symbol) in tail.iter_mut().enumerate() {
            let state = std::array::from_mut(&mut x[lane]);
            let symbol = std::slice::from_mut(symbol);
            decode_round(state, slots, mask, precision, &words, &mut pos, symbol);
        }
    });
    ensure_data(pos <= words.len(), || {
        "rans payload truncated (corrupt data or wrong count)".into()
    })?;
    ensure_data(pos == words.len() && x.iter().all(|s| *s == L), || {
        "rans: data left over or final states wrong after the last symbol (corrupt data or \
         wrong count)"
            .into()
    })
}

/// Codes `symbols` (all in the table, at least two entries) with `table`.
fn encode_with(symbols: &[u32], table: &Table, scratch: &mut EncoderScratch, out: &mut RVec<u8>) {
    match lanes_for(symbols.len() as u64) {
        1 => encode_payload::<1>(symbols, table, scratch, out),
        _ => encode_payload::<LANES>(symbols, table, scratch, out),
    }
}

/// Decodes `count` (> 0) symbols coded with `table` (at least two entries)
/// from `payload` into `out` (cleared first), refusing counts it cannot hold
/// before allocating.
fn decode_with(
    payload: &[u8],
    table: &Table,
    slots: &mut Slots,
    count: u64,
    out: &mut RVec<u32>,
) -> SdkResult<()> {
    let lanes = lanes_for(count);
    let words = payload.len().saturating_sub(state_bytes(lanes)) / 4;
    let limit = max_count(words, table.max_frequency(), table.precision, lanes);
    ensure_data(count <= limit, || {
        format!(
            "rans: {count} symbols cannot fit in {} payload bytes",
            payload.len()
        )
    })?;
    let count = usize::try_from(count).map_err(|_| corrupt("rans: count too large"))?;
    out.clear();
    match lanes {
        1 => decode_payload::<1>(payload, table, slots, count, out),
        _ => decode_payload::<LANES>(payload, table, slots, count, out),
    }
}

impl EntropyCoder for Rans {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> SdkResult<()> {
        check_stream(stream)?;
        if self.model == RansModel::Parametric {
            // Refuse a stream without a model even when it is empty.
            let table = parametric_table(stream, self.precision, invalid_input)?;
            check_alphabet(&stream.symbols, stream.alphabet_size)?;
            // A one-symbol alphabet codes to nothing: the count says it all.
            if !stream.symbols.is_empty() && table.entries.len() >= 2 {
                let scratch = self.encoder.get_or_insert_with(EncoderScratch::new);
                encode_with(&stream.symbols, &table, scratch, out);
            }
            return Ok(());
        }
        if stream.symbols.is_empty() {
            return Ok(());
        }
        let alphabet = stream.alphabet_size as usize;
        let histogram = histogram(&stream.symbols, alphabet)?;
        let table = rans_table::plan(&histogram, self.precision);
        let mut writer = BitWriter::new();
        rans_table::write(&table, &mut writer);
        out.extend_from_slice(&writer.finish());
        if table.entries.len() >= 2 {
            let scratch = self.encoder.get_or_insert_with(EncoderScratch::new);
            encode_with(&stream.symbols, &table, scratch, out);
        }
        Ok(())
    }

    fn decode(&mut self, bytes: &[u8], count: u64, stream: &mut SymbolStream) -> SdkResult<()> {
        check_stream(stream)?;
        let parametric = match self.model {
            RansModel::Parametric => Some(parametric_table(stream, self.precision, corrupt)?),
            RansModel::Empirical => None,
        };
        stream.symbols.clear();
        if count == 0 {
            return ensure_data(bytes.is_empty(), || {
                "rans: bytes for an empty stream".into()
            });
        }
        let (table, payload) = match parametric {
            Some(table) => (table, bytes),
            None => {
                let mut reader = BitReader::new(bytes);
                let table = rans_table::read(&mut reader, stream.alphabet_size)?;
                (table, &bytes[reader.byte_position()..])
            }
        };
        if let [(symbol, _)] = table.entries[..] {
            ensure_data(payload.is_empty(), || {
                format!("rans: {} bytes after a one-symbol table", payload.len())
            })?;
            let count = usize::try_from(count).map_err(|_| corrupt("rans: count too large"))?;
            stream.symbols.resize(count, symbol);
            return Ok(());
        }
        let slots = self.slots.get_or_insert_with(new_slots);
        decode_with(payload, &table, slots, count, &mut stream.symbols)
    }
}

#[cfg(test)]
mod tests;
