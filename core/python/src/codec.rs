//! `Encoder` and `Decoder`: one per stream, as in Rust. Each wraps the
//! runtime's object in a mutex (its stage objects are `Send`, not `Sync`), and
//! every coding call releases the GIL while it runs, so several threads can code
//! several streams at once.

use crate::errors::{to_py, Error, MessageError, UpdateError};
use crate::registry::with_registry;
use crate::tensors::{update_from_arrays, update_into_list, update_to_list, InputTensor};
use gradcodec::{EmbedPipeline, ExpectedLayout, Limits, MessageStats, NonFinitePolicy};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(mutex: &Mutex<T>) -> PyResult<MutexGuard<'_, T>> {
    mutex.lock().map_err(|_| {
        Error::new_err("this stream failed inside a coding call; create a new one (or reset it)")
    })
}

/// Times the Rust encode alone of `tensors` (already converted, GIL released,
/// no Python objects touched), `repeats` times with one encoder: the baseline
/// that `examples/bench_overhead.py` compares the Python call with. Seconds.
#[pyfunction]
pub fn time_rust_encode(
    py: Python<'_>,
    pipeline: &crate::pipeline::PyPipeline,
    tensors: Vec<InputTensor<'_>>,
    repeats: usize,
) -> PyResult<Vec<f64>> {
    let update = update_from_arrays(&tensors);
    let pipeline = Arc::clone(&pipeline.inner);
    py.detach(|| {
        let mut encoder = pipeline.encoder();
        (0..repeats)
            .map(|_| {
                let start = std::time::Instant::now();
                let message = encoder.encode(&update).map_err(to_py)?;
                let seconds = start.elapsed().as_secs_f64();
                drop(message);
                Ok(seconds)
            })
            .collect()
    })
}

/// The encoder of one stream.
#[pyclass(name = "Encoder", module = "gradcodec", frozen)]
pub struct PyEncoder {
    inner: Mutex<gradcodec::Encoder>,
}

/// Sets a decoder's expected layout and limits (the layout first: explicit
/// `max_entries` then raises or lowers its entry caps).
pub fn configure_decoder(
    decoder: &mut gradcodec::Decoder,
    expect: Option<Vec<(String, Vec<u64>)>>,
    max_entries: Option<u64>,
) {
    if let Some(layout) = expect {
        decoder.set_expected_layout(ExpectedLayout::new(layout));
    }
    if let Some(entries) = max_entries {
        let raised = Limits::with_max_entries(entries);
        let limits = Limits {
            max_message_bytes: raised.max_message_bytes,
            max_tensor_entries: raised.max_tensor_entries,
            max_total_entries: raised.max_total_entries,
            max_total_symbols: raised.max_total_symbols,
            ..*decoder.limits()
        };
        decoder.set_limits(limits);
    }
}

impl PyEncoder {
    pub fn new(
        pipeline: &Arc<gradcodec::Pipeline>,
        embed: &str,
        non_finite: &str,
        max_entries: Option<u64>,
    ) -> PyResult<Self> {
        let mut encoder = pipeline.encoder();
        if let Some(entries) = max_entries {
            encoder.set_limits(Limits::with_max_entries(entries));
        }
        encoder.set_embed_pipeline(match embed {
            "first" => EmbedPipeline::FirstMessage,
            "always" => EmbedPipeline::Always,
            "never" => EmbedPipeline::Never,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "embed must be \"first\", \"always\" or \"never\", not {other:?}"
                )))
            }
        });
        encoder.set_non_finite(match non_finite {
            "error" => NonFinitePolicy::Error,
            "zero" => NonFinitePolicy::ReplaceWithZero,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "non_finite must be \"error\" or \"zero\", not {other:?}"
                )))
            }
        });
        Ok(Self {
            inner: Mutex::new(encoder),
        })
    }
}

fn check_names(tensors: &[InputTensor<'_>]) -> PyResult<()> {
    let mut seen = std::collections::HashSet::new();
    for (name, _) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(UpdateError::new_err(format!(
                "invalid update: tensor `{name}` appears twice"
            )));
        }
    }
    Ok(())
}

