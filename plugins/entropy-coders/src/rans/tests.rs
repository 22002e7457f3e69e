//! Tests of the `rans` stage: compression against the empirical entropy, round
//! trips, corrupt input, and the reciprocal arithmetic.

use super::*;
use gradcodec_sdk::{parse_config, ErrorCode, StageError, StreamRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn coder(precision: Option<u32>) -> Rans {
    Rans { precision }
}

fn values(alphabet: u64, symbols: Vec<u32>) -> SymbolStream {
    let mut stream = SymbolStream::new(StreamRole::VALUES, alphabet);
    stream.symbols = symbols.into();
    stream
}

fn encode(precision: Option<u32>, stream: &SymbolStream) -> RVec<u8> {
    let mut bytes = RVec::new();
    coder(precision).encode(stream, &mut bytes).unwrap();
    bytes
}

fn decode(stream: &SymbolStream, bytes: &[u8], count: u64) -> SdkResult<Vec<u32>> {
    let mut back = SymbolStream::new(stream.role, stream.alphabet_size);
    back.symbols = vec![7; 3].into();
    coder(None).decode(bytes, count, &mut back)?;
    assert_eq!(back.symbols.len() as u64, count, "decoded count");
    assert!(back
        .symbols
        .iter()
        .all(|s| u64::from(*s) < stream.alphabet_size));
    Ok(back.symbols.to_vec())
}

/// Encodes, decodes (the decoder needs no parameters) and returns the bytes.
fn round_trip(precision: Option<u32>, stream: &SymbolStream) -> RVec<u8> {
    let bytes = encode(precision, stream);
    let back = decode(stream, &bytes, stream.symbols.len() as u64).unwrap();
    assert_eq!(back, stream.symbols.as_slice(), "round trip");
    bytes
}

use crate::common::empirical_entropy as entropy;

/// QSGD levels with s = 16 (33 symbols): a random sign and a magnitude that is
/// geometric with ratio `ratio`, capped at 16.
fn qsgd_like(n: usize, ratio: f64, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut level = 0u32;
            while level < 16 && rng.random::<f64>() < ratio {
                level += 1;
            }
            if rng.random::<bool>() {
                16 + level
            } else {
                16 - level
            }
        })
        .collect()
}

/// TernGrad-like levels {0, 1, 2}: zero (1) with probability `p_zero`.
fn ternary(n: usize, p_zero: f64, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            if rng.random::<f64>() < p_zero {
                1
            } else if rng.random::<bool>() {
                2
            } else {
                0
            }
        })
        .collect()
}

fn code(error: &StageError) -> ErrorCode {
    error.code
}

#[test]
fn within_one_percent_of_the_entropy_on_1m_symbols() {
    let n = 1_000_000;
    let cases: Vec<(&str, u64, Vec<u32>)> = vec![
        ("qsgd-like r=0.6", 33, qsgd_like(n, 0.6, 1)),
        ("qsgd-like r=0.3", 33, qsgd_like(n, 0.3, 2)),
        ("qsgd-like r=0.05", 33, qsgd_like(n, 0.05, 3)),
        ("ternary p0=0.9", 3, ternary(n, 0.9, 4)),
        ("ternary p0=0.99", 3, ternary(n, 0.99, 5)),
        ("ternary p0=0.5", 3, ternary(n, 0.5, 6)),
    ];
    for (name, alphabet, symbols) in cases {
        let stream = values(alphabet, symbols);
        let h = entropy(&stream.symbols);
        for precision in [None, Some(12)] {
            let bytes = round_trip(precision, &stream);
            let rate = bytes.len() as f64 * 8.0 / n as f64;
            let overhead = rate / h - 1.0;
            eprintln!(
                "rans {precision:?}, {name}: H0 {h:.4}, coded {rate:.4} bits/symbol (table \
                 and states included), {:+.3}%",
                overhead * 100.0
            );
            assert!(overhead < 0.01, "{name} {precision:?}: overhead {overhead}");
        }
    }
}

#[test]
fn one_symbol_and_empty_streams() {
    // One distinct symbol: only the table (γ(1), γ(6)), no payload.
    let stream = values(9, vec![5; 1000]);
    let bytes = round_trip(None, &stream);
    assert_eq!(bytes.len(), 1, "{bytes:?}");
    assert!(decode(&stream, &bytes, 3).is_ok());
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(decode(&stream, &longer, 1000).is_err());
    // A one-symbol alphabet.
    round_trip(None, &values(1, vec![0; 300]));
    // Empty: zero bytes; bytes for an empty stream are refused.
    let empty = values(3, Vec::new());
    assert!(round_trip(None, &empty).is_empty());
    assert!(decode(&empty, &[0], 0).is_err());
    // Fewer symbols than states, and every length around a multiple of 4.
    for len in 1..=13 {
        let symbols = (0..len).map(|i| (i * 7 % 5) as u32).collect();
        round_trip(None, &values(5, symbols));
    }
}

