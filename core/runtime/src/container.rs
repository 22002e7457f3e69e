//! The message container, format versions 1 and 2 (see docs/format.md).
//!
//! ```text
//! magic "GCDC" | version u8 | flags u8 | round varint | fingerprint u64le
//! [pipeline_len varint | pipeline JSON]            (flags bit 0)
//! tensor_count varint
//! per tensor: name_len varint | name | ndim varint | dims varint...
//!             mode u8 (0 coded, 1 raw f32, 2 coded with a model check,
//!                      3 cut into blocks: version 2 only)
//!             mode 0/2: one coded block body
//!             mode 3: block_rows varint | block_count varint |
//!                     per block: block mode u8 (0 or 2) | coded block body
//! coded block body: side_len varint | side info | stream_count varint
//!                   per stream: symbol_count varint | byte_len varint
//!                   block mode 2: model_crc u32le (CRC-32 of the streams' models)
//! payload: raw tensors and coded streams, in table order
//! crc32 u32le over everything before it
//! ```
//!
//! A message without a tensor cut into blocks is written as version 1, byte
//! for byte what builds before blocks wrote.
//!
//! Parsing checks every length against the bytes present and against
//! [`Limits`] before allocating anything.

use crate::error::{Error, Result};
use std::ops::Range;

/// Magic bytes.
pub const MAGIC: &[u8; 4] = b"GCDC";
/// The newest container format version this build reads and writes (2: tensors
/// cut into blocks). Messages without blocks are written as version 1.
pub const FORMAT_VERSION: u8 = 2;
/// The format version of messages without blocks.
pub const FORMAT_VERSION_WHOLE: u8 = 1;
/// Mode byte of a tensor cut into blocks (version 2).
const MODE_BLOCKED: u8 = 3;
/// Flag: the canonical pipeline JSON is embedded.
pub const FLAG_PIPELINE: u8 = 1;

/// How a tensor is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorMode {
    /// Through the pipeline.
    Coded,
    /// Raw little-endian f32 (small tensors under the `uncompressed` rule).
    Raw,
}

/// CRC-32 of the stream models (lengths and f32 bits, in stream order), or
/// `None` when no stream has a model. The encoder writes it; the decoder checks
/// its own models against it, so a platform whose math differs in the last bit
/// is caught instead of decoding garbage.
pub fn model_check(streams: &[gradcodec_abi::SymbolStream]) -> Option<u32> {
    if streams.iter().all(|s| s.model.is_empty()) {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    for stream in streams {
        hasher.update(&(stream.model.len() as u64).to_le_bytes());
        for p in stream.model.iter() {
            hasher.update(&p.to_bits().to_le_bytes());
        }
    }
    Some(hasher.finalize())
}

/// Caps on what a message may claim, checked before any allocation.
///
/// The defaults bound what any message, however small, can make a decoder
/// allocate: at most 2^26 entries (256 MiB of f32 values) and 2^27 symbols
/// (two per entry) in one update; decoding a 16 KB zstd message at that limit
/// peaks at about 0.8 GiB
/// (docs/security.md has the measured figures). A receiver that knows its model
/// should set an [`crate::ExpectedLayout`], which is tighter; one that expects
/// larger updates raises these explicitly (`Decoder::set_limits`, the CLI's
/// `--max-entries`). The encoder refuses what the default decoder would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_bytes: u64,
    /// Most tensors in one update.
    pub max_tensors: u64,
    /// Most entries in one tensor.
    pub max_tensor_entries: u64,
    /// Most entries in one update.
    pub max_total_entries: u64,
    /// Most symbols in all the streams of one update.
    pub max_total_symbols: u64,
    /// Longest tensor name, in bytes.
    pub max_name_bytes: u64,
    /// Most dimensions of a tensor.
    pub max_dims: u64,
    /// Most symbol streams per tensor.
    pub max_streams: u64,
}

/// The default cap on entries per update (symbols: twice as many): 2^26.
pub const DEFAULT_MAX_ENTRIES: u64 = 1 << 26;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 30,
            max_tensors: 1 << 16,
            max_tensor_entries: DEFAULT_MAX_ENTRIES,
            max_total_entries: DEFAULT_MAX_ENTRIES,
            max_total_symbols: 2 * DEFAULT_MAX_ENTRIES,
            max_name_bytes: 1024,
            max_dims: 16,
            max_streams: 64,
        }
    }
}

