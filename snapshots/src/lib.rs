//! Regression snapshots of codec outputs.
//!
//! [`snapshot_update`] encodes an update with a pipeline, checks that the decoder
//! reproduces the encoder's reconstruction exactly, and returns a
//! [`CodecSnapshot`]: the canonical pipeline, message size, bits per entry,
//! relative MSE and M-weighted distortion (rounded so floating-point noise does
//! not break them), a hash of the message bytes, and each tensor's side-info
//! summary and stream sizes. [`snapshot_rounds`] does the same over a sequence
//! of updates, pinning the state handling of stateful pipelines. Tests pin these
//! with insta (see docs/snapshots.md); plugin authors call the same functions
//! for their own stages (see plugins/example/tests/snapshots.rs).

use gradcodec::{metrics, report, Pipeline, PluginSearch, Registry, Update};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `snapshots/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("snapshots/fixtures")
}

/// `pipelines`.
pub fn pipelines_dir() -> PathBuf {
    workspace_root().join("pipelines")
}

/// The build directory of the running test (target/<profile>).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .to_path_buf()
}

/// Every plugin built in this profile's build directory. Panics if none loads
/// (the plugins must be built first: `cargo build --workspace`).
pub fn build_registry() -> Registry {
    let registry = Registry::discover(&PluginSearch::only(vec![build_dir()], vec![]))
        .expect("plugin discovery");
    assert!(
        !registry.stages().is_empty(),
        "no plugin in {}: run `cargo build --workspace` first",
        build_dir().display()
    );
    registry
}

/// Single-update fixtures: `snapshots/fixtures/*.safetensors`, by file stem, sorted.
pub fn fixtures() -> Vec<(String, Update)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let update = Update::read(&path).unwrap_or_else(|e| panic!("{e}"));
            (name, update)
        })
        .collect()
}

/// Sequence fixtures: each subdirectory of `snapshots/fixtures` holds
/// `round-*.safetensors` files, in order.
pub fn sequences() -> Vec<(String, Vec<Update>)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.retain(|p| p.is_dir());
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect();
            files.sort();
            let updates = files
                .iter()
                .map(|p| Update::read(p).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            (
                dir.file_name().unwrap().to_string_lossy().to_string(),
                updates,
            )
        })
        .collect()
}

/// Rounds `value` to `digits` significant digits (0 stays 0).
pub fn significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(digits - 1 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

fn round_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(rounded) = n
                .as_f64()
                .and_then(|v| serde_json::Number::from_f64(significant(v, 5)))
            {
                *n = rounded;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(round_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(round_json),
        _ => {}
    }
}

/// One tensor of a snapshot.
#[derive(Debug, Serialize)]
pub struct TensorSnapshot {
    /// Name.
    pub name: String,
    /// `coded` or `raw`.
    pub mode: &'static str,
    /// Side info bytes.
    pub side_info_bytes: u64,
    /// The quantizer's summary of its side info (floats to 5 significant digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_info: Option<serde_json::Value>,
    /// Per stream: (symbols, bytes).
    pub streams: Vec<(u64, u64)>,
}

/// What a snapshot pins for one message.
#[derive(Debug, Serialize)]
pub struct CodecSnapshot {
    /// Round of the message.
    pub round: u64,
    /// Message bytes.
    pub bytes: u64,
    /// 8 × bytes / entries, 4 decimals.
    pub bits_per_entry: f64,
    /// Relative MSE, 4 significant digits.
    pub relative_mse: f64,
    /// Relative M-weighted distortion (M = 2), 4 significant digits.
    pub weighted_distortion_m2: f64,
    /// xxh3-64 of the message bytes (hex).
    pub message_xxh3: String,
    /// Per tensor.
    pub tensors: Vec<TensorSnapshot>,
}

/// Snapshot of a pipeline and its messages.
#[derive(Debug, Serialize)]
pub struct PipelineSnapshot {
    /// Pipeline name.
    pub pipeline: String,
    /// Fingerprint (hex).
    pub fingerprint: String,
    /// Canonical codec config.
    pub codec: serde_json::Value,
    /// One entry per message.
    pub messages: Vec<CodecSnapshot>,
}

/// xxh3-64 of an update's names, shapes and f32 bits (hex).
pub fn update_hash(update: &Update) -> String {
    let mut bytes = Vec::new();
    for tensor in &update.tensors {
        bytes.extend_from_slice(tensor.name.as_bytes());
        for dim in tensor.data.shape() {
            bytes.extend_from_slice(&(*dim as u64).to_le_bytes());
        }
        for value in tensor.data.iter() {
            bytes.extend_from_slice(&value.to_bits().to_le_bytes());
        }
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// Encodes `updates` in order through one encoder and one decoder of
/// `pipeline`, checks that the decoder reproduces the encoder's reconstruction
/// exactly each round, and snapshots every message.
pub fn snapshot_rounds(
    pipeline: &Arc<Pipeline>,
    updates: &[Update],
) -> gradcodec::Result<PipelineSnapshot> {
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    let mut messages = Vec::with_capacity(updates.len());
    for update in updates {
        let message = encoder.encode(update)?;
        let decoded = decoder.decode(&message)?;
        let reconstruction = encoder.last_reconstruction();
        if &decoded != reconstruction {
            return Err(gradcodec::Error::Message(format!(
                "{}: the decoder's output differs from the encoder's reconstruction",
                pipeline.name()
            )));
        }
        let report = report::describe(&message, Some(pipeline))?;
        let entries = update.entries() as u64;
        messages.push(CodecSnapshot {
            round: report.round,
            bytes: message.len() as u64,
            bits_per_entry: (metrics::bits_per_entry(message.len() as u64, entries) * 1e4).round()
                / 1e4,
            relative_mse: significant(metrics::relative_mse(update, &decoded), 4),
            weighted_distortion_m2: significant(
                metrics::relative_weighted_distortion(update, &decoded, 2.0),
                4,
            ),
            message_xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&message)),
            tensors: report
                .tensors
                .into_iter()
                .map(|t| TensorSnapshot {
                    name: t.name,
                    mode: t.mode,
                    side_info_bytes: t.side_info_bytes,
                    side_info: t.side_info.map(|mut v| {
                        round_json(&mut v);
                        v
                    }),
                    streams: t.streams.iter().map(|s| (s.symbols, s.bytes)).collect(),
                })
                .collect(),
        });
    }
    let codec: serde_json::Value = serde_json::from_str(pipeline.codec_json()).unwrap_or_default();
    Ok(PipelineSnapshot {
        pipeline: pipeline.name().to_string(),
        fingerprint: format!("{:016x}", pipeline.fingerprint()),
        codec,
        messages,
    })
}

/// [`snapshot_rounds`] of a single update.
pub fn snapshot_update(
    pipeline: &Arc<Pipeline>,
    update: &Update,
) -> gradcodec::Result<PipelineSnapshot> {
    snapshot_rounds(pipeline, std::slice::from_ref(update))
}

/// The golden-message input: the tensors of `update` with at most `max_entries`
/// entries each (small, so golden messages stay small).
pub fn small_tensors(update: &Update, max_entries: usize) -> Update {
    Update::new(
        update
            .tensors
            .iter()
            .filter(|t| t.len() <= max_entries)
            .cloned()
            .collect(),
    )
}
