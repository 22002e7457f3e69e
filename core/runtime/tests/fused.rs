//! Fused pairs (ABI 1.1), over the plugins loaded from their .so files (run
//! `cargo build --workspace` first): every pair a library offers passes the
//! conformance kit's fused == composed check (bytes, side info, descriptors,
//! counts, reconstruction, refusals) on several inputs and configs, and the
//! engine's fused and composed paths give the same messages and
//! reconstructions for every pipeline that uses one.

use gradcodec::abi::PluginRootRef;
use gradcodec::{NamedTensor, PipelineSpec, PluginSearch, Registry, Update};
use gradcodec_sdk::conformance::{check_fused_pair, FusedPairUnderTest};
use std::path::PathBuf;
use std::sync::OnceLock;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir: PathBuf = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let registry = Registry::discover(&PluginSearch::only(vec![dir], vec![])).unwrap();
        assert!(
            !registry.stages().is_empty(),
            "build the plugins first: cargo build --workspace"
        );
        registry
    })
}

fn root_of(library: &str) -> PluginRootRef {
    registry()
        .libraries()
        .iter()
        .find(|l| l.manifest.library.as_str() == library)
        .unwrap_or_else(|| panic!("library {library} not loaded"))
        .root
}

/// Gradient-like values: heavy-tailed, with exact zeros and a few outliers.
fn gradient(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
            match i % 11 {
                0 => 0.0,
                1 => (u * 0.3) as f32,
                _ => (u.signum() * u.abs().powf(3.0) * 1e-2) as f32,
            }
        })
        .collect()
}

fn inputs() -> Vec<Vec<f32>> {
    vec![
        gradient(10_000, 1),
        gradient(4097, 2),
        gradient(3, 3),
        vec![0.0; 64],
        vec![1e-30; 17],
        vec![],
        gradient(100_000, 4),
    ]
}

