//! MSB-first bit I/O for the Huffman coder (Elias gamma from [`super::BitSink`]).
//!
//! The reader never reads outside its slice: past the end it supplies zero
//! bits and counts them, and callers check [`BitReader::overrun`].

use super::{BitSink, BitSource};
use gradcodec_sdk::prelude::*;

/// The codes of every pair of symbols of an alphabet of at most
/// [`PAIR_ALPHABET`] symbols, for [`BitWriter::put_pairs`].
pub struct PairTable {
    /// Per pair: its code shifted left by [`PAIR_LENGTH_BITS`], with its
    /// length (at most 48) in the low bits: one load per pair.
    pairs: [u64; PAIR_ALPHABET * PAIR_ALPHABET],
    single: [(u32, u8); PAIR_ALPHABET],
}

impl PairTable {
    /// The pair table of an encode table (code, length <= 24) of at most
    /// [`PAIR_ALPHABET`] symbols.
    pub fn new(table: &[(u32, u8)]) -> Self {
        debug_assert!(table.len() <= PAIR_ALPHABET);
        let mut pairs = [0u64; PAIR_ALPHABET * PAIR_ALPHABET];
        let mut single = [(0u32, 0u8); PAIR_ALPHABET];
        for (first, (code_a, length_a)) in table.iter().enumerate() {
            single[first] = (*code_a, *length_a);
            for (second, (code_b, length_b)) in table.iter().enumerate() {
                let code = (u64::from(*code_a) << length_b) | u64::from(*code_b);
                let length = u64::from(*length_a) + u64::from(*length_b);
                pairs[first * PAIR_ALPHABET + second] = (code << PAIR_LENGTH_BITS) | length;
            }
        }
        Self { pairs, single }
    }

    /// (bits, length) of the pair `index` = `16 * a + b` (below 256).
    #[inline(always)]
    fn code(&self, index: usize) -> (u64, u32) {
        let entry = self.pairs[index % (PAIR_ALPHABET * PAIR_ALPHABET)];
        (
            entry >> PAIR_LENGTH_BITS,
            (entry & ((1 << PAIR_LENGTH_BITS) - 1)) as u32,
        )
    }
}

/// Low bits of a [`PairTable`] entry that hold the pair's length.
const PAIR_LENGTH_BITS: u32 = 6;

/// Appends bits, most significant first, to a byte vector. Whole 32-bit words go
/// to a local buffer (a plain `Vec` push), copied to the output once by
/// [`BitWriter::finish`], which must be called.
pub struct BitWriter<'a> {
    out: &'a mut RVec<u8>,
    bytes: Vec<u8>,
    buffer: u64,
    filled: u32,
}

