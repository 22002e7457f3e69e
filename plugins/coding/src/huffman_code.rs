//! Canonical Huffman codes: length-limited construction, encode table and a
//! table-driven decoder.
//!
//! Code lengths come from the classic two-queue Huffman construction over the
//! weights sorted by (weight, symbol), so equal inputs give equal codes on every
//! machine. Lengths above [`MAX_CODE_LENGTH`] are avoided by halving every
//! weight (keeping it >= 1) and rebuilding, which always ends (equal weights
//! give a balanced tree). Codes are canonical (Deflate's assignment: by length,
//! then symbol), so only the lengths define a code. Decoding looks up the next
//! [`PRIMARY_BITS`] bits in a table; longer codes are resolved by comparing the
//! next 24 bits, left-justified, against each length's code limit.

use crate::bits::msb::BitReader;
#[cfg(test)]
use crate::bits::msb::BitWriter;
use gradcodec_sdk::prelude::*;
use std::mem::MaybeUninit;

/// Longest code length.
pub const MAX_CODE_LENGTH: u32 = 24;
/// Bits looked up at once by the decoder.
pub const PRIMARY_BITS: u32 = 11;

/// Huffman code lengths for `weights` (each >= 1), limited to
/// [`MAX_CODE_LENGTH`]. A single weight gets length 0.
pub fn code_lengths(weights: &[u64]) -> Vec<u8> {
    let mut weights = weights.to_vec();
    loop {
        let lengths = huffman_lengths(&weights);
        if lengths.iter().all(|l| u32::from(*l) <= MAX_CODE_LENGTH) {
            return lengths;
        }
        for weight in weights.iter_mut() {
            *weight = (*weight >> 1).max(1);
        }
    }
}

/// Unlimited Huffman lengths (two-queue construction, deterministic ties).
fn huffman_lengths(weights: &[u64]) -> Vec<u8> {
    let n = weights.len();
    if n <= 1 {
        return vec![0; n];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (weights[i], i));
    // Nodes 0..n are leaves (in `order`), n.. are internal, created in order of
    // non-decreasing weight.
    let mut parent = vec![0usize; 2 * n - 1];
    let mut internal_weight: Vec<u64> = Vec::with_capacity(n - 1);
    let (mut next_leaf, mut next_internal) = (0usize, 0usize);
    for created in 0..n - 1 {
        let mut pick = || {
            let leaf = (next_leaf < n).then(|| weights[order[next_leaf]]);
            let inner = (next_internal < created).then(|| internal_weight[next_internal]);
            match (leaf, inner) {
                (Some(l), Some(i)) if i < l => {
                    next_internal += 1;
                    (n + next_internal - 1, i)
                }
                (Some(l), _) => {
                    next_leaf += 1;
                    (order[next_leaf - 1], l)
                }
                (None, Some(i)) => {
                    next_internal += 1;
                    (n + next_internal - 1, i)
                }
                (None, None) => unreachable!("a Huffman merge always has two nodes"),
            }
        };
        let (a, wa) = pick();
        let (b, wb) = pick();
        parent[a] = n + created;
        parent[b] = n + created;
        internal_weight.push(wa.saturating_add(wb));
    }
    // Depths: the root is the last internal node; parents come after children.
    let mut depth = vec![0u32; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]] + 1;
    }
    depth[..n]
        .iter()
        .map(|d| (*d).min(u32::from(u8::MAX)) as u8)
        .collect()
}

/// A canonical code over symbols `symbols[i]` with lengths `lengths[i]`.
pub struct CanonicalCode {
    /// Symbols sorted by (length, symbol).
    sorted: Vec<u32>,
    /// Number of codes of each length.
    count: [u32; MAX_CODE_LENGTH as usize + 1],
    /// First code of each length.
    first: [u32; MAX_CODE_LENGTH as usize + 1],
    /// Index in `sorted` of the first symbol of each length.
    offset: [u32; MAX_CODE_LENGTH as usize + 1],
    max_length: u32,
    min_length: u32,
}

