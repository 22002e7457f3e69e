//! `raw`: f32 passthrough, the uncompressed baseline.
//!
//! Emits one stream of raw words (the IEEE-754 bits of every entry) and no side
//! info, so with the `bitpack` coder a message costs 32 bits per entry plus the
//! container.
//!
//! ```yaml
//! - quantizer: { use: raw }
//! ```

use gradcodec_sdk::buffers::RVecExt;
use gradcodec_sdk::{
    ensure_data, ensure_len, CallContext, JsonSchema, Quantized, Quantizer, RVec, SdkResult, Stage,
    StageConfig, StageFlags, StageInfo, StreamRole, SymbolStream, TensorSpec,
};
use serde::{Deserialize, Serialize};

/// `raw` has no parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {}

impl StageConfig for RawConfig {}

/// The passthrough quantizer.
pub struct Raw {
    len: u64,
}

impl Stage for Raw {
    type Config = RawConfig;
    const INFO: StageInfo = StageInfo {
        name: "raw",
        version: 1,
        format_version: 1,
        doc: "f32 passthrough: one stream of the raw IEEE-754 bits of every entry, no side info. \
              The uncompressed baseline (32 bits per entry with bitpack).",
        example_params: "{}",
        flags: StageFlags::LOSSLESS,
    };

    fn new(_config: RawConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self { len: tensor.len() })
    }
}

impl Quantizer for Raw {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        out.clear();
        let mut stream = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
        stream.symbols.extend_mapped(input, f32::to_bits);
        out.streams.push(stream);
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        ensure_data(out.side_info.is_empty(), || "raw has no side info".into())?;
        out.streams.clear();
        out.streams
            .push(SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32));
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        ensure_data(coded.streams.len() == 1, || "raw expects one stream".into())?;
        let symbols = &coded.streams[0].symbols;
        ensure_data(symbols.len() as u64 == self.len, || {
            format!(
                "raw stream has {} words, the tensor has {}",
                symbols.len(),
                self.len
            )
        })?;
        out.clear();
        out.extend_mapped(symbols, f32::from_bits);
        Ok(())
    }
}
