//! gradcodec's M-magnitude weighted Lloyd-Max quantizer (Liu, Rini,
//! Salehkalaibar, Chen, "M22", 2023):
//!
//! - [`lloyd_max::LloydMax`] quantizer `lloyd-max`: fits a GenNorm or double
//!   Weibull model to each tensor, quantizes with the weighted Lloyd-Max design
//!   for that model (made on the standardized variable, cached, scaled back),
//!   and exposes the design's cell probabilities as the stream model so a
//!   parametric entropy coder (`huffman` with `model: parametric`) needs no table.

pub mod lloyd_max;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-lloyd-max",
    predictors: [],
    error_corrections: [],
    quantizers: [lloyd_max::LloydMax],
    entropy_coders: [],
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stage_passes_the_conformance_kit() {
        gradcodec_sdk::conformance::check_library(super::plugin_root());
    }

    #[test]
    fn every_model_and_extreme_setting_passes_the_conformance_kit() {
        let root = super::plugin_root();
        let manifest = (root.manifest())();
        for params in [
            r#"{"bits": 1, "m": 0}"#,
            r#"{"bits": 4, "m": 1.5, "model": "double-weibull"}"#,
            r#"{"bits": 3, "m": 0, "estimator": "mle"}"#,
            r#"{"bits": 12, "m": 16}"#,
        ] {
            let mut stage = manifest.stages[0].clone();
            stage.example_params = params.into();
            gradcodec_sdk::conformance::check_stage(root, &stage);
        }
    }
}
