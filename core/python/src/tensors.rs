//! Conversion between Python arrays and gradcodec updates. The Python layer
//! hands over `(name, float32 ndarray)` pairs in the caller's order (dtype and
//! device checks happen there, where the tensor's type is known); decoded
//! tensors go back as numpy arrays that own the decoded buffer (no copy).

use gradcodec::{NamedTensor, Update};
use ndarray::{ArrayD, ArrayViewD};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;
use rayon::prelude::*;

/// One tensor as the Python layer passes it.
pub type InputTensor<'py> = (String, PyReadonlyArrayDyn<'py, f32>);

/// Tensors at least this long are copied by several threads.
const PARALLEL_COPY_ENTRIES: usize = 1 << 16;

/// Copies the arrays into an update (any strides; one copy per tensor, in
/// standard layout, which the engine codes). Contiguous tensors are copied in
/// parallel chunks: the copy is most of the Python call's overhead over the
/// Rust encode (examples/bench_overhead.py).
pub fn update_from_arrays(tensors: &[InputTensor<'_>]) -> Update {
    let views: Vec<(&str, ArrayViewD<'_, f32>)> = tensors
        .iter()
        .map(|(name, array)| (name.as_str(), array.as_array()))
        .collect();
    let tensors = views
        .par_iter()
        .map(|(name, view)| NamedTensor::new(*name, copy_standard(view)))
        .collect();
    Update::new(tensors)
}

fn copy_standard(view: &ArrayViewD<'_, f32>) -> ArrayD<f32> {
    match view.as_slice() {
        Some(values) if values.len() >= PARALLEL_COPY_ENTRIES => {
            let mut out = vec![0.0f32; values.len()];
            out.par_chunks_mut(PARALLEL_COPY_ENTRIES)
                .zip(values.par_chunks(PARALLEL_COPY_ENTRIES))
                .for_each(|(to, from)| to.copy_from_slice(from));
            // Same shape and length by construction; the plain copy is the
            // fallback rather than a panic across the Python boundary.
            ArrayD::from_shape_vec(view.raw_dim(), out).unwrap_or_else(|_| view.to_owned())
        }
        Some(_) => view.to_owned(),
        None => view.as_standard_layout().into_owned(),
    }
}

/// The update as a list of `(name, ndarray)` pairs; the arrays take over the
/// decoded buffers.
pub fn update_into_list(py: Python<'_>, update: Update) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    for tensor in update.tensors {
        let array: Bound<'_, PyArrayDyn<f32>> = tensor.data.into_pyarray(py);
        list.append((tensor.name, array))?;
    }
    Ok(list)
}

/// The update as a list of `(name, ndarray)` pairs, copied (the caller keeps it).
pub fn update_to_list<'py>(py: Python<'py>, update: &Update) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for tensor in &update.tensors {
        let array = PyArrayDyn::from_array(py, &tensor.data);
        debug_assert_eq!(array.len(), tensor.data.len());
        list.append((tensor.name.as_str(), array))?;
    }
    Ok(list)
}
