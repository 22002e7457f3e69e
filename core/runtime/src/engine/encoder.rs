//! The encoder of one stream: an update in, one message out.

use super::checks;
use super::options::{EmbedPipeline, NonFinitePolicy};
use super::stats::{MessageStats, TensorStats};
use super::streams::{Streams, TensorCodecs};
use super::tensor_codec::BlockCodec;
use crate::container::{CodedBlock, CodedTensor, Limits, MessageWriter};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::update::{NamedTensor, Update};
use std::sync::{Arc, OnceLock};

/// Entries per piece of the parallel non-finite scan.
const SCAN_PIECE: usize = 1 << 18;

/// What the last message carried per tensor, to build its reconstruction on request.
enum LastTensor {
    /// Sent raw: x̂ is x.
    Raw(NamedTensor),
    /// Coded: x̂ is in the tensor's codecs.
    Coded { name: String, shape: Vec<usize> },
}

/// Encodes the updates of one stream (one learner, one direction).
pub struct Encoder {
    streams: Streams,
    round: u64,
    embed: EmbedPipeline,
    non_finite: NonFinitePolicy,
    limits: Limits,
    last: Vec<LastTensor>,
    /// x̂ of the last message, or why a plugin could not give it.
    reconstruction: OnceLock<std::result::Result<Update, String>>,
    stats: MessageStats,
}

