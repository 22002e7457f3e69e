//! `gradcodec._native`: the Python extension. The runtime and every shipped
//! plugin are linked into this one library (the plugins as built-ins, see
//! [`registry`]); third-party plugin files load at run time. The Python package
//! `gradcodec` (python/gradcodec) wraps these classes with the public API.

mod codec;
mod errors;
mod pipeline;
mod registry;
mod tensors;

use pyo3::prelude::*;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(module)?;
    module.add_class::<pipeline::PyPipeline>()?;
    module.add_class::<codec::PyEncoder>()?;
    module.add_class::<codec::PyDecoder>()?;
    module.add_function(wrap_pyfunction!(pipeline::shipped_pipelines, module)?)?;
    module.add_function(wrap_pyfunction!(pipeline::shipped_pipeline_yaml, module)?)?;
    module.add_function(wrap_pyfunction!(registry::stages, module)?)?;
    module.add_function(wrap_pyfunction!(registry::load_plugins, module)?)?;
    module.add_function(wrap_pyfunction!(registry::plugin_failures, module)?)?;
    module.add_function(wrap_pyfunction!(codec::decoder_for_message, module)?)?;
    module.add_function(wrap_pyfunction!(codec::inspect, module)?)?;
    module.add_function(wrap_pyfunction!(codec::time_rust_encode, module)?)?;
    module.add("ABI_VERSION", gradcodec::abi::ABI_VERSION)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
