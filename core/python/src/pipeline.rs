//! `Pipeline`: a resolved pipeline (from a shipped name, a file or YAML text),
//! and the factory of its encoders and decoders.

use crate::codec::{PyDecoder, PyEncoder};
use crate::errors::{to_py, SpecError};
use crate::registry::with_registry;
use gradcodec::PipelineSpec;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

include!(concat!(env!("OUT_DIR"), "/shipped_pipelines.rs"));

/// A resolved pipeline: every stage found and its parameters validated.
#[pyclass(name = "Pipeline", module = "gradcodec", frozen)]
pub struct PyPipeline {
    pub(crate) inner: Arc<gradcodec::Pipeline>,
}

fn build(spec: &PipelineSpec) -> PyResult<PyPipeline> {
    let inner = with_registry(|registry| registry.build(spec)).map_err(to_py)?;
    Ok(PyPipeline { inner })
}

#[pymethods]
impl PyPipeline {
    /// A shipped pipeline by name (`gradcodec.shipped_pipelines()` lists them).
    #[staticmethod]
    fn shipped(name: &str) -> PyResult<Self> {
        let Some((_, text)) = SHIPPED.iter().find(|(shipped, _)| *shipped == name) else {
            let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
            return Err(SpecError::new_err(format!(
                "no shipped pipeline `{name}`; shipped: {}",
                names.join(", ")
            )));
        };
        let spec = PipelineSpec::parse(text, &format!("<shipped {name}>")).map_err(to_py)?;
        build(&spec)
    }

    /// A pipeline from a YAML spec file.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let spec = py
            .detach(|| PipelineSpec::from_file(&path))
            .map_err(to_py)?;
        build(&spec)
    }

    /// A pipeline from YAML spec text.
    #[staticmethod]
    #[pyo3(signature = (text, origin = "<yaml>"))]
    fn from_yaml(text: &str, origin: &str) -> PyResult<Self> {
        let spec = PipelineSpec::parse(text, origin).map_err(to_py)?;
        build(&spec)
    }

    /// Pipeline name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Description.
    #[getter]
    fn about(&self) -> &str {
        self.inner.about()
    }

    /// Canonical pipeline JSON, as embedded in messages.
    #[getter]
    fn canonical(&self) -> &str {
        self.inner.embedded_json()
    }

    /// xxh3-64 of the canonical codec JSON (what messages carry).
    #[getter]
    fn fingerprint(&self) -> u64 {
        self.inner.fingerprint()
    }

    /// The fingerprint as 16 hex digits (as `gradcodec inspect` prints it).
    #[getter]
    fn fingerprint_hex(&self) -> String {
        format!("{:016x}", self.inner.fingerprint())
    }

    /// True when any stage keeps state across rounds.
    #[getter]
    fn is_stateful(&self) -> bool {
        self.inner.is_stateful()
    }

    /// True when the pipeline has a predictor (it codes residuals against a
    /// history both ends keep, e.g. ResFed).
    #[getter]
    fn is_predictive(&self) -> bool {
        self.inner
            .stage(gradcodec::abi::StageKind::PREDICTOR)
            .is_some()
    }

    /// True when every quantizer is lossless.
    #[getter]
    fn is_lossless(&self) -> bool {
        self.inner.is_lossless()
    }

    /// Tensors with fewer entries are sent raw.
    #[getter]
    fn uncompressed_below(&self) -> u64 {
        self.inner.uncompressed_below()
    }

    /// The stages in order: (kind, name, version, canonical config JSON).
    #[getter]
    fn stages(&self) -> Vec<(String, String, u32, String)> {
        self.inner
            .stages()
            .iter()
            .map(|s| {
                (
                    s.kind.as_str().to_string(),
                    s.name.clone(),
                    s.version,
                    s.config.to_string(),
                )
            })
            .collect()
    }

    /// A new encoder (one per stream). `embed`: "first" (default), "always" or
    /// "never"; `non_finite`: "error" (default) or "zero"; `max_entries`: the
    /// receiver's limit (default the decoder's default, 2^26).
    #[pyo3(signature = (embed = "first", non_finite = "error", max_entries = None))]
    fn encoder(
        &self,
        embed: &str,
        non_finite: &str,
        max_entries: Option<u64>,
    ) -> PyResult<PyEncoder> {
        PyEncoder::new(&self.inner, embed, non_finite, max_entries)
    }

    /// A new decoder (one per stream). `expect`: the (name, shape) pairs of
    /// the receiver's model, refusing any other tensor or shape before
    /// allocating; `max_entries`: raise the default limit of 2^26 entries.
    #[pyo3(signature = (expect = None, max_entries = None))]
    fn decoder(
        &self,
        expect: Option<Vec<(String, Vec<u64>)>>,
        max_entries: Option<u64>,
    ) -> PyDecoder {
        let mut decoder = self.inner.decoder();
        crate::codec::configure_decoder(&mut decoder, expect, max_entries);
        PyDecoder::new(decoder)
    }

    fn __repr__(&self) -> String {
        format!(
            "Pipeline({:?}, fingerprint={:016x})",
            self.inner.name(),
            self.inner.fingerprint()
        )
    }
}

/// The names of the shipped pipelines.
#[pyfunction]
pub fn shipped_pipelines() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _)| *name).collect()
}

/// The YAML text of a shipped pipeline.
#[pyfunction]
pub fn shipped_pipeline_yaml(name: &str) -> PyResult<&'static str> {
    SHIPPED
        .iter()
        .find(|(shipped, _)| *shipped == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| SpecError::new_err(format!("no shipped pipeline `{name}`")))
}