impl CanonicalCode {
    /// Builds the code; `lengths` must be 1..=24 each and satisfy Kraft's
    /// equality (a complete prefix code), or hold a single symbol of length 0.
    pub fn new(symbols: &[u32], lengths: &[u8]) -> SdkResult<Self> {
        if symbols.len() != lengths.len() || symbols.is_empty() {
            return Err(corrupt("huffman: empty or inconsistent code"));
        }
        let mut count = [0u32; MAX_CODE_LENGTH as usize + 1];
        let single = symbols.len() == 1;
        let mut kraft: u64 = 0;
        for &length in lengths {
            let length = u32::from(length);
            if single {
                if length != 0 {
                    return Err(corrupt("huffman: a one-symbol code has length 0"));
                }
                continue;
            }
            if !(1..=MAX_CODE_LENGTH).contains(&length) {
                return Err(corrupt(format!(
                    "huffman: code length {length} out of 1..=24"
                )));
            }
            count[length as usize] += 1;
            kraft += 1u64 << (MAX_CODE_LENGTH - length);
        }
        if !single && kraft != 1u64 << MAX_CODE_LENGTH {
            return Err(corrupt(
                "huffman: code lengths do not form a complete prefix code",
            ));
        }
        let mut order: Vec<usize> = (0..symbols.len()).collect();
        order.sort_by_key(|&i| (lengths[i], symbols[i]));
        let sorted: Vec<u32> = order.iter().map(|&i| symbols[i]).collect();
        let mut first = [0u32; MAX_CODE_LENGTH as usize + 1];
        let mut offset = [0u32; MAX_CODE_LENGTH as usize + 1];
        let (mut code, mut index) = (0u32, 0u32);
        for length in 1..=MAX_CODE_LENGTH as usize {
            code = (code + count[length - 1]) << 1;
            first[length] = code;
            offset[length] = index;
            index += count[length];
        }
        let max_length = (1..=MAX_CODE_LENGTH)
            .rev()
            .find(|l| count[*l as usize] > 0)
            .unwrap_or(0);
        let min_length = (1..=MAX_CODE_LENGTH)
            .find(|l| count[*l as usize] > 0)
            .unwrap_or(0);
        Ok(Self {
            sorted,
            count,
            first,
            offset,
            max_length,
            min_length,
        })
    }

    /// The largest symbol that has a code.
    pub fn max_symbol(&self) -> u32 {
        self.sorted.iter().copied().max().unwrap_or(0)
    }

    /// The shortest code length (0 for a one-symbol code).
    pub fn min_length(&self) -> u32 {
        self.min_length
    }

    /// The (code, length) of every symbol below `alphabet`, indexed by symbol
    /// (length 0: not in the code, unless the code has a single symbol).
    pub fn encode_table(&self, alphabet: usize) -> Vec<(u32, u8)> {
        let mut table = vec![(0u32, 0u8); alphabet];
        let mut index = 0usize;
        for length in 1..=self.max_length as usize {
            for i in 0..self.count[length] {
                let symbol = self.sorted[index] as usize;
                table[symbol] = (self.first[length] + i, length as u8);
                index += 1;
            }
        }
        table
    }

    /// The decoder of this code.
    pub fn decoder(&self) -> Decoder<'_> {
        let primary_bits = self.max_length.min(PRIMARY_BITS);
        let mut primary = vec![
            0u32;
            if primary_bits == 0 {
                0
            } else {
                1 << primary_bits
            }
        ];
        let mut index = 0usize;
        for length in 1..=primary_bits as usize {
            for i in 0..self.count[length] {
                let code = self.first[length] + i;
                let shift = primary_bits - length as u32;
                let entry = (self.sorted[index] << 5) | length as u32;
                for slot in (code << shift)..((code + 1) << shift) {
                    primary[slot as usize] = entry;
                }
                index += 1;
            }
        }
        let mut limit = [0u32; MAX_CODE_LENGTH as usize + 1];
        for (length, bound) in limit.iter_mut().enumerate().skip(1) {
            *bound =
                (self.first[length] + self.count[length]) << (MAX_CODE_LENGTH as usize - length);
        }
        Decoder {
            code: self,
            primary,
            primary_bits,
            limit,
            multi: Vec::new(),
        }
    }

    /// The decoder of this code with a multi-symbol table for bulk decoding of
    /// `count` symbols, built when the alphabet fits in bytes and `count` is
    /// large enough to repay the table ([`MULTI_MIN_SYMBOLS`]).
    pub fn bulk_decoder(&self, count: u64) -> Decoder<'_> {
        let mut decoder = self.decoder();
        let small_alphabet = self.sorted.iter().all(|s| *s <= u32::from(u8::MAX));
        if decoder.primary_bits > 0 && small_alphabet && count >= MULTI_MIN_SYMBOLS {
            decoder.multi = decoder.multi_table();
        }
        decoder
    }
}

