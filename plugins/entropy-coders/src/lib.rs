//! gradcodec's entropy coders:
//!
//! - [`bitpack::Bitpack`]: fixed-width bit packing, the no-model reference;
//! - [`huffman::Huffman`]: canonical Huffman with an empirical model (code
//!   lengths sent) or the parametric model the quantizer derives (CO3);
//! - [`ans::Ans`]: rANS / range coding (constriction) with a static (sent),
//!   adaptive or parametric (quantizer-given) model;
//! - [`elias_gamma::EliasGamma`]: Elias gamma codes of position gaps or values;
//! - [`golomb_rice::GolombRice`]: Rice codes with a per-stream parameter;
//! - [`rans::Rans`]: fast static rANS with interleaved states (alphabets up to
//!   4096), with an empirical model (table sent) or the parametric model the
//!   quantizer derives (CO3);
//! - [`zstd_coder::Zstd`]: byte packing plus Zstandard, the generic baseline.
//!
//! [`bits`] is their bit I/O (LSB-first for most, MSB-first for Huffman) with
//! the universal codes (Elias gamma, Exp-Golomb) they share.
//!
//! Every decoder allocates at most `count` symbols, rejects truncated or
//! trailing data and symbols outside the alphabet with an error, never a panic.

pub mod ans;
pub mod bitpack;
pub mod common;
pub mod elias_gamma;
pub mod golomb_rice;
pub mod huffman;
pub mod rans;
pub mod rans_table;
pub mod zstd_coder;

/// Bit I/O, shared with the fused pairs of other plugins (`gradcodec-coding`).
pub use gradcodec_coding::bits;
use gradcodec_coding::huffman_code;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-entropy-coders",
    entropy_coders: [
        bitpack::Bitpack,
        huffman::Huffman,
        ans::Ans,
        elias_gamma::EliasGamma,
        golomb_rice::GolombRice,
        rans::Rans,
        zstd_coder::Zstd,
    ],
}
// The kit again for the other Huffman, ANS and rANS models, rANS precisions and zstd levels.
gradcodec_sdk::conformance_test! {
    ENTROPY_CODER: [
        ("huffman", r#"{"model": "parametric"}"#),
        ("ans", r#"{"model": "adaptive"}"#),
        ("ans", r#"{"model": "parametric"}"#),
        ("rans", "{}"),
        ("rans", r#"{"precision": 10}"#),
        ("rans", r#"{"precision": 15}"#),
        ("rans", r#"{"model": "parametric"}"#),
        ("rans", r#"{"model": "parametric", "precision": 10}"#),
        ("zstd", r#"{"level": -5}"#),
        ("zstd", r#"{"level": 19}"#),
    ],
}