impl Limits {
    /// The defaults with `entries` allowed per update (and per tensor, and
    /// twice as many symbols), and messages of up to 4 bytes per entry plus 64 MiB.
    pub fn with_max_entries(entries: u64) -> Self {
        Self {
            max_message_bytes: entries.saturating_mul(4).saturating_add(64 << 20),
            max_tensor_entries: entries,
            max_total_entries: entries,
            max_total_symbols: entries.saturating_mul(2),
            ..Self::default()
        }
    }
}

/// A stream's place in the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// Number of symbols.
    pub symbols: u64,
    /// Byte range inside the message.
    pub bytes: Range<usize>,
}

/// One coded block of a tensor (the whole tensor when it is not cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// Side info byte range.
    pub side_info: Range<usize>,
    /// Streams.
    pub streams: Vec<StreamRecord>,
    /// CRC-32 of the encoder's stream models (see [`model_check`]).
    pub model_crc: Option<u32>,
}

/// One tensor's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRecord {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Mode.
    pub mode: TensorMode,
    /// Raw f32 byte range (mode `Raw`).
    pub raw: Range<usize>,
    /// Coded blocks (mode `Coded`; one unless the tensor is cut into blocks).
    pub blocks: Vec<BlockRecord>,
    /// Rows of the first axis per block, when the tensor is cut into blocks.
    pub block_rows: Option<u64>,
}

impl TensorRecord {
    /// Entries (product of the shape; 0 with a zero dimension, saturating).
    pub fn entries(&self) -> u64 {
        if self.shape.contains(&0) {
            0
        } else {
            non_zero_product(&self.shape)
        }
    }
}

/// The product of a shape's non-zero dimensions, saturating at `u64::MAX`.
pub fn non_zero_product(shape: &[u64]) -> u64 {
    shape
        .iter()
        .filter(|&&dim| dim != 0)
        .fold(1u64, |acc, &dim| acc.saturating_mul(dim))
}

/// A parsed, checksum-verified message.
#[derive(Clone, Debug)]
pub struct ParsedMessage<'a> {
    /// The whole message.
    pub bytes: &'a [u8],
    /// Container version.
    pub version: u8,
    /// Round (sequence number in the stream).
    pub round: u64,
    /// Pipeline fingerprint.
    pub fingerprint: u64,
    /// Embedded canonical pipeline JSON.
    pub pipeline_json: Option<&'a str>,
    /// Tensor records.
    pub tensors: Vec<TensorRecord>,
    /// Bytes of header and tables (everything but payload).
    pub header_bytes: usize,
}

impl ParsedMessage<'_> {
    /// Bytes of a range.
    pub fn slice(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }
}

/// Appends `value` as LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Builds a message. The payload is borrowed until [`MessageWriter::finish`],
/// which copies it once into the message.
pub struct MessageWriter<'a> {
    table: Vec<u8>,
    payload: Vec<PayloadPart<'a>>,
    tensors: u64,
    blocked: bool,
}

enum PayloadPart<'a> {
    Bytes(&'a [u8]),
    Floats(&'a [f32]),
}

impl PayloadPart<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Bytes(bytes) => bytes.len(),
            Self::Floats(values) => values.len() * 4,
        }
    }
}

/// One coded block to write.
pub struct CodedBlock<'a> {
    /// Side info.
    pub side_info: &'a [u8],
    /// Per stream: (symbol count, coded bytes).
    pub streams: Vec<(u64, &'a [u8])>,
    /// CRC-32 of the stream models, if any (see [`model_check`]).
    pub model_crc: Option<u32>,
}

/// A coded tensor to write.
pub struct CodedTensor<'a> {
    /// Name.
    pub name: &'a str,
    /// Shape.
    pub shape: &'a [u64],
    /// Rows per block when the tensor is cut into blocks (then `blocks` has
    /// one entry per block), `None` for one block.
    pub block_rows: Option<u64>,
    /// The coded blocks.
    pub blocks: Vec<CodedBlock<'a>>,
}

/// Bytes copied into a message between checksum updates (fits in L2).
const CHECKSUM_PIECE: usize = 1 << 16;

impl<'a> MessageWriter<'a> {
    /// Starts a message.
    pub fn new() -> Self {
        Self {
            table: Vec::new(),
            payload: Vec::new(),
            tensors: 0,
            blocked: false,
        }
    }