/// Symbols below which [`CanonicalCode::bulk_decoder`] skips the multi-symbol
/// table (2^11 entries to fill).
pub const MULTI_MIN_SYMBOLS: u64 = 16_384;
/// Most symbols one multi-symbol table entry holds (a byte each above the
/// 8 bits of length and count).
const MULTI_SYMBOLS: usize = 7;

/// Table-driven decoder of a [`CanonicalCode`].
pub struct Decoder<'a> {
    code: &'a CanonicalCode,
    /// `symbol << 5 | length` for each primary prefix; 0: a longer code.
    primary: Vec<u32>,
    primary_bits: u32,
    /// Left-justified (24-bit) exclusive upper bound of the codes of each length.
    limit: [u32; MAX_CODE_LENGTH as usize + 1],
    /// Empty, or for each primary prefix the whole codes it starts with:
    /// bits 0..5 their total length, 5..8 their count (0: a longer code),
    /// then one byte per symbol.
    multi: Vec<u64>,
}

impl Decoder<'_> {
    /// Decodes one symbol (a one-symbol code reads no bit).
    #[inline]
    pub fn decode(&self, reader: &mut BitReader<'_>) -> SdkResult<u32> {
        if self.primary_bits == 0 {
            return Ok(self.code.sorted[0]);
        }
        let window = reader.peek(MAX_CODE_LENGTH);
        let entry = self.primary[(window >> (MAX_CODE_LENGTH - self.primary_bits)) as usize];
        if entry != 0 {
            reader.skip(entry & 31);
            return Ok(entry >> 5);
        }
        let (symbol, length) = self.long_code(window)?;
        reader.skip(length);
        Ok(symbol)
    }
}

