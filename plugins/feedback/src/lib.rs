//! gradcodec's error-feedback family and ResFed predictors:
//!
//! - [`error_feedback::ErrorFeedback`] error correction: classic error feedback,
//!   `a = r + γ·e`, `e = a - â` (γ = 1 by default);
//! - [`dgc::Dgc`] error correction: Deep Gradient Compression's momentum
//!   correction with momentum factor masking;
//! - [`res1::Res1`] predictor: ResFed Res-1, `S[-1] + ½(O[-1] - O[-2])`;
//! - [`ema::Ema`] predictor: exponential moving average of the reconstructions.

pub mod dgc;
pub mod ema;
pub mod error_feedback;
pub mod res1;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-feedback",
    predictors: [res1::Res1, ema::Ema],
    error_corrections: [error_feedback::ErrorFeedback, dgc::Dgc],
    quantizers: [],
    entropy_coders: [],
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stage_passes_the_conformance_kit() {
        gradcodec_sdk::conformance::check_library(super::plugin_root());
    }
}
