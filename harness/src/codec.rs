//! The links between learners and the server: one encoder per learner on the
//! sending side, the matching decoder on the receiving side, each keeping its
//! state across rounds. Sizes are the real message sizes.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use gradcodec::abi::StageKind;
use gradcodec::{
    Decoder, Encoder, ExpectedLayout, Pipeline, PipelineSpec, PluginSearch, Registry, Update,
};

/// Loads the plugin registry (workspace build output, next to the executable,
/// `GRADCODEC_PLUGIN_PATH`).
pub fn discover_registry() -> anyhow::Result<Registry> {
    let registry =
        Registry::discover(&PluginSearch::from_env()).context("discovering gradcodec plugins")?;
    if registry.stages().is_empty() {
        let searched: Vec<String> = registry
            .searched()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let failures: Vec<String> = registry
            .failures()
            .iter()
            .map(|f| format!("{}: {}", f.path.display(), f.message))
            .collect();
        anyhow::bail!(
            "no gradcodec plugin found (searched {}){}; build them with `cargo build` in the \
             workspace, or set GRADCODEC_PLUGIN_PATH",
            searched.join(", "),
            if failures.is_empty() {
                String::new()
            } else {
                format!("; failed to load: {}", failures.join("; "))
            }
        );
    }
    Ok(registry)
}

/// Builds the pipeline of a spec file.
pub fn load_pipeline(registry: &Registry, spec: &Path) -> anyhow::Result<Arc<Pipeline>> {
    let parsed = PipelineSpec::from_file(spec)
        .with_context(|| format!("reading pipeline spec {}", spec.display()))?;
    registry
        .build(&parsed)
        .with_context(|| format!("building pipeline {}", spec.display()))
}

/// Whether a pipeline has a predictor stage.
pub fn has_predictor(pipeline: &Pipeline) -> bool {
    pipeline.stage(StageKind::PREDICTOR).is_some()
}

/// The outcome of sending one update over a link.
pub struct Delivery {
    /// What the receiver decoded.
    pub decoded: Update,
    /// Message size in bytes (4 bytes per entry when uncompressed).
    pub bytes: u64,
    /// Seconds spent encoding.
    pub encode_s: f64,
    /// Seconds spent decoding.
    pub decode_s: f64,
}

/// One direction between the server and K learners: stream k is encoder k on
/// the sending side and decoder k on the receiving side.
///
/// A link with warm-up (used for model payloads, as in ResFed: "round 0 sends
/// full models") sends each stream's first update raw (f32, 4 bytes per entry,
/// exact) and codes every later update `x` as `x - x₀`, its difference to that
/// first one, adding `x₀` back after decoding. For the shift-equivariant ResFed
/// predictors (Res-0: `S[-1]`; Res-1: `S[-1] + ½(O[-1] - O[-2])`) this is
/// exactly a predictor whose history starts with the raw `x₀`: the residuals,
/// and so the bits, are the same. (The runtime has no call that commits an
/// uncoded update to a stream's predictor; this gives the same result without one.)
/// Observations of the opposite link are passed unshifted: Res-1 uses only
/// their differences.
pub struct Link {
    pipeline: Option<Arc<Pipeline>>,
    encoders: Vec<Encoder>,
    decoders: Vec<Decoder>,
    warmup: bool,
    offsets: Vec<Option<Update>>,
    sink: Option<MessageSink>,
    /// Whether stream k's decoder knows the model's layout yet (set from the
    /// first update sent: the receiver knows its model, and refuses any other
    /// tensor or shape before allocating).
    layout_known: Vec<bool>,
}

/// Where a link writes a copy of every message it sends.
#[derive(Debug, Clone)]
struct MessageSink {
    dir: std::path::PathBuf,
    prefix: String,
    counts: Vec<u64>,
}

/// `a - b` (or `a + b` with `sign = 1.0`) tensor by tensor.
fn combine(a: &Update, b: &Update, sign: f32) -> anyhow::Result<Update> {
    anyhow::ensure!(
        a.tensors.len() == b.tensors.len(),
        "update has {} tensors, the warm-up update {}",
        a.tensors.len(),
        b.tensors.len()
    );
    let mut out = a.clone();
    for (t, o) in out.tensors.iter_mut().zip(&b.tensors) {
        anyhow::ensure!(
            t.name == o.name && t.data.shape() == o.data.shape(),
            "tensor {} {:?} does not match the warm-up tensor {} {:?}",
            t.name,
            t.data.shape(),
            o.name,
            o.data.shape()
        );
        t.data.zip_mut_with(&o.data, |x, y| *x += sign * *y);
    }
    Ok(out)
}

