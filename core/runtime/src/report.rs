//! A readable account of a message: header, pipeline, and per tensor its shape,
//! side info (summarized by the quantizer when the pipeline is known) and
//! stream sizes. Used by `gradcodec inspect` and the snapshot suite.

use crate::container::{self, Limits, TensorMode};
use crate::error::Result;
use crate::metrics::bits_per_entry;
use crate::pipeline::Pipeline;
use abi_stable::std_types::{RResult, RVec};
use gradcodec_abi::{StageKind, TensorSpec};
use serde::Serialize;

/// One stream of a tensor.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StreamReport {
    /// Symbols.
    pub symbols: u64,
    /// Coded bytes.
    pub bytes: u64,
}

/// One tensor of a message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TensorReport {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// `coded` or `raw`.
    pub mode: &'static str,
    /// Side info bytes.
    pub side_info_bytes: u64,
    /// The quantizer's summary of the side info (when the pipeline is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_info: Option<serde_json::Value>,
    /// Streams.
    pub streams: Vec<StreamReport>,
    /// Payload bits per entry of this tensor (side info and streams).
    pub payload_bits_per_entry: f64,
    /// Blocks the tensor is cut into (absent: one). Streams are then listed
    /// block after block, and the side info summarized is the first block's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u64>,
}

/// A whole message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MessageReport {
    /// Total bytes.
    pub bytes: u64,
    /// Bits per entry of the whole message.
    pub bits_per_entry: f64,
    /// Container version.
    pub format_version: u8,
    /// Round.
    pub round: u64,
    /// Pipeline fingerprint (hex).
    pub fingerprint: String,
    /// Embedded pipeline, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<serde_json::Value>,
    /// Header and tables, bytes.
    pub header_bytes: u64,
    /// Tensors.
    pub tensors: Vec<TensorReport>,
}

/// Describes a message; with `pipeline`, side info is summarized by its quantizer.
pub fn describe(message: &[u8], pipeline: Option<&Pipeline>) -> Result<MessageReport> {
    let parsed = container::parse(message, &Limits::default())?;
    let mut tensors = Vec::with_capacity(parsed.tensors.len());
    let mut entries_total = 0u64;
    for record in &parsed.tensors {
        let entries = record.entries();
        entries_total += entries;
        let side_info: usize = record.blocks.iter().map(|b| b.side_info.len()).sum();
        let (mode, streams, payload) = match record.mode {
            TensorMode::Raw => (
                "raw",
                vec![StreamReport {
                    symbols: entries,
                    bytes: entries * 4,
                }],
                entries * 4,
            ),
            TensorMode::Coded => {
                let streams: Vec<StreamReport> = record
                    .blocks
                    .iter()
                    .flat_map(|b| &b.streams)
                    .map(|s| StreamReport {
                        symbols: s.symbols,
                        bytes: s.bytes.len() as u64,
                    })
                    .collect();
                let payload = side_info as u64 + streams.iter().map(|s| s.bytes).sum::<u64>();
                ("coded", streams, payload)
            }
        };
        let summary = match (record.mode, pipeline) {
            (TensorMode::Coded, Some(pipeline)) => {
                let first = &record.blocks[0];
                let shape = match record.block_rows {
                    Some(rows) => {
                        let mut shape = record.shape.clone();
                        shape[0] = rows;
                        shape
                    }
                    None => record.shape.clone(),
                };
                summarize(
                    pipeline,
                    &record.name,
                    &shape,
                    parsed.slice(&first.side_info),
                )
            }
            _ => None,
        };
        tensors.push(TensorReport {
            name: record.name.clone(),
            shape: record.shape.clone(),
            mode,
            side_info_bytes: side_info as u64,
            side_info: summary,
            streams,
            payload_bits_per_entry: bits_per_entry(payload, entries),
            blocks: record.block_rows.map(|_| record.blocks.len() as u64),
        });
    }
    Ok(MessageReport {
        bytes: message.len() as u64,
        bits_per_entry: bits_per_entry(message.len() as u64, entries_total),
        format_version: parsed.version,
        round: parsed.round,
        fingerprint: format!("{:016x}", parsed.fingerprint),
        pipeline: parsed
            .pipeline_json
            .and_then(|json| serde_json::from_str(json).ok()),
        header_bytes: parsed.header_bytes as u64 + 4,
        tensors,
    })
}

fn summarize(
    pipeline: &Pipeline,
    name: &str,
    shape: &[u64],
    side_info: &[u8],
) -> Option<serde_json::Value> {
    let stage = pipeline.stage(StageKind::QUANTIZER)?;
    let spec = TensorSpec {
        name: name.into(),
        shape: RVec::from(shape.to_vec()),
    };
    let quantizer = stage.new_quantizer(&spec).ok()?;
    match quantizer.summarize_side_info(side_info.into()) {
        RResult::ROk(text) => serde_json::from_str(&text).ok(),
        RResult::RErr(error) => Some(serde_json::json!({ "error": error.to_string() })),
    }
}
