//! gradcodec's CO3 quantizer (Chen, Hernandez, Huang, Rini, 2022-2023):
//! [`float_convert::FloatConvert`], `float-convert`: conversion to a tiny float
//! format (fp4, fp8, any 1+E+M <= 16, see [`format`]) with a GenNorm-fitted
//! pre-scale; its side info rebuilds the GenNorm pmf of the levels, the model a
//! parametric entropy coder uses.
//!
//! With `memory-decay` (the feedback plugin) and `huffman` with
//! `model: parametric` (the entropy-coders plugin) it makes the CO3 pipeline;
//! see `pipelines/co3-fp4.yaml`.

pub mod float_convert;
pub mod format;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-co3",
    predictors: [],
    error_corrections: [],
    quantizers: [float_convert::FloatConvert],
    entropy_coders: [],
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stage_passes_the_conformance_kit() {
        gradcodec_sdk::conformance::check_library(super::plugin_root());
    }
}