    fn put_name_shape(&mut self, name: &str, shape: &[u64]) {
        put_varint(&mut self.table, name.len() as u64);
        self.table.extend_from_slice(name.as_bytes());
        put_varint(&mut self.table, shape.len() as u64);
        for dim in shape {
            put_varint(&mut self.table, *dim);
        }
    }

    fn put_block(&mut self, block: &CodedBlock<'a>) {
        self.table
            .push(if block.model_crc.is_some() { 2 } else { 0 });
        put_varint(&mut self.table, block.side_info.len() as u64);
        self.table.extend_from_slice(block.side_info);
        put_varint(&mut self.table, block.streams.len() as u64);
        for (symbols, bytes) in &block.streams {
            put_varint(&mut self.table, *symbols);
            put_varint(&mut self.table, bytes.len() as u64);
            self.payload.push(PayloadPart::Bytes(bytes));
        }
        if let Some(crc) = block.model_crc {
            self.table.extend_from_slice(&crc.to_le_bytes());
        }
    }

    /// Adds a coded tensor.
    pub fn add_coded(&mut self, tensor: &CodedTensor<'a>) {
        self.tensors += 1;
        self.put_name_shape(tensor.name, tensor.shape);
        if let Some(block_rows) = tensor.block_rows {
            self.blocked = true;
            self.table.push(MODE_BLOCKED);
            put_varint(&mut self.table, block_rows);
            put_varint(&mut self.table, tensor.blocks.len() as u64);
        }
        for block in &tensor.blocks {
            self.put_block(block);
        }
    }

    /// Adds a raw f32 tensor.
    pub fn add_raw(&mut self, name: &str, shape: &[u64], values: &'a [f32]) {
        self.tensors += 1;
        self.put_name_shape(name, shape);
        self.table.push(1);
        self.payload.push(PayloadPart::Floats(values));
    }

    /// Finishes: header, table, payload, checksum.
    pub fn finish(self, round: u64, fingerprint: u64, pipeline_json: Option<&str>) -> Vec<u8> {
        let payload_len: usize = self.payload.iter().map(PayloadPart::len).sum();
        let mut out = Vec::with_capacity(
            self.table.len() + payload_len + pipeline_json.map_or(0, str::len) + 64,
        );
        out.extend_from_slice(MAGIC);
        out.push(if self.blocked {
            FORMAT_VERSION
        } else {
            FORMAT_VERSION_WHOLE
        });
        out.push(if pipeline_json.is_some() {
            FLAG_PIPELINE
        } else {
            0
        });
        put_varint(&mut out, round);
        out.extend_from_slice(&fingerprint.to_le_bytes());
        if let Some(json) = pipeline_json {
            put_varint(&mut out, json.len() as u64);
            out.extend_from_slice(json.as_bytes());
        }
        put_varint(&mut out, self.tensors);
        out.extend_from_slice(&self.table);
        // The checksum runs behind the copy, a cache-sized piece at a time, so
        // it reads bytes just written instead of streaming the message again.
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&out);
        for part in &self.payload {
            match part {
                PayloadPart::Bytes(bytes) => {
                    for piece in bytes.chunks(CHECKSUM_PIECE) {
                        out.extend_from_slice(piece);
                        hasher.update(piece);
                    }
                }
                PayloadPart::Floats(values) => {
                    for piece in values.chunks(CHECKSUM_PIECE / 4) {
                        let start = out.len();
                        out.resize(start + piece.len() * 4, 0);
                        for (bytes, value) in out[start..].chunks_exact_mut(4).zip(piece) {
                            bytes.copy_from_slice(&value.to_le_bytes());
                        }
                        hasher.update(&out[start..]);
                    }
                }
            }
        }
        let crc = hasher.finalize();
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

impl Default for MessageWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &str) -> Error {
        Error::Message(format!("{what} (at byte {})", self.at))
    }

    fn byte(&mut self, what: &dyn Field) -> Result<u8> {
        let value = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.fail(&format!("truncated {}", what.describe())))?;
        self.at += 1;
        Ok(value)
    }

    fn take(&mut self, len: u64, what: &dyn Field) -> Result<&'a [u8]> {
        let remaining = (self.bytes.len() - self.at) as u64;
        if len > remaining {
            return Err(self.fail(&format!(
                "{} claims {len} bytes, only {remaining} remain",
                what.describe()
            )));
        }
        let slice = &self.bytes[self.at..self.at + len as usize];
        self.at += len as usize;
        Ok(slice)
    }

    fn varint(&mut self, what: &dyn Field) -> Result<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            let bits = u64::from(byte & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(self.fail(&format!("{}: varint overflows 64 bits", what.describe())));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.fail(&format!("{}: varint too long", what.describe())))
    }

    fn bounded(&mut self, what: &dyn Field, max: u64) -> Result<u64> {
        let value = self.varint(what)?;
        if value > max {
            return Err(self.fail(&format!(
                "{} {value} exceeds the limit {max}",
                what.describe()
            )));
        }
        Ok(value)
    }
}

