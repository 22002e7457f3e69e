//! What a receiver expects: the tensors (names and shapes) of its model. A
//! parameter server knows them, so its decoders refuse any other tensor, shape
//! or size right after the message's tables are read, before anything is
//! allocated for the tensors' values.
//!
//! ```
//! # use gradcodec::{ExpectedLayout, NamedTensor, Update};
//! let model = Update::new(vec![NamedTensor::from_vec("fc.weight", &[2, 3], vec![0.0; 6]).unwrap()]);
//! let layout = ExpectedLayout::of(&model);
//! assert_eq!(layout.limits().max_total_entries, 6);
//! ```

use crate::container::{Limits, ParsedMessage};
use crate::error::{Error, Result};
use crate::update::Update;
use std::collections::HashMap;

/// The tensors a receiver accepts: each name at most once, with exactly its shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedLayout {
    shapes: HashMap<String, Vec<u64>>,
}

impl ExpectedLayout {
    /// A layout from (name, shape) pairs.
    pub fn new<N: Into<String>>(tensors: impl IntoIterator<Item = (N, Vec<u64>)>) -> Self {
        Self {
            shapes: tensors
                .into_iter()
                .map(|(name, shape)| (name.into(), shape))
                .collect(),
        }
    }

    /// The layout of an update (e.g. the model the receiver holds).
    pub fn of(update: &Update) -> Self {
        Self::new(update.tensors.iter().map(|t| {
            (
                t.name.clone(),
                t.data.shape().iter().map(|&d| d as u64).collect(),
            )
        }))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    /// True when no tensor is expected.
    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// The tightest limits a message of this layout fits: its tensor count,
    /// largest tensor and total entries (names and dimensions keep the
    /// defaults, so a tensor outside the layout gets `check`'s clearer error).
    /// Streams may hold up to 4 symbols per entry plus 65,536 (the container's
    /// rule); messages up to 4 bytes per entry plus 64 MiB.
    pub fn limits(&self) -> Limits {
        let entries = |shape: &Vec<u64>| shape.iter().product::<u64>();
        let total: u64 = self.shapes.values().map(entries).sum();
        let count = self.shapes.len() as u64;
        Limits {
            max_message_bytes: total.saturating_mul(4).saturating_add(64 << 20),
            max_tensors: count,
            max_tensor_entries: self.shapes.values().map(entries).max().unwrap_or(0),
            max_total_entries: total,
            max_total_symbols: total
                .saturating_mul(4)
                .saturating_add(count.saturating_mul(65_536)),
            // Names are backed by the message's bytes; an unknown one gets
            // the clearer "not one of the tensors" error from `check`.
            max_name_bytes: Limits::default().max_name_bytes,
            max_dims: Limits::default().max_dims,
            max_streams: Limits::default().max_streams,
        }
    }

    /// Refuses a parsed message with a tensor this layout does not have, or
    /// with another shape.
    pub fn check(&self, parsed: &ParsedMessage<'_>) -> Result<()> {
        for record in &parsed.tensors {
            match self.shapes.get(&record.name) {
                None => {
                    return Err(Error::Message(format!(
                        "tensor `{}` is not one of the {} tensors this receiver expects",
                        record.name,
                        self.shapes.len()
                    )))
                }
                Some(shape) if *shape != record.shape => {
                    return Err(Error::Message(format!(
                        "tensor `{}` has shape {:?}, this receiver expects {shape:?}",
                        record.name, record.shape
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl Limits {
    /// The tighter of two limits, field by field.
    pub fn min(&self, other: &Limits) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes.min(other.max_message_bytes),
            max_tensors: self.max_tensors.min(other.max_tensors),
            max_tensor_entries: self.max_tensor_entries.min(other.max_tensor_entries),
            max_total_entries: self.max_total_entries.min(other.max_total_entries),
            max_total_symbols: self.max_total_symbols.min(other.max_total_symbols),
            max_name_bytes: self.max_name_bytes.min(other.max_name_bytes),
            max_dims: self.max_dims.min(other.max_dims),
            max_streams: self.max_streams.min(other.max_streams),
        }
    }
}
