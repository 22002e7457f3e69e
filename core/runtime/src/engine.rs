//! The encoder/decoder engine.
//!
//! Encode, per tensor `x`: `r = x - P` (predictor), `a = r + γe` (error
//! correction), `a -> symbols + side info` (quantizer), symbols -> bytes (entropy
//! coders by stream role); then decode-in-the-loop: `â = Q⁻¹(symbols)`, the error
//! correction learns `e = a - â`, and the predictor commits `x̂ = P + â` — exactly
//! what the decoder will compute, so the two ends never drift.
//!
//! Decode, per tensor: bytes -> symbols -> `â` -> `x̂ = P + â` -> commit. A
//! message is fully decoded and checked before any predictor commits, so a
//! corrupt message leaves the stream's history unchanged.

use crate::container::{self, CodedTensor, Limits, MessageWriter, TensorMode};
use crate::error::{Error, Result};
use crate::layout::ExpectedLayout;
use crate::pipeline::Pipeline;
use crate::update::{NamedTensor, Update};
use abi_stable::std_types::{RResult, RVec};
use gradcodec_abi::{
    CallContext, EntropyCoderBox, ErrorCorrectionBox, PredictorBox, Quantized, QuantizerBox,
    StageError, TensorSpec,
};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// What to do with NaN or infinite values in an update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonFinitePolicy {
    /// Refuse the update, naming the tensor (default).
    #[default]
    Error,
    /// Replace them with zero.
    ReplaceWithZero,
}

/// When the canonical pipeline travels inside the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmbedPipeline {
    /// In the first message of the stream (round 0) only (default).
    #[default]
    FirstMessage,
    /// In every message.
    Always,
    /// Never (both ends know the pipeline; the fingerprint still checks it).
    Never,
}

/// Sizes of one coded tensor in a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorStats {
    /// Tensor name.
    pub name: String,
    /// Entries.
    pub entries: u64,
    /// True when sent raw under the `uncompressed` rule.
    pub raw: bool,
    /// Side info bytes.
    pub side_info_bytes: u64,
    /// Per stream: (role name, symbols, bytes).
    pub streams: Vec<(String, u64, u64)>,
}

/// Sizes of the last message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageStats {
    /// Whole message, bytes.
    pub bytes: u64,
    /// Header, tables and checksum (everything but the payload), bytes.
    pub overhead_bytes: u64,
    /// Per tensor.
    pub tensors: Vec<TensorStats>,
}

fn stage_result<T>(context: impl FnOnce() -> String, result: RResult<T, StageError>) -> Result<T> {
    match result {
        RResult::ROk(value) => Ok(value),
        RResult::RErr(error) => Err(Error::stage(context(), error)),
    }
}

/// One tensor of a message in the decoder's parallel phase: sent raw, or coded
/// with its codec (taken from the stream, or new: `true`). One short-lived value
/// per tensor of a message, so the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum DecodeJob {
    Raw,
    Coded(Option<(TensorCodec, bool)>),
}

/// What the parallel part of [`Encoder::encode`] hands back per coded tensor:
/// x̂ and the check of its stream models.
type EncodedTensor = (Vec<f32>, Option<u32>);

/// The stage instances and buffers of one tensor of one stream.
pub(crate) struct TensorCodec {
    spec: TensorSpec,
    predictor: Option<PredictorBox>,
    correction: Option<ErrorCorrectionBox>,
    quantizer: QuantizerBox,
    coders: Vec<EntropyCoderBox>,
    prediction: RVec<f32>,
    residual: RVec<f32>,
    compensated: RVec<f32>,
    quantized: Quantized,
    dequantized: RVec<f32>,
    coded: Vec<RVec<u8>>,
}

impl TensorCodec {
    fn new(pipeline: &Pipeline, name: &str, shape: &[u64]) -> Result<Self> {
        let spec = TensorSpec {
            name: name.into(),
            shape: RVec::from(shape.to_vec()),
        };
        let mut predictor = None;
        let mut correction = None;
        let mut quantizer = None;
        let mut coders = Vec::new();
        for stage in pipeline.stages() {
            match stage.kind {
                gradcodec_abi::StageKind::PREDICTOR => {
                    predictor = Some(stage.new_predictor(&spec)?)
                }
                gradcodec_abi::StageKind::ERROR_CORRECTION => {
                    correction = Some(stage.new_error_correction(&spec)?)
                }
                gradcodec_abi::StageKind::QUANTIZER => {
                    quantizer = Some(stage.new_quantizer(&spec)?)
                }
                _ => coders.push(stage.new_entropy_coder(&spec)?),
            }
        }
        let quantizer =
            quantizer.ok_or_else(|| Error::Spec("the pipeline has no quantizer".into()))?;
        Ok(Self {
            spec,
            predictor,
            correction,
            quantizer,
            coders,
            prediction: RVec::new(),
            residual: RVec::new(),
            compensated: RVec::new(),
            quantized: Quantized::default(),
            dequantized: RVec::new(),
            coded: Vec::new(),
        })
    }