/// What a [`Reader`] call reads, for its error: a fixed name, or a closure
/// that formats one (a tensor's or a stream's), run only when the read fails,
/// so a message that parses builds no error text.
trait Field {
    fn describe(&self) -> String;
}

impl Field for &str {
    fn describe(&self) -> String {
        (*self).to_string()
    }
}

impl<F: Fn() -> String> Field for F {
    fn describe(&self) -> String {
        self()
    }
}

/// Parses and verifies a message (magic, version, checksum, every length).
pub fn parse<'a>(bytes: &'a [u8], limits: &Limits) -> Result<ParsedMessage<'a>> {
    if bytes.len() as u64 > limits.max_message_bytes {
        return Err(Error::Message(format!(
            "{} bytes exceeds the limit of {} bytes",
            bytes.len(),
            limits.max_message_bytes
        )));
    }
    if bytes.len() < MAGIC.len() + 2 + 1 + 8 + 1 + 4 {
        return Err(Error::Message(format!(
            "{} bytes is too short to be a message",
            bytes.len()
        )));
    }
    if &bytes[..4] != MAGIC {
        return Err(Error::Message("not a gradcodec message (bad magic)".into()));
    }
    let version = bytes[4];
    if !(FORMAT_VERSION_WHOLE..=FORMAT_VERSION).contains(&version) {
        return Err(Error::Message(format!(
            "container format version {version} is not supported (this build reads \
             {FORMAT_VERSION_WHOLE} to {FORMAT_VERSION})"
        )));
    }
    let body_len = bytes.len() - 4;
    let stored = u32::from_le_bytes([
        bytes[body_len],
        bytes[body_len + 1],
        bytes[body_len + 2],
        bytes[body_len + 3],
    ]);
    let actual = crc32fast::hash(&bytes[..body_len]);
    if stored != actual {
        return Err(Error::Message(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x}): truncated or corrupted"
        )));
    }
    let body = &bytes[..body_len];
    let mut reader = Reader { bytes: body, at: 5 };
    let flags = reader.byte(&"flags")?;
    if flags & !FLAG_PIPELINE != 0 {
        return Err(reader.fail(&format!("unknown flags {flags:#04x}")));
    }
    let round = reader.varint(&"round")?;
    let fingerprint_bytes = reader.take(8, &"fingerprint")?;
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(fingerprint_bytes);
    let fingerprint = u64::from_le_bytes(fingerprint);
    let pipeline_json = if flags & FLAG_PIPELINE != 0 {
        let len = reader.varint(&"pipeline length")?;
        let json = reader.take(len, &"embedded pipeline")?;
        Some(std::str::from_utf8(json).map_err(|_| reader.fail("embedded pipeline is not UTF-8"))?)
    } else {
        None
    };
    let count = reader.bounded(&"tensor count", limits.max_tensors)?;
    let mut tensors = Vec::new();
    let mut total_entries: u64 = 0;
    let mut total_symbols: u64 = 0;
    let mut payload_cursor: u64 = 0;
    for index in 0..count {
        let record = parse_record(&mut reader, limits, version, index, &mut payload_cursor)?;
        total_entries = total_entries.saturating_add(record.entries());
        if total_entries > limits.max_total_entries {
            return Err(reader.fail(&format!(
                "the update claims more than {} entries",
                limits.max_total_entries
            )));
        }
        for stream in record.blocks.iter().flat_map(|b| &b.streams) {
            total_symbols = total_symbols.saturating_add(stream.symbols);
        }
        if total_symbols > limits.max_total_symbols {
            return Err(reader.fail(&format!(
                "the update's streams claim more than {} symbols",
                limits.max_total_symbols
            )));
        }
        tensors.push(record);
    }
    let header_bytes = reader.at;
    let payload_len = (body.len() - header_bytes) as u64;
    if payload_cursor != payload_len {
        return Err(Error::Message(format!(
            "the tables describe {payload_cursor} payload bytes, the message has {payload_len}"
        )));
    }
    // Turn payload-relative offsets into message offsets.
    for tensor in &mut tensors {
        tensor.raw = shift(&tensor.raw, header_bytes);
        for stream in tensor.blocks.iter_mut().flat_map(|b| &mut b.streams) {
            stream.bytes = shift(&stream.bytes, header_bytes);
        }
    }
    Ok(ParsedMessage {
        bytes,
        version,
        round,
        fingerprint,
        pipeline_json,
        tensors,
        header_bytes,
    })
}

