//! Bit I/O for the entropy coders, and the universal codes they share.
//!
//! Two bit orders, because the formats fixed them: [`lsb`] (least significant
//! bit first: rANS tables, Elias gamma, Golomb-Rice, ANS) and [`msb`] (most
//! significant first, with the table-driven fast paths of the Huffman coder).
//! Both implement [`BitSink`] / [`BitSource`], and the Elias-gamma code is
//! written once here on top of them: ⌊log₂ v⌋ zero bits, a one, then the
//! ⌊log₂ v⌋ bits below the leading one as one field in the writer's order.

pub mod lsb;
pub mod msb;

pub use lsb::{exp_golomb_len, gamma_len, BitReader, BitWriter};

use gradcodec_sdk::prelude::*;

/// Something bits are written to, fields in its own bit order.
pub trait BitSink {
    /// Writes the low `count` bits of `value` (`count <= 64`) as one field.
    fn put_bits(&mut self, value: u64, count: u32);

    /// Writes `value >= 1` as an Elias-gamma code (`2⌊log₂ v⌋ + 1` bits).
    fn put_gamma(&mut self, value: u64) {
        debug_assert!(value >= 1);
        let width = 63 - value.leading_zeros();
        self.put_bits(0, width);
        self.put_bits(1, 1);
        self.put_bits(value, width);
    }
}

/// Something bits are read from, fields in its own bit order.
pub trait BitSource {
    /// Reads one bit.
    fn get_bit(&mut self) -> SdkResult<bool>;

    /// Reads a field of `count <= 64` bits.
    fn get_bits(&mut self, count: u32) -> SdkResult<u64>;

    /// Reads an Elias-gamma code whose value has at most `max_width + 1` bits
    /// (`max_width <= 63`); a longer one is an error.
    fn get_gamma(&mut self, max_width: u32) -> SdkResult<u64> {
        let max_width = max_width.min(63);
        let mut width = 0u32;
        while !self.get_bit()? {
            width += 1;
            if width > max_width {
                return Err(corrupt("Elias gamma code longer than allowed"));
            }
        }
        Ok((1u64 << width) | self.get_bits(width)?)
    }
}