#[test]
fn random_streams_round_trip() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for round in 0..300 {
        let alphabet = match round % 4 {
            0 => rng.random_range(1..=4),
            1 => rng.random_range(1..=40),
            2 => rng.random_range(1..=MAX_ALPHABET),
            _ => MAX_ALPHABET,
        };
        let len = match round % 5 {
            0 => rng.random_range(0..10),
            1 => rng.random_range(0..3000),
            2 => 1024 * rng.random_range(1..4) + rng.random_range(0..9) - 4,
            _ => rng.random_range(0..20_000),
        };
        // A random subset of used symbols, some much likelier than others.
        let used = rng.random_range(1..=alphabet.min(600)) as usize;
        let support: Vec<u32> = (0..used)
            .map(|_| rng.random_range(0..alphabet) as u32)
            .collect();
        let skew: f64 = rng.random_range(0.0..4.0);
        let symbols: Vec<u32> = (0..len)
            .map(|_| {
                let u: f64 = rng.random();
                support[((u.powf(1.0 + skew) * used as f64) as usize).min(used - 1)]
            })
            .collect();
        let precision = match round % 3 {
            0 => None,
            _ => Some(rng.random_range(MIN_PRECISION..=MAX_PRECISION)),
        };
        let stream = values(alphabet, symbols);
        round_trip(precision, &stream);
    }
    // All 4096 symbols used, at every precision (raised to 12 where needed).
    let all = values(MAX_ALPHABET, (0..20_000).map(|i| (i * 37) % 4096).collect());
    for precision in MIN_PRECISION..=MAX_PRECISION {
        round_trip(Some(precision), &all);
    }
}

#[test]
fn extreme_skew_round_trips_and_huge_counts_are_refused() {
    // One rare symbol among 1M: each common symbol costs ~2^-15 bits, the
    // count bound must still admit the stream.
    let mut symbols = vec![0u32; 1_000_000];
    symbols[123_457] = 1;
    let stream = values(2, symbols);
    for (precision, limit) in [(Some(10), 250), (Some(15), 64), (None, 64)] {
        // log2(M / (M - 1)) bits a symbol: 176 bytes at 10 bits, 6 at 15.
        let bytes = round_trip(precision, &stream);
        assert!(bytes.len() < limit, "{precision:?}: {} bytes", bytes.len());
    }
    // A normal stream with an absurd count fails before allocating.
    let stream = values(33, qsgd_like(1000, 0.6, 9));
    let bytes = encode(None, &stream);
    assert!(decode(&stream, &bytes, 1 << 40).is_err());
    assert!(decode(&stream, &bytes, 999).is_err());
    assert!(decode(&stream, &bytes, 1001).is_err());
}

#[test]
fn corrupt_truncated_and_padded_inputs_are_errors_never_panics() {
    // One state (short stream) and four interleaved states.
    for n in [203, INTERLEAVE_MIN as usize + 5] {
        corruptions_are_caught(n);
    }
}

fn corruptions_are_caught(n: usize) {
    let stream = values(11, qsgd_like(n, 0.5, 7).iter().map(|s| s % 11).collect());
    let bytes = encode(None, &stream).to_vec();
    let count = stream.symbols.len() as u64;
    for len in 0..bytes.len() {
        assert!(
            decode(&stream, &bytes[..len], count).is_err(),
            "truncated to {len} bytes"
        );
    }
    for extra in 1..=9 {
        let mut padded = bytes.clone();
        padded.extend((0..extra).map(|i| i as u8 * 31));
        assert!(decode(&stream, &padded, count).is_err(), "{extra} extra");
    }
    let mut accepted = 0;
    for index in 0..bytes.len() {
        for flip in [0x01u8, 0x10, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[index] ^= flip;
            // decode() checks the count and the alphabet of any Ok result.
            if let Ok(back) = decode(&stream, &bad, count) {
                accepted += 1;
                assert_ne!(back, stream.symbols.as_slice());
            }
        }
    }
    assert!(accepted <= 4, "{accepted} corruptions accepted");
    // Random garbage of every length up to 100 bytes.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for len in 0..100 {
        let garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = decode(&stream, &garbage, count);
        let _ = decode(&stream, &garbage, 1);
    }
}

