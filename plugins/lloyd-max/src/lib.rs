//! gradcodec's M-magnitude weighted Lloyd-Max quantizer (Liu, Rini,
//! Salehkalaibar, Chen, "M22", 2023):
//!
//! - [`lloyd_max::LloydMax`] quantizer `lloyd-max`: fits a GenNorm or double
//!   Weibull model to each tensor, quantizes with the weighted Lloyd-Max design
//!   for that model (made on the standardized variable, cached, scaled back),
//!   and exposes the design's cell probabilities as the stream model so a
//!   parametric entropy coder (`huffman` with `model: parametric`) needs no table;
//!   `design: data` refines the design on the tensor and sends its centroids.

pub mod lloyd_max;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-lloyd-max",
    quantizers: [lloyd_max::LloydMax],
}
// The kit again for the other model, the MLE fit and the extreme widths and weights.
gradcodec_sdk::conformance_test! {
    QUANTIZER: [
        ("lloyd-max", r#"{"bits": 1, "m": 0}"#),
        ("lloyd-max", r#"{"bits": 4, "m": 1.5, "model": "double-weibull"}"#),
        ("lloyd-max", r#"{"bits": 3, "m": 0, "estimator": "mle"}"#),
        ("lloyd-max", r#"{"bits": 12, "m": 16}"#),
        ("lloyd-max", r#"{"bits": 2, "m": 2, "design": "data"}"#),
        ("lloyd-max", r#"{"bits": 5, "m": 0, "model": "double-weibull", "design": "data"}"#),
    ],
}
