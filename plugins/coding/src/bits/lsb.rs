//! Bit-level writing and reading, least significant bit first, with the codes
//! built on it: unary, Exp-Golomb (on the shared Elias gamma of
//! [`super::BitSink`]) and their lengths.
//!
//! Every read checks the input length, and [`BitReader::finish`] checks that only
//! zero padding (less than a byte) is left, so truncated or trailing data is an
//! error.

use super::{BitSink, BitSource};
use gradcodec_sdk::prelude::*;

/// Appends bits to a byte vector.
#[derive(Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    buffer: u64,
    filled: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the low `count` bits of `value` (count <= 32).
    pub fn write(&mut self, value: u64, count: u32) {
        debug_assert!(count <= 32);
        if count == 0 {
            return;
        }
        let masked = value & ((1u64 << count) - 1);
        self.buffer |= masked << self.filled;
        self.filled += count;
        while self.filled >= 8 {
            self.bytes.push(self.buffer as u8);
            self.buffer >>= 8;
            self.filled -= 8;
        }
    }

    /// Writes `value` (< 2^64) with any width up to 64 bits.
    pub fn write_wide(&mut self, value: u64, count: u32) {
        if count > 32 {
            self.write(value, 32);
            self.write(value >> 32, count - 32);
        } else {
            self.write(value, count);
        }
    }

    /// Writes one bit.
    pub fn bit(&mut self, bit: bool) {
        self.write(u64::from(bit), 1);
    }

    /// Exp-Golomb code of order `order` of `value >= 0`.
    pub fn exp_golomb(&mut self, value: u64, order: u32) {
        self.put_gamma((value >> order) + 1);
        self.write_wide(value, order);
    }

    /// Bits written so far.
    pub fn bit_len(&self) -> u64 {
        self.bytes.len() as u64 * 8 + u64::from(self.filled)
    }

    /// Flushes the last partial byte (zero padded) and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.bytes.push(self.buffer as u8);
        }
        self.bytes
    }
}

/// Length in bits of the Elias gamma code of `value >= 1`.
pub fn gamma_len(value: u64) -> u64 {
    2 * u64::from(63 - value.leading_zeros()) + 1
}

/// Length in bits of the Exp-Golomb code of order `order` of `value`.
pub fn exp_golomb_len(value: u64, order: u32) -> u64 {
    gamma_len((value >> order) + 1) + u64::from(order)
}

/// Reads bits written by [`BitWriter`].
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next bit to read.
    position: u64,
}

impl<'a> BitReader<'a> {
    /// Starts reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// Bits left.
    pub fn remaining(&self) -> u64 {
        self.bytes.len() as u64 * 8 - self.position
    }

    /// Reads `count <= 32` bits.
    pub fn read(&mut self, count: u32) -> SdkResult<u64> {
        debug_assert!(count <= 32);
        if u64::from(count) > self.remaining() {
            return Err(corrupt("bit stream truncated"));
        }
        let mut value = 0u64;
        let mut done = 0u32;
        while done < count {
            let byte = self.bytes[(self.position / 8) as usize];
            let offset = (self.position % 8) as u32;
            let take = (8 - offset).min(count - done);
            let bits = (u64::from(byte) >> offset) & ((1u64 << take) - 1);
            value |= bits << done;
            done += take;
            self.position += u64::from(take);
        }
        Ok(value)
    }

    /// Reads up to 64 bits.
    pub fn read_wide(&mut self, count: u32) -> SdkResult<u64> {
        if count > 32 {
            let low = self.read(32)?;
            Ok(low | (self.read(count - 32)? << 32))
        } else {
            self.read(count)
        }
    }

    /// Reads one bit.
    pub fn bit(&mut self) -> SdkResult<bool> {
        Ok(self.read(1)? == 1)
    }

