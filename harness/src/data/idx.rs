//! The IDX file format of MNIST and Fashion-MNIST, plain or gzip-compressed.
//!
//! An IDX file is a big-endian header — two zero bytes, a type code (0x08 for
//! unsigned bytes, the only type these data sets use), the number of dimensions —
//! then one u32 per dimension, then the data in row-major order. Images are
//! `idx3` (count × rows × columns), labels `idx1` (count).

use std::io::Read;
use std::path::Path;

use super::DataError;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The entries, row-major.
    pub data: Vec<u8>,
}

/// Type code of unsigned bytes in an IDX header.
const IDX_U8: u8 = 0x08;

/// Reads an IDX file, decompressing it first when it starts with the gzip magic.
pub fn read_idx_file(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = super::read_maybe_gzip(path)?;
    parse_idx(&bytes).map_err(|message| DataError::Malformed {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses IDX bytes (already decompressed).
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "truncated IDX header: {} bytes, need at least 4",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "not an IDX file: magic starts with {:#04x} {:#04x}, expected 0x00 0x00",
            bytes[0], bytes[1]
        ));
    }
    if bytes[2] != IDX_U8 {
        return Err(format!(
            "unsupported IDX element type {:#04x} (only unsigned bytes, 0x08, are supported)",
            bytes[2]
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err("IDX header declares 0 dimensions".into());
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!(
            "truncated IDX header: {} bytes, {ndims} dimensions need {header}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("IDX dimensions {dims:?} overflow"))?;
    let body = &bytes[header..];
    if body.len() < expected {
        return Err(format!(
            "truncated IDX data: dimensions {dims:?} need {expected} bytes, found {}",
            body.len()
        ));
    }
    if body.len() > expected {
        return Err(format!(
            "IDX file has {} trailing bytes after dimensions {dims:?}",
            body.len() - expected
        ));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Serializes an array as IDX bytes (unsigned bytes); used by tests and tools.
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut out = vec![0, 0, IDX_U8, array.dims.len() as u8];
    for &d in &array.dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}

/// Reads all of a reader into a vector (helper for gzip streams).
pub(crate) fn read_all(mut reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_headers() {
        let a = IdxArray {
            dims: vec![2, 3],
            data: vec![1, 2, 3, 4, 5, 6],
        };
        let bytes = encode_idx(&a);
        assert_eq!(parse_idx(&bytes).unwrap(), a);
        assert!(parse_idx(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("truncated IDX data"));
        assert!(parse_idx(&bytes[..6])
            .unwrap_err()
            .contains("truncated IDX header"));
        let mut wrong_type = bytes.clone();
        wrong_type[2] = 0x0d;
        assert!(parse_idx(&wrong_type).unwrap_err().contains("element type"));
        let mut extra = bytes;
        extra.push(0);
        assert!(parse_idx(&extra).unwrap_err().contains("trailing"));
    }
}
