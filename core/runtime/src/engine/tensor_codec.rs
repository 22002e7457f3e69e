//! The stage instances and buffers of one block of one tensor of a stream, and
//! the per-block codec chain.
//!
//! Encode: `r = x - P` (predictor), `a = r + γe` (error correction),
//! `a -> symbols + side info` (quantizer), symbols -> bytes (the entropy coder
//! of each stream's role); then decode in the loop: `â = Q⁻¹(symbols)`, the
//! error correction learns `e = a - â`, and the predictor commits `x̂ = P + â`,
//! exactly what the decoder will compute, so the two ends never drift.
//!
//! Decode: bytes -> symbols -> `â`; [`BlockCodec::commit`] later forms
//! `x̂ = P + â` once the whole message has decoded.

use crate::container::{self, BlockRecord, ParsedMessage};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use abi_stable::std_types::{RResult, RVec};
use gradcodec_abi::{
    CallContext, CodedStream, EntropyCoderBox, ErrorCorrectionBox, FusedBox, FusedEncoded,
    PredictorBox, Quantized, QuantizerBox, StageError, StageFlags, StageKind, TensorSpec,
};
use std::borrow::Cow;
use std::sync::Arc;

/// A stage's result, with the place it failed.
pub(super) fn stage_result<T>(
    context: impl FnOnce() -> String,
    result: RResult<T, StageError>,
) -> Result<T> {
    match result {
        RResult::ROk(value) => Ok(value),
        RResult::RErr(error) => Err(Error::stage(context(), error)),
    }
}

/// The stages and buffers of one block.
pub(crate) struct BlockCodec {
    spec: TensorSpec,
    /// The block's index within its tensor (0 for a tensor in one block).
    block: u32,
    /// Where errors say they happened (made once: every call names it).
    place: Arc<str>,
    pub(super) predictor: Option<PredictorBox>,
    pub(super) correction: Option<ErrorCorrectionBox>,
    pub(super) quantizer: QuantizerBox,
    coders: Vec<EntropyCoderBox>,
    prediction: RVec<f32>,
    residual: RVec<f32>,
    compensated: RVec<f32>,
    pub(super) quantized: Quantized,
    dequantized: RVec<f32>,
    pub(super) coded: RVec<RVec<u8>>,
    /// Symbols per stream of the last block coded (the fused path leaves the
    /// streams' symbol vectors empty).
    pub(super) symbol_counts: Vec<u64>,
    /// The fused quantizer + coder, once asked for (see [`crate::fused`]).
    fused: Option<FusedBox>,
    fused_tried: bool,
    fused_out: FusedEncoded,
    /// True when the last encode ran a fused pair that skipped x̂ (nothing in
    /// the encode needed it): [`BlockCodec::encoded_reconstruction`] decodes it
    /// from the block's own streams on request.
    deferred: bool,
    /// The call context of the last encode, for that decode.
    encoded_ctx: CallContext,
}

