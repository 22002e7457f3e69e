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
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("tensor")
        .to_string();
    Update::parse_npy(&bytes, name).map_err(|message| file_error(path, &message))
}

/// The shape an `.npy` header states, and where its data starts; checked
/// against the bytes present before the array is read (a header may claim any
/// size, and the reader would allocate it).
fn npy_shape(bytes: &[u8]) -> std::result::Result<(Vec<u64>, usize), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err("not an .npy file (no \\x93NUMPY magic)".to_string());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        version => return Err(format!("unsupported .npy version {version}")),
    };
    let data_start = start
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| "truncated .npy header".to_string())?;
    let header = std::str::from_utf8(&bytes[start..data_start])
        .map_err(|_| "the .npy header is not text".to_string())?;
    let shape = npy_header_shape(header)?;
    Ok((shape, data_start))
}

/// The shape of an `.npy` header dictionary, read strictly: exactly the three
/// keys of the format (`descr`, `fortran_order`, `shape`), each once, with a
/// string, a boolean and a tuple of integers. The array reader parses the
/// header again; a looser read here (a second `shape` key, `'shape':` inside a
/// string) would let the two disagree on the size.
fn npy_header_shape(header: &str) -> std::result::Result<Vec<u64>, String> {
    let bad = |why: &str| format!("unsupported .npy header ({why})");
    let mut rest = header.trim_end_matches(['\n', ' ']).trim_start();
    rest = rest
        .strip_prefix('{')
        .ok_or_else(|| bad("not a dictionary"))?;
    let (mut descr, mut order, mut shape) = (false, false, None::<Vec<u64>>);
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            if !after.trim().is_empty() {
                return Err(bad("text after the dictionary"));
            }
            break;
        }
        let (key, after) = quoted(rest).ok_or_else(|| bad("a key is not a quoted string"))?;
        rest = after
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| bad("a key without a value"))?
            .trim_start();
        let seen = match key {
            "descr" => {
                let (_, after) = quoted(rest).ok_or_else(|| bad("descr is not a string"))?;
                rest = after;
                &mut descr
            }
            "fortran_order" => {
                rest = rest
                    .strip_prefix("True")
                    .or_else(|| rest.strip_prefix("False"))
                    .ok_or_else(|| bad("fortran_order is not True or False"))?;
                &mut order
            }
            "shape" => {
                if shape.is_some() {
                    return Err(bad("`shape` appears twice"));
                }
                let inner = rest
                    .strip_prefix('(')
                    .ok_or_else(|| bad("shape is not a tuple"))?;
                let close = inner.find(')').ok_or_else(|| bad("shape is not closed"))?;
                let dims = inner[..close]
                    .split(',')
                    .map(str::trim)
                    .filter(|dim| !dim.is_empty())
                    .map(|dim| {
                        dim.parse::<u64>()
                            .map_err(|_| bad(&format!("dimension `{dim}` is not an integer")))
                    })
                    .collect::<std::result::Result<Vec<u64>, String>>()?;
                shape = Some(dims);
                rest = &inner[close + 1..];
                continue_after_value(&mut rest);
                continue;
            }
            other => return Err(bad(&format!("unknown key `{other}`"))),
        };
        if std::mem::replace(seen, true) {
            return Err(bad(&format!("`{key}` appears twice")));
        }
        continue_after_value(&mut rest);
    }
    if !descr || !order {
        return Err(bad("descr or fortran_order missing"));
    }
    shape.ok_or_else(|| bad("no shape"))
}

/// A quoted string at the start of `text` (single or double quotes, no
/// escapes): its contents and the rest.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &text[1..];
    let end = body.find(quote)?;
    Some((&body[..end], &body[end + 1..]))
}

/// Skips the comma after a dictionary value, if any.
fn continue_after_value(rest: &mut &str) {
    let trimmed = rest.trim_start();
    *rest = trimmed.strip_prefix(',').unwrap_or(trimmed);
}

impl Update {
    /// Parses an `.npy` file's bytes (one f32 tensor, named `name`). The
    /// header's shape must match the data present before anything is allocated.
    pub fn parse_npy(bytes: &[u8], name: String) -> std::result::Result<Self, String> {
        let (shape, data_start) = npy_shape(bytes)?;
        let entries = checked_entries(&shape)
            .ok_or_else(|| format!("the .npy header's shape {shape:?} overflows"))?;
        let present = (bytes.len() - data_start) as u64;
        if entries.checked_mul(4) != Some(present) {
            return Err(format!(
                "the .npy header claims shape {shape:?} ({entries} entries, {} bytes of f32), \
                 the file holds {present} bytes of data",
                entries.saturating_mul(4)
            ));
        }
        check_span(&shape)?;
        let data: ArrayD<f32> = ndarray_npy::ReadNpyExt::read_npy(bytes)
            .map_err(|err| format!("not an f32 .npy array: {err}"))?;
        Ok(Update::new(vec![NamedTensor::new(name, data)]))
    }

    /// Parses a `.safetensors` file's bytes (every tensor f32), in the file's
    /// data order.
    pub fn parse_safetensors(bytes: &[u8]) -> std::result::Result<Self, String> {
        safetensors_update(bytes)
    }
}

/// Refuses a shape whose non-zero dimensions span more entries than a tensor
/// file can hold: with a zero dimension its product is 0 whatever the others
/// are, but the array library still multiplies them (and panics on overflow).
fn check_span(shape: &[u64]) -> std::result::Result<(), String> {
    let spanned = crate::container::non_zero_product(shape);
    if spanned > MAX_TENSOR_FILE_BYTES / 4 {
        return Err(format!(
            "shape {shape:?} spans more entries than a tensor file can hold"
        ));
    }
    Ok(())
}

/// The product of a shape, `None` when it overflows u64 (a zero dimension
/// makes it 0 whatever the others are).
pub fn checked_entries(shape: &[u64]) -> Option<u64> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape
        .iter()
        .try_fold(1u64, |acc, &dim| acc.checked_mul(dim))
}

fn read_safetensors(path: &Path) -> Result<Update> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    safetensors_update(&bytes).map_err(|message| file_error(path, &message))
}

fn safetensors_update(bytes: &[u8]) -> std::result::Result<Update, String> {
    let tensors =
        SafeTensors::deserialize(bytes).map_err(|err| format!("not a safetensors file: {err}"))?;
    // Keep the file's order (offsets), which is the order tensors were written.
    let mut views: Vec<(String, TensorView<'_>)> = tensors.tensors();
    views.sort_by_key(|(_, view)| view.data().as_ptr() as usize);
    let mut out = Vec::with_capacity(views.len());
    for (name, view) in views {
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        check_span(&shape).map_err(|message| format!("tensor `{name}`: {message}"))?;
        if view.dtype() != Dtype::F32 {
            return Err(format!(
                "tensor `{name}` is {:?}; gradcodec reads f32",
                view.dtype()
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let tensor =
            NamedTensor::from_vec(name, view.shape(), values).map_err(|err| err.to_string())?;
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