impl<'a> BitWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut RVec<u8>) -> Self {
        Self {
            out,
            bytes: Vec::new(),
            buffer: 0,
            filled: 0,
        }
    }

    /// Writes the low `count` bits of `value` (`count <= 32`).
    #[inline]
    pub fn put(&mut self, value: u32, count: u32) {
        debug_assert!(count <= 32);
        if count == 0 {
            return;
        }
        self.buffer = (self.buffer << count) | u64::from(value & (u32::MAX >> (32 - count)));
        self.filled += count;
        if self.filled >= 32 {
            self.filled -= 32;
            let word = (self.buffer >> self.filled) as u32;
            self.bytes.extend_from_slice(&word.to_be_bytes());
        }
    }

    /// Writes the code `table[s]` = (code, length <= 24) of every symbol `s`
    /// (each a valid index of `table`): the same bits as [`BitWriter::put`]
    /// per symbol, a whole byte stored per step without branching, into a
    /// stack buffer appended to the output every few thousand symbols.
    pub fn put_codes(&mut self, table: &[(u32, u8)], symbols: &[u32]) {
        if table.len() <= PAIR_ALPHABET && symbols.len() >= PAIR_MIN_SYMBOLS {
            self.put_pairs(&PairTable::new(table), symbols);
            return;
        }
        self.put_staged(symbols.chunks(1), 24, |one| {
            let (code, length) = table[one[0] as usize];
            (u64::from(code), u32::from(length))
        });
    }

    /// [`BitWriter::put_codes`] with a prebuilt [`PairTable`] (for callers that
    /// code one stream in several calls): the same bits.
    pub fn put_pairs(&mut self, pairs: &PairTable, symbols: &[u32]) {
        // Small alphabets: the codes of eight symbols at once when they fit in
        // 56 bits (four pair lookups, the common case for short codes), else
        // one pair at a time: an eighth of the chain of dependent shifts.
        // Symbols index the table (the caller's contract), so below 16.
        let pair = |a: u32, b: u32| {
            pairs.code((a as usize % PAIR_ALPHABET) * PAIR_ALPHABET + b as usize % PAIR_ALPHABET)
        };
        let mut octets = symbols.chunks_exact(8);
        self.put_staged_groups(octets.by_ref(), |o| {
            [
                pair(o[0], o[1]),
                pair(o[2], o[3]),
                pair(o[4], o[5]),
                pair(o[6], o[7]),
            ]
        });
        let mut duos = octets.remainder().chunks_exact(2);
        self.put_staged(duos.by_ref(), 48, |duo| pair(duo[0], duo[1]));
        let rest = duos.remainder();
        self.put_staged(rest.chunks(1), 24, |one| {
            let (code, length) = pairs.single[one[0] as usize % PAIR_ALPHABET];
            (u64::from(code), u32::from(length))
        });
    }

    /// The codes of the symbol pairs `indices[i] = 16 * a + b` (symbols `a`,
    /// `b` of the pair table's alphabet, in stream order): the same bits as
    /// [`BitWriter::put_pairs`] on the symbols, for a producer that already
    /// packed them (no index arithmetic per pair).
    pub fn put_pair_indices(&mut self, pairs: &PairTable, indices: &[u8]) {
        let mut quads = indices.chunks_exact(4);
        self.put_staged_groups(quads.by_ref(), |q| {
            [
                pairs.code(usize::from(q[0])),
                pairs.code(usize::from(q[1])),
                pairs.code(usize::from(q[2])),
                pairs.code(usize::from(q[3])),
            ]
        });
        self.put_staged(quads.remainder().chunks(1), 48, |one| {
            pairs.code(usize::from(one[0]))
        });
    }

    /// Writes `code(item)` = (bits, length <= `max_length` <= 48) of every item,
    /// whole bytes stored branch-free into a stack buffer.
    #[inline(always)]
    fn put_staged<'s, T: 's, I, F>(&mut self, items: I, max_length: usize, code: F)
    where
        I: Iterator<Item = &'s [T]>,
        F: Fn(&[T]) -> (u64, u32),
    {
        const STAGE: usize = 16 * 1024;
        // Each item adds at most `max_length` bits; 8 bytes of slack for the
        // last store.
        let chunk = (STAGE - 8) * 8 / max_length - 1;
        // Pending bits, left-justified: whole bytes out first, so fewer than 8
        // remain before every item and `filled + length <= 55`.
        while self.filled >= 8 {
            self.filled -= 8;
            self.bytes.push((self.buffer >> self.filled) as u8);
        }
        let mut filled = self.filled;
        let mut acc = if filled == 0 {
            0
        } else {
            self.buffer << (64 - filled)
        };
        let mut items = items.peekable();
        while items.peek().is_some() {
            // The bytes go straight to the end of `self.bytes`: room for a
            // whole chunk, cut back to what was written.
            let start = self.bytes.len();
            let items_here = items.size_hint().1.unwrap_or(chunk).min(chunk);
            self.bytes
                .resize(start + (items_here * max_length).div_ceil(8) + 8, 0);
            let stage = &mut self.bytes[start..];
            let mut at = 0usize;
            for item in items.by_ref().take(chunk) {
                let (bits, length) = code(item);
                // The code (below 2^length) lands right after the pending bits
                // (wrapping only matters for a length-0 code, which is 0).
                acc |= bits.wrapping_shl(64u32.wrapping_sub(filled + length));
                filled += length;
                stage[at..at + 8].copy_from_slice(&acc.to_be_bytes());
                let whole = filled & !7;
                at += (whole / 8) as usize;
                acc <<= whole; // at most 48
                filled -= whole;
            }
            self.bytes.truncate(start + at);
        }
        self.filled = filled;
        self.buffer = if filled == 0 { 0 } else { acc >> (64 - filled) };
    }

    /// [`BitWriter::put_staged`] for items of `N` codes of at most 48 bits
    /// each: one step when together they fit in 56 bits, one per code
    /// otherwise.
    #[inline(always)]
    fn put_staged_groups<'s, T: 's, I, F, const N: usize>(&mut self, items: I, code: F)
    where
        I: Iterator<Item = &'s [T]>,
        F: Fn(&[T]) -> [(u64, u32); N],
    {
        const STAGE: usize = 16 * 1024;
        let chunk = (STAGE - 16) * 8 / (48 * N) - 1;
        while self.filled >= 8 {
            self.filled -= 8;
            self.bytes.push((self.buffer >> self.filled) as u8);
        }
        let mut filled = self.filled;
        let mut acc = if filled == 0 {
            0
        } else {
            self.buffer << (64 - filled)
        };
        let mut items = items.peekable();
        while items.peek().is_some() {
            let start = self.bytes.len();
            let items_here = items.size_hint().1.unwrap_or(chunk).min(chunk);
            self.bytes
                .resize(start + (items_here * 48 * N).div_ceil(8) + 16, 0);
            let stage = &mut self.bytes[start..];
            let mut at = 0usize;
            // Fewer than 8 pending bits before each step and at most 56 bits
            // per step, so `filled + length <= 63`.
            let mut step = |bits: u64, length: u32, acc: &mut u64, filled: &mut u32| {
                *acc |= bits.wrapping_shl(64u32.wrapping_sub(*filled + length));
                *filled += length;
                stage[at..at + 8].copy_from_slice(&acc.to_be_bytes());
                let whole = *filled & !7;
                at += (whole / 8) as usize;
                *acc <<= whole;
                *filled -= whole;
            };
            for item in items.by_ref().take(chunk) {
                let codes = code(item);
                let length: u32 = codes.iter().map(|(_, length)| length).sum();
                if length <= 56 {
                    // Each code is below 2^length and the lengths sum to at
                    // most 56, so no shift overflows.
                    let bits = codes
                        .iter()
                        .fold(0u64, |bits, (code, length)| (bits << length) | code);
                    step(bits, length, &mut acc, &mut filled);
                } else {
                    for (bits, length) in codes {
                        step(bits, length, &mut acc, &mut filled);
                    }
                }
            }
            self.bytes.truncate(start + at);
        }
        self.filled = filled;
        self.buffer = if filled == 0 { 0 } else { acc >> (64 - filled) };
    }

    /// Pads the last byte with zero bits and appends everything to the output.
    pub fn finish(mut self) {
        while self.filled >= 8 {
            self.filled -= 8;
            self.bytes.push((self.buffer >> self.filled) as u8);
        }
        if self.filled > 0 {
            self.bytes.push((self.buffer << (8 - self.filled)) as u8);
            self.filled = 0;
        }
        self.out.extend_from_copy_slice(&self.bytes);
    }
}