impl BlockCodec {
    /// New stage instances for a block of `shape` (the whole tensor's shape
    /// when it is one block).
    pub fn new(pipeline: &Pipeline, name: &str, shape: &[u64], block: u32) -> Result<Self> {
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
                StageKind::PREDICTOR => predictor = Some(stage.new_predictor(&spec)?),
                StageKind::ERROR_CORRECTION => {
                    correction = Some(stage.new_error_correction(&spec)?)
                }
                StageKind::QUANTIZER => quantizer = Some(stage.new_quantizer(&spec)?),
                _ => coders.push(stage.new_entropy_coder(&spec)?),
            }
        }
        let quantizer =
            quantizer.ok_or_else(|| Error::Spec("the pipeline has no quantizer".into()))?;
        let place: Arc<str> = if block == 0 {
            format!("tensor `{name}`").into()
        } else {
            format!("tensor `{name}` block {block}").into()
        };
        Ok(Self {
            spec,
            block,
            place,
            predictor,
            correction,
            quantizer,
            coders,
            prediction: RVec::new(),
            residual: RVec::new(),
            compensated: RVec::new(),
            quantized: Quantized::default(),
            dequantized: RVec::new(),
            coded: RVec::new(),
            symbol_counts: Vec::new(),
            fused: None,
            fused_tried: false,
            fused_out: FusedEncoded::default(),
            deferred: false,
            encoded_ctx: CallContext {
                round: 0,
                tensor_index: 0,
                reserved: block,
            },
        })
    }

    /// The block's shape.
    pub fn shape(&self) -> &[u64] {
        self.spec.shape.as_slice()
    }

    fn len(&self) -> usize {
        self.spec.len() as usize
    }

    /// The call context of this block in `round` for the tensor at `index`:
    /// `reserved` carries the block index (0 for a tensor in one block), so
    /// randomized stages draw a different stream per block.
    pub fn context(&self, round: u64, index: usize) -> CallContext {
        CallContext {
            round,
            tensor_index: index as u32,
            reserved: self.block,
        }
    }

    /// `tensor `name`` or `tensor `name` block k`, for messages.
    fn place(&self) -> Arc<str> {
        Arc::clone(&self.place)
    }

    fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len == self.len() {
            Ok(())
        } else {
            Err(Error::Update(format!(
                "{}: {what} has {len} entries, expected {}",
                self.place(),
                self.len()
            )))
        }
    }

    /// Writes the predictor's prediction (zeros without history) into `self.prediction`.
    pub fn predict(&mut self, ctx: &CallContext) -> Result<()> {
        let place = self.place();
        match &mut self.predictor {
            Some(predictor) => {
                stage_result(
                    || format!("{place}: predict"),
                    predictor.predict(ctx, &mut self.prediction),
                )?;
                self.check_len("the prediction", self.prediction.len())
            }
            None => Ok(()),
        }
    }

    /// Encodes `x` (this block's values); afterwards [`BlockCodec::reconstruction`]
    /// holds x̂ and `quantized` / `coded` the block's side info, streams and bytes.
    /// Returns the check of the stream models.
    pub fn encode(
        &mut self,
        ctx: &CallContext,
        x: &[f32],
        pipeline: &Pipeline,
        fused: bool,
    ) -> Result<Option<u32>> {
        self.prepare(ctx, x)?;
        self.encode_prepared(ctx, x, pipeline, fused)
    }

    /// The first half of [`BlockCodec::encode`], which changes no stage's
    /// state: the prediction, r = x - P, and the compensated a = r + γe.
    pub fn prepare(&mut self, ctx: &CallContext, x: &[f32]) -> Result<()> {
        let place = self.place();
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
        if let Some(correction) = &mut self.correction {
            stage_result(
                || format!("{place}: compensate"),
                correction.compensate(ctx, residual.into(), &mut self.compensated),
            )?;
            if self.compensated.len() != residual.len() {
                return Err(Error::Update(format!(
                    "{place}: the compensated tensor has {} entries, expected {}",
                    self.compensated.len(),
                    residual.len()
                )));
            }
        }
        Ok(())
    }

    /// The second half of [`BlockCodec::encode`], after
    /// [`BlockCodec::prepare`] with the same `x`: quantize, code, feedback and
    /// commit.
    pub fn encode_prepared(
        &mut self,
        ctx: &CallContext,
        x: &[f32],
        pipeline: &Pipeline,
        fused: bool,
    ) -> Result<Option<u32>> {
        let place = self.place();
        self.deferred = false;
        self.encoded_ctx = *ctx;
        let fused = fused && self.fused_instance(pipeline)?;
        // Only the error correction's feedback and the predictor's commit read â
        // during the encode; otherwise a fused pair may skip it.
        let needs_reconstruction = self.predictor.is_some() || self.correction.is_some();
        self.fused_out.skip_reconstruction = !needs_reconstruction;
        // The composed path skips `dequantize` likewise, for a stateless
        // quantizer (its dequantize then depends only on what it coded).
        let skip_dequantize = !needs_reconstruction
            && pipeline
                .stage(StageKind::QUANTIZER)
                .is_some_and(|q| !q.flags.contains(StageFlags::STATEFUL));
        // The stage input `prepare` made: a, else r, else x itself.
        let input: &[f32] = if self.correction.is_some() {
            &self.compensated
        } else if self.predictor.is_some() {
            &self.residual
        } else {
            x
        };
        if let (true, Some(instance)) = (fused, self.fused.as_mut()) {
            Self::encode_fused(
                ctx,
                input,
                &place,
                instance,
                &mut self.fused_out,
                Buffers {
                    quantized: &mut self.quantized,
                    coded: &mut self.coded,
                    dequantized: &mut self.dequantized,
                    symbol_counts: &mut self.symbol_counts,
                },
                self.spec.len(),
            )?;
        } else {
            Self::encode_composed(
                ctx,
                input,
                pipeline,
                &place,
                &mut self.quantizer,
                &mut self.coders,
                Buffers {
                    quantized: &mut self.quantized,
                    coded: &mut self.coded,
                    dequantized: &mut self.dequantized,
                    symbol_counts: &mut self.symbol_counts,
                },
                self.spec.len(),
                skip_dequantize,
            )?;
        }
        self.deferred = if fused {
            !needs_reconstruction && self.dequantized.is_empty()
        } else {
            skip_dequantize
        };
        if !self.deferred {
            self.check_len("the dequantized tensor", self.dequantized.len())?;
        }
        if let Some(correction) = &mut self.correction {
            stage_result(
                || format!("{place}: error feedback"),
                correction.feedback(ctx, input.into(), self.dequantized.as_slice().into()),
            )?;
        }
        self.commit(ctx)?;
        Ok(container::model_check(&self.quantized.streams))
    }

    /// Creates the fused instance on first use; true when there is one.
    fn fused_instance(&mut self, pipeline: &Pipeline) -> Result<bool> {
        if !self.fused_tried {
            self.fused_tried = true;
            self.fused = match pipeline.fused() {
                Some(factory) => factory.create(&self.spec)?,
                None => None,
            };
        }
        Ok(self.fused.is_some())
    }

    /// Quantize, code and reconstruct in one call of the fused pair.
    fn encode_fused(
        ctx: &CallContext,
        input: &[f32],
        place: &str,
        fused: &mut FusedBox,
        out: &mut FusedEncoded,
        buffers: Buffers<'_>,
        len: u64,
    ) -> Result<()> {
        stage_result(
            || format!("{place}: fused quantize + code"),
            fused.encode(ctx, input.into(), out),
        )?;
        let streams = out.quantized.streams.len();
        if out.symbol_counts.len() != streams || out.coded.len() != streams {
            return Err(Error::Update(format!(
                "{place}: the fused pair described {streams} streams but gave {} counts and {} coded streams",
                out.symbol_counts.len(),
                out.coded.len()
            )));
        }
        let max_symbols = gradcodec_abi::max_stream_symbols(len);
        if let Some(count) = out.symbol_counts.iter().find(|&&c| c > max_symbols) {
            return Err(Error::Update(format!(
                "{place}: the fused pair emitted {count} symbols in a stream, more than {max_symbols}"
            )));
        }
        // Swap the buffers in: both sides keep their capacity for the next call.
        std::mem::swap(buffers.quantized, &mut out.quantized);
        std::mem::swap(buffers.coded, &mut out.coded);
        std::mem::swap(buffers.dequantized, &mut out.reconstruction);
        buffers.symbol_counts.clear();
        buffers.symbol_counts.extend_from_slice(&out.symbol_counts);
        Ok(())
    }

    /// The composed chain: quantize, check, entropy-code each stream, dequantize.
    #[allow(clippy::too_many_arguments)]
    fn encode_composed(
        ctx: &CallContext,
        input: &[f32],
        pipeline: &Pipeline,
        place: &str,
        quantizer: &mut QuantizerBox,
        coders: &mut [EntropyCoderBox],
        out: Buffers<'_>,
        len: u64,
        skip_dequantize: bool,
    ) -> Result<()> {
        stage_result(
            || format!("{place}: quantize"),
            quantizer.quantize(ctx, input.into(), out.quantized),
        )?;
        let streams = out.quantized.streams.len();
        out.coded.truncate(streams);
        while out.coded.len() < streams {
            out.coded.push(RVec::new());
        }
        let max_symbols = gradcodec_abi::max_stream_symbols(len);
        out.symbol_counts.clear();
        for (index, stream) in out.quantized.streams.iter().enumerate() {
            if stream.symbols.len() as u64 > max_symbols {
                return Err(Error::Update(format!(
                    "{place}: the quantizer emitted {} symbols in stream {index}, more than {max_symbols}",
                    stream.symbols.len()
                )));
            }
            // A symbol outside the alphabet would reach a coder that may mask
            // it: the two ends would then silently disagree.
            if stream.alphabet_size <= u64::from(u32::MAX) {
                let alphabet = stream.alphabet_size;
                if let Some(bad) = crate::scan::first_outside_alphabet(&stream.symbols, alphabet) {
                    return Err(Error::Update(format!(
                        "{place}: the quantizer emitted symbol {bad} outside 0..{alphabet} in stream {index}"
                    )));
                }
            }
            let coder_index = pipeline.coder_for(stream.role).ok_or_else(|| {
                Error::Spec(format!(
                    "{place}: no entropy-coder takes streams of role `{}`",
                    stream.role.as_str()
                ))
            })?;
            let coded = &mut out.coded[index];
            coded.clear();
            stage_result(
                || format!("{place}: entropy-code stream {index}"),
                coders[coder_index].encode(stream, coded),
            )?;
            out.symbol_counts.push(stream.symbols.len() as u64);
        }
        if skip_dequantize {
            out.dequantized.clear();
            return Ok(());
        }
        // Decode in the loop: exactly what the receiver will reconstruct.
        stage_result(
            || format!("{place}: dequantize"),
            quantizer.dequantize(ctx, out.quantized, out.dequantized),
        )
    }

    /// Entropy-decodes and dequantizes one coded block into â; nothing is
    /// committed (see [`BlockCodec::commit`]).
    pub fn decode(
        &mut self,
        ctx: &CallContext,
        parsed: &ParsedMessage<'_>,
        record: &BlockRecord,
        pipeline: &Pipeline,
        fused: bool,
    ) -> Result<()> {
        let place = self.place();
        // The last message's streams lend their symbol buffers to the new ones
        // (below), so the coders decode into warm memory, not fresh pages.
        let mut previous = std::mem::take(&mut self.quantized.streams);
        self.quantized.side_info.clear();
        self.quantized
            .side_info
            .extend_from_slice(parsed.slice(&record.side_info));
        stage_result(
            || format!("{place}: read side info"),
            self.quantizer.describe_streams(ctx, &mut self.quantized),
        )?;
        for (stream, old) in self.quantized.streams.iter_mut().zip(previous.iter_mut()) {
            if stream.symbols.capacity() == 0 {
                old.symbols.clear();
                std::mem::swap(&mut stream.symbols, &mut old.symbols);
            }
        }
        if self.quantized.streams.len() != record.streams.len() {
            return Err(Error::Message(format!(
                "{place}: {} streams in the message, the quantizer expects {}",
                record.streams.len(),
                self.quantized.streams.len()
            )));
        }
        let models = container::model_check(&self.quantized.streams);
        if models != record.model_crc {
            return Err(Error::Message(format!(
                "{place}: the decoder's stream models differ from the encoder's \
                 (model check {models:?} vs {:?}); the two ends disagree on the quantizer's model \
                 (different stage build or platform math)",
                record.model_crc
            )));
        }
        if fused && self.fused_instance(pipeline)? {
            let streams: Vec<CodedStream<'_>> = record
                .streams
                .iter()
                .map(|stored| CodedStream {
                    bytes: parsed.slice(&stored.bytes).into(),
                    symbols: stored.symbols,
                })
                .collect();
            let fused = self.fused.as_mut().expect("checked by fused_instance");
            stage_result(
                || format!("{place}: fused decode"),
                fused.decode(
                    ctx,
                    &self.quantized,
                    streams.as_slice().into(),
                    &mut self.dequantized,
                ),
            )?;
            return self.check_decoded(&place, pipeline);
        }
        for (stream_index, (stream, stored)) in self
            .quantized
            .streams
            .iter_mut()
            .zip(&record.streams)
            .enumerate()
        {
            let coder = pipeline.coder_for(stream.role).ok_or_else(|| {
                Error::Message(format!(
                    "{place}: no entropy-coder for role `{}`",
                    stream.role.as_str()
                ))
            })?;
            stream.symbols.clear();
            stage_result(
                || format!("{place}: entropy-decode stream {stream_index}"),
                self.coders[coder].decode(
                    parsed.slice(&stored.bytes).into(),
                    stored.symbols,
                    stream,
                ),
            )?;
            if stream.symbols.len() as u64 != stored.symbols {
                return Err(Error::Message(format!(
                    "{place}: stream {stream_index} decoded {} symbols, the message says {}",
                    stream.symbols.len(),
                    stored.symbols
                )));
            }
            let alphabet = stream.alphabet_size;
            if let Some(bad) = crate::scan::first_outside_alphabet(&stream.symbols, alphabet) {
                return Err(Error::Message(format!(
                    "{place}: stream {stream_index} holds symbol {bad} outside 0..{alphabet}"
                )));
            }
        }
        stage_result(
            || format!("{place}: dequantize"),
            self.quantizer
                .dequantize(ctx, &self.quantized, &mut self.dequantized),
        )?;
        self.check_decoded(&place, pipeline)
    }

    /// â must have the block's length and finite values (scanned here unless
    /// the quantizer is CHECKS_FINITE: its dequantize refused them already).
    fn check_decoded(&self, place: &str, pipeline: &Pipeline) -> Result<()> {
        self.check_len("the dequantized tensor", self.dequantized.len())?;
        if !pipeline.quantizer_checks_finite() && !crate::scan::all_finite(&self.dequantized) {
            return Err(Error::Message(format!(
                "{place}: decodes to NaN or infinite values"
            )));
        }
        Ok(())
    }

    /// x̂ = P + â (into `self.residual` when there is a predictor, which then
    /// commits it; otherwise x̂ is â itself). On the decoder, call
    /// [`BlockCodec::predict`] first.
    pub fn commit(&mut self, ctx: &CallContext) -> Result<()> {
        let place = self.place();
        if let Some(predictor) = &mut self.predictor {
            fill_zipped(
                &mut self.residual,
                &self.prediction,
                &self.dequantized,
                |p, q| p + q,
            );
            stage_result(
                || format!("{place}: commit"),
                predictor.commit(ctx, self.residual.as_slice().into()),
            )?;
        }
        Ok(())
    }

    /// Feeds what this side received on the opposite link to the predictor.
    pub fn observe(&mut self, ctx: &CallContext, received: &[f32]) -> Result<()> {
        let place = self.place();
        if let Some(predictor) = &mut self.predictor {
            stage_result(
                || format!("{place}: observe"),
                predictor.observe(ctx, received.into()),
            )?;
        }
        Ok(())
    }

    /// x̂ of the last encoded block: [`BlockCodec::reconstruction`], or, where
    /// the fused pair skipped it, its decode of the block's own coded streams by
    /// a new instance of the pair (exact: fused pairs are stateless).
    pub fn encoded_reconstruction(&self, pipeline: &Pipeline) -> Result<Cow<'_, [f32]>> {
        if !self.deferred {
            return Ok(Cow::Borrowed(self.reconstruction()));
        }
        let place = self.place();
        let mut values = RVec::new();
        if self.fused.is_some() {
            let mut fused = match pipeline.fused() {
                Some(factory) => factory.create(&self.spec)?,
                None => None,
            }
            .ok_or_else(|| {
                Error::Update(format!(
                    "{place}: the fused pair that coded the block is gone"
                ))
            })?;
            let streams: Vec<CodedStream<'_>> = self
                .coded
                .iter()
                .zip(&self.symbol_counts)
                .map(|(bytes, &symbols)| CodedStream {
                    bytes: bytes.as_slice().into(),
                    symbols,
                })
                .collect();
            stage_result(
                || format!("{place}: fused decode of the reconstruction"),
                fused.decode(
                    &self.encoded_ctx,
                    &self.quantized,
                    streams.as_slice().into(),
                    &mut values,
                ),
            )?;
        } else {
            let stage = pipeline
                .stage(StageKind::QUANTIZER)
                .ok_or_else(|| Error::Spec("the pipeline has no quantizer".into()))?;
            let mut quantizer = stage.new_quantizer(&self.spec)?;
            stage_result(
                || format!("{place}: dequantize"),
                quantizer.dequantize(&self.encoded_ctx, &self.quantized, &mut values),
            )?;
        }
        self.check_len("the reconstruction", values.len())?;
        Ok(Cow::Owned(values.into_vec()))
    }

    /// x̂ of the last encoded or decoded block (of an encode, only where it was
    /// not deferred: see [`BlockCodec::encoded_reconstruction`]).
    pub fn reconstruction(&self) -> &[f32] {
        if self.predictor.is_some() {
            &self.residual
        } else {
            &self.dequantized
        }
    }

    /// Moves x̂ of the last decoded block out (without a copy when the buffer's
    /// allocator is this binary's, as it is for in-tree plugins); the stages
    /// refill an empty buffer next time.
    pub fn take_reconstruction(&mut self) -> Vec<f32> {
        let buffer = if self.predictor.is_some() {
            &mut self.residual
        } else {
            &mut self.dequantized
        };
        std::mem::take(buffer).into_vec()
    }

    /// The stage states, for checkpoints: predictor, error correction, quantizer.
    pub fn save_states(&self) -> Result<[Vec<u8>; 3]> {
        let place = self.place();
        let save = |what: &str, result: RResult<(), StageError>, out: RVec<u8>| {
            stage_result(|| format!("{place}: save {what} state"), result).map(|()| out.into_vec())
        };
        let mut predictor = RVec::new();
        let predictor = match &self.predictor {
            Some(p) => save("predictor", p.save_state(&mut predictor), predictor)?,
            None => Vec::new(),
        };
        let mut correction = RVec::new();
        let correction = match &self.correction {
            Some(c) => save(
                "error-correction",
                c.save_state(&mut correction),
                correction,
            )?,
            None => Vec::new(),
        };
        let mut quantizer = RVec::new();
        let quantizer = save(
            "quantizer",
            self.quantizer.save_state(&mut quantizer),
            quantizer,
        )?;
        Ok([predictor, correction, quantizer])
    }

    /// Restores the states [`BlockCodec::save_states`] wrote.
    pub fn load_states(&mut self, states: &[Vec<u8>; 3]) -> Result<()> {
        let place = self.place();
        if let Some(predictor) = &mut self.predictor {
            stage_result(
                || format!("{place}: restore predictor"),
                predictor.load_state(states[0].as_slice().into()),
            )?;
        }
        if let Some(correction) = &mut self.correction {
            stage_result(
                || format!("{place}: restore error correction"),
                correction.load_state(states[1].as_slice().into()),
            )?;
        }
        stage_result(
            || format!("{place}: restore quantizer"),
            self.quantizer.load_state(states[2].as_slice().into()),
        )
    }

    /// Forgets every stage's state.
    pub fn reset(&mut self) {
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

/// The buffers the composed chain fills.
struct Buffers<'a> {
    quantized: &'a mut Quantized,
    coded: &'a mut RVec<RVec<u8>>,
    dequantized: &'a mut RVec<f32>,
    symbol_counts: &'a mut Vec<u64>,
}

/// Sets `out` to `f(a[i], b[i])` (as long as the shorter): resized once, then a
/// slice loop the compiler vectorizes (`RVec::extend` pushes one at a time).
fn fill_zipped(out: &mut RVec<f32>, a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    let len = a.len().min(b.len());
    if out.len() != len {
        out.clear();
        out.resize(len, 0.0);
    }
    for ((o, x), y) in out.as_mut_slice().iter_mut().zip(a).zip(b) {
        *o = f(*x, *y);
    }
}
