//! Tests of the `rans` stage: compression against the empirical entropy, round
//! trips, corrupt input, and the reciprocal arithmetic.

use super::*;
use gradcodec_sdk::{parse_config, ErrorCode, StageError, StreamRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn coder(precision: Option<u32>) -> Rans {
    Rans {
        precision,
        model: RansModel::Empirical,
        slots: None,
        encoder: None,
    }
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
        encode_payload::<LANES>(&vec![0u32; n], &table, &mut EncoderScratch::new(), &mut out);
        let words = (out.len() - state_bytes(LANES)) / 4;
        assert!(max_count(words, m - 1, precision, LANES) >= n as u64);
        let mut back = RVec::new();
        decode_payload::<LANES>(&out, &table, &mut new_slots(), n, &mut back).unwrap();
        assert!(back.len() == n && back.iter().all(|&s| s == 0));
        // One state (short streams).
        let n = 4_000;
        let mut out = RVec::new();
        encode_payload::<1>(&vec![0u32; n], &table, &mut EncoderScratch::new(), &mut out);
        let words = (out.len() - state_bytes(1)) / 4;
        assert!(max_count(words, m - 1, precision, 1) >= n as u64);
        let mut back = RVec::new();
        decode_payload::<1>(&out, &table, &mut new_slots(), n, &mut back).unwrap();
        assert!(back.len() == n && back.iter().all(|&s| s == 0));
    }
    // A near-uniform table gives a tight bound: ~log2(M/f_max) bits a symbol.
    assert!(max_count(10, 512, 10, LANES) <= 32 * 14 + LANES as u64 + 1);
}

// ---------------------------------------------------------------------------
// model: parametric

fn parametric(precision: Option<u32>) -> Rans {
    Rans {
        precision,
        model: RansModel::Parametric,
        slots: None,
        encoder: None,
    }
}

/// A stream of `n` symbols drawn from `pmf`, carrying `pmf` as its model.
fn modelled(pmf: &[f32], n: usize, seed: u64) -> SymbolStream {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total: f64 = pmf.iter().map(|p| f64::from(*p)).sum();
    let cdf: Vec<f64> = pmf
        .iter()
        .scan(0.0, |acc, p| {
            *acc += f64::from(*p) / total;
            Some(*acc)
        })
        .collect();
    let symbols = (0..n)
        .map(|_| {
            let u: f64 = rng.random();
            cdf.iter().position(|c| u < *c).unwrap_or(pmf.len() - 1) as u32
        })
        .collect();
    let mut stream = values(pmf.len() as u64, symbols);
    stream.model = pmf.to_vec().into();
    stream
}

fn decode_parametric(
    precision: Option<u32>,
    stream: &SymbolStream,
    bytes: &[u8],
    count: u64,
) -> SdkResult<Vec<u32>> {
    let mut back = SymbolStream {
        symbols: vec![7; 3].into(),
        ..stream.clone()
    };
    parametric(precision).decode(bytes, count, &mut back)?;
    assert_eq!(back.symbols.len() as u64, count, "decoded count");
    assert!(back
        .symbols
        .iter()
        .all(|s| u64::from(*s) < stream.alphabet_size));
    Ok(back.symbols.to_vec())
}

fn parametric_round_trip(precision: Option<u32>, stream: &SymbolStream) -> RVec<u8> {
    let mut bytes = RVec::new();
    parametric(precision).encode(stream, &mut bytes).unwrap();
    let back = decode_parametric(precision, stream, &bytes, stream.symbols.len() as u64).unwrap();
    assert_eq!(back, stream.symbols.as_slice(), "parametric round trip");
    bytes
}

/// `Σ -log₂ q(s)` of the symbols under the table's probabilities `f/M`.
fn table_bits(table: &Table, symbols: &[u32]) -> f64 {
    let m = f64::from(1u32 << table.precision);
    symbols
        .iter()
        .map(|s| (m / f64::from(table.entries[*s as usize].1)).log2())
        .sum()
}

