//! gradcodec's error corrections (error feedback):
//!
//! - [`error_feedback::ErrorFeedback`], `error-feedback`: classic error feedback,
//!   `a = r + γ·e`, `e = a - â` (γ = 1 by default), and
//!   [`error_feedback::MemoryDecay`], `memory-decay`: the same stage under CO3's
//!   name, γ = 0.7 by default;
//! - [`dgc::Dgc`], `dgc`: Deep Gradient Compression's momentum correction with
//!   momentum factor masking.

pub mod dgc;
pub mod error_feedback;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-feedback",
    error_corrections: [error_feedback::ErrorFeedback, error_feedback::MemoryDecay, dgc::Dgc],
}
gradcodec_sdk::conformance_test!();
