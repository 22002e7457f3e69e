//! The exception classes of `gradcodec` and the mapping of runtime errors onto
//! them. Every exception carries the runtime's own message (the CLI's text).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    gradcodec,
    Error,
    PyException,
    "Base class of every gradcodec error."
);
create_exception!(
    gradcodec,
    SpecError,
    Error,
    "A pipeline spec is malformed or invalid."
);
create_exception!(
    gradcodec,
    UnknownStageError,
    SpecError,
    "A spec or message names a stage no loaded library provides."
);
create_exception!(
    gradcodec,
    PluginError,
    Error,
    "A plugin library could not be loaded."
);
create_exception!(
    gradcodec,
    StageError,
    Error,
    "A stage failed (bad data for the stage, or a stage bug turned into an error)."
);
create_exception!(
    gradcodec,
    MessageError,
    Error,
    "A message is malformed, truncated, corrupted, foreign or out of order."
);
create_exception!(
    gradcodec,
    UpdateError,
    Error,
    "An update is invalid: wrong dtype, non-finite values, a shape change, ..."
);
create_exception!(
    gradcodec,
    FileError,
    Error,
    "A file could not be read or written, or is not a valid tensor file."
);

/// The Python exception for a runtime error, with the runtime's message.
pub fn to_py(error: gradcodec::Error) -> PyErr {
    use gradcodec::Error as E;
    let text = error.to_string();
    match error {
        E::Spec(_) | E::SpecAt { .. } => SpecError::new_err(text),
        E::UnknownStage(_) => UnknownStageError::new_err(text),
        E::PluginLoad { .. } => PluginError::new_err(text),
        E::Stage { .. } => StageError::new_err(text),
        E::Message(_) | E::RoundGap { .. } | E::FingerprintMismatch { .. } => {
            MessageError::new_err(text)
        }
        E::Update(_) | E::LimitExceeded { .. } => UpdateError::new_err(text),
        E::Io { .. } | E::TensorFile { .. } => FileError::new_err(text),
    }
}

/// Adds the exception classes to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("Error", py.get_type::<Error>())?;
    module.add("SpecError", py.get_type::<SpecError>())?;
    module.add("UnknownStageError", py.get_type::<UnknownStageError>())?;
    module.add("PluginError", py.get_type::<PluginError>())?;
    module.add("StageError", py.get_type::<StageError>())?;
    module.add("MessageError", py.get_type::<MessageError>())?;
    module.add("UpdateError", py.get_type::<UpdateError>())?;
    module.add("FileError", py.get_type::<FileError>())?;
    Ok(())
}
