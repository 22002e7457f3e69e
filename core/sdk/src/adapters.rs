//! Panic-guarded adapters from the safe author traits to the ABI traits.
//!
//! Every call runs under `catch_unwind`: a panic becomes a [`StageError`] of kind
//! [`ErrorCode::PANIC`] naming the stage, and the instance is marked poisoned
//! (every later call fails) until `reset` is called.

use crate::traits::{EntropyCoder, ErrorCorrection, FusedPair, Predictor, Quantizer, Stage};
use abi_stable::std_types::{RResult, RSlice, RString, RVec};
use gradcodec_abi::{
    CallContext, CodedStream, EntropyCoderStage, ErrorCode, ErrorCorrectionStage, FusedEncoded,
    FusedStage, PredictorStage, Quantized, QuantizerStage, StageError, StageResult, SymbolStream,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `f`, turning an error or a panic into a [`StageError`] that names `stage`.
pub fn guard<T>(stage: &str, f: impl FnOnce() -> Result<T, StageError>) -> StageResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(mut error)) => {
            if error.stage.is_empty() {
                error.stage = RString::from(stage);
            }
            RResult::RErr(error)
        }
        Err(payload) => RResult::RErr(StageError::new(
            ErrorCode::PANIC,
            stage,
            format!("the stage panicked: {}", panic_message(payload.as_ref())),
        )),
    }
}

/// A stage instance plus its poisoned flag.
pub struct Guarded<T> {
    inner: T,
    poisoned: bool,
    max_symbols: u64,
}

pub use gradcodec_abi::max_stream_symbols;

impl<T: Stage> Guarded<T> {
    /// Wraps a fresh instance created for a tensor of `tensor_len` entries.
    pub fn new(inner: T, tensor_len: u64) -> Self {
        Self {
            inner,
            poisoned: false,
            max_symbols: max_stream_symbols(tensor_len),
        }
    }

    fn call<R>(&mut self, f: impl FnOnce(&mut T) -> Result<R, StageError>) -> StageResult<R> {
        if self.poisoned {
            return RResult::RErr(poisoned_error(T::INFO.name));
        }
        let inner = &mut self.inner;
        let result = guard(T::INFO.name, || f(inner));
        if matches!(&result, RResult::RErr(error) if error.code == ErrorCode::PANIC) {
            self.poisoned = true;
        }
        result
    }

    fn call_ref<R>(&self, f: impl FnOnce(&T) -> Result<R, StageError>) -> StageResult<R> {
        if self.poisoned {
            return RResult::RErr(poisoned_error(T::INFO.name));
        }
        guard(T::INFO.name, || f(&self.inner))
    }

    fn reset_with(&mut self, f: impl FnOnce(&mut T)) {
        let inner = &mut self.inner;
        let outcome = guard(T::INFO.name, || {
            f(inner);
            Ok(())
        });
        self.poisoned = outcome.is_err();
    }
}

fn poisoned_error(stage: &str) -> StageError {
    StageError::new(
        ErrorCode::PANIC,
        stage,
        "the stage panicked in an earlier call; reset it or create a new instance",
    )
}

impl<T: Predictor> PredictorStage for Guarded<T> {
    fn predict(&mut self, ctx: &CallContext, out: &mut RVec<f32>) -> StageResult<()> {
        self.call(|stage| stage.predict(ctx, out))
    }
    fn commit(&mut self, ctx: &CallContext, reconstruction: RSlice<'_, f32>) -> StageResult<()> {
        self.call(|stage| stage.commit(ctx, reconstruction.as_slice()))
    }
    fn observe(&mut self, ctx: &CallContext, received: RSlice<'_, f32>) -> StageResult<()> {
        self.call(|stage| stage.observe(ctx, received.as_slice()))
    }
    fn save_state(&self, out: &mut RVec<u8>) -> StageResult<()> {
        self.call_ref(|stage| {
            let mut bytes = Vec::new();
            stage.save_state(&mut bytes)?;
            out.clear();
            out.extend_from_slice(&bytes);
            Ok(())
        })
    }
    fn load_state(&mut self, state: RSlice<'_, u8>) -> StageResult<()> {
        self.call(|stage| stage.load_state(state.as_slice()))
    }
    fn reset(&mut self) {
        self.reset_with(|stage| Predictor::reset(stage));
    }
}

impl<T: ErrorCorrection> ErrorCorrectionStage for Guarded<T> {
    fn compensate(
        &mut self,
        ctx: &CallContext,
        residual: RSlice<'_, f32>,
        out: &mut RVec<f32>,
    ) -> StageResult<()> {
        self.call(|stage| stage.compensate(ctx, residual.as_slice(), out))
    }
    fn feedback(
        &mut self,
        ctx: &CallContext,
        compensated: RSlice<'_, f32>,
        reconstructed: RSlice<'_, f32>,
    ) -> StageResult<()> {
        self.call(|stage| stage.feedback(ctx, compensated.as_slice(), reconstructed.as_slice()))
    }
    fn save_state(&self, out: &mut RVec<u8>) -> StageResult<()> {
        self.call_ref(|stage| {
            let mut bytes = Vec::new();
            stage.save_state(&mut bytes)?;
            out.clear();
            out.extend_from_slice(&bytes);
            Ok(())
        })
    }
    fn load_state(&mut self, state: RSlice<'_, u8>) -> StageResult<()> {
        self.call(|stage| stage.load_state(state.as_slice()))
    }
    fn reset(&mut self) {
        self.reset_with(|stage| ErrorCorrection::reset(stage));
    }
}

