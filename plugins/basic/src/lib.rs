//! gradcodec's basic stages, one per kind, enough to run every kind through the
//! dynamic plugin boundary:
//!
//! - [`raw::Raw`] quantizer: f32 passthrough, the uncompressed baseline;
//! - [`uniform::Uniform`] quantizer: b-bit uniform levels, per-tensor scale,
//!   optional seeded stochastic rounding;
//! - [`memory_decay::MemoryDecay`] error correction: error feedback with decay γ;
//! - [`last_sent::LastSent`] predictor: ResFed Res-0, the last reconstruction;
//! - [`bitpack::Bitpack`] entropy coder: fixed-width bit packing.

pub mod bitpack;
pub mod last_sent;
pub mod memory_decay;
pub mod raw;
pub mod uniform;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-basic",
    predictors: [last_sent::LastSent],
    error_corrections: [memory_decay::MemoryDecay],
    quantizers: [raw::Raw, uniform::Uniform],
    entropy_coders: [bitpack::Bitpack],
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stage_passes_the_conformance_kit() {
        gradcodec_sdk::conformance::check_library(super::plugin_root());
    }

    #[test]
    fn uniform_passes_the_kit_at_its_extreme_widths() {
        use gradcodec_sdk::{conformance::check_stage_with_params, StageKind};
        for params in [
            r#"{"bits": 1}"#,
            r#"{"bits": 16, "stochastic": true, "seed": 9}"#,
        ] {
            check_stage_with_params(
                super::plugin_root(),
                StageKind::QUANTIZER,
                "uniform",
                params,
            );
        }
    }
}