    /// Counts one bits up to a zero (consumed) or up to `limit` ones (then no
    /// zero is read); returns the count.
    pub fn ones(&mut self, limit: u32) -> SdkResult<u32> {
        let mut count = 0;
        while count < limit {
            if !self.bit()? {
                return Ok(count);
            }
            count += 1;
        }
        Ok(count)
    }

    /// Reads an Exp-Golomb code of order `order` whose value fits `max_bits` bits.
    pub fn exp_golomb(&mut self, order: u32, max_bits: u32) -> SdkResult<u64> {
        let high = self.get_gamma(max_bits.saturating_sub(order))? - 1;
        if order > 0 && high >= 1u64 << (64 - order) {
            return Err(corrupt("Exp-Golomb code overflows"));
        }
        Ok((high << order) | self.read_wide(order)?)
    }

    /// Byte offset just after the last bit read (the reader's data ends on a byte
    /// boundary there).
    pub fn byte_position(&self) -> usize {
        self.position.div_ceil(8) as usize
    }

    /// Fails unless only zero padding of the last byte is left.
    pub fn finish(self) -> SdkResult<()> {
        let end = self.byte_position();
        if end != self.bytes.len() {
            return Err(corrupt(format!(
                "{} unexpected trailing bytes",
                self.bytes.len() - end
            )));
        }
        let offset = (self.position % 8) as u32;
        if offset != 0 && (self.bytes[end - 1] >> offset) != 0 {
            return Err(corrupt("nonzero padding bits"));
        }
        Ok(())
    }
}

impl BitSink for BitWriter {
    fn put_bits(&mut self, value: u64, count: u32) {
        if count == 64 {
            self.write(value, 32);
            self.write(value >> 32, 32);
        } else {
            self.write_wide(value, count);
        }
    }
}

impl BitSource for BitReader<'_> {
    fn get_bit(&mut self) -> SdkResult<bool> {
        self.bit()
    }

    fn get_bits(&mut self, count: u32) -> SdkResult<u64> {
        self.read_wide(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_have_the_stated_lengths() {
        let mut writer = BitWriter::new();
        let values = [1u64, 2, 3, 7, 8, 1000, 1 << 32, (1 << 33) - 1];
        for v in values {
            writer.put_gamma(v);
        }
        for v in values {
            writer.exp_golomb(v, 3);
        }
        writer.write(0b101, 3);
        let expected: u64 = values.iter().map(|v| gamma_len(*v)).sum::<u64>()
            + values.iter().map(|v| exp_golomb_len(*v, 3)).sum::<u64>()
            + 3;
        assert_eq!(writer.bit_len(), expected);
        let bytes = writer.finish();
        let mut reader = BitReader::new(&bytes);
        for v in values {
            assert_eq!(reader.get_gamma(40).unwrap(), v);
        }
        for v in values {
            assert_eq!(reader.exp_golomb(3, 40).unwrap(), v);
        }
        assert_eq!(reader.read(3).unwrap(), 0b101);
        reader.finish().unwrap();
        assert_eq!(gamma_len(1), 1);
        assert_eq!(gamma_len(4), 5);
    }

    #[test]
    fn truncation_padding_and_overlong_codes_are_errors() {
        let mut writer = BitWriter::new();
        writer.put_gamma(1000);
        let bytes = writer.finish();
        assert!(BitReader::new(&bytes[..1]).get_gamma(40).is_err());
        let mut reader = BitReader::new(&bytes);
        assert!(reader.get_gamma(5).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        let mut reader = BitReader::new(&padded);
        reader.get_gamma(40).unwrap();
        assert!(reader.finish().is_err());
        let mut dirty = bytes;
        *dirty.last_mut().unwrap() |= 0x80;
        let mut reader = BitReader::new(&dirty);
        reader.get_gamma(40).unwrap();
        assert!(reader.finish().is_err());
        assert!(BitReader::new(&[0, 0, 0, 0, 0, 0, 0, 0, 0])
            .get_gamma(64)
            .is_err());
    }
}
