//! Conversion between Python arrays and gradcodec updates. The Python layer
//! hands over `(name, float32 ndarray)` pairs in the caller's order (dtype and
//! device checks happen there, where the tensor's type is known); decoded
//! tensors go back as numpy arrays that own the decoded buffer (no copy).

use gradcodec::{NamedTensor, Update};
use ndarray::ArrayD;
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// One tensor as the Python layer passes it.
pub type InputTensor<'py> = (String, PyReadonlyArrayDyn<'py, f32>);

/// Copies the arrays into an update (any strides; one copy per tensor, in
/// standard layout, which the engine codes).
pub fn update_from_arrays(tensors: &[InputTensor<'_>]) -> Update {
    let tensors = tensors
        .iter()
        .map(|(name, array)| {
            let view = array.as_array();
            let data: ArrayD<f32> = if view.is_standard_layout() {
                view.to_owned()
            } else {
                view.as_standard_layout().into_owned()
            };
            NamedTensor::new(name.clone(), data)
        })
        .collect();
    Update::new(tensors)
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