    fn len(&self) -> usize {
        self.spec.len() as usize
    }

    fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len == self.len() {
            Ok(())
        } else {
            Err(Error::Update(format!(
                "tensor `{}`: {what} has {len} entries, expected {}",
                self.spec.name,
                self.len()
            )))
        }
    }

    fn predict(&mut self, ctx: &CallContext) -> Result<()> {
        let name = &self.spec.name;
        match &mut self.predictor {
            Some(predictor) => {
                stage_result(
                    || format!("tensor `{name}`: predict"),
                    predictor.predict(ctx, &mut self.prediction),
                )?;
                let len = self.prediction.len();
                self.check_len("the prediction", len)
            }
            None => {
                self.prediction.clear();
                self.prediction.resize(self.len(), 0.0);
                Ok(())
            }
        }
    }

    /// Encodes `x`; afterwards [`TensorCodec::reconstruction`] holds x̂.
    fn encode(&mut self, ctx: &CallContext, x: &[f32], pipeline: &Pipeline) -> Result<()> {
        let name = self.spec.name.to_string();
        // r = x - P (without a predictor, r is x itself: no copy).
        if self.predictor.is_some() {
            self.predict(ctx)?;
            fill_zipped(&mut self.residual, x, &self.prediction, |x, p| x - p);
        }
        let residual: &[f32] = if self.predictor.is_some() {
            &self.residual
        } else {
            x
        };
        // a = r + γe
        let input: &[f32] = match &mut self.correction {
            Some(correction) => {
                stage_result(
                    || format!("tensor `{name}`: compensate"),
                    correction.compensate(ctx, residual.into(), &mut self.compensated),
                )?;
                if self.compensated.len() != residual.len() {
                    return Err(Error::Update(format!(
                        "tensor `{name}`: the compensated tensor has {} entries, expected {}",
                        self.compensated.len(),
                        residual.len()
                    )));
                }
                &self.compensated
            }
            None => residual,
        };
        stage_result(
            || format!("tensor `{name}`: quantize"),
            self.quantizer
                .quantize(ctx, input.into(), &mut self.quantized),
        )?;
        self.coded
            .resize_with(self.quantized.streams.len(), RVec::new);
        let max_symbols = gradcodec_abi::max_stream_symbols(self.spec.len());
        for (index, stream) in self.quantized.streams.iter().enumerate() {
            if stream.symbols.len() as u64 > max_symbols {
                return Err(Error::Update(format!(
                    "tensor `{name}`: the quantizer emitted {} symbols in stream {index}, more than {max_symbols}",
                    stream.symbols.len()
                )));
            }
            if stream.alphabet_size <= u64::from(u32::MAX) {
                let alphabet = stream.alphabet_size;
                if let Some(bad) = crate::scan::first_outside_alphabet(&stream.symbols, alphabet) {
                    return Err(Error::Update(format!(
                        "tensor `{name}`: the quantizer emitted symbol {bad} outside 0..{alphabet} in stream {index}"
                    )));
                }
            }
            let coder_index = pipeline.coder_for(stream.role).ok_or_else(|| {
                Error::Spec(format!(
                    "tensor `{name}`: no entropy-coder takes streams of role `{}`",
                    stream.role.as_str()
                ))
            })?;
            let out = &mut self.coded[index];
            out.clear();
            stage_result(
                || format!("tensor `{name}`: entropy-code stream {index}"),
                self.coders[coder_index].encode(stream, out),
            )?;
        }
        // Decode in the loop: exactly what the receiver will reconstruct.
        stage_result(
            || format!("tensor `{name}`: dequantize"),
            self.quantizer
                .dequantize(ctx, &self.quantized, &mut self.dequantized),
        )?;
        self.check_len("the dequantized tensor", self.dequantized.len())?;
        if let Some(correction) = &mut self.correction {
            stage_result(
                || format!("tensor `{name}`: error feedback"),
                correction.feedback(ctx, input.into(), self.dequantized.as_slice().into()),
            )?;
        }
        self.commit(ctx)
    }

    /// x̂ = P + â (into `self.residual` when there is a predictor, which then
    /// commits it; otherwise x̂ is â itself).
    fn commit(&mut self, ctx: &CallContext) -> Result<()> {
        if let Some(predictor) = &mut self.predictor {
            fill_zipped(
                &mut self.residual,
                &self.prediction,
                &self.dequantized,
                |p, q| p + q,
            );
            let name = &self.spec.name;
            stage_result(
                || format!("tensor `{name}`: commit"),
                predictor.commit(ctx, self.residual.as_slice().into()),
            )?;
        }
        Ok(())
    }

    /// x̂ of the last encoded or decoded tensor.
    fn reconstruction(&self) -> &[f32] {
        if self.predictor.is_some() {
            &self.residual
        } else {
            &self.dequantized
        }
    }

    fn reset(&mut self) {
        if let Some(p) = &mut self.predictor {
            p.reset();
        }
        if let Some(c) = &mut self.correction {
            c.reset();
        }
        self.quantizer.reset();
        for coder in &mut self.coders {
            coder.reset();
        }
    }
}

