//! A trial run: the pipeline encodes and decodes a few rounds of a synthetic
//! sample update, so a spec whose stages cannot work together fails before any
//! real data is sent, with the stage and tensor in the error. It catches what a
//! spec alone cannot show: an entropy coder that cannot take a quantizer's
//! streams (their role or alphabet), a `model: parametric` coder after a
//! quantizer that gives no model, a stage that fails on a matrix or on a
//! stream of rounds (stateful stages run three rounds).
//!
//! The sample holds a 96 x 128 matrix and a 128-entry vector of heavy-tailed
//! values with exact zeros (both above any shipped `uncompressed` threshold)
//! and an 8-entry vector, so the uncompressed path runs too.

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::update::{NamedTensor, Update};
use std::sync::Arc;

/// Rounds [`trial_run`] codes by default.
pub const TRIAL_ROUNDS: u32 = 3;

/// What a successful trial run coded.
#[derive(Clone, Debug)]
pub struct TrialReport {
    /// Rounds coded.
    pub rounds: u32,
    /// Entries per round.
    pub entries: u64,
    /// Message bytes of each round.
    pub message_bytes: Vec<u64>,
}

/// Why a trial run failed: the round and the runtime's error.
#[derive(Debug, thiserror::Error)]
#[error("trial run on a sample update, round {round}: {error}")]
pub struct TrialFailure {
    /// The round that failed.
    pub round: u32,
    /// What failed.
    pub error: Error,
}

/// The sample update of round `round` (deterministic).
pub fn sample_update(round: u32) -> Result<Update> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(round).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut values = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                if i % 7 == 3 {
                    return 0.0;
                }
                let uniform = ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let magnitude = -uniform.ln() * 0.01;
                let sign = if (state >> 7) & 1 == 0 { 1.0 } else { -1.0 };
                (sign * magnitude * magnitude.sqrt() * 10.0) as f32
            })
            .collect()
    };
    let weight = values(96 * 128);
    let bias = values(128);
    let small = values(8);
    Ok(Update::new(vec![
        NamedTensor::from_vec("trial.weight", &[96, 128], weight)?,
        NamedTensor::from_vec("trial.bias", &[128], bias)?,
        NamedTensor::from_vec("trial.scale", &[8], small)?,
    ]))
}

/// Encodes and decodes `rounds` sample updates as one stream; fails on the
/// first error, or if the decoder's output differs from the encoder's
/// reconstruction.
pub fn trial_run(pipeline: &Arc<Pipeline>, rounds: u32) -> Result<TrialReport, TrialFailure> {
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    let mut report = TrialReport {
        rounds,
        entries: 0,
        message_bytes: Vec::new(),
    };
    for round in 0..rounds {
        let fail = |error| TrialFailure { round, error };
        let update = sample_update(round).map_err(fail)?;
        report.entries = update.entries() as u64;
        let message = encoder.encode(&update).map_err(fail)?;
        let decoded = decoder.decode(&message).map_err(fail)?;
        if &decoded != encoder.try_last_reconstruction().map_err(fail)? {
            return Err(fail(Error::Message(
                "the decoder's output differs from the encoder's reconstruction".into(),
            )));
        }
        report.message_bytes.push(message.len() as u64);
    }
    Ok(report)
}
