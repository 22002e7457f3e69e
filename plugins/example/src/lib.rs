//! The example plugin: the template for third-party gradcodec plugins.
//!
//! It exports one quantizer, [`fixed_step::FixedStep`]. Copy this crate, rename
//! the package and the `[lib] name` (keep the `gradcodec_plugin_` prefix), put
//! one stage per module, and list the stages in `export_plugin!` below. See
//! docs/writing-a-plugin.md for the walk from `cargo new` to `gradcodec plugins`.

pub mod fixed_step;

// Builds the abi_stable root module the host loads: the manifest, the
// canonical-config function and one factory per stage kind, with every call
// wrapped in a panic guard. Also defines `plugin_root()` for in-process tests.
gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-example",
    quantizers: [fixed_step::FixedStep],
}

// One line runs the SDK's conformance kit over every stage as a #[test]: config
// round trip, determinism, decoder/encoder agreement, reset, state, malformed
// input.
gradcodec_sdk::conformance_test!();
