//! Error helpers for stage authors.
//!
//! Stages return [`StageError`]s with an empty `stage` field; the SDK's adapters
//! fill in the stage name before the error crosses the boundary.

use gradcodec_abi::{ErrorCode, StageError};

/// Result type of stage methods.
pub type SdkResult<T> = Result<T, StageError>;

/// Parameters rejected; the message should name the field.
pub fn invalid_config(message: impl Into<String>) -> StageError {
    StageError::new(ErrorCode::INVALID_CONFIG, "", message)
}

/// Input data rejected (non-finite value, wrong length, ...).
pub fn invalid_input(message: impl Into<String>) -> StageError {
    StageError::new(ErrorCode::INVALID_INPUT, "", message)
}

/// Coded data is corrupt (bad side info, out-of-range symbol, wrong length).
pub fn corrupt(message: impl Into<String>) -> StageError {
    StageError::new(ErrorCode::CORRUPT_DATA, "", message)
}

/// The stage cannot do what was asked.
pub fn unsupported(message: impl Into<String>) -> StageError {
    StageError::new(ErrorCode::UNSUPPORTED, "", message)
}

/// Fails with a corrupt-data error unless `ok`.
pub fn ensure_data(ok: bool, message: impl FnOnce() -> String) -> SdkResult<()> {
    if ok {
        Ok(())
    } else {
        Err(corrupt(message()))
    }
}

/// Checks that `len` equals the tensor length `expected`.
pub fn ensure_len(what: &str, len: usize, expected: u64) -> SdkResult<()> {
    if len as u64 == expected {
        Ok(())
    } else {
        Err(invalid_input(format!(
            "{what} has {len} entries, the tensor has {expected}"
        )))
    }
}

/// Rejects non-finite input. The host checks the update it is given, but a
/// quantizer's input is the output of the stages before it (error feedback can
/// overflow), so quantizers that cannot handle NaN or infinities check it.
pub fn ensure_finite(input: &[f32]) -> SdkResult<()> {
    match input.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(invalid_input(format!(
            "input entry {index} is not finite ({})",
            input[index]
        ))),
    }
}
