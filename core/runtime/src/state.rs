//! Saved stream state (checkpoints): round and every stage's state per tensor.
//!
//! Layout: `GCST` | version u8 | fingerprint u64le | round varint | tensor count
//! varint | per tensor: name, ndim, dims, then predictor, error-correction and
//! quantizer states as (varint length, bytes). Loading builds new stage
//! instances and swaps them in only when everything restored.

use crate::container::put_varint;
use crate::engine::{into_codec_map, restore_codec, StageStates};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use abi_stable::std_types::{RResult, RVec};

const MAGIC: &[u8; 4] = b"GCST";
const VERSION: u8 = 1;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn stage_state<F>(what: &str, name: &str, save: F) -> Result<RVec<u8>>
where
    F: FnOnce(&mut RVec<u8>) -> RResult<(), gradcodec_abi::StageError>,
{
    let mut out = RVec::new();
    match save(&mut out) {
        RResult::ROk(()) => Ok(out),
        RResult::RErr(err) => Err(Error::stage(
            format!("tensor `{name}`: save {what} state"),
            err,
        )),
    }
}

pub(crate) fn save(
    pipeline: &Pipeline,
    round: u64,
    codecs: &[(&str, &[u64], StageStates<'_>)],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&pipeline.fingerprint().to_le_bytes());
    put_varint(&mut out, round);
    put_varint(&mut out, codecs.len() as u64);
    for (name, shape, stages) in codecs {
        put_bytes(&mut out, name.as_bytes());
        put_varint(&mut out, shape.len() as u64);
        for dim in shape.iter() {
            put_varint(&mut out, *dim);
        }
        let predictor = match stages.predictor {
            Some(p) => stage_state("predictor", name, |o| p.save_state(o))?,
            None => RVec::new(),
        };
        let correction = match stages.correction {
            Some(c) => stage_state("error-correction", name, |o| c.save_state(o))?,
            None => RVec::new(),
        };
        let quantizer = stage_state("quantizer", name, |o| stages.quantizer.save_state(o))?;
        put_bytes(&mut out, &predictor);
        put_bytes(&mut out, &correction);
        put_bytes(&mut out, &quantizer);
    }
    Ok(out)
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
}

fn truncated() -> Error {
    Error::Message("saved state is truncated".into())
}

type Restored = (
    u64,
    std::collections::HashMap<String, crate::engine::TensorCodecForLoad>,
);

pub(crate) fn load(pipeline: &Pipeline, bytes: &[u8]) -> Result<Restored> {
    if bytes.len() < 13 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(Error::Message(
            "not a gradcodec saved state (bad magic or version)".into(),
        ));
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[5..13]);
    if u64::from_le_bytes(fingerprint) != pipeline.fingerprint() {
        return Err(Error::Message(format!(
            "saved state belongs to another pipeline than `{}`",
            pipeline.name()
        )));
    }
    let mut cursor = Cursor { bytes, at: 13 };
    let round = cursor.varint()?;
    let count = cursor.varint()?;
    let mut handles = Vec::new();
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
        let states = [cursor.bytes()?, cursor.bytes()?, cursor.bytes()?];
        handles.push((
            name.clone(),
            restore_codec(pipeline, &name, &shape, states)?,
        ));
    }
    if cursor.at != bytes.len() {
        return Err(Error::Message("saved state has trailing bytes".into()));
    }
    Ok((round, into_codec_map(handles)))
}