impl Decoder<'_> {
    /// The multi-symbol table (see the `multi` field).
    fn multi_table(&self) -> Vec<u64> {
        let bits = self.primary_bits;
        (0..1u32 << bits)
            .map(|prefix| {
                let (mut used, mut count, mut entry) = (0u32, 0u64, 0u64);
                while (count as usize) < MULTI_SYMBOLS {
                    // The rest of the prefix, zero filled: a code no longer than
                    // the bits left is decided by real bits alone.
                    let rest = (prefix << used) & ((1 << bits) - 1);
                    let single = self.primary[rest as usize];
                    let length = single & 31;
                    if single == 0 || length > bits - used {
                        break;
                    }
                    entry |= u64::from(single >> 5) << (8 + 8 * count);
                    used += length;
                    count += 1;
                }
                entry | (count << 5) | u64::from(used)
            })
            .collect()
    }

    /// Decodes symbols into `out` from `data` starting `bit` bits in, as long
    /// as a whole 8-byte load is in bounds; returns how many it decoded and the
    /// bit position after them (the caller decodes the rest with
    /// [`Decoder::decode`]). Each load gives at least 57 bits; symbols are
    /// taken from it while 24 (the longest code) remain, so no code is split.
    pub fn decode_bulk(&self, data: &[u8], bit: u64, out: &mut [u32]) -> SdkResult<(usize, u64)> {
        self.decode_bulk_mapped(data, bit, out, |symbol| symbol)
    }

    /// [`Decoder::decode_bulk`] writing `map(symbol)` instead of each symbol
    /// (e.g. its reconstruction level), so no symbol buffer is needed.
    #[inline]
    pub fn decode_bulk_mapped<T: Copy>(
        &self,
        data: &[u8],
        mut bit: u64,
        out: &mut [T],
        map: impl Fn(u32) -> T,
    ) -> SdkResult<(usize, u64)> {
        if self.primary_bits == 0 {
            return Ok((0, bit));
        }
        let shift = 64 - self.primary_bits;
        let mut done = 0usize;
        while done < out.len() {
            let byte = (bit / 8) as usize;
            let Some(word) = data
                .get(byte..byte.saturating_add(8))
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
            else {
                break;
            };
            let mut window = u64::from_be_bytes(word) << (bit % 8);
            let mut used = 0u32;
            if !self.multi.is_empty() {
                // Up to seven symbols per lookup; every slot is written, the
                // count says how many are real.
                while used <= 57 - MAX_CODE_LENGTH && done + MULTI_SYMBOLS <= out.len() {
                    let entry = self.multi[(window >> shift) as usize];
                    let count = ((entry >> 5) & 7) as usize;
                    if count == 0 {
                        let (symbol, length) =
                            self.long_code((window >> (64 - MAX_CODE_LENGTH)) as u32)?;
                        out[done] = map(symbol);
                        done += 1;
                        window <<= length;
                        used += length;
                        continue;
                    }
                    let length = (entry & 31) as u32;
                    for (i, slot) in out[done..done + MULTI_SYMBOLS].iter_mut().enumerate() {
                        *slot = map(((entry >> (8 + 8 * i)) & 0xff) as u32);
                    }
                    done += count;
                    window <<= length;
                    used += length;
                }
                if done + MULTI_SYMBOLS > out.len() {
                    bit += u64::from(used);
                    break;
                }
                bit += u64::from(used);
                continue;
            }
            while used <= 57 - MAX_CODE_LENGTH && done < out.len() {
                let entry = self.primary[(window >> shift) as usize];
                let (symbol, length) = if entry != 0 {
                    (entry >> 5, entry & 31)
                } else {
                    self.long_code((window >> (64 - MAX_CODE_LENGTH)) as u32)?
                };
                out[done] = map(symbol);
                done += 1;
                window <<= length;
                used += length;
            }
            bit += u64::from(used);
        }
        Ok((done, bit))
    }

    /// [`Decoder::decode_bulk_mapped`] with `map(s) = levels[s]` (NaN for a
    /// symbol without a level, which the caller rules out), where each
    /// multi-symbol table entry is first turned into its eight levels, so one
    /// lookup writes its symbols' values with one 32-byte copy. `out` may be
    /// uninitialized (a fresh buffer's spare capacity: no zeroing pass); the
    /// first of the returned count of slots are written, and slots past it may
    /// hold values written ahead.
    pub fn decode_bulk_levels(
        &self,
        data: &[u8],
        mut bit: u64,
        levels: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) -> SdkResult<(usize, u64)> {
        let level = |symbol: u32| levels.get(symbol as usize).copied().unwrap_or(f32::NAN);
        if self.multi.is_empty() {
            return self
                .decode_bulk_mapped(data, bit, out, |symbol| MaybeUninit::new(level(symbol)));
        }
        let values: Vec<[MaybeUninit<f32>; 8]> = self
            .multi
            .iter()
            .map(|entry| {
                let count = ((entry >> 5) & 7) as usize;
                let mut row = [MaybeUninit::new(0.0f32); 8];
                for (i, slot) in row.iter_mut().enumerate().take(count) {
                    *slot = MaybeUninit::new(level(((entry >> (8 + 8 * i)) & 0xff) as u32));
                }
                row
            })
            .collect();
        let shift = 64 - self.primary_bits;
        let mut done = 0usize;
        while done + 8 <= out.len() {
            let byte = (bit / 8) as usize;
            let Some(word) = data
                .get(byte..byte.saturating_add(8))
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
            else {
                break;
            };
            let mut window = u64::from_be_bytes(word) << (bit % 8);
            let mut used = 0u32;
            while used <= 57 - MAX_CODE_LENGTH && done + 8 <= out.len() {
                let prefix = (window >> shift) as usize;
                let entry = self.multi[prefix];
                let count = ((entry >> 5) & 7) as usize;
                if count == 0 {
                    let (symbol, length) =
                        self.long_code((window >> (64 - MAX_CODE_LENGTH)) as u32)?;
                    out[done] = MaybeUninit::new(level(symbol));
                    done += 1;
                    window <<= length;
                    used += length;
                    continue;
                }
                let length = (entry & 31) as u32;
                out[done..done + 8].copy_from_slice(&values[prefix]);
                done += count;
                window <<= length;
                used += length;
            }
            bit += u64::from(used);
        }
        Ok((done, bit))
    }

    /// The (symbol, length) of a code longer than the primary table, from the
    /// next 24 bits.
    #[inline(never)]
    fn long_code(&self, window: u32) -> SdkResult<(u32, u32)> {
        for length in self.primary_bits + 1..=self.code.max_length {
            if window < self.limit[length as usize] {
                let code = window >> (MAX_CODE_LENGTH - length);
                let index =
                    self.code.offset[length as usize] + code - self.code.first[length as usize];
                return Ok((self.code.sorted[index as usize], length));
            }
        }
        Err(corrupt("huffman: invalid code word"))
    }
}