fn shift(range: &Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

fn parse_record(
    reader: &mut Reader<'_>,
    limits: &Limits,
    version: u8,
    index: u64,
    payload: &mut u64,
) -> Result<TensorRecord> {
    let what = |field: &str| format!("tensor {index}: {field}");
    let name_len = reader.bounded(&|| what("name length"), limits.max_name_bytes)?;
    let name = std::str::from_utf8(reader.take(name_len, &|| what("name"))?)
        .map_err(|_| reader.fail(&what("name is not UTF-8")))?
        .to_string();
    let ndim = reader.bounded(&|| what("dimension count"), limits.max_dims)?;
    let mut shape = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        shape.push(reader.varint(&|| what("dimension"))?);
    }
    // The non-zero dimensions' product is bounded too: a zero dimension would
    // otherwise hide any product (an array of that shape cannot even be made).
    let spanned = non_zero_product(&shape);
    if spanned > limits.max_tensor_entries {
        return Err(reader.fail(&format!(
            "tensor `{name}` has shape {shape:?}, which spans more than the limit of {} entries",
            limits.max_tensor_entries
        )));
    }
    let entries = if shape.contains(&0) { 0 } else { spanned };
    let mode_byte = reader.byte(&|| what("mode"))?;
    let mut record = TensorRecord {
        name,
        shape,
        mode: TensorMode::Coded,
        raw: 0..0,
        blocks: Vec::new(),
        block_rows: None,
    };
    match mode_byte {
        1 => {
            record.mode = TensorMode::Raw;
            let len = entries * 4;
            record.raw = *payload as usize..(*payload + len) as usize;
            *payload = payload.saturating_add(len);
        }
        0 | 2 => {
            let block = parse_block(reader, limits, mode_byte, entries, payload, &what)?;
            record.blocks.push(block);
        }
        MODE_BLOCKED if version >= 2 => {
            let rows = record.shape.first().copied().unwrap_or(0);
            let row_entries = if entries == 0 {
                0
            } else {
                entries / rows.max(1)
            };
            let block_rows = reader.varint(&|| what("block rows"))?;
            if block_rows == 0 || block_rows >= rows {
                return Err(reader.fail(&format!(
                    "tensor `{}`: {block_rows} rows per block do not cut {rows} rows",
                    record.name
                )));
            }
            let count = reader.varint(&|| what("block count"))?;
            if count != rows.div_ceil(block_rows) {
                return Err(reader.fail(&format!(
                    "tensor `{}`: {count} blocks of {block_rows} rows do not make {rows} rows",
                    record.name
                )));
            }
            record.block_rows = Some(block_rows);
            for block_index in 0..count {
                let block_what = |field: &str| what(&format!("block {block_index}: {field}"));
                let block_rows_here = block_rows.min(rows - block_index * block_rows);
                let block_mode = reader.byte(&|| block_what("mode"))?;
                if !matches!(block_mode, 0 | 2) {
                    return Err(
                        reader.fail(&block_what(&format!("unknown block mode {block_mode}")))
                    );
                }
                let block = parse_block(
                    reader,
                    limits,
                    block_mode,
                    block_rows_here * row_entries,
                    payload,
                    &block_what,
                )?;
                record.blocks.push(block);
            }
        }
        other => {
            return Err(reader.fail(&format!(
                "tensor `{}`: unknown mode {other} in a version {version} message",
                record.name
            )))
        }
    }
    if *payload > reader.bytes.len() as u64 {
        return Err(reader.fail(&format!("tensor `{}` runs past the message", record.name)));
    }
    Ok(record)
}