fn shape_u64(tensor: &NamedTensor) -> Vec<u64> {
    tensor.data.shape().iter().map(|d| *d as u64).collect()
}

/// Per-stream tensor codecs keyed by name.
struct Streams {
    pipeline: Arc<Pipeline>,
    codecs: HashMap<String, TensorCodec>,
}

impl Streams {
    fn codec(&mut self, name: &str, shape: &[u64]) -> Result<&mut TensorCodec> {
        if !self.codecs.contains_key(name) {
            let codec = TensorCodec::new(&self.pipeline, name, shape)?;
            self.codecs.insert(name.to_string(), codec);
        }
        let codec = self.codecs.get_mut(name).expect("inserted above");
        if codec.spec.shape.as_slice() != shape {
            return Err(Error::Update(format!(
                "tensor `{name}` changed shape from {:?} to {shape:?} within the stream",
                codec.spec.shape.as_slice()
            )));
        }
        Ok(codec)
    }
}

/// Encodes the updates of one stream (one learner, one direction).
pub struct Encoder {
    streams: Streams,
    round: u64,
    embed: EmbedPipeline,
    non_finite: NonFinitePolicy,
    limits: Limits,
    reconstruction: Update,
    stats: MessageStats,
}

impl Encoder {
    pub(crate) fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            streams: Streams {
                pipeline,
                codecs: HashMap::new(),
            },
            round: 0,
            embed: EmbedPipeline::default(),
            non_finite: NonFinitePolicy::default(),
            limits: Limits::default(),
            reconstruction: Update::default(),
            stats: MessageStats::default(),
        }
    }

    /// Sets when the pipeline is embedded in messages.
    pub fn set_embed_pipeline(&mut self, embed: EmbedPipeline) {
        self.embed = embed;
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

    /// What the receiver reconstructs from the last message.
    pub fn last_reconstruction(&self) -> &Update {
        &self.reconstruction
    }

    /// Sizes of the last message.
    pub fn last_stats(&self) -> &MessageStats {
        &self.stats
    }

    /// The symbol streams of the last message's coded tensors, with each
    /// tensor's name (for measurement, e.g. the zeroth-order entropy of what the
    /// coders were given). Empty before the first message.
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
            .flat_map(|(name, codec)| codec.quantized.streams.iter().map(move |s| (name, s)))
            .collect()
    }

    /// Encodes one update into one message. Tensors are coded in parallel (rayon)
    /// and the bytes do not depend on the thread count.
    pub fn encode(&mut self, update: &Update) -> Result<Vec<u8>> {
        let Some(next_round) = self.round.checked_add(1) else {
            return Err(Error::Update(format!(
                "round {} is the last a stream can number; reset the stream",
                self.round
            )));
        };
        let cleaned = self.check_update(update)?;
        let update = cleaned.as_ref().unwrap_or(update);
        let pipeline = Arc::clone(&self.streams.pipeline);
        // Take each coded tensor's codec out of the map so tensors run in parallel.
        let mut jobs: Vec<Option<TensorCodec>> = Vec::with_capacity(update.tensors.len());
        for tensor in &update.tensors {
            if (tensor.len() as u64) < pipeline.uncompressed_below() {
                jobs.push(None);
                continue;
            }
            let shape = shape_u64(tensor);
            self.streams.codec(&tensor.name, &shape)?;
            jobs.push(self.streams.codecs.remove(&tensor.name));
        }
        let round = self.round;
        // Per coded tensor, in parallel: encode, then copy out x̂ and check the
        // stream models (the serial part below only assembles the message).
        let outcomes: Vec<Result<Option<EncodedTensor>>> = jobs
            .par_iter_mut()
            .zip(update.tensors.par_iter())
            .enumerate()
            .map(|(index, (job, tensor))| match job {
                Some(codec) => {
                    let values = tensor.data.as_standard_layout();
                    let values = values.as_slice().expect("standard layout is contiguous");
                    codec.encode(&CallContext::new(round, index as u32), values, &pipeline)?;
                    let model_crc = container::model_check(&codec.quantized.streams);
                    Ok(Some((codec.reconstruction().to_vec(), model_crc)))
                }
                None => Ok(None),
            })
            .collect();
        let mut failure = None;
        let mut outputs = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Ok(output) => outputs.push(output),
                Err(error) => {
                    failure.get_or_insert(error);
                    outputs.push(None);
                }
            }
        }
        let mut writer = MessageWriter::new();
        let mut reconstruction = Vec::with_capacity(update.tensors.len());
        let mut stats = MessageStats::default();
        for ((tensor, job), output) in update.tensors.iter().zip(jobs).zip(outputs) {
            let shape = shape_u64(tensor);
            let Some(codec) = job else {
                let values = tensor.data.as_standard_layout();
                let values = values.as_slice().expect("standard layout is contiguous");
                writer.add_raw(&tensor.name, &shape, values);
                stats.tensors.push(TensorStats {
                    name: tensor.name.clone(),
                    entries: values.len() as u64,
                    raw: true,
                    side_info_bytes: 0,
                    streams: vec![(
                        "raw-f32".into(),
                        values.len() as u64,
                        values.len() as u64 * 4,
                    )],
                });
                reconstruction.push(tensor.clone());
                continue;
            };
            if let (None, Some((reconstructed, model_crc))) = (&failure, output) {
                let streams: Vec<(u64, &[u8])> = codec
                    .quantized
                    .streams
                    .iter()
                    .zip(&codec.coded)
                    .map(|(s, bytes)| (s.symbols.len() as u64, bytes.as_slice()))
                    .collect();
                writer.add_coded(&CodedTensor {
                    name: &tensor.name,
                    shape: &shape,
                    side_info: &codec.quantized.side_info,
                    streams,
                    model_crc,
                });
                stats.tensors.push(TensorStats {
                    name: tensor.name.clone(),
                    entries: tensor.len() as u64,
                    raw: false,
                    side_info_bytes: codec.quantized.side_info.len() as u64,
                    streams: codec
                        .quantized
                        .streams
                        .iter()
                        .zip(&codec.coded)
                        .map(|(s, bytes)| {
                            (
                                s.role.as_str().to_string(),
                                s.symbols.len() as u64,
                                bytes.len() as u64,
                            )
                        })
                        .collect(),
                });
                reconstruction.push(NamedTensor::from_vec(
                    tensor.name.clone(),
                    tensor.data.shape(),
                    reconstructed,
                )?);
            }
            self.streams.codecs.insert(tensor.name.clone(), codec);
        }
        if let Some(error) = failure {
            return Err(error);
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
        let payload: u64 = stats
            .tensors
            .iter()
            .flat_map(|t| t.streams.iter().map(|s| s.2))
            .sum();
        stats.overhead_bytes = stats.bytes - payload;
        // Only the coded message shows these; the stages have advanced, so a
        // stream refused here must be reset (the error says so).
        self.check_message_limits(&message, &stats)?;
        self.stats = stats;
        self.reconstruction = Update::new(reconstruction);
        self.round = next_round;
        Ok(message)
    }

    /// Feeds what this side received on the opposite link (for predictors such as
    /// ResFed Res-1).
    pub fn observe(&mut self, received: &Update) -> Result<()> {
        observe(&mut self.streams, self.round, received)
    }

    /// The update against the limits, as the decoder will check its message.
    fn check_limits(&self, update: &Update) -> Result<()> {
        let limits = &self.limits;
        let refuse = |what: String| {
            Err(Error::Update(format!(
                "{what}; the receiver's decoder would refuse it (raise the limits on both ends \
                 to send it)"
            )))
        };
        if update.tensors.len() as u64 > limits.max_tensors {
            return refuse(format!(
                "{} tensors, more than the limit of {}",
                update.tensors.len(),
                limits.max_tensors
            ));
        }
        let mut total: u64 = 0;
        for tensor in &update.tensors {
            let name = &tensor.name;
            if name.len() as u64 > limits.max_name_bytes {
                return refuse(format!(
                    "tensor name of {} bytes, more than the limit of {}",
                    name.len(),
                    limits.max_name_bytes
                ));
            }
            if tensor.data.ndim() as u64 > limits.max_dims {
                return refuse(format!(
                    "tensor `{name}` has {} dimensions, more than the limit of {}",
                    tensor.data.ndim(),
                    limits.max_dims
                ));
            }
            let entries = tensor.len() as u64;
            if entries > limits.max_tensor_entries {
                return refuse(format!(
                    "tensor `{name}` has {entries} entries, more than the limit of {}",
                    limits.max_tensor_entries
                ));
            }
            total = total.saturating_add(entries);
        }
        if total > limits.max_total_entries {
            return refuse(format!(
                "the update has {total} entries, more than the limit of {}",
                limits.max_total_entries
            ));
        }
        Ok(())
    }

    /// The message against the limits on what only the coded message shows.
    fn check_message_limits(&self, message: &[u8], stats: &MessageStats) -> Result<()> {
        let limits = &self.limits;
        let symbols: u64 = stats
            .tensors
            .iter()
            .flat_map(|t| t.streams.iter().map(|s| s.1))
            .sum();
        let problem = if message.len() as u64 > limits.max_message_bytes {
            format!(
                "the message has {} bytes, more than the limit of {}",
                message.len(),
                limits.max_message_bytes
            )
        } else if symbols > limits.max_total_symbols {
            format!(
                "the message's streams hold {symbols} symbols, more than the limit of {}",
                limits.max_total_symbols
            )
        } else {
            return Ok(());
        };
        Err(Error::Update(format!(
            "{problem}; the receiver's decoder would refuse it (raise the limits on both ends \
             to send it, and reset this stream: its stages have advanced)"
        )))
    }

    /// Checks limits, names, shapes and values before any state changes.
    fn check_update(&self, update: &Update) -> Result<Option<Update>> {
        self.check_limits(update)?;
        let mut names = std::collections::HashSet::new();
        let mut cleaned: Option<Update> = None;
        let non_finite: Vec<usize> = update
            .tensors
            .par_iter()
            .map(|tensor| {
                tensor.data.as_slice().map_or_else(
                    || tensor.data.iter().filter(|v| !v.is_finite()).count(),
                    crate::scan::count_non_finite,
                )
            })
            .collect();
        for (index, tensor) in update.tensors.iter().enumerate() {
            if !names.insert(tensor.name.as_str()) {
                return Err(Error::Update(format!(
                    "tensor `{}` appears twice",
                    tensor.name
                )));
            }
            if let Some(codec) = self.streams.codecs.get(&tensor.name) {
                let shape = shape_u64(tensor);
                if codec.spec.shape.as_slice() != shape.as_slice() {
                    return Err(Error::Update(format!(
                        "tensor `{}` changed shape from {:?} to {shape:?} within the stream",
                        tensor.name,
                        codec.spec.shape.as_slice()
                    )));
                }
            }
            let bad = non_finite[index];
            if bad > 0 {
                match self.non_finite {
                    NonFinitePolicy::Error => {
                        return Err(Error::Update(format!(
                            "tensor `{}` holds {bad} NaN or infinite values",
                            tensor.name
                        )))
                    }
                    NonFinitePolicy::ReplaceWithZero => {
                        let copy = cleaned.get_or_insert_with(|| update.clone());
                        copy.tensors[index]
                            .data
                            .mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
                    }
                }
            }
        }
        Ok(cleaned)
    }

    /// Forgets all state (history, error memory); the next message is round 0.
    pub fn reset(&mut self) {
        for codec in self.streams.codecs.values_mut() {
            codec.reset();
        }
        self.round = 0;
        self.reconstruction = Update::default();
    }

    /// Serializes the stream state (round and every stage's state).
    pub fn save_state(&self) -> Result<Vec<u8>> {
        crate::state::save(
            &self.streams.pipeline,
            self.round,
            &self.streams.codecs_view(),
        )
    }

    /// Restores a state written by `save_state`; on error nothing changes.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let (round, codecs) = crate::state::load(&self.streams.pipeline, bytes)?;
        self.round = round;
        self.streams.codecs = codecs;
        Ok(())
    }
}