/// GenNorm-like fp4 cell masses (15 levels, sign in the alphabet).
fn fp4_like() -> Vec<f32> {
    let half = [0.30f32, 0.12, 0.08, 0.05, 0.02, 0.008, 0.002, 0.0004];
    let mut pmf: Vec<f32> = half[1..].iter().rev().copied().collect();
    pmf.extend_from_slice(&half);
    pmf
}

#[test]
fn parametric_round_trips_and_costs_the_model_cross_entropy_plus_the_states() {
    let mut geometric: Vec<f32> = (0..300).map(|i| 0.97f32.powi(i)).collect();
    geometric[17] = 1e-30; // a symbol the model deems (nearly) impossible
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("binary", vec![0.9, 0.1]),
        ("binary skewed", vec![0.001, 0.999]),
        ("ternary", vec![0.25, 0.5, 0.25]),
        ("fp4-like", fp4_like()),
        ("geometric 300", geometric),
        ("uniform 4096", vec![1.0; 4096]),
    ];
    for (name, pmf) in cases {
        for n in [1, 5, 4095, 4096, 50_000] {
            let stream = modelled(&pmf, n, n as u64);
            for precision in [None, Some(10), Some(15)] {
                let bytes = parametric_round_trip(precision, &stream);
                // Nothing but the states and the words: within the model's
                // cross-entropy plus the state bytes and one word.
                let table = parametric_table(&stream, precision, invalid_input).unwrap();
                let ideal = table_bits(&table, &stream.symbols);
                let lanes = lanes_for(n as u64);
                let bits = bytes.len() as f64 * 8.0;
                assert!(
                    bits <= ideal + 64.0 * lanes as f64 + 32.0,
                    "{name} n {n} {precision:?}: {bits} bits, ideal {ideal:.1}"
                );
                assert!(bits >= ideal, "{name} n {n}: {bits} < {ideal}");
            }
        }
    }
}

#[test]
fn parametric_is_within_one_percent_of_the_entropy_when_the_model_is_right() {
    let n = 1_000_000;
    for (name, pmf) in [("fp4-like", fp4_like()), ("ternary", vec![0.05, 0.9, 0.05])] {
        let stream = modelled(&pmf, n, 11);
        let bytes = parametric_round_trip(None, &stream);
        let h = entropy(&stream.symbols);
        let overhead = bytes.len() as f64 * 8.0 / n as f64 / h - 1.0;
        eprintln!("rans parametric, {name}: {:+.3}% over H0", overhead * 100.0);
        assert!(overhead < 0.01, "{name}: {overhead}");
    }
}

#[test]
fn parametric_one_and_two_symbol_alphabets_and_empty_streams() {
    // A one-symbol alphabet codes to nothing; bytes for it are refused.
    let mut single = values(1, vec![0; 300]);
    single.model = vec![1.0].into();
    assert!(parametric_round_trip(None, &single).is_empty());
    assert!(decode_parametric(None, &single, &[0], 300).is_err());
    // Two symbols, one of them with zero model mass, still code.
    let mut binary = values(2, vec![0, 1, 1, 0, 1]);
    binary.model = vec![0.0, 1.0].into();
    parametric_round_trip(None, &binary);
    for len in 1..=13 {
        let mut short = values(2, (0..len).map(|i| (i % 3 == 0) as u32).collect());
        short.model = vec![0.3, 0.7].into();
        parametric_round_trip(Some(10), &short);
    }
    // Empty: zero bytes, and bytes for an empty stream are refused.
    let mut empty = values(3, Vec::new());
    empty.model = vec![0.2, 0.3, 0.5].into();
    assert!(parametric_round_trip(None, &empty).is_empty());
    assert!(decode_parametric(None, &empty, &[0], 0).is_err());
}

