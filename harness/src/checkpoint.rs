//! Checkpoints: after every completed round the whole state of a run — global
//! model, optimizer and Mem-AOP memories, every encoder's and decoder's state, and
//! the records so far — goes to `runs/<name>/checkpoint.safetensors` (written to
//! a temporary file, then renamed, so an interruption never leaves half a
//! checkpoint). Resuming restores it bit for bit, so a resumed run reproduces
//! the uninterrupted one.
//!
//! Layout: f32 tensors (1-D) for numeric state, u8 tensors for opaque codec
//! states, and the metadata `format`, `fingerprint`, `round` and `records` (JSON).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::metrics::RoundRecord;

/// Format version of the checkpoint layout.
pub const FORMAT: &str = "gradcodec-harness-checkpoint-1";

/// A run's state after a completed round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Fingerprint of the configuration that produced it.
    pub fingerprint: String,
    /// Last completed round.
    pub round: usize,
    /// Records of rounds 0..=round.
    pub records: Vec<RoundRecord>,
    /// Numeric state by key.
    pub floats: BTreeMap<String, Vec<f32>>,
    /// Opaque state (codec streams) by key.
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let float_bytes: Vec<(String, Vec<u8>, usize)> = self
            .floats
            .iter()
            .map(|(k, v)| {
                (
                    format!("f/{k}"),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    v.len(),
                )
            })
            .collect();
        let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
        for (k, bytes, n) in &float_bytes {
            views.push((k.clone(), TensorView::new(Dtype::F32, vec![*n], bytes)?));
        }
        for (k, v) in &self.blobs {
            views.push((
                format!("b/{k}"),
                TensorView::new(Dtype::U8, vec![v.len()], v)?,
            ));
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("fingerprint".to_string(), self.fingerprint.clone());
        meta.insert("round".to_string(), self.round.to_string());
        meta.insert("records".to_string(), serde_json::to_string(&self.records)?);
        let tmp = path.with_extension("safetensors.partial");
        safetensors::serialize_to_file(views, Some(meta), &tmp)
            .with_context(|| format!("writing checkpoint {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("moving checkpoint into {}", path.display()))?;
        Ok(())
    }

    /// Reads a checkpoint.
    pub fn load(path: &Path) -> anyhow::Result<Checkpoint> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading checkpoint {}", path.display()))?;
        let bad = |m: String| anyhow::anyhow!("checkpoint {}: {m}", path.display());
        let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("metadata `{k}` missing")))
        };
        if get("format")? != FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {FORMAT}",
                get("format")?
            )));
        }
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut floats = BTreeMap::new();
        let mut blobs = BTreeMap::new();
        for (name, view) in tensors.tensors() {
            if let Some(k) = name.strip_prefix("f/") {
                floats.insert(
                    k.to_string(),
                    view.data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                );
            } else if let Some(k) = name.strip_prefix("b/") {
                blobs.insert(k.to_string(), view.data().to_vec());
            } else {
                return Err(bad(format!("unexpected tensor {name}")));
            }
        }
        Ok(Checkpoint {
            fingerprint: get("fingerprint")?,
            round: get("round")?
                .parse()
                .map_err(|e| bad(format!("round: {e}")))?,
            records: serde_json::from_str(&get("records")?)
                .map_err(|e| bad(format!("records: {e}")))?,
            floats,
            blobs,
        })
    }

    /// Stores a list of vectors under `prefix/0`, `prefix/1`, ….
    pub fn put_list(&mut self, prefix: &str, list: &[Vec<f32>]) {
        for (i, v) in list.iter().enumerate() {
            self.floats.insert(format!("{prefix}/{i}"), v.clone());
        }
    }

    /// Reads back a list stored with [`Checkpoint::put_list`], checking lengths.
    pub fn take_list(&mut self, prefix: &str, lens: &[usize]) -> anyhow::Result<Vec<Vec<f32>>> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| {
                let key = format!("{prefix}/{i}");
                let v = self
                    .floats
                    .remove(&key)
                    .ok_or_else(|| anyhow::anyhow!("checkpoint lacks {key}"))?;
                anyhow::ensure!(
                    v.len() == n,
                    "checkpoint {key}: {} entries, expected {n}",
                    v.len()
                );
                Ok(v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let mut c = Checkpoint {
            fingerprint: "abc".into(),
            round: 3,
            records: vec![RoundRecord {
                round: 3,
                test_accuracy: 0.125,
                ..Default::default()
            }],
            ..Default::default()
        };
        c.put_list("global", &[vec![1.5, -0.0, f32::MIN_POSITIVE], vec![]]);
        c.blobs.insert("codec/up/enc/0".into(), vec![1, 2, 3]);
        c.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back, c);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
