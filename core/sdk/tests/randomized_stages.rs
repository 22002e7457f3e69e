//! The conformance kit catches a RANDOMIZED quantizer whose draws ignore the
//! round or the tensor index (every round would get the same noise).

use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// `dither`'s parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DitherConfig {
    /// Seed of the dither.
    #[serde(default)]
    pub seed: u64,
}

impl StageConfig for DitherConfig {}

/// Adds seeded dither before 1-bit rounding; `IGNORE_CONTEXT` draws as if every
/// call were round 0, tensor 0 (the bug the kit must catch).
pub struct Dither<const IGNORE_CONTEXT: bool> {
    seed: u64,
    len: u64,
}

const SHAPES: [StreamShape; 1] = [StreamShape::values(2)];

impl<const IGNORE_CONTEXT: bool> Stage for Dither<IGNORE_CONTEXT> {
    type Config = DitherConfig;
    const INFO: StageInfo = StageInfo {
        name: if IGNORE_CONTEXT {
            "bad-dither"
        } else {
            "dither"
        },
        version: 1,
        format_version: 1,
        doc: "Test stage: sign of x plus seeded uniform dither.",
        example_params: r#"{"seed": 3}"#,
        flags: StageFlags::RANDOMIZED,
    };

    fn new(config: DitherConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            seed: config.seed,
            len: tensor.len(),
        })
    }
}

impl<const IGNORE_CONTEXT: bool> Quantizer for Dither<IGNORE_CONTEXT> {
    fn quantize(&mut self, ctx: &CallContext, input: &[f32], out: &mut Quantized) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        let ctx = if IGNORE_CONTEXT {
            CallContext::new(0, 0)
        } else {
            *ctx
        };
        let mut rng = call_rng(self.seed, &ctx);
        let scale = input.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        begin_streams(out, &SHAPES);
        SideInfoWriter::new(&mut out.side_info).f32(scale);
        out.streams[0].symbols.extend_mapped(input, |v| {
            u32::from(v / scale + (rng.uniform01_f32() - 0.5) < 0.0)
        });
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        describe(out, &SHAPES);
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let mut reader = SideInfoReader::new(&coded.side_info);
        let scale = reader.non_negative_f32("scale")?;
        reader.finish()?;
        let [signs] = received_streams("dither", coded, &SHAPES, [self.len])?;
        out.clear();
        out.extend_mapped(signs, |s| if s == 0 { scale } else { -scale });
        Ok(())
    }
}

gradcodec_sdk::export_plugin! {
    library: "dither-test",
    predictors: [],
    error_corrections: [],
    quantizers: [Dither<false>, Dither<true>],
    entropy_coders: [],
}

fn check(name: &str) {
    let manifest = (plugin_root().manifest())();
    let stage = manifest
        .stages
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap();
    gradcodec_sdk::conformance::check_stage(plugin_root(), stage);
}

#[test]
fn a_stage_drawing_per_call_passes() {
    check("dither");
}

#[test]
fn a_stage_ignoring_round_and_tensor_fails_the_kit() {
    let outcome = std::panic::catch_unwind(|| check("bad-dither"));
    let panic = outcome.expect_err("the kit passed a stage whose noise ignores the round");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("same output at another round"),
        "{message}"
    );
}

/// `export_plugin!` without `fused:` (this library) exports an empty fused
/// pair list and builds no fused instance (ABI 1.1 fields, present all the same).
#[test]
fn a_library_without_fused_pairs_fuses_nothing() {
    let root = plugin_root();
    assert!((root.fused_pairs().expect("fused_pairs is exported"))().is_empty());
    let made = (root.new_fused().expect("new_fused is exported"))(
        "dither".into(),
        "{}".into(),
        "bitpack".into(),
        "{}".into(),
        &TensorSpec::new("t", &[3]),
    );
    assert!(matches!(
        made,
        abi_stable::std_types::RResult::ROk(abi_stable::std_types::ROption::RNone)
    ));
}
