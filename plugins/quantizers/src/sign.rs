//! `sign`: scaled 1-bit sign quantization (signSGD / EF-signSGD).
//!
//! Each entry becomes `s·sign(x_i)` with `s = mean|x| = ‖x‖₁/n`, the scale of
//! EF-signSGD (Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and
//! other Gradient Compression Schemes", ICML 2019); signSGD itself is Bernstein,
//! Wang, Azizzadenesheli, Anandkumar, "signSGD: Compressed Optimisation for
//! Non-Convex Problems", ICML 2018. Zero counts as positive (one bit per entry, no
//! zero symbol). The scale is one f32 of side info; symbol 0 is `+s`, 1 is `-s`.
//! Pair it with `error-feedback` for EF-signSGD.
//!
//! ```yaml
//! - quantizer: { use: sign }
//! ```

use gradcodec_sdk::prelude::*;

/// The scaled sign quantizer.
pub struct Sign {
    len: u64,
}

const STREAMS: [StreamShape; 1] = [StreamShape::values(2)];

pub(crate) fn read_scale(side_info: &[u8]) -> SdkResult<f32> {
    SideInfoReader::single_non_negative_f32(side_info, "scale")
}

impl Stage for Sign {
    type Config = NoParams;
    const INFO: StageInfo = StageInfo::new(
        "sign",
        "Scaled sign (signSGD, Bernstein et al. 2018; EF-signSGD, Karimireddy et al. \
              2019): one bit per entry, reconstruction mean|x| * sign(x) (zero counts as \
              positive); the scale is one f32.",
    );

    fn new(_config: NoParams, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self { len: tensor.len() })
    }
}

impl Quantizer for Sign {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        ensure_finite(input)?;
        begin_streams(out, &STREAMS);
        let scale = if input.is_empty() {
            0.0
        } else {
            (input.iter().map(|v| f64::from(v.abs())).sum::<f64>() / input.len() as f64) as f32
        };
        SideInfoWriter::new(&mut out.side_info).f32(scale);
        out.streams[0]
            .symbols
            .extend_mapped(input, |v| u32::from(v < 0.0));
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        read_scale(&out.side_info)?;
        describe(out, &STREAMS);
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let scale = read_scale(&coded.side_info)?;
        let [signs] = received_streams("sign", coded, &STREAMS, [self.len])?;
        out.clear();
        out.extend_mapped(signs, |s| if s == 0 { scale } else { -scale });
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        Ok(format!("{{\"scale\":{}}}", read_scale(side_info)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_the_mean_magnitude() {
        let tensor = TensorSpec::new("t", &[4]);
        let mut q = Sign::new(NoParams {}, &tensor).unwrap();
        let ctx = CallContext::new(0, 0);
        let mut coded = Quantized::default();
        q.quantize(&ctx, &[1.0, -3.0, 0.0, 4.0], &mut coded)
            .unwrap();
        assert_eq!(coded.streams[0].symbols.as_slice(), &[0, 1, 0, 0]);
        let mut out = RVec::new();
        q.dequantize(&ctx, &coded, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[2.0, -2.0, 2.0, 2.0]);
    }
}
