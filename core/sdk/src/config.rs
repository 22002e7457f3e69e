//! Strict, versioned stage configs.
//!
//! A stage's parameters arrive as JSON text. [`parse_config`] rejects unknown
//! fields (configs must use `#[serde(deny_unknown_fields)]`), names the offending
//! field in every error, runs the config's own range checks, and the canonical
//! form (every default filled in) is the config serialized back to JSON.

use crate::error::{invalid_config, SdkResult};
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};

/// A stage's parameter type.
///
/// Implementors derive `Serialize`, `Deserialize` (with `deny_unknown_fields` and
/// `default`s where a parameter is optional) and `JsonSchema`, and check value
/// ranges in [`StageConfig::validate`], naming the field in the message.
pub trait StageConfig: Serialize + DeserializeOwned + JsonSchema + Clone + Send + 'static {
    /// Checks value ranges; the message must start with the field's name.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The config of a stage without parameters: accepts `{}` only.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl StageConfig for NoParams {}

/// Parses and validates parameters given as JSON text (`""` counts as `{}`).
pub fn parse_config<C: StageConfig>(params_json: &str) -> SdkResult<C> {
    let text = if params_json.trim().is_empty() {
        "{}"
    } else {
        params_json
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let config: C = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path.is_empty() || path == "." {
            invalid_config(format!("parameters: {inner}"))
        } else {
            invalid_config(format!("field `{path}`: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|err| invalid_config(format!("parameters: {err}")))?;
    config.validate().map_err(invalid_config)?;
    Ok(config)
}

/// The canonical JSON of a config: every default filled in, fields in
/// declaration order.
pub fn canonical_json<C: StageConfig>(config: &C) -> SdkResult<String> {
    serde_json::to_string(config)
        .map_err(|err| invalid_config(format!("cannot serialize config: {err}")))
}

/// The JSON Schema of a config type.
pub fn schema_json<C: StageConfig>() -> String {
    let schema = schemars::schema_for!(C);
    serde_json::to_string(&schema).unwrap_or_else(|_| "{}".to_string())
}

/// Helper for `validate`: fails with `field: message` unless `ok`.
pub fn ensure(ok: bool, field: &str, message: impl std::fmt::Display) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("field `{field}`: {message}"))
    }
}
