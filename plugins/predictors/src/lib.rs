//! gradcodec's predictors (ResFed, Song et al. 2023, and a smoother):
//!
//! - [`last_sent::LastSent`], `last-sent`: ResFed Res-0, the last reconstruction;
//! - [`res1::Res1`], `res1`: ResFed Res-1, `S[-1] + ½(O[-1] - O[-2])`;
//! - [`ema::Ema`], `ema`: exponential moving average of the reconstructions.

pub mod ema;
pub mod last_sent;
pub mod res1;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-predictors",
    predictors: [last_sent::LastSent, res1::Res1, ema::Ema],
}
gradcodec_sdk::conformance_test!();
