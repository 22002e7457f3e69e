//! The reference figures every group measures on its own input in the same
//! run: a plain memcpy of the bytes into a reused buffer, and zstd (the `zstd`
//! crate, single-threaded) at levels 1 and 3.

use criterion::{measurement::WallTime, BenchmarkGroup};
use std::hint::black_box;
use zstd::bulk::{Compressor, Decompressor};

/// zstd levels measured.
pub const LEVELS: [i32; 2] = [1, 3];

/// Benchmark id of the memcpy baseline.
pub const MEMCPY: &str = "memcpy";

/// Benchmark id of zstd compression at `level`.
pub fn zstd_id(level: i32) -> String {
    format!("zstd-{level}")
}

/// Benchmark id of zstd decompression of a level-`level` frame.
pub fn unzstd_id(level: i32) -> String {
    format!("unzstd-{level}")
}

/// Baselines of an encode direction: memcpy, then zstd compression.
pub fn encode_ids() -> Vec<String> {
    std::iter::once(MEMCPY.to_string())
        .chain(LEVELS.map(zstd_id))
        .collect()
}

/// Baselines of a decode direction: memcpy, then zstd decompression.
pub fn decode_ids() -> Vec<String> {
    std::iter::once(MEMCPY.to_string())
        .chain(LEVELS.map(unzstd_id))
        .collect()
}

/// Adds `memcpy` of `bytes` into a reused buffer.
pub fn memcpy(group: &mut BenchmarkGroup<'_, WallTime>, bytes: &[u8]) {
    let mut copy = Vec::new();
    group.bench_function(MEMCPY, |b| {
        copy.resize(bytes.len(), 0);
        b.iter(|| copy.copy_from_slice(black_box(bytes)))
    });
}

/// Adds `zstd-<level>`: compression of `bytes` into a reused buffer.
pub fn compress(group: &mut BenchmarkGroup<'_, WallTime>, bytes: &[u8]) {
    for level in LEVELS {
        let mut out = Vec::new();
        group.bench_function(zstd_id(level), |b| {
            let mut compressor =
                Compressor::new(level).unwrap_or_else(|e| panic!("zstd level {level}: {e}"));
            out.clear();
            out.reserve(zstd::compress_bound(bytes.len()));
            b.iter(|| {
                compressor
                    .compress_to_buffer(black_box(bytes), &mut out)
                    .unwrap_or_else(|e| panic!("zstd level {level}: {e}"))
            })
        });
    }
}

/// Adds `unzstd-<level>`: decompression of a level-`level` frame of `bytes`
/// into a reused buffer (the frame is made, and its round trip checked, once).
pub fn decompress(group: &mut BenchmarkGroup<'_, WallTime>, bytes: &[u8]) {
    for level in LEVELS {
        let mut frame: Option<Vec<u8>> = None;
        let mut out = Vec::new();
        group.bench_function(unzstd_id(level), |b| {
            let mut decompressor =
                Decompressor::new().unwrap_or_else(|e| panic!("zstd decompressor: {e}"));
            let frame = frame.get_or_insert_with(|| {
                let frame = zstd::bulk::compress(bytes, level)
                    .unwrap_or_else(|e| panic!("zstd level {level}: {e}"));
                let back = zstd::bulk::decompress(&frame, bytes.len())
                    .unwrap_or_else(|e| panic!("zstd level {level} round trip: {e}"));
                assert!(back == bytes, "zstd level {level} round trip differs");
                frame
            });
            out.clear();
            out.reserve(bytes.len());
            b.iter(|| {
                decompressor
                    .decompress_to_buffer(black_box(frame.as_slice()), &mut out)
                    .unwrap_or_else(|e| panic!("zstd level {level}: {e}"))
            })
        });
    }
}