/// One coded block body (side info, streams, model check) of `entries` entries.
fn parse_block(
    reader: &mut Reader<'_>,
    limits: &Limits,
    mode_byte: u8,
    entries: u64,
    payload: &mut u64,
    what: &dyn Fn(&str) -> String,
) -> Result<BlockRecord> {
    let side_len = reader.varint(&|| what("side info length"))?;
    let start = reader.at;
    reader.take(side_len, &|| what("side info"))?;
    let mut block = BlockRecord {
        side_info: start..reader.at,
        streams: Vec::new(),
        model_crc: None,
    };
    let streams = reader.bounded(&|| what("stream count"), limits.max_streams)?;
    let max_symbols = entries.saturating_mul(4).saturating_add(65_536);
    for stream in 0..streams {
        let symbols = reader.bounded(
            &|| what(&format!("stream {stream} symbol count")),
            max_symbols,
        )?;
        let len = reader.varint(&|| what(&format!("stream {stream} length")))?;
        let end = payload.saturating_add(len);
        if end > reader.bytes.len() as u64 {
            return Err(reader.fail(&what(&format!("stream {stream} runs past the message"))));
        }
        block.streams.push(StreamRecord {
            symbols,
            bytes: *payload as usize..end as usize,
        });
        *payload = end;
    }
    if mode_byte == 2 {
        let crc = reader.take(4, &|| what("model check"))?;
        block.model_crc = Some(u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]));
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut writer = MessageWriter::new();
        writer.add_raw("bias", &[3], &[1.0, -2.0, 0.5]);
        writer.add_coded(&CodedTensor {
            name: "w",
            shape: &[2, 2],
            block_rows: None,
            blocks: vec![CodedBlock {
                side_info: &[9, 9],
                streams: vec![(4, &[1, 2, 3][..]), (0, &[][..])],
                model_crc: Some(0xABCD_0123),
            }],
        });
        writer.finish(7, 0xDEAD_BEEF, Some("{\"x\":1}"))
    }

    fn blocked_sample() -> Vec<u8> {
        let mut writer = MessageWriter::new();
        writer.add_coded(&CodedTensor {
            name: "big",
            shape: &[5, 3],
            block_rows: Some(2),
            blocks: vec![
                CodedBlock {
                    side_info: &[1],
                    streams: vec![(6, &[7, 7][..])],
                    model_crc: None,
                },
                CodedBlock {
                    side_info: &[2],
                    streams: vec![(6, &[8][..])],
                    model_crc: Some(5),
                },
                CodedBlock {
                    side_info: &[],
                    streams: vec![(3, &[9, 9, 9][..])],
                    model_crc: None,
                },
            ],
        });
        writer.finish(1, 42, None)
    }

    #[test]
    fn blocked_tensors_round_trip_in_version_2() {
        let bytes = blocked_sample();
        assert_eq!(bytes[4], 2);
        assert_eq!(sample()[4], 1, "messages without blocks stay version 1");
        let parsed = parse(&bytes, &Limits::default()).unwrap();
        let record = &parsed.tensors[0];
        assert_eq!(record.block_rows, Some(2));
        assert_eq!(record.blocks.len(), 3);
        assert_eq!(parsed.slice(&record.blocks[1].side_info), &[2]);
        assert_eq!(parsed.slice(&record.blocks[2].streams[0].bytes), &[9, 9, 9]);
        assert_eq!(record.blocks[1].model_crc, Some(5));
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len], &Limits::default()).is_err());
        }
    }

    #[test]
    fn blocks_are_refused_in_version_1_and_when_they_do_not_tile() {
        let mut body = blocked_sample();
        body.truncate(body.len() - 4);
        body[4] = 1;
        let err = parse(&reseal(body), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown mode 3 in a version 1 message"),
            "{err}"
        );
        // Claim 4 blocks of 2 rows for 5 rows.
        let mut body = blocked_sample();
        body.truncate(body.len() - 4);
        // Header (16 bytes), name length and "big", ndim and dims 5, 3: the mode.
        let at = 16 + 1 + 3 + 1 + 2;
        assert_eq!(body[at..at + 3], [3, 2, 3]);
        body[at + 2] = 4;
        let err = parse(&reseal(body), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not make 5 rows"), "{err}");
    }

    #[test]
    fn round_trips_every_field() {
        let bytes = sample();
        let parsed = parse(&bytes, &Limits::default()).unwrap();
        assert_eq!(parsed.round, 7);
        assert_eq!(parsed.fingerprint, 0xDEAD_BEEF);
        assert_eq!(parsed.pipeline_json, Some("{\"x\":1}"));
        assert_eq!(parsed.tensors.len(), 2);
        let raw = &parsed.tensors[0];
        assert_eq!(raw.mode, TensorMode::Raw);
        assert_eq!(parsed.slice(&raw.raw).len(), 12);
        let coded = &parsed.tensors[1].blocks[0];
        assert_eq!(parsed.slice(&coded.side_info), &[9, 9]);
        assert_eq!(parsed.slice(&coded.streams[0].bytes), &[1, 2, 3]);
        assert_eq!(coded.streams[0].symbols, 4);
        assert!(coded.streams[1].bytes.is_empty());
        assert_eq!(coded.model_crc, Some(0xABCD_0123));
        assert!(raw.blocks.is_empty());
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(
                parse(&bytes[..len], &Limits::default()).is_err(),
                "truncated to {len}"
            );
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut corrupted = bytes.clone();
                corrupted[at] ^= 1 << bit;
                assert!(
                    parse(&corrupted, &Limits::default()).is_err(),
                    "flip {at}:{bit}"
                );
            }
        }
    }

    fn reseal(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn huge_claims_are_refused_before_allocation() {
        // A valid checksum over a header that claims 2^60 tensors.
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&[FORMAT_VERSION, 0, 0]);
        body.extend_from_slice(&[0; 8]);
        put_varint(&mut body, 1 << 60);
        let err = parse(&reseal(body), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tensor count"), "{err}");
        // One tensor with a shape of 2^40 x 2^40 entries.
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&[FORMAT_VERSION, 0, 0]);
        body.extend_from_slice(&[0; 8]);
        put_varint(&mut body, 1);
        put_varint(&mut body, 1);
        body.push(b'x');
        put_varint(&mut body, 2);
        put_varint(&mut body, 1 << 40);
        put_varint(&mut body, 1 << 40);
        body.push(1);
        let err = parse(&reseal(body), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("entries"), "{err}");
    }

    #[test]
    fn errors_name_the_field_of_the_tensor_and_stream_that_failed() {
        // The field texts are built only when a read fails; these are they.
        let body_of = |message: Vec<u8>| message[..message.len() - 4].to_vec();
        let at = |needle: &[u8], body: &[u8]| {
            body.windows(needle.len())
                .position(|w| w == needle)
                .expect("present")
        };
        let err = |body: Vec<u8>| {
            parse(&reseal(body), &Limits::default())
                .unwrap_err()
                .to_string()
        };
        // Cut inside tensor 1's side info: the tensor and the field.
        let body = body_of(sample());
        let side = at(&[9, 9], &body);
        let text = err(body[..side + 1].to_vec());
        assert!(
            text.contains("tensor 1: side info claims 2 bytes, only 1 remain"),
            "{text}"
        );
        // Stream 0's length raised past what the payload holds: the stream.
        let mut body = body_of(sample());
        // After the side info: stream count 2, stream 0's symbols 4 and length 3.
        assert_eq!(body[side + 2..side + 5], [2, 4, 3]);
        body[side + 4] = 99;
        let text = err(body);
        assert!(
            text.contains("tensor 1: stream 0 runs past the message"),
            "{text}"
        );
        // Cut where block 0 of a blocked tensor has its side info length:
        // after the name, ndim, two dims, the mode, block rows, block count
        // and the block's mode byte.
        let body = body_of(blocked_sample());
        let name_end = at(b"big", &body) + 3;
        let text = err(body[..name_end + 7].to_vec());
        assert!(
            text.contains("truncated tensor 0: block 0: side info length"),
            "{text}"
        );
    }

    #[test]
    fn foreign_and_future_messages_are_named() {
        let mut bytes = sample();
        bytes[0] = b'P';
        assert!(parse(&bytes, &Limits::default())
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut bytes = sample();
        bytes[4] = 9;
        assert!(parse(&bytes, &Limits::default())
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
