//! gradcodec's CO3 stages (Chen, Hernandez, Huang, Rini, 2022-2023):
//!
//! - [`float_convert::FloatConvert`] quantizer `float-convert`: conversion to a
//!   tiny float format (fp4, fp8, any 1+E+M <= 16) with a GenNorm-fitted
//!   pre-scale; its side info rebuilds the GenNorm pmf of the levels;
//! - [`huffman::Huffman`] entropy coder `huffman`: canonical Huffman with an
//!   empirical model (code lengths sent) or the parametric model the quantizer
//!   derives (nothing sent but the symbols).
//!
//! With `memory-decay` error correction (the basic plugin) they make the CO3
//! pipeline; see `pipelines/co3-fp4.yaml`.

mod bits;
mod canonical;
pub mod float_convert;
pub mod format;
pub mod huffman;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-co3",
    predictors: [],
    error_corrections: [],
    quantizers: [float_convert::FloatConvert],
    entropy_coders: [huffman::Huffman],
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stage_passes_the_conformance_kit() {
        gradcodec_sdk::conformance::check_library(super::plugin_root());
    }
}
