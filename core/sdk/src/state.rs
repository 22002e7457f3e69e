//! Helpers to save and restore stage state (f32 vectors with a small header).
//!
//! Layout: 4-byte tag, u32 vector count, then per vector a u64 length and the
//! little-endian f32 values. Loading checks every length against the bytes
//! present before allocating.

use crate::error::{corrupt, SdkResult};

/// Writes `vectors` under `tag`.
pub fn write_vectors(tag: &[u8; 4], vectors: &[&[f32]], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(tag);
    out.extend_from_slice(&(vectors.len() as u32).to_le_bytes());
    for vector in vectors {
        out.extend_from_slice(&(vector.len() as u64).to_le_bytes());
        for value in vector.iter() {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// Reads vectors written by [`write_vectors`] with the same `tag`; each must have
/// length 0 or `expected_len`.
pub fn read_vectors(tag: &[u8; 4], bytes: &[u8], expected_len: usize) -> SdkResult<Vec<Vec<f32>>> {
    let bad = |why: &str| corrupt(format!("state: {why}"));
    if bytes.len() < 8 || &bytes[..4] != tag {
        return Err(bad("wrong tag or too short"));
    }
    let count = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let mut rest = &bytes[8..];
    if count > rest.len() / 8 {
        return Err(bad("vector count larger than the data"));
    }
    let mut vectors = Vec::with_capacity(count);
    for _ in 0..count {
        if rest.len() < 8 {
            return Err(bad("truncated length"));
        }
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&rest[..8]);
        let len = u64::from_le_bytes(len_bytes);
        rest = &rest[8..];
        if len != 0 && len != expected_len as u64 {
            return Err(bad("vector length differs from the tensor's"));
        }
        let len = len as usize;
        if rest.len() < len * 4 {
            return Err(bad("truncated values"));
        }
        let values = rest[..len * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        rest = &rest[len * 4..];
        vectors.push(values);
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(vectors)
}

/// Reads exactly `N` vectors written by [`write_vectors`] with `tag` (each of
/// length 0 or `expected_len`).
///
/// ```
/// use gradcodec_sdk::state::{read_exact, write_vectors};
///
/// let mut bytes = Vec::new();
/// write_vectors(b"EXA1", &[&[1.0, 2.0], &[]], &mut bytes);
/// let [memory, momentum] = read_exact::<2>(b"EXA1", &bytes, 2).unwrap();
/// assert_eq!((memory, momentum.len()), (vec![1.0, 2.0], 0));
/// assert!(read_exact::<1>(b"EXA1", &bytes, 2).is_err());
/// assert!(read_exact::<2>(b"OTHR", &bytes, 2).is_err());
/// ```
pub fn read_exact<const N: usize>(
    tag: &[u8; 4],
    bytes: &[u8],
    expected_len: usize,
) -> SdkResult<[Vec<f32>; N]> {
    let vectors = read_vectors(tag, bytes, expected_len)?;
    let count = vectors.len();
    vectors
        .try_into()
        .map_err(|_| corrupt(format!("state: expected {N} vectors, got {count}")))
}

/// Reads the one vector written by `write_vectors(tag, &[&v], ..)`.
pub fn read_one(tag: &[u8; 4], bytes: &[u8], expected_len: usize) -> SdkResult<Vec<f32>> {
    let [vector] = read_exact::<1>(tag, bytes, expected_len)?;
    Ok(vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_and_reject_garbage() {
        let mut bytes = Vec::new();
        write_vectors(b"TEST", &[&[1.0, 2.0], &[]], &mut bytes);
        let back = read_vectors(b"TEST", &bytes, 2).unwrap();
        assert_eq!(back, vec![vec![1.0, 2.0], vec![]]);
        assert!(read_vectors(b"XXXX", &bytes, 2).is_err());
        assert!(read_vectors(b"TEST", &bytes[..bytes.len() - 1], 2).is_err());
        assert!(read_vectors(b"TEST", &bytes, 3).is_err());
    }
}
