//! Property tests over the plugins loaded from their .so files (run `cargo build
//! --workspace` first): every entropy coder round-trips arbitrary streams,
//! lossless pipelines are exact, lossy stages keep their documented error
//! bounds, and every pipeline in pipelines/ is deterministic (across encoders and
//! thread counts) with the decoder reproducing the encoder's reconstruction.

use abi_stable::std_types::{RResult, RStr, RVec};
use gradcodec::abi::{ErrorCode, StageKind, StreamRole, SymbolStream, TensorSpec};
use gradcodec::{spec::spec_files, NamedTensor, PipelineSpec, PluginSearch, Registry, Update};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Registry::discover(&PluginSearch::only(vec![build_dir()], vec![])).unwrap();
        assert!(
            !registry.stages().is_empty(),
            "build the plugins first: cargo build --workspace"
        );
        registry
    })
}

fn pipeline(yaml: &str) -> std::sync::Arc<gradcodec::Pipeline> {
    registry()
        .build(&PipelineSpec::parse(yaml, "property.yaml").unwrap())
        .unwrap()
}

fn update_of(values: Vec<f32>) -> Update {
    let len = values.len();
    Update::new(vec![NamedTensor::from_vec("t", &[len], values).unwrap()])
}

/// Finite values spanning many magnitudes, with exact zeros.
fn finite_values(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            3 => (-1.0f32..1.0).prop_map(|v| v * 1e-3),
            1 => -1.0f32..1.0,
            1 => Just(0.0f32),
            1 => -1e4f32..1e4,
        ],
        1..max_len,
    )
}

