//! What the encoder checks before any stage state changes: the receiver's
//! limits, unique names, stable shapes and finite values.

use super::options::NonFinitePolicy;
use super::stats::MessageStats;
use crate::container::Limits;
use crate::error::{Error, Result};
use crate::update::Update;

fn exceeded(subject: String, value: u64, unit: &'static str, limit: u64) -> Error {
    Error::LimitExceeded {
        subject,
        value,
        unit,
        limit,
    }
}

/// The update against the limits, as the decoder will check its message.
pub(super) fn check_limits(limits: &Limits, update: &Update) -> Result<()> {
    if update.tensors.len() as u64 > limits.max_tensors {
        return Err(exceeded(
            String::new(),
            update.tensors.len() as u64,
            "tensors",
            limits.max_tensors,
        ));
    }
    let mut total: u64 = 0;
    for tensor in &update.tensors {
        let name = &tensor.name;
        if name.len() as u64 > limits.max_name_bytes {
            return Err(exceeded(
                "tensor name of ".into(),
                name.len() as u64,
                "bytes",
                limits.max_name_bytes,
            ));
        }
        if tensor.data.ndim() as u64 > limits.max_dims {
            return Err(exceeded(
                format!("tensor `{name}` has "),
                tensor.data.ndim() as u64,
                "dimensions",
                limits.max_dims,
            ));
        }
        let entries = tensor.len() as u64;
        if entries > limits.max_tensor_entries {
            return Err(exceeded(
                format!("tensor `{name}` has "),
                entries,
                "entries",
                limits.max_tensor_entries,
            ));
        }
        total = total.saturating_add(entries);
    }
    if total > limits.max_total_entries {
        return Err(exceeded(
            "the update has ".into(),
            total,
            "entries",
            limits.max_total_entries,
        ));
    }
    Ok(())
}

/// The message against the limits on what only the coded message shows.
pub(super) fn check_message_limits(
    limits: &Limits,
    message: &[u8],
    stats: &MessageStats,
) -> Result<()> {
    let symbols = stats.symbols();
    let problem = if message.len() as u64 > limits.max_message_bytes {
        format!(
            "the message has {} bytes, more than the limit of {}",
            message.len(),
            limits.max_message_bytes
        )
    } else if symbols > limits.max_total_symbols {
        format!(
            "the message's streams hold {symbols} symbols, more than the limit of {}",
            limits.max_total_symbols
        )
    } else {
        return Ok(());
    };
    Err(Error::Update(format!(
        "{problem}; the receiver's decoder would refuse it (raise the limits on both ends \
         to send it, and reset this stream: its stages have advanced)"
    )))
}

/// Tensor names must be unique within an update.
pub(super) fn check_unique_names(update: &Update) -> Result<()> {
    let mut names = std::collections::HashSet::with_capacity(update.tensors.len());
    for tensor in &update.tensors {
        if !names.insert(tensor.name.as_str()) {
            return Err(Error::Update(format!(
                "tensor `{}` appears twice",
                tensor.name
            )));
        }
    }
    Ok(())
}

/// Applies the non-finite policy given each tensor's count of NaN / infinite
/// values: an error, or a cleaned copy of the update (`None`: nothing to clean).
pub(super) fn apply_non_finite_policy(
    policy: NonFinitePolicy,
    update: &Update,
    non_finite: &[usize],
) -> Result<Option<Update>> {
    let mut cleaned: Option<Update> = None;
    for (index, (tensor, &bad)) in update.tensors.iter().zip(non_finite).enumerate() {
        if bad == 0 {
            continue;
        }
        match policy {
            NonFinitePolicy::Error => {
                return Err(Error::Update(format!(
                    "tensor `{}` holds {bad} NaN or infinite values",
                    tensor.name
                )))
            }
            NonFinitePolicy::ReplaceWithZero => {
                let copy = cleaned.get_or_insert_with(|| update.clone());
                copy.tensors[index]
                    .data
                    .mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
            }
        }
    }
    Ok(cleaned)
}