#[pymethods]
impl PyEncoder {
    /// Encodes one update (a list of `(name, float32 ndarray)` pairs, in
    /// message order) into one message.
    fn _encode<'py>(
        &self,
        py: Python<'py>,
        tensors: Vec<InputTensor<'py>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        check_names(&tensors)?;
        let update = update_from_arrays(&tensors);
        drop(tensors);
        let message = py.detach(|| -> PyResult<Vec<u8>> {
            let mut encoder = lock(&self.inner)?;
            encoder.encode(&update).map_err(to_py)
        })?;
        Ok(PyBytes::new(py, &message))
    }

    /// Tells a predictive stream what the receiver now holds (e.g. the model
    /// it sent back), as `Encoder::observe` in Rust.
    fn _observe(&self, py: Python<'_>, tensors: Vec<InputTensor<'_>>) -> PyResult<()> {
        check_names(&tensors)?;
        let update = update_from_arrays(&tensors);
        py.detach(|| lock(&self.inner)?.observe(&update).map_err(to_py))
    }

    /// What the receiver reconstructs from the last message: (name, array) pairs.
    fn _last_reconstruction<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let encoder = lock(&self.inner)?;
        update_to_list(py, encoder.try_last_reconstruction().map_err(to_py)?)
    }

    /// Sizes of the last message (a dict; see `gradcodec.Encoder.last_stats`).
    fn _last_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let encoder = lock(&self.inner)?;
        let entries = encoder.last_stats().tensors.iter().map(|t| t.entries).sum();
        stats_dict(py, encoder.last_stats(), entries)
    }

    /// The next message's round number.
    #[getter]
    fn round(&self) -> PyResult<u64> {
        Ok(lock(&self.inner)?.round())
    }

    /// Forgets all state (history, error memory); the next message is round 0.
    fn reset(&self) -> PyResult<()> {
        lock(&self.inner)?.reset();
        Ok(())
    }

    /// The stream state (round and every stage's state) as bytes.
    fn save_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| lock(&self.inner)?.save_state().map_err(to_py))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Restores a state written by `save_state`; on error nothing changes.
    fn load_state(&self, py: Python<'_>, state: &[u8]) -> PyResult<()> {
        let state = state.to_vec();
        py.detach(|| lock(&self.inner)?.load_state(&state).map_err(to_py))
    }

    /// The pipeline's name.
    #[getter]
    fn pipeline_name(&self) -> PyResult<String> {
        Ok(lock(&self.inner)?.pipeline().name().to_string())
    }
}

fn stats_dict<'py>(
    py: Python<'py>,
    stats: &MessageStats,
    entries: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("bytes", stats.bytes)?;
    dict.set_item("overhead_bytes", stats.overhead_bytes)?;
    dict.set_item("entries", entries)?;
    dict.set_item(
        "bits_per_entry",
        gradcodec::metrics::bits_per_entry(stats.bytes, entries),
    )?;
    let tensors = PyList::empty(py);
    for tensor in &stats.tensors {
        let item = PyDict::new(py);
        item.set_item("name", tensor.name.as_str())?;
        item.set_item("entries", tensor.entries)?;
        item.set_item("raw", tensor.raw)?;
        item.set_item("side_info_bytes", tensor.side_info_bytes)?;
        let streams = PyList::empty(py);
        let mut payload = 0u64;
        for (role, symbols, bytes) in &tensor.streams {
            payload += bytes;
            streams.append((role.as_str(), *symbols, *bytes))?;
        }
        item.set_item("payload_bytes", payload + tensor.side_info_bytes)?;
        item.set_item("streams", streams)?;
        tensors.append(item)?;
    }
    dict.set_item("tensors", tensors)?;
    Ok(dict)
}

/// The decoder of one stream.
#[pyclass(name = "Decoder", module = "gradcodec", frozen)]
pub struct PyDecoder {
    inner: Mutex<gradcodec::Decoder>,
}

