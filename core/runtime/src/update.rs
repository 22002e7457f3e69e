//! Updates (ordered lists of named f32 tensors) and their files: `.npy` (one
//! tensor) and `.safetensors` (several named tensors = one update).

use crate::error::{Error, Result};
use ndarray::{ArrayD, IxDyn};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::path::Path;

/// The largest tensor file read (bytes).
pub const MAX_TENSOR_FILE_BYTES: u64 = 8 << 30;

/// One named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Name inside the update (e.g. `conv1.weight`).
    pub name: String,
    /// Values.
    pub data: ArrayD<f32>,
}

impl NamedTensor {
    /// Builds a named tensor.
    pub fn new(name: impl Into<String>, data: ArrayD<f32>) -> Self {
        Self {
            name: name.into(),
            data,
        }
    }

    /// Builds a tensor from a shape and values in row-major order.
    pub fn from_vec(name: impl Into<String>, shape: &[usize], values: Vec<f32>) -> Result<Self> {
        let name = name.into();
        let data = ArrayD::from_shape_vec(IxDyn(shape), values)
            .map_err(|err| Error::Update(format!("tensor `{name}`: {err}")))?;
        Ok(Self { name, data })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no entries.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// One update: tensors in a fixed order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    /// The tensors.
    pub tensors: Vec<NamedTensor>,
}

impl Update {
    /// Builds an update.
    pub fn new(tensors: Vec<NamedTensor>) -> Self {
        Self { tensors }
    }

    /// Total number of entries.
    pub fn entries(&self) -> usize {
        self.tensors.iter().map(NamedTensor::len).sum()
    }

    /// Reads `.npy` (one tensor named after the file stem) or `.safetensors`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let size = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if size > MAX_TENSOR_FILE_BYTES {
            return Err(file_error(path, "file larger than 8 GiB"));
        }
        match extension(path).as_str() {
            "npy" => read_npy(path),
            "safetensors" => read_safetensors(path),
            other => Err(file_error(
                path,
                &format!("unsupported extension `{other}` (use .npy or .safetensors)"),
            )),
        }
    }

    /// Writes `.npy` (exactly one tensor) or `.safetensors`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match extension(path).as_str() {
            "npy" => {
                let [tensor] = self.tensors.as_slice() else {
                    return Err(file_error(
                        path,
                        &format!(
                            "a .npy file holds one tensor, the update has {}; use .safetensors",
                            self.tensors.len()
                        ),
                    ));
                };
                let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
                ndarray_npy::WriteNpyExt::write_npy(
                    &tensor.data.as_standard_layout(),
                    std::io::BufWriter::new(file),
                )
                .map_err(|err| file_error(path, &err.to_string()))
            }
            "safetensors" => write_safetensors(self, path),
            other => Err(file_error(
                path,
                &format!("unsupported extension `{other}` (use .npy or .safetensors)"),
            )),
        }
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn file_error(path: &Path, message: &str) -> Error {
    Error::TensorFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read_npy(path: &Path) -> Result<Update> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let data: ArrayD<f32> = ndarray_npy::ReadNpyExt::read_npy(std::io::BufReader::new(file))
        .map_err(|err| file_error(path, &format!("not an f32 .npy array: {err}")))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("tensor")
        .to_string();
    Ok(Update::new(vec![NamedTensor::new(name, data)]))
}

fn read_safetensors(path: &Path) -> Result<Update> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|err| file_error(path, &format!("not a safetensors file: {err}")))?;
    // Keep the file's order (offsets), which is the order tensors were written.
    let mut views: Vec<(String, TensorView<'_>)> = tensors.tensors();
    views.sort_by_key(|(_, view)| view.data().as_ptr() as usize);
    let mut out = Vec::with_capacity(views.len());
    for (name, view) in views {
        if view.dtype() != Dtype::F32 {
            return Err(file_error(
                path,
                &format!("tensor `{name}` is {:?}; gradcodec reads f32", view.dtype()),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let tensor = NamedTensor::from_vec(name, view.shape(), values)
            .map_err(|err| file_error(path, &err.to_string()))?;
        out.push(tensor);
    }
    Ok(Update::new(out))
}

fn write_safetensors(update: &Update, path: &Path) -> Result<()> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = update
        .tensors
        .iter()
        .map(|t| {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (t.name.clone(), t.data.shape().to_vec(), bytes)
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|err| file_error(path, &err.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path)
        .map_err(|err| file_error(path, &err.to_string()))
}
