//! Throughput of the `rans` stage against `ans` (static and adaptive models) on
//! 1M QSGD-like symbols (33 levels, two-sided geometric around the center), one
//! core, best of several runs:
//!
//! ```text
//! cargo run --release -p gradcodec-plugin-entropy-coders --example rans_speed
//! ```

use gradcodec_plugin_entropy_coders::ans::{Ans, AnsConfig, ModelKind};
use gradcodec_plugin_entropy_coders::rans::{Rans, RansConfig};
use gradcodec_sdk::{EntropyCoder, RVec, Stage, StreamRole, SymbolStream, TensorSpec};
use rand::{Rng, SeedableRng};
use std::time::Instant;

const N: usize = 1_000_000;

/// QSGD levels with s = 16: sign and a roughly geometric magnitude.
fn qsgd_like(n: usize, ratio: f64, seed: u64) -> Vec<u32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut level = 0i32;
            while level < 16 && rng.random::<f64>() < ratio {
                level += 1;
            }
            if rng.random::<bool>() {
                (16 + level) as u32
            } else {
                (16 - level) as u32
            }
        })
        .collect()
}

fn entropy(symbols: &[u32]) -> f64 {
    let mut counts = [0u64; 33];
    for s in symbols {
        counts[*s as usize] += 1;
    }
    let n = symbols.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Best-of-`runs` encode and decode throughput in M symbols/s, and the bytes.
fn measure(coder: &mut impl EntropyCoder, stream: &SymbolStream, runs: usize) -> (f64, f64, usize) {
    let mut bytes = RVec::new();
    let mut back = SymbolStream::new(stream.role, stream.alphabet_size);
    let (mut encode, mut decode) = (f64::MAX, f64::MAX);
    for _ in 0..runs {
        bytes.clear();
        let start = Instant::now();
        coder.encode(stream, &mut bytes).expect("encode");
        encode = encode.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        coder
            .decode(&bytes, stream.symbols.len() as u64, &mut back)
            .expect("decode");
        decode = decode.min(start.elapsed().as_secs_f64());
        assert_eq!(back.symbols, stream.symbols, "round trip");
    }
    let n = stream.symbols.len() as f64 / 1e6;
    (n / encode, n / decode, bytes.len())
}

fn main() {
    let tensor = TensorSpec::new("speed", &[N as u64]);
    let mut stream = SymbolStream::new(StreamRole::VALUES, 33);
    stream.symbols = qsgd_like(N, 0.6, 1).into();
    let h = entropy(&stream.symbols);
    println!("{N} QSGD-like symbols (33 levels), H0 = {h:.4} bits/symbol");
    let report = |name: &str, (enc, dec, bytes): (f64, f64, usize)| {
        let bits = bytes as f64 * 8.0 / N as f64;
        println!(
            "{name:<22} encode {enc:8.1} M symbols/s  decode {dec:8.1} M symbols/s  \
             {bits:.4} bits/symbol ({:+.3}% vs H0)",
            (bits / h - 1.0) * 100.0
        );
    };
    for precision in [None, Some(12)] {
        let mut rans = Rans::new(
            RansConfig {
                precision,
                ..RansConfig::default()
            },
            &tensor,
        )
        .expect("rans");
        let name = match precision {
            None => {
                let mut histogram = vec![0u64; 33];
                for s in stream.symbols.iter() {
                    histogram[*s as usize] += 1;
                }
                let chosen = gradcodec_plugin_entropy_coders::rans_table::plan(&histogram, None);
                format!("rans (auto: {})", chosen.precision)
            }
            Some(p) => format!("rans (precision {p})"),
        };
        report(&name, measure(&mut rans, &stream, 20));
    }
    for (name, model) in [
        ("ans static", ModelKind::Static),
        ("ans adaptive", ModelKind::Adaptive),
    ] {
        let mut ans = Ans::new(AnsConfig { model }, &tensor).expect("ans");
        report(name, measure(&mut ans, &stream, 3));
    }
}