fn observe(streams: &mut Streams, round: u64, received: &Update) -> Result<()> {
    for (index, tensor) in received.tensors.iter().enumerate() {
        let shape = shape_u64(tensor);
        if shape.iter().product::<u64>() < streams.pipeline.uncompressed_below() {
            continue;
        }
        let codec = streams.codec(&tensor.name, &shape)?;
        let ctx = CallContext::new(round, index as u32);
        let values = tensor.data.as_standard_layout();
        let values = values.as_slice().expect("standard layout is contiguous");
        if let Some(predictor) = &mut codec.predictor {
            let name = &tensor.name;
            stage_result(
                || format!("tensor `{name}`: observe"),
                predictor.observe(&ctx, values.into()),
            )?;
        }
    }
    Ok(())
}

/// Decodes the messages of one stream.
pub struct Decoder {
    streams: Streams,
    next_round: Option<u64>,
    limits: Limits,
    layout: Option<ExpectedLayout>,
}

impl Decoder {
    pub(crate) fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            streams: Streams {
                pipeline,
                codecs: HashMap::new(),
            },
            next_round: None,
            limits: Limits::default(),
            layout: None,
        }
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

    /// Decodes one message. On error the stream's state is unchanged.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Update> {
        let parsed = container::parse(bytes, &self.limits)?;
        if let Some(layout) = &self.layout {
            layout.check(&parsed)?;
        }
        let pipeline = Arc::clone(&self.streams.pipeline);
        if parsed.fingerprint != pipeline.fingerprint() {
            return Err(Error::Message(format!(
                "encoded with another pipeline (fingerprint {:016x}, this decoder's `{}` is {:016x})",
                parsed.fingerprint,
                pipeline.name(),
                pipeline.fingerprint()
            )));
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
                return Err(Error::Message(format!(
                    "round {} arrived, this stateful stream expects round {expected}",
                    parsed.round
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        // Phase 1: decode every tensor to â without touching predictor history.
        // Checks and codec lookup are serial; the tensors then decode in parallel
        // (each with its own codec, taken out of the map and put back after).
        let mut jobs: Vec<DecodeJob> = Vec::with_capacity(parsed.tensors.len());
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
                TensorMode::Raw => {
                    if !below {
                        return Err(Error::Message(format!(
                            "tensor `{}` is sent raw but the pipeline codes tensors of {entries} entries",
                            record.name
                        )));
                    }
                    jobs.push(DecodeJob::Raw);
                }
                TensorMode::Coded => {
                    if below {
                        return Err(Error::Message(format!(
                            "tensor `{}` is coded but the pipeline sends tensors of {entries} entries raw",
                            record.name
                        )));
                    }
                    if let Some(codec) = self.streams.codecs.get(&record.name) {
                        if codec.spec.shape.as_slice() != record.shape.as_slice() {
                            return Err(Error::Message(format!(
                                "tensor `{}` changed shape from {:?} to {:?}",
                                record.name,
                                codec.spec.shape.as_slice(),
                                record.shape
                            )));
                        }
                    }
                    jobs.push(DecodeJob::Coded(None));
                }
            }
        }
        // Take the codecs out (existing ones first, so an error below cannot lose them).
        for (job, record) in jobs.iter_mut().zip(&parsed.tensors) {
            if let DecodeJob::Coded(slot) = job {
                *slot = self
                    .streams
                    .codecs
                    .remove(&record.name)
                    .map(|codec| (codec, false));
            }
        }
        let mut created = Ok(());
        for (job, record) in jobs.iter_mut().zip(&parsed.tensors) {
            if let DecodeJob::Coded(slot @ None) = job {
                match TensorCodec::new(&pipeline, &record.name, &record.shape) {
                    Ok(codec) => *slot = Some((codec, true)),
                    Err(error) => {
                        created = Err(error);
                        break;
                    }
                }
            }
        }
        let outcomes: Vec<Result<Option<Vec<f32>>>> = if created.is_ok() {
            jobs.par_iter_mut()
                .zip(parsed.tensors.par_iter())
                .enumerate()
                .map(|(index, (job, record))| match job {
                    DecodeJob::Raw => Ok(Some(
                        parsed
                            .slice(&record.raw)
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    )),
                    DecodeJob::Coded(slot) => {
                        let (codec, _) = slot.as_mut().expect("taken or created above");
                        decode_tensor(codec, &parsed, record, index, &pipeline).map(|()| None)
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        // The first error in message order, if any.
        let mut failure = created.err();
        let mut decoded: Vec<(usize, Option<Vec<f32>>)> = Vec::with_capacity(outcomes.len());
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(values) => decoded.push((index, values)),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        // Put the codecs back: existing ones always, new ones only on success.
        let ok = failure.is_none();
        for (job, record) in jobs.iter_mut().zip(&parsed.tensors) {
            if let DecodeJob::Coded(Some((codec, fresh))) = std::mem::replace(job, DecodeJob::Raw) {
                if ok || !fresh {
                    self.streams.codecs.insert(record.name.clone(), codec);
                }
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        // Phase 2: x̂ = P + â, commit.
        let mut tensors = Vec::with_capacity(decoded.len());
        for (index, raw) in decoded {
            let record = &parsed.tensors[index];
            let shape: Vec<usize> = record.shape.iter().map(|d| *d as usize).collect();
            let values = match raw {
                Some(values) => values,
                None => {
                    let codec = self
                        .streams
                        .codecs
                        .get_mut(&record.name)
                        .expect("decoded above");
                    let ctx = CallContext::new(parsed.round, index as u32);
                    if codec.predictor.is_some() {
                        codec.predict(&ctx)?;
                    }
                    codec.commit(&ctx)?;
                    codec.reconstruction().to_vec()
                }
            };
            tensors.push(NamedTensor::from_vec(record.name.clone(), &shape, values)?);
        }
        self.next_round = Some(next_round);
        Ok(Update::new(tensors))
    }

    /// Feeds the opposite link's trajectory to the predictors, mirroring the
    /// peer encoder's [`Encoder::observe`]: call it with the same updates, at the
    /// same points of the stream, so both predictors stay identical.
    pub fn observe(&mut self, received: &Update) -> Result<()> {
        observe(&mut self.streams, self.next_round.unwrap_or(0), received)
    }

    /// Forgets all state; the next message must be round 0.
    pub fn reset(&mut self) {
        for codec in self.streams.codecs.values_mut() {
            codec.reset();
        }
        self.next_round = None;
    }

    /// Serializes the stream state.
    pub fn save_state(&self) -> Result<Vec<u8>> {
        crate::state::save(
            &self.streams.pipeline,
            self.next_round.unwrap_or(0),
            &self.streams.codecs_view(),
        )
    }

    /// Restores a state written by `save_state`; on error nothing changes.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let (round, codecs) = crate::state::load(&self.streams.pipeline, bytes)?;
        self.next_round = (round > 0).then_some(round);
        self.streams.codecs = codecs;
        Ok(())
    }
}

/// Sets `out` to `f(a[i], b[i])` (as long as the shorter): resized once, then a
/// slice loop the compiler vectorizes (`RVec::extend` pushes one at a time).
fn fill_zipped(out: &mut RVec<f32>, a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    out.clear();
    out.resize(a.len().min(b.len()), 0.0);
    for ((o, x), y) in out.as_mut_slice().iter_mut().zip(a).zip(b) {
        *o = f(*x, *y);
    }
}

/// Entropy-decodes and dequantizes one coded tensor into `codec.dequantized`.
fn decode_tensor(
    codec: &mut TensorCodec,
    parsed: &container::ParsedMessage<'_>,
    record: &container::TensorRecord,
    index: usize,
    pipeline: &Pipeline,
) -> Result<()> {
    let name = record.name.as_str();
    let ctx = CallContext::new(parsed.round, index as u32);
    codec.quantized.clear();
    codec
        .quantized
        .side_info
        .extend_from_slice(parsed.slice(&record.side_info));
    stage_result(
        || format!("tensor `{name}`: read side info"),
        codec.quantizer.describe_streams(&ctx, &mut codec.quantized),
    )?;
    if codec.quantized.streams.len() != record.streams.len() {
        return Err(Error::Message(format!(
            "tensor `{name}`: {} streams in the message, the quantizer expects {}",
            record.streams.len(),
            codec.quantized.streams.len()
        )));
    }
    if container::model_check(&codec.quantized.streams) != record.model_crc {
        return Err(Error::Message(format!(
            "tensor `{name}`: the decoder's stream models differ from the encoder's \
             (model check {:?} vs {:?}); the two ends disagree on the quantizer's model \
             (different stage build or platform math)",
            container::model_check(&codec.quantized.streams),
            record.model_crc
        )));
    }
    for (stream_index, (stream, stored)) in codec
        .quantized
        .streams
        .iter_mut()
        .zip(&record.streams)
        .enumerate()
    {
        let coder = pipeline.coder_for(stream.role).ok_or_else(|| {
            Error::Message(format!(
                "tensor `{name}`: no entropy-coder for role `{}`",
                stream.role.as_str()
            ))
        })?;
        stream.symbols.clear();
        stage_result(
            || format!("tensor `{name}`: entropy-decode stream {stream_index}"),
            codec.coders[coder].decode(parsed.slice(&stored.bytes).into(), stored.symbols, stream),
        )?;
        if stream.symbols.len() as u64 != stored.symbols {
            return Err(Error::Message(format!(
                "tensor `{name}`: stream {stream_index} decoded {} symbols, the message says {}",
                stream.symbols.len(),
                stored.symbols
            )));
        }
        let alphabet = stream.alphabet_size;
        if let Some(bad) = crate::scan::first_outside_alphabet(&stream.symbols, alphabet) {
            return Err(Error::Message(format!(
                "tensor `{name}`: stream {stream_index} holds symbol {bad} outside 0..{alphabet}"
            )));
        }
    }
    stage_result(
        || format!("tensor `{name}`: dequantize"),
        codec
            .quantizer
            .dequantize(&ctx, &codec.quantized, &mut codec.dequantized),
    )?;
    codec.check_len("the dequantized tensor", codec.dequantized.len())?;
    if !crate::scan::all_finite(&codec.dequantized) {
        return Err(Error::Message(format!(
            "tensor `{name}`: decodes to NaN or infinite values"
        )));
    }
    Ok(())
}

impl Streams {
    fn codecs_view(&self) -> Vec<(&str, &[u64], StageStates<'_>)> {
        let mut view: Vec<_> = self
            .codecs
            .iter()
            .map(|(name, codec)| {
                (
                    name.as_str(),
                    codec.spec.shape.as_slice(),
                    StageStates {
                        predictor: codec.predictor.as_ref(),
                        correction: codec.correction.as_ref(),
                        quantizer: &codec.quantizer,
                    },
                )
            })
            .collect();
        view.sort_by(|a, b| a.0.cmp(b.0));
        view
    }
}

/// Borrowed stateful stages of one tensor (for saving).
pub(crate) struct StageStates<'a> {
    pub predictor: Option<&'a PredictorBox>,
    pub correction: Option<&'a ErrorCorrectionBox>,
    pub quantizer: &'a QuantizerBox,
}

/// Creates a tensor codec and restores its stage states (used by `state::load`).
pub(crate) fn restore_codec(
    pipeline: &Pipeline,
    name: &str,
    shape: &[u64],
    states: [&[u8]; 3],
) -> Result<TensorCodecHandle> {
    let mut codec = TensorCodec::new(pipeline, name, shape)?;
    let [predictor_state, correction_state, quantizer_state] = states;
    if let Some(predictor) = &mut codec.predictor {
        stage_result(
            || format!("tensor `{name}`: restore predictor"),
            predictor.load_state(predictor_state.into()),
        )?;
    }
    if let Some(correction) = &mut codec.correction {
        stage_result(
            || format!("tensor `{name}`: restore error correction"),
            correction.load_state(correction_state.into()),
        )?;
    }
    stage_result(
        || format!("tensor `{name}`: restore quantizer"),
        codec.quantizer.load_state(quantizer_state.into()),
    )?;
    Ok(TensorCodecHandle(codec))
}

pub(crate) type TensorCodecForLoad = TensorCodec;

/// Opaque tensor codec (for `state::load`).
pub(crate) struct TensorCodecHandle(TensorCodec);

/// Collects restored codecs into the map streams use.
pub(crate) fn into_codec_map(
    handles: Vec<(String, TensorCodecHandle)>,
) -> HashMap<String, TensorCodec> {
    handles
        .into_iter()
        .map(|(name, handle)| (name, handle.0))
        .collect()
}