fn stream_strategy() -> impl Strategy<Value = SymbolStream> {
    let alphabets = prop_oneof![
        Just(1u64),
        Just(2),
        Just(3),
        Just(11),
        Just(247),
        Just(4096),
        Just(65_536)
    ];
    prop_oneof![
        alphabets.prop_flat_map(|alphabet| {
            prop::collection::vec(0..alphabet as u32, 0..600).prop_map(move |symbols| {
                let mut stream = SymbolStream::new(StreamRole::VALUES, alphabet);
                stream.symbols = symbols.into();
                stream
            })
        }),
        prop::collection::btree_set(0u32..50_000, 0..300).prop_map(|set| {
            let mut stream = SymbolStream::new(StreamRole::POSITIONS, 50_000);
            stream.symbols = set.into_iter().collect();
            stream
        }),
        prop::collection::vec(any::<u32>(), 0..300).prop_map(|symbols| {
            let mut stream = SymbolStream::new(StreamRole::RAW_WORDS, 1 << 32);
            stream.symbols = symbols.into();
            stream
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_entropy_coder_round_trips_arbitrary_streams(stream in stream_strategy()) {
        let tensor = TensorSpec { name: "p".into(), shape: RVec::from(vec![50_000u64]) };
        for stage in registry().stages().iter().filter(|s| s.descriptor.kind == StageKind::ENTROPY_CODER) {
            let name = stage.descriptor.name.as_str();
            let RResult::ROk(mut coder) = (stage.library.root.new_entropy_coder())(
                RStr::from(name), RStr::from(stage.descriptor.example_params.as_str()), &tensor)
            else { panic!("{name}: cannot create") };
            let mut bytes = RVec::new();
            match coder.encode(&stream, &mut bytes) {
                RResult::ROk(()) => {}
                RResult::RErr(e) if e.code == ErrorCode::UNSUPPORTED => continue,
                RResult::RErr(e) => panic!("{name}: {e}"),
            }
            let mut decoded = SymbolStream { symbols: RVec::new(), ..stream.clone() };
            let result = coder.decode(bytes.as_slice().into(), stream.symbols.len() as u64, &mut decoded);
            prop_assert!(result.is_ok(), "{}: {:?}", name, result);
            prop_assert_eq!(&decoded.symbols, &stream.symbols, "{} round trip", name);
        }
    }

    #[test]
    fn lossless_pipeline_is_exact(values in finite_values(2000)) {
        let pipeline = pipeline("name: f\nstages:\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\n");
        let update = update_of(values);
        let message = pipeline.encoder().encode(&update).unwrap();
        prop_assert_eq!(pipeline.decoder().decode(&message).unwrap(), update);
    }

    #[test]
    fn uniform_error_is_at_most_half_a_step(values in finite_values(2000), bits in 1u32..12) {
        let yaml = format!("name: u\nstages:\n  - quantizer: {{ use: uniform, params: {{ bits: {bits} }} }}\n  - entropy-coder: {{ use: bitpack }}\n");
        let update = update_of(values.clone());
        let message = pipeline(&yaml).encoder().encode(&update).unwrap();
        let decoded = pipeline(&yaml).decoder().decode(&message).unwrap();
        let scale = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let half_step = scale / ((1u32 << bits) - 1) as f32;
        for (x, y) in values.iter().zip(decoded.tensors[0].data.iter()) {
            prop_assert!((x - y).abs() <= half_step * 1.0001 + scale * 1e-6, "{} -> {} (half step {})", x, y, half_step);
        }
    }

    #[test]
    fn fixed_step_error_is_at_most_half_a_step_in_range(values in finite_values(2000)) {
        let yaml = "name: s\nstages:\n  - quantizer: { use: fixed-step, params: { step: 0.01, max_level: 1000 } }\n  - entropy-coder: { use: bitpack }\n";
        let update = update_of(values.clone());
        let message = pipeline(yaml).encoder().encode(&update).unwrap();
        let decoded = pipeline(yaml).decoder().decode(&message).unwrap();
        for (x, y) in values.iter().zip(decoded.tensors[0].data.iter()) {
            if x.abs() <= 10.0 {
                prop_assert!((x - y).abs() <= 0.005 * 1.001, "{} -> {}", x, y);
            }
        }
    }
}

fn shipped_specs() -> Vec<PathBuf> {
    spec_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines")).unwrap()
}

/// Every shipped spec: named after its file, says where it comes from, builds
/// against the loaded plugins (known stages, canonical order, parameters each
/// stage accepts), and has a default entropy coder for any stream role.
#[test]
fn every_shipped_spec_is_named_described_and_valid() {
    for path in shipped_specs() {
        let file = path.file_stem().unwrap().to_string_lossy().to_string();
        let spec = PipelineSpec::from_file(&path).unwrap();
        assert_eq!(spec.name, file, "{}: name", path.display());
        assert!(
            spec.about.len() > 20,
            "{}: `about` must name the method and its source",
            path.display()
        );
        assert!(
            spec.stages
                .iter()
                .any(|s| s.kind == StageKind::ENTROPY_CODER && s.roles.is_empty()),
            "{}: no default entropy coder",
            path.display()
        );
        if let Err(error) = registry().build(&spec) {
            panic!("{error}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn every_shipped_pipeline_is_deterministic_and_decodes_to_its_reconstruction(
        a in finite_values(3000), b in finite_values(700)
    ) {
        let update = Update::new(vec![
            NamedTensor::from_vec("a", &[a.len()], a).unwrap(),
            NamedTensor::from_vec("b", &[b.len()], b).unwrap(),
        ]);
        for path in shipped_specs() {
            let pipeline = registry().build(&PipelineSpec::from_file(&path).unwrap()).unwrap();
            let encode_with = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let mut encoder = pipeline.encoder();
                    let first = encoder.encode(&update).unwrap();
                    let second = encoder.encode(&update).unwrap();
                    (first, second, encoder.last_reconstruction().clone())
                })
            };
            let (one, two) = (encode_with(1), encode_with(2));
            prop_assert!(one.0 == two.0 && one.1 == two.1, "{}: bytes depend on the thread count", path.display());
            let mut decoder = pipeline.decoder();
            decoder.decode(&one.0).unwrap();
            let decoded = decoder.decode(&one.1).unwrap();
            prop_assert!(decoded == one.2, "{}: decoder differs from the encoder's reconstruction", path.display());
        }
    }
}