impl<T: Quantizer> QuantizerStage for Guarded<T> {
    fn quantize(
        &mut self,
        ctx: &CallContext,
        input: RSlice<'_, f32>,
        out: &mut Quantized,
    ) -> StageResult<()> {
        self.call(|stage| stage.quantize(ctx, input.as_slice(), out))
    }
    fn describe_streams(&self, ctx: &CallContext, out: &mut Quantized) -> StageResult<()> {
        self.call_ref(|stage| stage.describe_streams(ctx, out))
    }
    fn dequantize(
        &mut self,
        ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> StageResult<()> {
        self.call(|stage| stage.dequantize(ctx, coded, out))
    }
    fn summarize_side_info(&self, side_info: RSlice<'_, u8>) -> StageResult<RString> {
        self.call_ref(|stage| {
            stage
                .summarize_side_info(side_info.as_slice())
                .map(RString::from)
        })
    }
    fn save_state(&self, out: &mut RVec<u8>) -> StageResult<()> {
        self.call_ref(|stage| {
            let mut bytes = Vec::new();
            Quantizer::save_state(stage, &mut bytes)?;
            out.clear();
            out.extend_from_slice(&bytes);
            Ok(())
        })
    }
    fn load_state(&mut self, state: RSlice<'_, u8>) -> StageResult<()> {
        self.call(|stage| Quantizer::load_state(stage, state.as_slice()))
    }
    fn reset(&mut self) {
        self.reset_with(|stage| Quantizer::reset(stage));
    }
}

impl<T: EntropyCoder> EntropyCoderStage for Guarded<T> {
    fn encode(&mut self, stream: &SymbolStream, out: &mut RVec<u8>) -> StageResult<()> {
        self.call(|stage| stage.encode(stream, out))
    }
    fn decode(
        &mut self,
        bytes: RSlice<'_, u8>,
        count: u64,
        stream: &mut SymbolStream,
    ) -> StageResult<()> {
        if count > self.max_symbols {
            return RResult::RErr(StageError::new(
                ErrorCode::CORRUPT_DATA,
                T::INFO.name,
                format!(
                    "stream claims {count} symbols, more than the {} allowed for this tensor",
                    self.max_symbols
                ),
            ));
        }
        self.call(|stage| stage.decode(bytes.as_slice(), count, stream))
    }
    fn reset(&mut self) {
        self.reset_with(|stage| EntropyCoder::reset(stage));
    }
}

/// A fused pair instance plus its poisoned flag (the fused counterpart of
/// [`Guarded`]); errors name it `fused <quantizer>+<coder>`.
pub struct GuardedFused<F> {
    inner: F,
    label: String,
    poisoned: bool,
    max_symbols: u64,
}

impl<F: FusedPair> GuardedFused<F> {
    /// Wraps a fresh instance created for a tensor of `tensor_len` entries.
    pub fn new(inner: F, tensor_len: u64) -> Self {
        Self {
            inner,
            label: fused_label::<F>(),
            poisoned: false,
            max_symbols: max_stream_symbols(tensor_len),
        }
    }

    fn call<R>(&mut self, f: impl FnOnce(&mut F) -> Result<R, StageError>) -> StageResult<R> {
        if self.poisoned {
            return RResult::RErr(poisoned_error(&self.label));
        }
        let inner = &mut self.inner;
        let result = guard(&self.label, || f(inner));
        if matches!(&result, RResult::RErr(error) if error.code == ErrorCode::PANIC) {
            self.poisoned = true;
        }
        result
    }
}

/// The name errors of fused pair `F` carry: `fused <quantizer>+<coder>`.
pub fn fused_label<F: FusedPair>() -> String {
    format!("fused {}+{}", F::QUANTIZER, F::CODER)
}

impl<F: FusedPair> FusedStage for GuardedFused<F> {
    fn encode(
        &mut self,
        ctx: &CallContext,
        input: RSlice<'_, f32>,
        out: &mut FusedEncoded,
    ) -> StageResult<()> {
        self.call(|fused| fused.encode(ctx, input.as_slice(), out))
    }
    fn decode(
        &mut self,
        ctx: &CallContext,
        described: &Quantized,
        streams: RSlice<'_, CodedStream<'_>>,
        out: &mut RVec<f32>,
    ) -> StageResult<()> {
        if let Some(stream) = streams.iter().find(|s| s.symbols > self.max_symbols) {
            return RResult::RErr(StageError::new(
                ErrorCode::CORRUPT_DATA,
                self.label.as_str(),
                format!(
                    "stream claims {} symbols, more than the {} allowed for this tensor",
                    stream.symbols, self.max_symbols
                ),
            ));
        }
        self.call(|fused| fused.decode(ctx, described, streams.as_slice(), out))
    }
    fn reset(&mut self) {
        let inner = &mut self.inner;
        let outcome = guard(&self.label, || {
            FusedPair::reset(inner);
            Ok(())
        });
        self.poisoned = outcome.is_err();
    }
}
