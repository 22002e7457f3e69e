//! Side information: the few numbers a quantizer sends beside its streams
//! (scales, norms, counts, fitted parameters), little-endian, front to back.
//!
//! [`SideInfoWriter`] appends, [`SideInfoReader`] reads with a length check on
//! every field, validates values as it goes (finite, non-negative, in a range)
//! and [`SideInfoReader::finish`] rejects trailing bytes, so a decoder never
//! acts on side info it did not fully understand.
//!
//! ```
//! use gradcodec_sdk::side_info::{SideInfoReader, SideInfoWriter};
//! use gradcodec_sdk::RVec;
//!
//! let mut side_info = RVec::new();
//! SideInfoWriter::new(&mut side_info).f32(0.25).u32(17);
//!
//! let mut reader = SideInfoReader::new(&side_info);
//! assert_eq!(reader.non_negative_f32("scale").unwrap(), 0.25);
//! assert_eq!(reader.u32("count").unwrap(), 17);
//! reader.finish().unwrap();
//!
//! // Truncated or trailing side info is an error, never a panic.
//! assert!(SideInfoReader::new(&side_info[..3]).f32("scale").is_err());
//! let mut reader = SideInfoReader::new(&side_info);
//! reader.f32("scale").unwrap();
//! assert!(reader.finish().is_err());
//! ```

use crate::error::{ensure_data, SdkResult};
use abi_stable::std_types::RVec;
use std::ops::RangeInclusive;

/// Appends little-endian fields to a side-info buffer (calls chain).
pub struct SideInfoWriter<'a> {
    out: &'a mut RVec<u8>,
}

impl<'a> SideInfoWriter<'a> {
    /// A writer appending to `out` (which the quantizer cleared).
    pub fn new(out: &'a mut RVec<u8>) -> Self {
        Self { out }
    }

    /// Appends an f32.
    pub fn f32(&mut self, value: f32) -> &mut Self {
        self.out.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends every f32 of `values`.
    pub fn f32s(&mut self, values: &[f32]) -> &mut Self {
        for value in values {
            self.f32(*value);
        }
        self
    }

    /// Appends a u32.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.out.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a u64.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.out.extend_from_slice(&value.to_le_bytes());
        self
    }
}

/// Reads side info front to back; every read checks the length, names the
/// field in its error and validates the value.
pub struct SideInfoReader<'a> {
    bytes: &'a [u8],
}

impl<'a> SideInfoReader<'a> {
    /// Starts reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Fails unless exactly `len` bytes are left (for fixed-size side info, so
    /// the error gives the sizes rather than the first missing field).
    pub fn expect_len(&self, stage: &str, len: usize) -> SdkResult<()> {
        ensure_data(self.bytes.len() == len, || {
            format!(
                "{stage} side info must be {len} bytes, got {}",
                self.bytes.len()
            )
        })
    }

    /// Side info that is one finite f32 >= 0 (a scale) and nothing else.
    pub fn single_non_negative_f32(bytes: &'a [u8], what: &str) -> SdkResult<f32> {
        let mut reader = Self::new(bytes);
        let value = reader.non_negative_f32(what)?;
        reader.finish()?;
        Ok(value)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take<const N: usize>(&mut self, what: &str) -> SdkResult<[u8; N]> {
        ensure_data(self.bytes.len() >= N, || {
            format!("side info too short for {what}")
        })?;
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        let mut word = [0u8; N];
        word.copy_from_slice(head);
        Ok(word)
    }

    /// A u32.
    pub fn u32(&mut self, what: &str) -> SdkResult<u32> {
        Ok(u32::from_le_bytes(self.take(what)?))
    }

    /// A u64.
    pub fn u64(&mut self, what: &str) -> SdkResult<u64> {
        Ok(u64::from_le_bytes(self.take(what)?))
    }

    /// A u32 no larger than `max` (a count the tensor bounds).
    pub fn u32_at_most(&mut self, what: &str, max: u64) -> SdkResult<u32> {
        let value = self.u32(what)?;
        ensure_data(u64::from(value) <= max, || {
            format!("{what} {value} in side info exceeds {max}")
        })?;
        Ok(value)
    }

    /// An f32, whatever its value (also NaN or infinite).
    pub fn raw_f32(&mut self, what: &str) -> SdkResult<f32> {
        Ok(f32::from_le_bytes(self.take(what)?))
    }

    /// A finite f32.
    pub fn f32(&mut self, what: &str) -> SdkResult<f32> {
        let value = self.raw_f32(what)?;
        ensure_data(value.is_finite(), || {
            format!("invalid {what} {value} in side info")
        })?;
        Ok(value)
    }

    /// A finite f32 >= 0.
    pub fn non_negative_f32(&mut self, what: &str) -> SdkResult<f32> {
        let value = self.raw_f32(what)?;
        ensure_data(value.is_finite() && value >= 0.0, || {
            format!("invalid {what} {value} in side info")
        })?;
        Ok(value)
    }

    /// An f32 inside `range` (so never NaN).
    pub fn f32_in(&mut self, what: &str, range: RangeInclusive<f32>) -> SdkResult<f32> {
        let value = self.raw_f32(what)?;
        ensure_data(range.contains(&value), || {
            format!(
                "invalid {what} {value} in side info (expected {}..={})",
                range.start(),
                range.end()
            )
        })?;
        Ok(value)
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> SdkResult<()> {
        ensure_data(self.bytes.is_empty(), || {
            format!("{} unexpected trailing side-info bytes", self.bytes.len())
        })
    }
}