#[test]
fn parametric_needs_a_model_that_is_a_pmf_of_the_alphabet() {
    let mut stream = values(4, vec![0, 1, 2, 3, 0]);
    // No model: unsupported, on both ends, even for an empty stream.
    let error = parametric(None)
        .encode(&stream, &mut RVec::new())
        .unwrap_err();
    assert_eq!(code(&error), ErrorCode::UNSUPPORTED);
    assert!(error.message.contains("no model"), "{}", error.message);
    let mut back = values(4, Vec::new());
    let error = parametric(None).decode(&[], 0, &mut back).unwrap_err();
    assert_eq!(code(&error), ErrorCode::UNSUPPORTED);
    // Wrong length, negative, non-finite or all-zero models are refused.
    for bad in [
        vec![0.5f32, 0.5],
        vec![0.5, -0.1, 0.3, 0.3],
        vec![0.5, f32::NAN, 0.3, 0.2],
        vec![0.5, f32::INFINITY, 0.3, 0.2],
        vec![0.0; 4],
    ] {
        stream.model = bad.clone().into();
        let error = parametric(None)
            .encode(&stream, &mut RVec::new())
            .unwrap_err();
        assert_eq!(code(&error), ErrorCode::INVALID_INPUT, "{bad:?}");
        let mut target = stream.clone();
        let error = parametric(None)
            .decode(&[0; 12], 5, &mut target)
            .unwrap_err();
        assert_eq!(code(&error), ErrorCode::CORRUPT_DATA, "{bad:?}");
    }
    // Symbols outside the alphabet are refused.
    stream.model = vec![0.25; 4].into();
    stream.symbols = vec![0, 4].into();
    let error = parametric(None)
        .encode(&stream, &mut RVec::new())
        .unwrap_err();
    assert_eq!(code(&error), ErrorCode::INVALID_INPUT);
    // Positions and large alphabets stay unsupported.
    let mut wide = values(MAX_ALPHABET + 1, vec![0, 1]);
    wide.model = vec![1.0; MAX_ALPHABET as usize + 1].into();
    let error = parametric(None)
        .encode(&wide, &mut RVec::new())
        .unwrap_err();
    assert_eq!(code(&error), ErrorCode::UNSUPPORTED);
}

#[test]
fn parametric_corrupt_truncated_and_padded_inputs_are_errors_never_panics() {
    for n in [203, INTERLEAVE_MIN as usize + 5] {
        let stream = modelled(&fp4_like(), n, 5);
        let bytes = parametric_round_trip(None, &stream).to_vec();
        let count = n as u64;
        for len in 0..bytes.len() {
            assert!(
                decode_parametric(None, &stream, &bytes[..len], count).is_err(),
                "truncated to {len} bytes"
            );
        }
        for extra in 1..=9 {
            let mut padded = bytes.clone();
            padded.extend((0..extra).map(|i| i as u8 * 31));
            assert!(
                decode_parametric(None, &stream, &padded, count).is_err(),
                "{extra} extra"
            );
        }
        let mut accepted = 0;
        for index in 0..bytes.len() {
            for flip in [0x01u8, 0x10, 0x80, 0xFF] {
                let mut bad = bytes.clone();
                bad[index] ^= flip;
                if let Ok(back) = decode_parametric(None, &stream, &bad, count) {
                    accepted += 1;
                    assert_ne!(back, stream.symbols.as_slice());
                }
            }
        }
        assert!(accepted <= 4, "{accepted} corruptions accepted");
        // Wrong counts, and a huge one refused before allocating.
        assert!(decode_parametric(None, &stream, &bytes, count - 1).is_err());
        assert!(decode_parametric(None, &stream, &bytes, count + 1).is_err());
        let mut target = SymbolStream {
            symbols: RVec::new(),
            ..stream.clone()
        };
        assert!(parametric(None)
            .decode(&bytes, 1 << 40, &mut target)
            .is_err());
        assert_eq!(target.symbols.capacity(), 0);
        // Random garbage of every length up to 100 bytes (decode_parametric
        // checks the count and the alphabet of any Ok result).
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for len in 0..100 {
            let garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = decode_parametric(None, &stream, &garbage, count);
            let _ = decode_parametric(None, &stream, &garbage, 1);
        }
    }
}