#[test]
fn unsupported_streams_and_bad_symbols_are_refused() {
    let mut out = RVec::new();
    let mut positions = SymbolStream::new(StreamRole::POSITIONS, 100);
    positions.symbols = vec![1, 5, 9].into();
    let error = coder(None).encode(&positions, &mut out).unwrap_err();
    assert_eq!(code(&error), ErrorCode::UNSUPPORTED);
    assert!(error.message.contains("golomb-rice"), "{}", error.message);
    let mut back = SymbolStream::new(StreamRole::POSITIONS, 100);
    let error = coder(None).decode(&[1, 2], 3, &mut back).unwrap_err();
    assert_eq!(code(&error), ErrorCode::UNSUPPORTED);
    let wide = values(MAX_ALPHABET + 1, vec![0, 1]);
    let error = coder(None).encode(&wide, &mut out).unwrap_err();
    assert_eq!(code(&error), ErrorCode::UNSUPPORTED);
    assert!(error.message.contains("4096"), "{}", error.message);
    let error = coder(None)
        .encode(&values(3, vec![0, 3, 1]), &mut out)
        .unwrap_err();
    assert_eq!(code(&error), ErrorCode::INVALID_INPUT);
    let error = coder(None)
        .encode(&values(0, vec![0]), &mut out)
        .unwrap_err();
    assert_eq!(code(&error), ErrorCode::INVALID_INPUT);
    assert!(out.is_empty());
}

#[test]
fn config_accepts_10_to_15_and_nothing_else() {
    assert_eq!(parse_config::<RansConfig>("{}").unwrap().precision, None);
    assert_eq!(
        parse_config::<RansConfig>(r#"{"precision": 12}"#)
            .unwrap()
            .precision,
        Some(12)
    );
    for bad in [
        r#"{"precision": 9}"#,
        r#"{"precision": 16}"#,
        r#"{"precison": 12}"#,
    ] {
        assert!(parse_config::<RansConfig>(bad).is_err(), "{bad}");
    }
}

#[test]
fn reciprocal_encoding_matches_division() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for precision in [MIN_PRECISION, 12, MAX_PRECISION] {
        let m = 1u64 << precision;
        for freq in 1..m as u32 {
            let cum = rng.random_range(0..=(m as u32 - freq));
            let symbol = EncSymbol::new(cum, freq, precision);
            let f = u64::from(freq);
            let x_max = symbol.x_max;
            // The state before `put`: in [L, x_max), or x_max >> 32 and up
            // after a renormalization.
            for x in [
                L,
                L + 1,
                x_max - 1,
                x_max - f,
                rng.random_range(L..x_max),
                (x_max >> 32).max(1),
            ] {
                let expected = (x / f) * m + u64::from(cum) + x % f;
                assert_eq!(symbol.put(x), expected, "p {precision} f {freq} x {x}");
            }
        }
    }
}

#[test]
fn count_bound_admits_every_encodable_stream() {
    // Tightest case: one symbol of frequency M - 1 repeated; the bound must
    // exceed what the encoder can fit in the same number of words.
    for precision in MIN_PRECISION..=MAX_PRECISION {
        let m = 1u32 << precision;
        let table = Table {
            precision,
            entries: vec![(0, m - 1), (1, 1)],
        };
        let n = 200_000;
        let mut out = RVec::new();
        encode_payload::<LANES>(&vec![0u32; n], &table, &mut out);
        let words = (out.len() - state_bytes(LANES)) / 4;
        assert!(max_count(words, m - 1, precision, LANES) >= n as u64);
        let mut back = vec![0u32; n];
        decode_payload::<LANES>(&out, &table, &mut back).unwrap();
        // One state (short streams).
        let n = 4_000;
        let mut out = RVec::new();
        encode_payload::<1>(&vec![0u32; n], &table, &mut out);
        let words = (out.len() - state_bytes(1)) / 4;
        assert!(max_count(words, m - 1, precision, 1) >= n as u64);
        let mut back = vec![0u32; n];
        decode_payload::<1>(&out, &table, &mut back).unwrap();
    }
    // A near-uniform table gives a tight bound: ~log2(M/f_max) bits a symbol.
    assert!(max_count(10, 512, 10, LANES) <= 32 * 14 + LANES as u64 + 1);
}
