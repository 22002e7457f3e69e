//! gradcodec's dense quantizers (every entry is sent):
//!
//! - [`raw::Raw`], `raw`: f32 passthrough, the uncompressed baseline;
//! - [`uniform::Uniform`], `uniform`: b-bit uniform levels, per-tensor scale,
//!   optional seeded stochastic rounding;
//! - [`qsgd::Qsgd`], `qsgd`: QSGD stochastic s-level quantization (Alistarh et
//!   al. 2017);
//! - [`terngrad::TernGrad`], `terngrad`: TernGrad stochastic ternary quantization
//!   (Wen et al. 2017);
//! - [`sign::Sign`], `sign`: scaled sign, for signSGD / EF-signSGD (Bernstein et
//!   al. 2018; Karimireddy et al. 2019);
//! - [`cast::Fp16`] and [`cast::Bf16`], `fp16` and `bf16`: 16-bit float casts;
//! - [`powersgd::PowerSgd`], `powersgd`: rank-r PowerSGD with warm start (Vogels
//!   et al. 2019).
//!
//! Fused with the `bitpack` coder (ABI 1.1, [`fused`]): `raw`, `fp16` and
//! `bf16`, each a single pass from the input to the coded bytes and the
//! reconstruction; [`convert`] holds the slice casts (F16C where available).

pub mod cast;
pub mod convert;
pub mod fused;
pub mod fused_levels;
pub mod fused_sign;
pub mod powersgd;
pub mod qsgd;
pub mod raw;
pub mod sign;
pub mod terngrad;
pub mod uniform;
pub mod words;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-quantizers",
    quantizers: [
        raw::Raw,
        uniform::Uniform,
        qsgd::Qsgd,
        terngrad::TernGrad,
        sign::Sign,
        cast::Fp16,
        cast::Bf16,
        powersgd::PowerSgd,
    ],
    fused: [
        fused::RawBitpack,
        fused::Fp16Bitpack,
        fused::Bf16Bitpack,
        fused_sign::SignBitpack,
        fused_levels::QsgdBitpack,
        fused_levels::TerngradBitpack,
    ],
}
// The kit again with other parameters: extreme widths, the other norms.
gradcodec_sdk::conformance_test! {
    QUANTIZER: [
        ("uniform", r#"{"bits": 1}"#),
        ("uniform", r#"{"bits": 16, "stochastic": true, "seed": 9}"#),
        ("qsgd", r#"{"levels": 1, "norm": "max"}"#),
        ("terngrad", r#"{}"#),
        ("powersgd", r#"{"rank": 37}"#),
    ],
}