/// Alphabets up to this size are written two symbols per step.
pub const PAIR_ALPHABET: usize = 16;
/// Streams shorter than this are written one symbol per step (the pair table
/// has 256 entries to fill).
const PAIR_MIN_SYMBOLS: usize = 4096;

/// Reads bits, most significant first, from a byte slice.
pub struct BitReader<'a> {
    data: &'a [u8],
    next_byte: usize,
    /// Valid bits are the top `available` bits.
    buffer: u64,
    available: u32,
    consumed: u64,
}

impl<'a> BitReader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            next_byte: 0,
            buffer: 0,
            available: 0,
            consumed: 0,
        }
    }

    #[inline]
    fn refill(&mut self) {
        let chunk = self.data.get(self.next_byte..self.next_byte + 8);
        if let Some(chunk) = chunk.and_then(|c| <[u8; 8]>::try_from(c).ok()) {
            // Whole bytes that fit below the valid bits, in one load.
            let word = u64::from_be_bytes(chunk);
            let bits = (64 - self.available) & !7;
            if bits > 0 {
                self.buffer |= (word >> (64 - bits)) << (64 - self.available - bits);
                self.available += bits;
                self.next_byte += (bits / 8) as usize;
            }
            return;
        }
        while self.available <= 56 {
            let byte = self.data.get(self.next_byte).copied().unwrap_or(0);
            self.next_byte += 1;
            self.buffer |= u64::from(byte) << (56 - self.available);
            self.available += 8;
        }
    }

    /// The next `count` bits (`1..=32`) without consuming them.
    #[inline]
    pub fn peek(&mut self, count: u32) -> u32 {
        debug_assert!((1..=32).contains(&count));
        if self.available < count {
            self.refill();
        }
        (self.buffer >> (64 - count)) as u32
    }

    /// Consumes `count` bits (at most what the last `peek` looked at).
    #[inline]
    pub fn skip(&mut self, count: u32) {
        if count == 0 {
            return;
        }
        self.buffer <<= count;
        self.available -= count;
        self.consumed += u64::from(count);
    }

    /// Reads `count` bits (`0..=32`).
    pub fn get(&mut self, count: u32) -> u32 {
        if count == 0 {
            return 0;
        }
        let value = self.peek(count);
        self.skip(count);
        value
    }

    /// A reader over `data` positioned `bit` bits in (`bit <= 8·len`).
    pub fn at(data: &'a [u8], bit: u64) -> Self {
        let mut reader = Self::new(data);
        let byte = ((bit / 8) as usize).min(data.len());
        reader.next_byte = byte;
        reader.consumed = byte as u64 * 8;
        let rest = (bit - reader.consumed).min(7) as u32;
        if rest > 0 {
            reader.peek(rest);
            reader.skip(rest);
        }
        reader
    }

    /// The input.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Bits consumed so far (the position in the input).
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// Bits in the input.
    pub fn total(&self) -> u64 {
        self.data.len() as u64 * 8
    }

    /// Bits left in the input (0 once past its end).
    pub fn remaining(&self) -> u64 {
        self.total().saturating_sub(self.consumed)
    }

    /// True once more bits were consumed than the input holds.
    pub fn overrun(&self) -> bool {
        self.consumed > self.total()
    }

    /// True when what is left is only the zero padding of the last byte.
    pub fn at_clean_end(&mut self) -> bool {
        let left = self.remaining();
        !self.overrun() && left < 8 && (left == 0 || self.peek(left as u32) == 0)
    }
}

