//! Saved stream state (checkpoints): round and every stage's state per tensor.
//!
//! Layout: `GCST` | version u8 | fingerprint u64le | round varint | tensor count
//! varint | per tensor: name, ndim, dims, [version 2: block count varint], then
//! per block the predictor, error-correction and quantizer states as (varint
//! length, bytes). Version 1 (one block per tensor) is written whenever no
//! tensor is cut into blocks, so such checkpoints read in older builds too.
//! This module only (de)serializes; the engine builds and restores the stages.

use crate::container::put_varint;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GCST";
const VERSION_WHOLE: u8 = 1;
const VERSION_BLOCKS: u8 = 2;

/// One tensor's saved stage states, per block.
pub(crate) struct SavedTensor {
    pub name: String,
    pub shape: Vec<u64>,
    /// Per block: predictor, error-correction and quantizer state.
    pub blocks: Vec<[Vec<u8>; 3]>,
}

/// A whole saved stream.
pub(crate) struct SavedState {
    pub fingerprint: u64,
    pub round: u64,
    pub tensors: Vec<SavedTensor>,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Serializes a stream state.
pub(crate) fn save(state: &SavedState) -> Vec<u8> {
    let blocked = state.tensors.iter().any(|t| t.blocks.len() != 1);
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(if blocked {
        VERSION_BLOCKS
    } else {
        VERSION_WHOLE
    });
    out.extend_from_slice(&state.fingerprint.to_le_bytes());
    put_varint(&mut out, state.round);
    put_varint(&mut out, state.tensors.len() as u64);
    for tensor in &state.tensors {
        put_bytes(&mut out, tensor.name.as_bytes());
        put_varint(&mut out, tensor.shape.len() as u64);
        for dim in &tensor.shape {
            put_varint(&mut out, *dim);
        }
        if blocked {
            put_varint(&mut out, tensor.blocks.len() as u64);
        }
        for states in &tensor.blocks {
            for state in states {
                put_bytes(&mut out, state);
            }
        }
    }
    out
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or_else(truncated)?;
            self.at += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Message("saved state: varint too long".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        if len > (self.bytes.len() - self.at) as u64 {
            return Err(truncated());
        }
        let slice = &self.bytes[self.at..self.at + len as usize];
        self.at += len as usize;
        Ok(slice)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

fn truncated() -> Error {
    Error::Message("saved state is truncated".into())
}

/// Parses a saved state. Every count is checked against the bytes present
/// before anything is allocated for it.
pub(crate) fn load(bytes: &[u8]) -> Result<SavedState> {
    if bytes.len() < 13
        || &bytes[..4] != MAGIC
        || !matches!(bytes[4], VERSION_WHOLE | VERSION_BLOCKS)
    {
        return Err(Error::Message(
            "not a gradcodec saved state (bad magic or version)".into(),
        ));
    }
    let blocked = bytes[4] == VERSION_BLOCKS;
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[5..13]);
    let mut cursor = Cursor { bytes, at: 13 };
    let round = cursor.varint()?;
    let count = cursor.varint()?;
    let mut tensors = Vec::new();
    for _ in 0..count {
        let name = std::str::from_utf8(cursor.bytes()?)
            .map_err(|_| Error::Message("saved state: tensor name is not UTF-8".into()))?
            .to_string();
        let ndim = cursor.varint()?;
        if ndim > 16 {
            return Err(Error::Message("saved state: too many dimensions".into()));
        }
        let mut shape = Vec::new();
        for _ in 0..ndim {
            shape.push(cursor.varint()?);
        }
        let block_count = if blocked { cursor.varint()? } else { 1 };
        // Each block takes at least three length bytes.
        if block_count == 0 || block_count > (cursor.remaining() / 3) as u64 {
            return Err(Error::Message(format!(
                "saved state: tensor `{name}` claims {block_count} blocks"
            )));
        }
        let mut blocks = Vec::with_capacity(block_count as usize);
        for _ in 0..block_count {
            blocks.push([
                cursor.bytes()?.to_vec(),
                cursor.bytes()?.to_vec(),
                cursor.bytes()?.to_vec(),
            ]);
        }
        tensors.push(SavedTensor {
            name,
            shape,
            blocks,
        });
    }
    if cursor.at != bytes.len() {
        return Err(Error::Message("saved state has trailing bytes".into()));
    }
    Ok(SavedState {
        fingerprint: u64::from_le_bytes(fingerprint),
        round,
        tensors,
    })
}
