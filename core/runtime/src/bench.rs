//! Measuring a pipeline on one update: real message size, distortion, and
//! encode / decode throughput (median over repetitions, fresh stream each time,
//! so stateful pipelines are timed on the same round-0 work).

use crate::error::{Error, Result};
use crate::metrics::{bits_per_entry, relative_mse, relative_weighted_distortion};
use crate::pipeline::Pipeline;
use crate::update::Update;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `bench` reports.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Pipeline name.
    pub pipeline: String,
    /// Entries in the update.
    pub entries: u64,
    /// Message bytes.
    pub bytes: u64,
    /// 8 × bytes / entries.
    pub bits_per_entry: f64,
    /// Σ(x-x̂)² / Σx².
    pub relative_mse: f64,
    /// Σ|x|²(x-x̂)² / Σ|x|²x² (M = 2).
    pub weighted_distortion_m2: f64,
    /// Median encode throughput, million entries per second.
    pub encode_mentries_per_s: f64,
    /// Median decode throughput, million entries per second.
    pub decode_mentries_per_s: f64,
    /// Timed repetitions of each.
    pub repetitions: usize,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn repeat(min_time: Duration, mut run: impl FnMut() -> Result<Duration>) -> Result<Vec<Duration>> {
    let started = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 3 || (started.elapsed() < min_time && samples.len() < 1000) {
        samples.push(run()?);
    }
    Ok(samples)
}

/// Measures `pipeline` on `update`, timing each direction for at least `min_time`.
pub fn measure(
    pipeline: &Arc<Pipeline>,
    update: &Update,
    min_time: Duration,
) -> Result<BenchReport> {
    let mut encoder = pipeline.encoder();
    let message = encoder.encode(update)?;
    let reconstruction = encoder.last_reconstruction().clone();
    let decoded = pipeline.decoder().decode(&message)?;
    if decoded != reconstruction {
        return Err(Error::Message(
            "the decoder's output differs from the encoder's reconstruction".into(),
        ));
    }
    let encode_times = repeat(min_time, || {
        let mut encoder = pipeline.encoder();
        let start = Instant::now();
        let again = encoder.encode(update)?;
        let elapsed = start.elapsed();
        if again != message {
            return Err(Error::Message(
                "encoding the same update twice gave different bytes".into(),
            ));
        }
        Ok(elapsed)
    })?;
    let decode_times = repeat(min_time, || {
        let mut decoder = pipeline.decoder();
        let start = Instant::now();
        decoder.decode(&message)?;
        Ok(start.elapsed())
    })?;
    let entries = update.entries() as u64;
    let rate = |d: Duration| entries as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    Ok(BenchReport {
        pipeline: pipeline.name().to_string(),
        entries,
        bytes: message.len() as u64,
        bits_per_entry: bits_per_entry(message.len() as u64, entries),
        relative_mse: relative_mse(update, &reconstruction),
        weighted_distortion_m2: relative_weighted_distortion(update, &reconstruction, 2.0),
        encode_mentries_per_s: rate(median(encode_times.clone())),
        decode_mentries_per_s: rate(median(decode_times)),
        repetitions: encode_times.len(),
    })
}