impl BitSink for BitWriter<'_> {
    fn put_bits(&mut self, value: u64, count: u32) {
        if count > 32 {
            self.put((value >> 32) as u32, count - 32);
            self.put(value as u32, 32);
        } else {
            self.put(value as u32, count);
        }
    }
}

/// Past the end the reader supplies zero bits (see [`BitReader::overrun`]), so
/// these reads never fail by themselves; an Elias-gamma code read there fails
/// as too long.
impl BitSource for BitReader<'_> {
    fn get_bit(&mut self) -> SdkResult<bool> {
        Ok(self.get(1) == 1)
    }

    fn get_bits(&mut self, count: u32) -> SdkResult<u64> {
        Ok(if count > 32 {
            let high = u64::from(self.get(count - 32));
            (high << 32) | u64::from(self.get(32))
        } else {
            u64::from(self.get(count))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_gamma_codes_round_trip() {
        let mut out = RVec::new();
        let mut writer = BitWriter::new(&mut out);
        writer.put(0b101, 3);
        writer.put_gamma(1);
        writer.put_gamma(17);
        writer.put_gamma(u64::MAX);
        writer.put(0xDEAD_BEEF, 32);
        writer.finish();
        let mut reader = BitReader::new(&out);
        assert_eq!(reader.get(3), 0b101);
        assert_eq!(reader.get_gamma(63).unwrap(), 1);
        assert_eq!(reader.get_gamma(63).unwrap(), 17);
        assert_eq!(reader.get_gamma(63).unwrap(), u64::MAX);
        assert_eq!(reader.get(32), 0xDEAD_BEEF);
        assert!(reader.at_clean_end());
        // Reading on past the end gives zeros and reports the overrun.
        assert_eq!(reader.get(16), 0);
        assert!(reader.overrun());
        let zeros = [0u8; 16];
        assert!(BitReader::new(&zeros).get_gamma(63).is_err());
    }
}

#[cfg(test)]
mod pair_tests {
    use super::*;

    /// Per-symbol `put`, the reference of the table-driven writers.
    fn reference(table: &[(u32, u8)], symbols: &[u32]) -> RVec<u8> {
        let mut out = RVec::new();
        let mut writer = BitWriter::new(&mut out);
        for s in symbols {
            let (code, length) = table[*s as usize];
            writer.put(code, u32::from(length));
        }
        writer.finish();
        out
    }

    #[test]
    fn pairs_and_octets_write_the_per_symbol_bits_in_any_split() {
        // Short and 24-bit codes, so some groups of eight take one step and
        // some one per pair; then only short codes (up to 7 bits: most groups
        // fit in one step, those of long codes do not).
        let mixed: Vec<(u32, u8)> = (0..15u32)
            .map(|s| match s % 5 {
                0 => (1, 1),
                1 => (2, 2),
                2 => (0x00ab_cdef & ((1 << 24) - 1), 24),
                3 => (5, 3),
                _ => (0x3fff, 14),
            })
            .collect();
        let short: Vec<(u32, u8)> = (0..16u32)
            .map(|s| {
                let length = s % 7 + 1;
                (s & ((1 << length) - 1), length as u8)
            })
            .collect();
        for table in [mixed, short] {
            check_pairs_against_per_symbol_bits(&table);
        }
    }

    fn check_pairs_against_per_symbol_bits(table: &[(u32, u8)]) {
        let alphabet = table.len() as u32;
        let mut state = 12_345u32;
        let symbols: Vec<u32> = (0..20_011)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) % alphabet
            })
            .collect();
        let expected = reference(table, &symbols);
        let pairs = PairTable::new(table);
        // One leading bit, so every code lands off a byte boundary.
        let shifted_by_one = |write: &dyn Fn(&mut BitWriter<'_>)| {
            written(|writer| {
                writer.put(1, 1);
                write(writer);
            })
        };
        let per_symbol = shifted_by_one(&|writer| {
            for s in &symbols {
                let (code, length) = table[*s as usize];
                writer.put(code, u32::from(length));
            }
        });
        for split in [1usize, 3, 4, 7, 8, 9, 17, 4096, 20_011] {
            let out = shifted_by_one(&|writer| {
                for chunk in symbols.chunks(split) {
                    writer.put_pairs(&pairs, chunk);
                }
            });
            assert_eq!(out, per_symbol, "chunks of {split}");
        }
        assert_eq!(
            written(|writer| writer.put_codes(table, &symbols)),
            expected
        );
        // Packed pair indices of an even-length prefix, in pieces of any size.
        let even = &symbols[..symbols.len() & !1];
        let indices: Vec<u8> = even.chunks(2).map(|p| (p[0] * 16 + p[1]) as u8).collect();
        let by_pairs = shifted_by_one(&|writer| writer.put_pairs(&pairs, even));
        for split in [1usize, 3, 4, 5, 2048, indices.len()] {
            let out = shifted_by_one(&|writer| {
                for chunk in indices.chunks(split) {
                    writer.put_pair_indices(&pairs, chunk);
                }
            });
            assert_eq!(out, by_pairs, "pair indices in chunks of {split}");
        }
    }

    /// The bytes `write` puts through a fresh writer (finished).
    fn written(write: impl FnOnce(&mut BitWriter<'_>)) -> RVec<u8> {
        let mut out = RVec::new();
        let mut writer = BitWriter::new(&mut out);
        write(&mut writer);
        writer.finish();
        out
    }
}