/// Parameters each offered pair is checked with (the first is the pair's
/// pipeline in pipelines/).
fn params_for(quantizer: &str, coder: &str) -> Vec<(&'static str, &'static str)> {
    match (quantizer, coder) {
        ("float-convert", "huffman") => vec![
            (
                r#"{"format": "fp4", "prescale": "gennorm"}"#,
                r#"{"model": "parametric"}"#,
            ),
            (r#"{"format": "fp8"}"#, r#"{"model": "parametric"}"#),
            (
                r#"{"format": "fp4", "prescale": "search", "fit": "normal"}"#,
                r#"{"model": "parametric"}"#,
            ),
            (
                r#"{"exponent_bits": 3, "mantissa_bits": 2}"#,
                r#"{"model": "parametric"}"#,
            ),
        ],
        // No parameters; the inputs above and the kit's probes do the rest.
        ("raw" | "fp16" | "bf16", "bitpack") => vec![("{}", "{}")],
        // Every width the pair decodes (alphabets 3 to 255: 2 to 8 bits), and
        // buckets that end inside a packed group or byte.
        ("qsgd", "bitpack") => vec![
            (
                r#"{"levels": 16, "norm": "l2", "bucket_size": 512, "seed": 0}"#,
                "{}",
            ),
            (r#"{"levels": 1, "bucket_size": 13, "seed": 2}"#, "{}"),
            (r#"{"levels": 2, "norm": "max", "bucket_size": 100}"#, "{}"),
            (r#"{"levels": 7, "bucket_size": 9}"#, "{}"),
            (r#"{"levels": 12, "bucket_size": 7}"#, "{}"),
            (r#"{"levels": 40}"#, "{}"),
            (r#"{"levels": 60, "bucket_size": 3}"#, "{}"),
            (r#"{"levels": 127, "bucket_size": 1000}"#, "{}"),
        ],
        ("terngrad", "bitpack") => vec![(r#"{"clip_sigma": 2.5, "seed": 0}"#, "{}"), ("{}", "{}")],
        _ => vec![("{}", "{}")],
    }
}

#[test]
fn every_offered_fused_pair_is_byte_identical_to_its_composed_stages() {
    let pairs = registry().fused_pairs();
    assert!(
        pairs
            .iter()
            .any(|p| p.descriptor.quantizer.as_str() == "float-convert"),
        "the co3 library offers float-convert + huffman"
    );
    for quantizer in ["raw", "fp16", "bf16", "qsgd", "terngrad"] {
        assert!(
            pairs
                .iter()
                .any(|p| p.descriptor.quantizer.as_str() == quantizer
                    && p.descriptor.coder.as_str() == "bitpack"),
            "the quantizers library offers {quantizer} + bitpack"
        );
    }
    for pair in &pairs {
        let d = &pair.descriptor;
        for (quantizer_params, coder_params) in params_for(&d.quantizer, &d.coder) {
            let under_test = FusedPairUnderTest {
                fused_root: root_of(&pair.library),
                quantizer_root: root_of(&d.quantizer_library),
                quantizer: &d.quantizer,
                quantizer_params,
                coder_root: root_of(&d.coder_library),
                coder: &d.coder,
                coder_params,
            };
            let report = check_fused_pair(&under_test, &inputs()).unwrap_or_else(|e| {
                panic!("{} + {} {quantizer_params}: {e}", d.quantizer, d.coder)
            });
            assert!(report.cases >= inputs().len(), "{report:?}");
            assert!(
                report.refused > 0,
                "malformed messages were tried: {report:?}"
            );
        }
    }
}

fn pipeline(name: &str) -> std::sync::Arc<gradcodec::Pipeline> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../pipelines/{name}.yaml"));
    registry()
        .build(&PipelineSpec::from_file(path).unwrap())
        .unwrap()
}

fn update(round: u64) -> Update {
    Update::new(vec![
        NamedTensor::from_vec("conv", &[64, 3, 5, 5], gradient(4800, round + 10)).unwrap(),
        NamedTensor::from_vec("fc", &[120, 400], gradient(48_000, round + 20)).unwrap(),
        NamedTensor::from_vec("bias", &[120], gradient(120, round + 30)).unwrap(),
    ])
}

#[test]
fn the_engine_uses_fused_pairs_only_where_the_configs_match_and_the_bytes_do_not_change() {
    assert!(pipeline("co3-fp4").fused().is_some());
    assert!(pipeline("co3-fp8").fused().is_some());
    assert!(
        pipeline("co3-fp4-rans").fused().is_none(),
        "rans is not fused with float-convert"
    );
    assert!(
        pipeline("normal-huffman-fp8").fused().is_some(),
        "the same stages, another fit"
    );
    for name in [
        "f32",
        "fp16",
        "bf16",
        "signsgd-ef",
        "qsgd-bitpack",
        "terngrad-bitpack",
    ] {
        assert!(
            pipeline(name).fused().is_some(),
            "{name}: the quantizers library fuses it with bitpack"
        );
    }
    for name in [
        "co3-fp4",
        "co3-fp8",
        "gennorm-huffman-fp8",
        "normal-huffman-fp8",
        "f32",
        "fp16",
        "bf16",
        "signsgd-ef",
        "qsgd-bitpack",
        "terngrad-bitpack",
    ] {
        let pipeline = pipeline(name);
        let (mut fused, mut composed) = (pipeline.encoder(), pipeline.encoder());
        composed.set_fused(false);
        let (mut fused_decoder, mut composed_decoder) = (pipeline.decoder(), pipeline.decoder());
        composed_decoder.set_fused(false);
        for round in 0..3 {
            let a = fused.encode(&update(round)).unwrap();
            let b = composed.encode(&update(round)).unwrap();
            assert_eq!(
                a, b,
                "{name} round {round}: fused and composed messages differ"
            );
            assert_eq!(fused.last_reconstruction(), composed.last_reconstruction());
            assert_eq!(fused.last_stats(), composed.last_stats());
            // Only the composed path materializes the symbols: proof the fused one ran.
            let symbols = |e: &gradcodec::Encoder| -> usize {
                e.last_symbol_streams()
                    .iter()
                    .map(|(_, s)| s.symbols.len())
                    .sum()
            };
            assert_eq!(symbols(&fused), 0, "{name}: the fused pair did not run");
            assert!(symbols(&composed) > 0);
            let x_fused = fused_decoder.decode(&a).unwrap();
            let x_composed = composed_decoder.decode(&a).unwrap();
            assert_eq!(x_fused, x_composed, "{name} round {round}: decoders differ");
            assert_eq!(&x_fused, fused.last_reconstruction());
        }
    }
}
