//! gradcodec's CO3 quantizer (Chen, Hernandez, Huang, Rini, 2022-2023):
//! [`float_convert::FloatConvert`], `float-convert`: conversion to a tiny float
//! format (fp4, fp8, any 1+E+M <= 16, see [`format`]) with a GenNorm-fitted
//! pre-scale; its side info rebuilds the GenNorm pmf of the levels, the model a
//! parametric entropy coder uses.
//!
//! With `memory-decay` (the feedback plugin) and `huffman` with
//! `model: parametric` (the entropy-coders plugin) it makes the CO3 pipeline;
//! see `pipelines/co3-fp4.yaml`. [`fused::FloatConvertHuffman`] is that
//! quantizer and `huffman` (parametric) fused into one pass (ABI 1.1).

pub mod float_convert;
pub mod format;
pub mod fused;
mod threshold_count;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-co3",
    quantizers: [float_convert::FloatConvert],
    fused: [fused::FloatConvertHuffman],
}
gradcodec_sdk::conformance_test!();