impl Encoder {
    /// An encoder for `pipeline` (also [`Pipeline::encoder`]).
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            streams: Streams::new(pipeline),
            round: 0,
            embed: EmbedPipeline::default(),
            non_finite: NonFinitePolicy::default(),
            limits: Limits::default(),
            last: Vec::new(),
            reconstruction: OnceLock::new(),
            stats: MessageStats::default(),
        }
    }

    /// Sets when the pipeline is embedded in messages.
    pub fn set_embed_pipeline(&mut self, embed: EmbedPipeline) {
        self.embed = embed;
    }

    /// Runs the pipeline's fused pair (when it has one; the default unless
    /// `GRADCODEC_FUSED=off`) or, with `false`, the composed stages. The bytes
    /// are the same either way; only the composed path leaves the symbols in
    /// [`Encoder::last_symbol_streams`].
    pub fn set_fused(&mut self, fused: bool) {
        self.streams.fused = fused;
    }

    /// Sets the policy for NaN / infinite values.
    pub fn set_non_finite(&mut self, policy: NonFinitePolicy) {
        self.non_finite = policy;
    }

    /// Sets the caps an update and its message must fit: the same
    /// [`Limits`] a decoder checks, so the encoder never writes a message its
    /// receiver's decoder (with the same limits) refuses. Default: the
    /// decoder's default.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.streams.pipeline
    }

    /// The next message's round number.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// What the receiver reconstructs from the last message (empty before the
    /// first message and after a failed encode). Built on the first call after
    /// each message, so an encoder whose caller never asks copies nothing.
    ///
    /// # Panics
    /// Where a fused pair skipped x̂ and then fails to decode the streams it
    /// coded (a plugin breaking its contract); [`Encoder::try_last_reconstruction`]
    /// returns that as an error instead.
    pub fn last_reconstruction(&self) -> &Update {
        match self.try_last_reconstruction() {
            Ok(update) => update,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`Encoder::last_reconstruction`], with a plugin's failure to decode its
    /// own streams as an error.
    pub fn try_last_reconstruction(&self) -> Result<&Update> {
        self.reconstruction
            .get_or_init(|| {
                self.last
                    .iter()
                    .map(|tensor| match tensor {
                        LastTensor::Raw(tensor) => Ok(tensor.clone()),
                        LastTensor::Coded { name, shape } => {
                            let values = self.streams.codecs[name]
                                .encoded_reconstruction(&self.streams.pipeline)
                                .map_err(|error| error.to_string())?;
                            NamedTensor::from_vec(name.clone(), shape, values)
                                .map_err(|error| error.to_string())
                        }
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()
                    .map(Update::new)
            })
            .as_ref()
            .map_err(|message| Error::Update(message.clone()))
    }

    /// Sizes of the last message.
    pub fn last_stats(&self) -> &MessageStats {
        &self.stats
    }

    /// The symbol streams of the last message's coded tensors, with each
    /// tensor's name (for measurement, e.g. the zeroth-order entropy of what the
    /// coders were given). Empty before the first message; the symbol vectors
    /// are empty where a fused pair ran (see [`Encoder::set_fused`]).
    pub fn last_symbol_streams(&self) -> Vec<(&str, &gradcodec_abi::SymbolStream)> {
        self.stats
            .tensors
            .iter()
            .filter(|t| !t.raw)
            .filter_map(|t| {
                self.streams
                    .codecs
                    .get(&t.name)
                    .map(|c| (t.name.as_str(), c))
            })
            .flat_map(|(name, codecs)| {
                codecs
                    .blocks
                    .iter()
                    .flat_map(move |b| b.quantized.streams.iter().map(move |s| (name, s)))
            })
            .collect()
    }

    /// Encodes one update into one message. Tensors, and the blocks of tensors
    /// cut into blocks, are coded in parallel (rayon); the bytes do not depend
    /// on the thread count.
    pub fn encode(&mut self, update: &Update) -> Result<Vec<u8>> {
        let Some(next_round) = self.round.checked_add(1) else {
            return Err(Error::Update(format!(
                "round {} is the last a stream can number; reset the stream",
                self.round
            )));
        };
        checks::check_limits(&self.limits, update)?;
        checks::check_unique_names(update)?;
        let pipeline = Arc::clone(&self.streams.pipeline);
        let shapes: Vec<Vec<u64>> = update.tensors.iter().map(shape_u64).collect();
        let coded: Vec<bool> = update
            .tensors
            .iter()
            .map(|t| (t.len() as u64) >= pipeline.uncompressed_below())
            .collect();
        let layouts: Vec<_> = shapes.iter().map(|s| self.streams.layout(s)).collect();
        for ((tensor, layout), shape) in update.tensors.iter().zip(&layouts).zip(&shapes) {
            self.streams.check_known(&tensor.name, layout, shape)?;
        }
        // A CHECKS_FINITE quantizer that sees the input first refuses NaN and
        // infinities itself, in a pass it makes anyway; the host then scans only
        // the tensors sent raw, and the whole update only if the encode fails
        // (to report the values as this scan does).
        // Likewise a CHECKS_FINITE error correction that sees the input first:
        // every block is compensated (which changes no state) before any stage
        // advances.
        let policy_error = self.non_finite == NonFinitePolicy::Error;
        let by_quantizer = policy_error && pipeline.quantizer_guards_input();
        let by_correction = policy_error && !by_quantizer && pipeline.correction_guards_input();
        let deferred = by_quantizer || by_correction;
        let non_finite = count_non_finite(update, |index| !deferred || !coded[index]);
        let cleaned = if non_finite.iter().any(|&bad| bad > 0) && deferred {
            let all = count_non_finite(update, |_| true);
            checks::apply_non_finite_policy(self.non_finite, update, &all)?
        } else {
            checks::apply_non_finite_policy(self.non_finite, update, &non_finite)?
        };
        let update = cleaned.as_ref().unwrap_or(update);
        // From here the stages advance. Take each coded tensor's codecs out of
        // the map so every block runs in parallel.
        let mut jobs: Vec<Option<TensorCodecs>> = Vec::with_capacity(update.tensors.len());
        for (index, tensor) in update.tensors.iter().enumerate() {
            jobs.push(if coded[index] {
                Some(
                    self.streams
                        .take(&tensor.name, layouts[index].clone(), &shapes[index])?,
                )
            } else {
                None
            });
        }
        let values: Vec<_> = update
            .tensors
            .iter()
            .map(|t| t.data.as_standard_layout())
            .collect();
        let round = self.round;
        let fused = self.streams.fused;
        // True when the update was refused before any block was written.
        let mut untouched = false;
        let outcomes: Vec<Result<Option<u32>>> = {
            let mut blocks: Vec<(usize, &mut BlockCodec, &[f32])> = Vec::new();
            for (index, job) in jobs.iter_mut().enumerate() {
                if let Some(codecs) = job {
                    let all = values[index]
                        .as_slice()
                        .expect("standard layout is contiguous");
                    let layout = &codecs.layout;
                    for (block_index, block) in codecs.blocks.iter_mut().enumerate() {
                        blocks.push((index, block, &all[layout.block_range(block_index)]));
                    }
                }
            }
            let prepared: Vec<Result<()>> = if by_correction {
                super::parallel::map_all(blocks.iter_mut().collect(), |(index, block, x)| {
                    let ctx = block.context(round, *index);
                    block.prepare(&ctx, x)
                })
            } else {
                Vec::new()
            };
            match prepared.into_iter().find_map(Result::err) {
                // No stage advanced: the error (or the scan's) is all there is.
                Some(error) => {
                    untouched = true;
                    vec![Err(error)]
                }
                None => super::parallel::map_all(blocks, |(index, block, x)| {
                    let ctx = block.context(round, index);
                    if by_correction {
                        block.encode_prepared(&ctx, x, &pipeline, fused)
                    } else {
                        block.encode(&ctx, x, &pipeline, fused)
                    }
                }),
            }
        };
        // A refused input of a deferred scan is reported as the scan reports it;
        // no stage keeps state, but the blocks' buffers were written, so the last
        // x̂ is gone as after any failed encode.
        let refused = if deferred && outcomes.iter().any(Result::is_err) {
            let all = count_non_finite(update, |_| true);
            checks::apply_non_finite_policy(self.non_finite, update, &all).err()
        } else {
            None
        };
        // The first error in message order, else every block's model check.
        let result = match refused {
            Some(error) => Err(error),
            None => outcomes
                .into_iter()
                .collect::<Result<Vec<Option<u32>>>>()
                .and_then(|model_checks| {
                    self.assemble(update, &shapes, &values, &jobs, &model_checks)
                }),
        };

        // Put the codecs back (their stages have advanced either way).
        for (tensor, job) in update.tensors.iter().zip(jobs) {
            if let Some(codecs) = job {
                self.streams.codecs.insert(tensor.name.clone(), codecs);
            }
        }
        if untouched {
            // As a refused update before any stage ran: the last x̂ stays.
            return result.map(|(message, _)| message);
        }
        self.reconstruction = OnceLock::new();
        self.last.clear();
        let (message, stats) = result?;
        // Only the coded message shows these; the stages have advanced, so a
        // stream refused here must be reset (the error says so).
        checks::check_message_limits(&self.limits, &message, &stats)?;
        self.last = update
            .tensors
            .iter()
            .zip(&coded)
            .map(|(tensor, &coded)| {
                if coded {
                    LastTensor::Coded {
                        name: tensor.name.clone(),
                        shape: tensor.data.shape().to_vec(),
                    }
                } else {
                    LastTensor::Raw(tensor.clone())
                }
            })
            .collect();
        self.stats = stats;
        self.round = next_round;
        Ok(message)
    }

    /// Writes the message from the coded blocks (serial; copies the payload once).
    fn assemble(
        &self,
        update: &Update,
        shapes: &[Vec<u64>],
        values: &[ndarray::CowArray<'_, f32, ndarray::IxDyn>],
        jobs: &[Option<TensorCodecs>],
        model_checks: &[Option<u32>],
    ) -> Result<(Vec<u8>, MessageStats)> {
        let pipeline = &self.streams.pipeline;
        let mut writer = MessageWriter::new();
        let mut stats = MessageStats::default();
        let mut checks = model_checks.iter();
        for (index, tensor) in update.tensors.iter().enumerate() {
            let shape = &shapes[index];
            let Some(codecs) = &jobs[index] else {
                let raw = values[index]
                    .as_slice()
                    .expect("standard layout is contiguous");
                writer.add_raw(&tensor.name, shape, raw);
                stats.tensors.push(TensorStats {
                    name: tensor.name.clone(),
                    entries: raw.len() as u64,
                    raw: true,
                    side_info_bytes: 0,
                    streams: vec![("raw-f32".into(), raw.len() as u64, raw.len() as u64 * 4)],
                });
                continue;
            };
            let mut tensor_stats = TensorStats {
                name: tensor.name.clone(),
                entries: tensor.len() as u64,
                raw: false,
                ..TensorStats::default()
            };
            let mut blocks = Vec::with_capacity(codecs.blocks.len());
            for block in &codecs.blocks {
                let quantized = &block.quantized;
                tensor_stats.side_info_bytes += quantized.side_info.len() as u64;
                for ((stream, bytes), &count) in quantized
                    .streams
                    .iter()
                    .zip(block.coded.iter())
                    .zip(&block.symbol_counts)
                {
                    tensor_stats.streams.push((
                        stream.role.as_str().to_string(),
                        count,
                        bytes.len() as u64,
                    ));
                }
                blocks.push(CodedBlock {
                    side_info: &quantized.side_info,
                    streams: block
                        .symbol_counts
                        .iter()
                        .zip(block.coded.iter())
                        .map(|(&count, bytes)| (count, bytes.as_slice()))
                        .collect(),
                    model_crc: *checks.next().expect("one model check per block"),
                });
            }
            writer.add_coded(&CodedTensor {
                name: &tensor.name,
                shape,
                block_rows: codecs.layout.block_rows(),
                blocks,
            });
            stats.tensors.push(tensor_stats);
        }
        let embed = match self.embed {
            EmbedPipeline::Always => true,
            EmbedPipeline::FirstMessage => self.round == 0,
            EmbedPipeline::Never => false,
        };
        let message = writer.finish(
            self.round,
            pipeline.fingerprint(),
            embed.then(|| pipeline.embedded_json()),
        );
        stats.bytes = message.len() as u64;
        stats.overhead_bytes = stats.bytes - stats.payload_bytes();
        Ok((message, stats))
    }

    /// Feeds what this side received on the opposite link (for predictors such as
    /// ResFed Res-1).
    pub fn observe(&mut self, received: &Update) -> Result<()> {
        self.streams.observe(self.round, received)
    }

    /// Forgets all state (history, error memory); the next message is round 0.
    pub fn reset(&mut self) {
        self.streams.reset();
        self.round = 0;
        self.last.clear();
        self.reconstruction = OnceLock::new();
    }

    /// Serializes the stream state (round and every stage's state).
    pub fn save_state(&self) -> Result<Vec<u8>> {
        self.streams.save(self.round)
    }

    /// Restores a state written by `save_state`; on error nothing changes.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.round = self.streams.load(bytes)?;
        Ok(())
    }
}

fn shape_u64(tensor: &NamedTensor) -> Vec<u64> {
    tensor.data.shape().iter().map(|d| *d as u64).collect()
}

/// NaN and infinite values per tensor, counted in parallel pieces (so one big
/// tensor uses every thread too).
fn count_non_finite(update: &Update, scan: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut counts = vec![0usize; update.tensors.len()];
    let mut pieces: Vec<(usize, &[f32])> = Vec::new();
    for (index, tensor) in update.tensors.iter().enumerate() {
        if !scan(index) {
            continue;
        }
        match tensor.data.as_slice() {
            Some(values) => pieces.extend(values.chunks(SCAN_PIECE).map(|piece| (index, piece))),
            None => counts[index] = tensor.data.iter().filter(|v| !v.is_finite()).count(),
        }
    }
    let found: Vec<(usize, usize)> = super::parallel::map_all(pieces, |(index, piece)| {
        (index, crate::scan::count_non_finite(piece))
    });
    for (index, count) in found {
        counts[index] += count;
    }
    counts
}
