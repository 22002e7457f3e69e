//! The decoder of one stream: a message in, the update the encoder's side
//! reconstructed out.
//!
//! A message is fully decoded and checked before any predictor commits, so a
//! corrupt message leaves the stream's history unchanged.

use super::blocks::BlockLayout;
use super::streams::{Streams, TensorCodecs};
use super::tensor_codec::BlockCodec;
use crate::container::{self, Limits, ParsedMessage, TensorMode, TensorRecord};
use crate::error::{Error, Result};
use crate::layout::ExpectedLayout;
use crate::pipeline::Pipeline;
use crate::update::{NamedTensor, Update};
use std::sync::Arc;

/// One tensor of a message in the decoder's parallel phase: sent raw, or coded
/// with its codecs (taken from the stream, or new: `true`).
enum DecodeJob {
    Raw,
    Coded(Option<(TensorCodecs, bool)>),
}

/// Decodes the messages of one stream.
pub struct Decoder {
    streams: Streams,
    next_round: Option<u64>,
    limits: Limits,
    layout: Option<ExpectedLayout>,
}

impl Decoder {
    /// A decoder for `pipeline` (also [`Pipeline::decoder`]).
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            streams: Streams::new(pipeline),
            next_round: None,
            limits: Limits::default(),
            layout: None,
        }
    }

    /// Runs the pipeline's fused pair when it has one (the default unless
    /// `GRADCODEC_FUSED=off`), or the composed stages with `false`.
    pub fn set_fused(&mut self, fused: bool) {
        self.streams.fused = fused;
    }

    /// Sets the caps checked before any allocation (raising the defaults is
    /// how a receiver of larger updates opts in).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The round the next message of this stream must carry (stateful
    /// pipelines), or `None` before the first message.
    pub fn next_round(&self) -> Option<u64> {
        self.next_round
    }

    /// The caps in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Accepts only the tensors of `layout`, each with its shape, and sets the
    /// limits to the layout's (see [`ExpectedLayout::limits`]); both are
    /// checked right after the message's tables are read.
    pub fn set_expected_layout(&mut self, layout: ExpectedLayout) {
        self.limits = layout.limits();
        self.layout = Some(layout);
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.streams.pipeline
    }

    /// Checks the header against this stream: pipeline and round.
    fn check_header(&self, parsed: &ParsedMessage<'_>) -> Result<u64> {
        let pipeline = &self.streams.pipeline;
        if parsed.fingerprint != pipeline.fingerprint() {
            return Err(Error::FingerprintMismatch {
                message: parsed.fingerprint,
                decoder: pipeline.fingerprint(),
                pipeline: pipeline.name().to_string(),
            });
        }
        let Some(next_round) = parsed.round.checked_add(1) else {
            return Err(Error::Message(format!(
                "round {} is past the last round a stream can number",
                parsed.round
            )));
        };
        if pipeline.is_stateful() {
            let expected = self.next_round.unwrap_or(0);
            if parsed.round != expected {
                return Err(Error::RoundGap {
                    expected,
                    got: parsed.round,
                });
            }
        }
        Ok(next_round)
    }

    /// The block layout a coded record must have: the pipeline's rule, or one
    /// block in a version 1 message (written before blocks existed).
    fn record_layout(
        &self,
        parsed: &ParsedMessage<'_>,
        record: &TensorRecord,
    ) -> Result<BlockLayout> {
        let rule = self.streams.layout(&record.shape);
        let layout = if parsed.version == container::FORMAT_VERSION_WHOLE {
            BlockLayout::whole(&record.shape)
        } else {
            rule
        };
        if layout.block_rows() != record.block_rows || layout.count() != record.blocks.len() {
            return Err(Error::Message(format!(
                "tensor `{}` of shape {:?} is cut into {} blocks of {:?} rows, the pipeline cuts it \
                 into {} of {:?}",
                record.name,
                record.shape,
                record.blocks.len(),
                record.block_rows,
                layout.count(),
                layout.block_rows()
            )));
        }
        Ok(layout)
    }

    /// Decodes one message. On error the stream's state is unchanged.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Update> {
        let parsed = container::parse(bytes, &self.limits)?;
        if let Some(layout) = &self.layout {
            layout.check(&parsed)?;
        }
        let next_round = self.check_header(&parsed)?;
        let pipeline = Arc::clone(&self.streams.pipeline);
        // Phase 1: decode every block to â without touching predictor history.
        // Checks and codec lookup are serial; the blocks then decode in parallel
        // (each with its own codec, taken out of the map and put back after).
        let mut names = std::collections::HashSet::new();
        let mut layouts = Vec::with_capacity(parsed.tensors.len());
        for record in &parsed.tensors {
            if !names.insert(record.name.as_str()) {
                return Err(Error::Message(format!(
                    "tensor `{}` appears twice",
                    record.name
                )));
            }
            let entries = record.entries();
            let below = entries < pipeline.uncompressed_below();
            match record.mode {
                TensorMode::Raw if !below => {
                    return Err(Error::Message(format!(
                    "tensor `{}` is sent raw but the pipeline codes tensors of {entries} entries",
                    record.name
                )))
                }
                TensorMode::Raw => layouts.push(None),
                TensorMode::Coded if below => {
                    return Err(Error::Message(format!(
                    "tensor `{}` is coded but the pipeline sends tensors of {entries} entries raw",
                    record.name
                )))
                }
                TensorMode::Coded => {
                    let layout = self.record_layout(&parsed, record)?;
                    if let Some(codecs) = self.streams.codecs.get(&record.name) {
                        if codecs.layout != layout {
                            return Err(Error::Message(format!(
                                "tensor `{}` changed shape from {:?} to {:?}",
                                record.name,
                                codecs.shape(),
                                record.shape
                            )));
                        }
                    }
                    layouts.push(Some(layout));
                }
            }
        }
        // Take the codecs out (existing ones first, so an error below cannot lose them).
        let mut jobs: Vec<DecodeJob> = layouts
            .iter()
            .zip(&parsed.tensors)
            .map(|(layout, record)| match layout {
                None => DecodeJob::Raw,
                Some(_) => DecodeJob::Coded(
                    self.streams
                        .codecs
                        .remove(&record.name)
                        .map(|codecs| (codecs, false)),
                ),
            })
            .collect();
        let mut failure = None;
        for ((job, record), layout) in jobs.iter_mut().zip(&parsed.tensors).zip(&layouts) {
            if let (DecodeJob::Coded(slot @ None), Some(layout)) = (&mut *job, layout) {
                match TensorCodecs::new(&pipeline, &record.name, layout.clone()) {
                    Ok(codecs) => *slot = Some((codecs, true)),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
        }
        if failure.is_none() {
            failure = decode_blocks(&mut jobs, &parsed, &pipeline, self.streams.fused).err();
        }
        // Put the codecs back: existing ones always, new ones only on success.
        let ok = failure.is_none();
        let mut decoded: Vec<Option<TensorCodecs>> = Vec::with_capacity(jobs.len());
        for (job, record) in jobs.into_iter().zip(&parsed.tensors) {
            match job {
                DecodeJob::Coded(Some((codecs, fresh))) if ok || !fresh => {
                    self.streams.codecs.insert(record.name.clone(), codecs);
                    decoded.push(None);
                }
                _ => decoded.push(None),
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        // Phase 2: x̂ = P + â, commit, and copy x̂ out: per block, in parallel.
        let tensors = self.commit(&parsed)?;
        self.next_round = Some(next_round);
        Ok(Update::new(tensors))
    }

    /// Phase 2 of [`Decoder::decode`]: every block forms and commits x̂, which is
    /// copied into the returned tensors (raw tensors are read from the message).
    fn commit(&mut self, parsed: &ParsedMessage<'_>) -> Result<Vec<NamedTensor>> {
        let mut codecs: Vec<Option<TensorCodecs>> = parsed
            .tensors
            .iter()
            .map(|record| match record.mode {
                TensorMode::Raw => None,
                TensorMode::Coded => self.streams.codecs.remove(&record.name),
            })
            .collect();
        // Tensors in several blocks are written in place, block by block (a
        // zeroed buffer); the others come out as one copy, with no zeroing.
        let mut outputs: Vec<Option<Vec<f32>>> = codecs
            .iter()
            .zip(&parsed.tensors)
            .map(|(tensor_codecs, record)| match tensor_codecs {
                Some(c) if c.blocks.len() > 1 => Some(vec![0.0f32; record.entries() as usize]),
                _ => None,
            })
            .collect();
        let results: Vec<Result<(usize, Option<Vec<f32>>)>> = {
            let mut work: Vec<Work<'_>> = Vec::new();
            for (index, ((output, record), tensor_codecs)) in outputs
                .iter_mut()
                .zip(&parsed.tensors)
                .zip(codecs.iter_mut())
                .enumerate()
            {
                match (tensor_codecs, output) {
                    (None, _) => work.push(Work::Raw(index, parsed.slice(&record.raw))),
                    (Some(tensor_codecs), Some(output)) => {
                        let lengths: Vec<usize> = tensor_codecs.layout.block_lengths().collect();
                        let mut rest = output.as_mut_slice();
                        for (block, length) in tensor_codecs.blocks.iter_mut().zip(lengths) {
                            let (head, tail) = rest.split_at_mut(length);
                            rest = tail;
                            work.push(Work::Part(index, block, head));
                        }
                    }
                    (Some(tensor_codecs), None) => {
                        work.push(Work::Whole(index, &mut tensor_codecs.blocks[0]))
                    }
                }
            }
            let round = parsed.round;
            super::parallel::map_all(work, |work| match work {
                Work::Raw(index, bytes) => Ok((
                    index,
                    Some(
                        bytes
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    ),
                )),
                Work::Whole(index, block) => {
                    let ctx = block.context(round, index);
                    block.predict(&ctx)?;
                    block.commit(&ctx)?;
                    Ok((index, Some(block.take_reconstruction())))
                }
                Work::Part(index, block, out) => {
                    let ctx = block.context(round, index);
                    block.predict(&ctx)?;
                    block.commit(&ctx)?;
                    out.copy_from_slice(block.reconstruction());
                    Ok((index, None))
                }
            })
        };
        for (record, tensor_codecs) in parsed.tensors.iter().zip(codecs) {
            if let Some(tensor_codecs) = tensor_codecs {
                self.streams
                    .codecs
                    .insert(record.name.clone(), tensor_codecs);
            }
        }
        for result in results {
            let (index, values) = result?;
            if let Some(values) = values {
                outputs[index] = Some(values);
            }
        }
        parsed
            .tensors
            .iter()
            .zip(outputs)
            .map(|(record, values)| {
                let shape: Vec<usize> = record.shape.iter().map(|d| *d as usize).collect();
                NamedTensor::from_vec(record.name.clone(), &shape, values.unwrap_or_default())
            })
            .collect()
    }

    /// Feeds the opposite link's trajectory to the predictors, mirroring the
    /// peer encoder's [`crate::Encoder::observe`]: call it with the same updates, at the
    /// same points of the stream, so both predictors stay identical.
    pub fn observe(&mut self, received: &Update) -> Result<()> {
        self.streams.observe(self.next_round.unwrap_or(0), received)
    }

    /// Forgets all state; the next message must be round 0.
    pub fn reset(&mut self) {
        self.streams.reset();
        self.next_round = None;
    }

    /// Serializes the stream state.
    pub fn save_state(&self) -> Result<Vec<u8>> {
        self.streams.save(self.next_round.unwrap_or(0))
    }

    /// Restores a state written by `save_state`; on error nothing changes.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let round = self.streams.load(bytes)?;
        self.next_round = (round > 0).then_some(round);
        Ok(())
    }
}

/// One piece of phase 2.
enum Work<'a> {
    /// A raw tensor's bytes.
    Raw(usize, &'a [u8]),
    /// The only block of a tensor: x̂ comes out as a new vector.
    Whole(usize, &'a mut BlockCodec),
    /// One block of a tensor in several, written into its part of the tensor.
    Part(usize, &'a mut BlockCodec, &'a mut [f32]),
}

/// Phase 1: every coded block of the message to â, in parallel; the first
/// error in message order.
fn decode_blocks(
    jobs: &mut [DecodeJob],
    parsed: &ParsedMessage<'_>,
    pipeline: &Pipeline,
    fused: bool,
) -> Result<()> {
    let mut work: Vec<(usize, &mut BlockCodec, &container::BlockRecord)> = Vec::new();
    for (index, (job, record)) in jobs.iter_mut().zip(&parsed.tensors).enumerate() {
        if let DecodeJob::Coded(Some((codecs, _))) = job {
            for (block, block_record) in codecs.blocks.iter_mut().zip(&record.blocks) {
                work.push((index, block, block_record));
            }
        }
    }
    let results: Vec<Result<()>> = super::parallel::map_all(work, |(index, block, record)| {
        let ctx = block.context(parsed.round, index);
        block.decode(&ctx, parsed, record, pipeline, fused)
    });
    results.into_iter().collect()
}