/// Writes one symbol with an encode table entry (the reference for
/// [`BitWriter::put_codes`]).
#[cfg(test)]
pub fn put_symbol(writer: &mut BitWriter<'_>, entry: (u32, u8)) {
    writer.put(entry.0, u32::from(entry.1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::RVec;

    fn kraft_sum(lengths: &[u8]) -> f64 {
        lengths.iter().map(|l| 0.5f64.powi(i32::from(*l))).sum()
    }

    #[test]
    fn lengths_are_optimal_complete_and_limited() {
        // Dyadic weights give the ideal lengths.
        assert_eq!(code_lengths(&[8, 4, 2, 1, 1]), vec![1, 2, 3, 4, 4]);
        assert_eq!(code_lengths(&[5]), vec![0]);
        // Fibonacci weights would need 40+ bits; the limit holds.
        let mut fibonacci = vec![1u64, 1];
        for i in 2..45 {
            fibonacci.push(fibonacci[i - 1] + fibonacci[i - 2]);
        }
        let lengths = code_lengths(&fibonacci);
        assert!(lengths.iter().all(|l| u32::from(*l) <= MAX_CODE_LENGTH));
        assert_eq!(kraft_sum(&lengths), 1.0);
        // Many symbols.
        let weights: Vec<u64> = (0..65_536u64).map(|i| 1 + (i * 7919) % 1000).collect();
        let lengths = code_lengths(&weights);
        assert_eq!(kraft_sum(&lengths), 1.0);
    }

    #[test]
    fn codes_round_trip_through_both_decoder_paths() {
        let weights: Vec<u64> = (0..300u64).map(|i| 1 + 1_000_000 / (1 + i * i)).collect();
        let lengths = code_lengths(&weights);
        assert!(lengths.iter().any(|l| u32::from(*l) > PRIMARY_BITS));
        let symbols: Vec<u32> = (0..300).map(|i| i * 3).collect();
        let code = CanonicalCode::new(&symbols, &lengths).unwrap();
        let table = code.encode_table(900);
        let message: Vec<u32> = (0..5000u32).map(|i| (i * i % 300) * 3).collect();
        let mut bytes = RVec::new();
        let mut writer = BitWriter::new(&mut bytes);
        for s in &message {
            put_symbol(&mut writer, table[*s as usize]);
        }
        writer.finish();
        let decoder = code.decoder();
        let mut reader = BitReader::new(&bytes);
        for s in &message {
            assert_eq!(decoder.decode(&mut reader).unwrap(), *s);
        }
        assert!(reader.at_clean_end());
        // The bulk writer gives the same bytes, after any pending bits; the
        // bulk decoder the same symbols from any start, leaving the tail.
        for lead in [0u32, 1, 7, 8, 13, 31] {
            let mut one_by_one = RVec::new();
            let mut bulk = RVec::new();
            let mut writer = BitWriter::new(&mut one_by_one);
            writer.put(0x5A5A_5A5A & ((1u64 << lead) - 1) as u32, lead);
            for s in &message {
                put_symbol(&mut writer, table[*s as usize]);
            }
            writer.finish();
            let mut writer = BitWriter::new(&mut bulk);
            writer.put(0x5A5A_5A5A & ((1u64 << lead) - 1) as u32, lead);
            writer.put_codes(&table, &message);
            writer.finish();
            assert_eq!(one_by_one, bulk, "lead {lead}");
            let mut out = vec![0u32; message.len()];
            let (done, bit) = decoder
                .decode_bulk(&bulk, u64::from(lead), &mut out)
                .unwrap();
            assert!(done > message.len() - 20 && done <= message.len());
            assert_eq!(out[..done], message[..done]);
            let mut reader = BitReader::at(&bulk, bit);
            for s in &message[done..] {
                assert_eq!(decoder.decode(&mut reader).unwrap(), *s);
            }
            assert!(reader.at_clean_end());
        }
    }

    #[test]
    fn the_multi_symbol_table_decodes_the_same_symbols() {
        // Fibonacci weights over 16 symbols: short and very long codes.
        let mut weights = vec![1u64, 1];
        for i in 2..16 {
            weights.push(weights[i - 1] + weights[i - 2]);
        }
        let lengths = code_lengths(&weights);
        assert!(lengths.iter().any(|l| u32::from(*l) > PRIMARY_BITS));
        let symbols: Vec<u32> = (0..16).collect();
        let code = CanonicalCode::new(&symbols, &lengths).unwrap();
        let table = code.encode_table(16);
        // Mostly central symbols, and every rare one now and then.
        let message: Vec<u32> = (0..40_001u32)
            .map(|i| {
                if i % 997 == 0 {
                    i % 11
                } else {
                    4 + (i * 7 + i / 3) % 3
                }
            })
            .collect();
        let multi = code.bulk_decoder(message.len() as u64);
        assert!(!multi.multi.is_empty());
        for lead in [0u32, 3, 9, 31] {
            let mut bytes = RVec::new();
            let mut writer = BitWriter::new(&mut bytes);
            writer.put(0x7FFF_FFFF & ((1u64 << lead) - 1) as u32, lead);
            writer.put_codes(&table, &message);
            writer.finish();
            // The pair writer gives the bits of one code at a time.
            let mut reference = RVec::new();
            let mut writer = BitWriter::new(&mut reference);
            writer.put(0x7FFF_FFFF & ((1u64 << lead) - 1) as u32, lead);
            for s in &message {
                put_symbol(&mut writer, table[*s as usize]);
            }
            writer.finish();
            assert_eq!(bytes, reference, "lead {lead}");
            let mut out = vec![0u32; message.len()];
            let (done, bit) = multi
                .decode_bulk(&bytes, u64::from(lead), &mut out)
                .unwrap();
            assert!(done > message.len() - 40);
            assert_eq!(out[..done], message[..done], "lead {lead}");
            let mut reader = BitReader::at(&bytes, bit);
            for s in &message[done..] {
                assert_eq!(multi.decode(&mut reader).unwrap(), *s);
            }
            assert!(reader.at_clean_end());
        }
    }

    #[test]
    fn incomplete_or_invalid_lengths_are_refused() {
        assert!(CanonicalCode::new(&[0, 1, 2], &[1, 2, 3]).is_err());
        assert!(CanonicalCode::new(&[0, 1], &[1, 25]).is_err());
        assert!(CanonicalCode::new(&[0, 1], &[0, 1]).is_err());
        assert!(CanonicalCode::new(&[], &[]).is_err());
        assert!(CanonicalCode::new(&[4], &[0]).is_ok());
    }
}
