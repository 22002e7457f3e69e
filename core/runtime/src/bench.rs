//! Measuring a pipeline: real message size, distortion, and encode / decode
//! throughput (median over repetitions, fresh stream each time).
//!
//! [`measure`] codes one update as round 0 of a fresh stream, so stateful
//! stages (error feedback, predictors) start empty; [`measure_stream`] codes a
//! stream of rounds, so they warm up, and reports means over the rounds and the
//! last round.

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
    /// Entries in the update (the last round's).
    pub entries: u64,
    /// Message bytes (all rounds).
    pub bytes: u64,
    /// 8 × bytes / entries (the mean over rounds).
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
    /// Rounds coded as one stream (1 for [`measure`]).
    pub rounds: usize,
    /// Bits per entry of the last round.
    pub bits_per_entry_last: f64,
    /// Relative MSE of the last round.
    pub relative_mse_last: f64,
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
    let reconstruction = encoder.try_last_reconstruction()?.clone();
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
        rounds: 1,
        bits_per_entry_last: bits_per_entry(message.len() as u64, entries),
        relative_mse_last: relative_mse(update, &reconstruction),
    })
}

/// Measures `pipeline` on a stream of `rounds` updates, round `r` coding
/// `updates[r % len]`: bits and distortions are means over the rounds (and the
/// last round's), speeds cover the whole stream, timed for at least `min_time`
/// per direction with a fresh encoder and decoder each repetition.
pub fn measure_stream(
    pipeline: &Arc<Pipeline>,
    updates: &[Update],
    rounds: usize,
    min_time: Duration,
) -> Result<BenchReport> {
    if updates.is_empty() || rounds == 0 {
        return Err(Error::Update(
            "a stream needs at least one update and one round".into(),
        ));
    }
    let round_update = |round: usize| &updates[round % updates.len()];
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    let mut messages = Vec::with_capacity(rounds);
    let (mut bits, mut errors, mut weighted) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let update = round_update(round);
        let message = encoder.encode(update)?;
        let decoded = decoder.decode(&message)?;
        if &decoded != encoder.try_last_reconstruction()? {
            return Err(Error::Message(format!(
                "round {round}: the decoder's output differs from the encoder's reconstruction"
            )));
        }
        bits.push(bits_per_entry(
            message.len() as u64,
            update.entries() as u64,
        ));
        errors.push(relative_mse(update, &decoded));
        weighted.push(relative_weighted_distortion(update, &decoded, 2.0));
        messages.push(message);
    }
    let encode_times = repeat(min_time, || {
        let mut encoder = pipeline.encoder();
        let start = Instant::now();
        for round in 0..rounds {
            encoder.encode(round_update(round))?;
        }
        Ok(start.elapsed())
    })?;
    let decode_times = repeat(min_time, || {
        let mut decoder = pipeline.decoder();
        let start = Instant::now();
        for message in &messages {
            decoder.decode(message)?;
        }
        Ok(start.elapsed())
    })?;
    let entries: u64 = (0..rounds).map(|r| round_update(r).entries() as u64).sum();
    let rate = |d: Duration| entries as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    Ok(BenchReport {
        pipeline: pipeline.name().to_string(),
        entries: round_update(rounds - 1).entries() as u64,
        bytes: messages.iter().map(|m| m.len() as u64).sum(),
        bits_per_entry: mean(&bits),
        relative_mse: mean(&errors),
        weighted_distortion_m2: mean(&weighted),
        encode_mentries_per_s: rate(median(encode_times.clone())),
        decode_mentries_per_s: rate(median(decode_times)),
        repetitions: encode_times.len(),
        rounds,
        bits_per_entry_last: bits[rounds - 1],
        relative_mse_last: errors[rounds - 1],
    })
}