impl PyDecoder {
    pub fn new(decoder: gradcodec::Decoder) -> Self {
        Self {
            inner: Mutex::new(decoder),
        }
    }
}

/// The bytes of a message: borrowed from a `bytes` object, which is immutable
/// (so the decode may read it with the GIL released, and a message is not
/// copied once more on its way in); copied in one piece from any other object
/// with a byte buffer (bytearray, memoryview, a uint8 array: they could change
/// while the GIL is released), or element by element from a sequence of ints.
fn message_bytes<'a>(message: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(bytes) = message.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(bytes.as_bytes()));
    }
    if let Ok(buffer) = PyBuffer::<u8>::get(message) {
        return buffer.to_vec(message.py()).map(Cow::Owned);
    }
    message.extract::<Vec<u8>>().map(Cow::Owned).map_err(|_| {
        MessageError::new_err(format!(
            "invalid message: expected bytes, got {}",
            message
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "an unknown type".into())
        ))
    })
}

#[pymethods]
impl PyDecoder {
    /// Decodes one message into (name, ndarray) pairs; on error the stream's
    /// state is unchanged.
    fn _decode<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let bytes = message_bytes(message)?;
        let update = py.detach(|| lock(&self.inner)?.decode(&bytes).map_err(to_py))?;
        update_into_list(py, update)
    }

    /// The round the next message must carry, or None before the first one.
    #[getter]
    fn next_round(&self) -> PyResult<Option<u64>> {
        Ok(lock(&self.inner)?.next_round())
    }

    /// Tells a predictive stream what it now holds, as `Decoder::observe`.
    fn _observe(&self, py: Python<'_>, tensors: Vec<InputTensor<'_>>) -> PyResult<()> {
        check_names(&tensors)?;
        let update = update_from_arrays(&tensors);
        py.detach(|| lock(&self.inner)?.observe(&update).map_err(to_py))
    }

    /// Forgets all state; the next message must be round 0.
    fn reset(&self) -> PyResult<()> {
        lock(&self.inner)?.reset();
        Ok(())
    }

    /// The stream state as bytes.
    fn save_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| lock(&self.inner)?.save_state().map_err(to_py))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Restores a state written by `save_state`; on error nothing changes.
    fn load_state(&self, py: Python<'_>, state: &[u8]) -> PyResult<()> {
        let state = state.to_vec();
        py.detach(|| lock(&self.inner)?.load_state(&state).map_err(to_py))
    }

    /// The pipeline's name.
    #[getter]
    fn pipeline_name(&self) -> PyResult<String> {
        Ok(lock(&self.inner)?.pipeline().name().to_string())
    }
}

/// A decoder for a self-describing message (its round-0 message embeds the
/// pipeline): the stream's decoder, ready to decode that message and the next.
#[pyfunction]
#[pyo3(signature = (message, expect = None, max_entries = None))]
pub fn decoder_for_message(
    py: Python<'_>,
    message: &Bound<'_, PyAny>,
    expect: Option<Vec<(String, Vec<u64>)>>,
    max_entries: Option<u64>,
) -> PyResult<PyDecoder> {
    let bytes = message_bytes(message)?;
    let limits = max_entries.map_or_else(Limits::default, Limits::with_max_entries);
    let mut decoder = py
        .detach(|| {
            with_registry(|registry| {
                gradcodec::decoder_for_message_with_limits(registry, &bytes, &limits)
            })
        })
        .map_err(to_py)?;
    configure_decoder(&mut decoder, expect, max_entries);
    Ok(PyDecoder::new(decoder))
}

/// What `gradcodec inspect --json` says of a message, as JSON text.
#[pyfunction]
pub fn inspect(py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<String> {
    let bytes = message_bytes(message)?;
    let report = py
        .detach(|| gradcodec::report::describe(&bytes, None))
        .map_err(to_py)?;
    serde_json::to_string(&report).map_err(|err| Error::new_err(err.to_string()))
}