#[test]
fn parametric_random_models_round_trip() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for round in 0..150 {
        let alphabet: usize = match round % 3 {
            0 => rng.random_range(1..=4),
            1 => rng.random_range(1..=64),
            _ => rng.random_range(1..=MAX_ALPHABET as usize),
        };
        let skew: f64 = rng.random_range(0.0..30.0);
        let mut pmf: Vec<f32> = (0..alphabet)
            .map(|_| rng.random::<f64>().powf(skew) as f32)
            .collect();
        pmf[rng.random_range(0..alphabet)] += 0.01;
        let n = match round % 4 {
            0 => rng.random_range(0..10),
            1 => rng.random_range(0..5000),
            _ => rng.random_range(0..30_000),
        };
        // Symbols from the model, with a few the model deems unlikely.
        let mut stream = modelled(&pmf, n, round);
        let mut symbols = stream.symbols.to_vec();
        for _ in 0..n / 100 {
            let at = rng.random_range(0..n);
            symbols[at] = rng.random_range(0..alphabet) as u32;
        }
        stream.symbols = symbols.into();
        let precision = match round % 2 {
            0 => None,
            _ => Some(rng.random_range(MIN_PRECISION..=MAX_PRECISION)),
        };
        parametric_round_trip(precision, &stream);
    }
}

#[test]
fn model_config_defaults_to_empirical_and_stays_out_of_the_canonical_config() {
    let default = parse_config::<RansConfig>("{}").unwrap();
    assert_eq!(default.model, RansModel::Empirical);
    assert_eq!(
        gradcodec_sdk::config::canonical_json(&default).unwrap(),
        "{}"
    );
    let explicit = parse_config::<RansConfig>(r#"{"model": "empirical"}"#).unwrap();
    assert_eq!(
        gradcodec_sdk::config::canonical_json(&explicit).unwrap(),
        "{}"
    );
    let with_precision = parse_config::<RansConfig>(r#"{"precision": 12}"#).unwrap();
    assert_eq!(
        gradcodec_sdk::config::canonical_json(&with_precision).unwrap(),
        r#"{"precision":12}"#
    );
    let config = parse_config::<RansConfig>(r#"{"model": "parametric"}"#).unwrap();
    assert_eq!(config.model, RansModel::Parametric);
    assert_eq!(
        gradcodec_sdk::config::canonical_json(&config).unwrap(),
        r#"{"model":"parametric"}"#
    );
    assert!(parse_config::<RansConfig>(r#"{"model": "adaptive"}"#).is_err());
}

/// One coder decodes streams of different tables in turn: its reused slot
/// table is rebuilt for each (a larger precision first, then a smaller one),
/// and its reused symbol buffer holds only the current stream.
#[test]
fn one_decoder_reuses_its_tables_across_streams() {
    let wide = values(33, qsgd_like(20_000, 0.6, 1));
    let narrow = values(3, (0..5_000u32).map(|i| (i * 7 % 11) % 3).collect());
    let wide_bytes = encode(Some(15), &wide);
    let narrow_bytes = encode(Some(10), &narrow);
    let mut decoder = coder(None);
    let mut back = SymbolStream::new(StreamRole::VALUES, 33);
    for _ in 0..2 {
        for (stream, bytes) in [(&wide, &wide_bytes), (&narrow, &narrow_bytes)] {
            back.alphabet_size = stream.alphabet_size;
            decoder
                .decode(bytes, stream.symbols.len() as u64, &mut back)
                .unwrap();
            assert_eq!(back.symbols.as_slice(), stream.symbols.as_slice());
        }
    }
}