impl Link {
    /// A link of `streams` streams through `pipeline` (None: uncompressed f32),
    /// with or without the warm-up described above.
    pub fn new(pipeline: Option<Arc<Pipeline>>, streams: usize, warmup: bool) -> Link {
        let (encoders, decoders) = match &pipeline {
            Some(p) => (
                (0..streams).map(|_| p.encoder()).collect(),
                (0..streams).map(|_| p.decoder()).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Link {
            warmup: warmup && pipeline.is_some(),
            offsets: vec![None; streams],
            sink: None,
            layout_known: vec![false; streams],
            pipeline,
            encoders,
            decoders,
        }
    }

    /// Writes a copy of every message to `dir` as `<prefix>-<stream>-<n>.gcm`
    /// (warm-up updates, sent raw, as `.f32` files of the raw values), so their
    /// sizes can be checked against the records, or the messages decoded later.
    pub fn save_messages(&mut self, dir: &Path, prefix: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.sink = Some(MessageSink {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            counts: vec![0; self.offsets.len()],
        });
        Ok(())
    }

    fn keep(&mut self, k: usize, extension: &str, bytes: &[u8]) -> anyhow::Result<()> {
        if let Some(sink) = &mut self.sink {
            let n = sink.counts[k];
            sink.counts[k] += 1;
            let path = sink
                .dir
                .join(format!("{}-{k:03}-{n:05}.{extension}", sink.prefix));
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// The pipeline (None when uncompressed).
    pub fn pipeline(&self) -> Option<&Arc<Pipeline>> {
        self.pipeline.as_ref()
    }

    /// Encodes `update` on stream `k` and decodes it at the receiver.
    pub fn send(&mut self, k: usize, update: &Update) -> anyhow::Result<Delivery> {
        if self.pipeline.is_none() {
            return Ok(Delivery {
                decoded: update.clone(),
                bytes: 4 * update.entries() as u64,
                encode_s: 0.0,
                decode_s: 0.0,
            });
        }
        let shifted;
        let update = match (&self.offsets[k], self.warmup) {
            (None, true) => {
                if self.sink.is_some() {
                    let raw: Vec<u8> = update
                        .tensors
                        .iter()
                        .flat_map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()))
                        .collect();
                    self.keep(k, "f32", &raw)?;
                }
                self.offsets[k] = Some(update.clone());
                return Ok(Delivery {
                    decoded: update.clone(),
                    bytes: 4 * update.entries() as u64,
                    encode_s: 0.0,
                    decode_s: 0.0,
                });
            }
            (Some(offset), _) => {
                shifted = combine(update, offset, -1.0)?;
                &shifted
            }
            (None, false) => update,
        };
        let t0 = Instant::now();
        let message = self.encoders[k]
            .encode(update)
            .with_context(|| format!("encoding stream {k}"))?;
        let encode_s = t0.elapsed().as_secs_f64();
        self.keep(k, "gcm", &message)?;
        if !self.layout_known[k] {
            self.decoders[k].set_expected_layout(ExpectedLayout::of(update));
            self.layout_known[k] = true;
        }
        let t1 = Instant::now();
        let decoded = self.decoders[k]
            .decode(&message)
            .with_context(|| format!("decoding stream {k}"))?;
        let decode_s = t1.elapsed().as_secs_f64();
        let decoded = match &self.offsets[k] {
            Some(offset) => combine(&decoded, offset, 1.0)?,
            None => decoded,
        };
        Ok(Delivery {
            decoded,
            bytes: message.len() as u64,
            encode_s,
            decode_s,
        })
    }

    /// Feeds stream `k`'s two ends what they received on the opposite link (the
    /// same update on both ends, so their predictors stay in step).
    pub fn observe(&mut self, k: usize, received: &Update) -> anyhow::Result<()> {
        if self.pipeline.is_some() {
            self.encoders[k]
                .observe(received)
                .with_context(|| format!("observe on encoder {k}"))?;
            self.decoders[k]
                .observe(received)
                .with_context(|| format!("observe on decoder {k}"))?;
        }
        Ok(())
    }

    /// The warm-up update of each stream (None before its first message).
    pub fn offsets(&self) -> &[Option<Update>] {
        &self.offsets
    }

    /// Restores the warm-up updates.
    pub fn set_offsets(&mut self, offsets: Vec<Option<Update>>) {
        self.offsets = offsets;
    }

    /// Every stream's state: `(encoder, decoder)` bytes per stream.
    pub fn save_state(&self) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.encoders
            .iter()
            .zip(&self.decoders)
            .map(|(e, d)| Ok((e.save_state()?, d.save_state()?)))
            .collect()
    }

    /// Restores what [`Link::save_state`] wrote.
    pub fn load_state(&mut self, states: &[(Vec<u8>, Vec<u8>)]) -> anyhow::Result<()> {
        anyhow::ensure!(
            states.len() == self.encoders.len(),
            "checkpoint holds {} codec streams, the link has {}",
            states.len(),
            self.encoders.len()
        );
        for (k, (e, d)) in states.iter().enumerate() {
            self.encoders[k]
                .load_state(e)
                .with_context(|| format!("restoring encoder {k}"))?;
            self.decoders[k]
                .load_state(d)
                .with_context(|| format!("restoring decoder {k}"))?;
        }
        Ok(())
    }

    /// Number of streams with codec state (0 when uncompressed).
    pub fn streams(&self) -> usize {
        self.encoders.len()
    }

    /// Whether the link sends a raw warm-up update first.
    pub fn warmup(&self) -> bool {
        self.warmup
    }
}
