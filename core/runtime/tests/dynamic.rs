//! End-to-end tests through the dynamic plugin boundary: the plugins are loaded
//! from their built `.so` files (run `cargo build --workspace` first; the test
//! script does).

use gradcodec::{
    decoder_for_message, loader, metrics, NamedTensor, PipelineSpec, PluginSearch, Registry, Update,
};

mod common;
use common::{build_dir, library};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One plugin of each stage kind, loaded from their files.
fn registry() -> Registry {
    let files = [
        "gradcodec_plugin_predictors",
        "gradcodec_plugin_feedback",
        "gradcodec_plugin_quantizers",
        "gradcodec_plugin_entropy_coders",
    ]
    .iter()
    .map(|stem| library(stem))
    .collect();
    let registry = Registry::discover(&PluginSearch::only(vec![], files)).unwrap();
    assert!(
        registry.failures().is_empty(),
        "load failures: {:?}",
        registry.failures()
    );
    registry
}

/// Every plugin in the build directory (discovery by directory).
fn directory_registry() -> Registry {
    library("gradcodec_plugin_quantizers");
    Registry::discover(&PluginSearch::only(vec![build_dir()], vec![])).unwrap()
}

fn fixture_registry(stems: &[&str]) -> Registry {
    let files = stems.iter().map(|stem| library(stem)).collect();
    Registry::discover(&PluginSearch::only(vec![], files)).unwrap()
}

fn update(round: u32) -> Update {
    let values = |len: usize, salt: u32| -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = ((i as u32).wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40503)) as f32
                    / u32::MAX as f32;
                (x - 0.5) * 0.02 * (1.0 + (i % 5) as f32)
            })
            .collect()
    };
    Update::new(vec![
        NamedTensor::from_vec("conv.weight", &[16, 3, 3, 3], values(432, round)).unwrap(),
        NamedTensor::from_vec("conv.bias", &[16], values(16, round + 7)).unwrap(),
        NamedTensor::from_vec("fc.weight", &[10, 64], values(640, round + 3)).unwrap(),
    ])
}

const EVERY_KIND: &str = "name: every-kind\nabout: one stage of each kind, each from its own plugin\nstages:\n  - predictor: { use: last-sent }\n  - error-correction: { use: memory-decay, params: { gamma: 0.9 } }\n  - quantizer: { use: uniform, params: { bits: 4, stochastic: true, seed: 3 } }\n  - entropy-coder: { use: bitpack }\nuncompressed: { below_entries: 32 }\n";

const F32: &str =
    "name: f32\nstages:\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\n";

#[test]
fn plugins_load_from_their_shared_libraries() {
    let registry = directory_registry();
    let names: Vec<(String, String)> = registry
        .stages()
        .iter()
        .map(|s| (s.descriptor.kind.to_string(), s.descriptor.name.to_string()))
        .collect();
    for (kind, name) in [
        ("quantizer", "raw"),
        ("quantizer", "uniform"),
        ("error-correction", "memory-decay"),
        ("predictor", "last-sent"),
        ("entropy-coder", "bitpack"),
    ] {
        assert!(
            names.contains(&(kind.into(), name.into())),
            "{kind} {name} missing: {names:?}"
        );
    }
    let uniform = registry
        .find(gradcodec::abi::StageKind::QUANTIZER, "uniform", None)
        .unwrap();
    assert!(uniform
        .library
        .path
        .ends_with("libgradcodec_plugin_quantizers.so"));
    // Fixtures are not named like plugins, so discovery never opens them.
    assert!(registry
        .libraries()
        .iter()
        .all(|l| loader::is_plugin_file_name(&l.path)));
}

#[test]
fn every_kind_round_trips_over_rounds_without_drift() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(EVERY_KIND, "every-kind.yaml").unwrap())
        .unwrap();
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    for round in 0..6 {
        let original = update(round);
        let message = encoder.encode(&original).unwrap();
        let decoded = decoder.decode(&message).unwrap();
        assert_eq!(
            &decoded,
            encoder.last_reconstruction(),
            "round {round}: ends drifted"
        );
        // The tiny bias is sent raw, so it is exact.
        assert_eq!(decoded.tensors[1], original.tensors[1]);
        let error = metrics::relative_mse(&original, &decoded);
        assert!(error < 0.02, "round {round}: relative MSE {error}");
        let stats = encoder.last_stats();
        assert_eq!(stats.bytes, message.len() as u64);
        // 4 bits per coded entry, 32 per raw (bias) entry, plus the container.
        let payload = stats.bytes - stats.overhead_bytes;
        assert_eq!(payload, (432 + 640) / 2 + 16 * 4, "round {round}");
        if round > 0 {
            let bits = metrics::bits_per_entry(message.len() as u64, original.entries() as u64);
            assert!(bits < 5.5, "round {round}: {bits} bits per entry");
        }
    }
}

#[test]
fn same_input_gives_the_same_bytes() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(EVERY_KIND, "every-kind.yaml").unwrap())
        .unwrap();
    let (mut a, mut b) = (pipeline.encoder(), pipeline.encoder());
    for round in 0..3 {
        assert_eq!(
            a.encode(&update(round)).unwrap(),
            b.encode(&update(round)).unwrap()
        );
    }
}

#[test]
fn bytes_do_not_depend_on_the_thread_count() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(EVERY_KIND, "every-kind.yaml").unwrap())
        .unwrap();
    let encode_with = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut encoder = pipeline.encoder();
            (0..3)
                .map(|round| encoder.encode(&update(round)).unwrap())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(encode_with(1), encode_with(4));
}

#[test]
fn lossless_pipeline_is_exact_and_self_describing() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(F32, "f32.yaml").unwrap())
        .unwrap();
    let mut encoder = pipeline.encoder();
    let original = update(1);
    let message = encoder.encode(&original).unwrap();
    let mut decoder = decoder_for_message(&registry, &message).unwrap();
    assert_eq!(decoder.decode(&message).unwrap(), original);
    let stats = encoder.last_stats();
    assert_eq!(
        stats.bytes - stats.overhead_bytes,
        4 * original.entries() as u64
    );
}

#[test]
fn corrupt_message_leaves_the_stream_unchanged() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(EVERY_KIND, "every-kind.yaml").unwrap())
        .unwrap();
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    let first = encoder.encode(&update(0)).unwrap();
    decoder.decode(&first).unwrap();
    let second = encoder.encode(&update(1)).unwrap();
    let mut corrupted = second.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x40;
    assert!(decoder.decode(&corrupted).is_err());
    assert!(decoder.decode(&second[..second.len() - 3]).is_err());
    // The stream goes on as if the bad messages never arrived.
    assert_eq!(
        &decoder.decode(&second).unwrap(),
        encoder.last_reconstruction()
    );
    // A message from another pipeline is refused by fingerprint.
    let other = registry
        .build(&PipelineSpec::parse(F32, "f32.yaml").unwrap())
        .unwrap();
    let foreign = other.encoder().encode(&update(2)).unwrap();
    let error = decoder.decode(&foreign).unwrap_err().to_string();
    assert!(error.contains("another pipeline"), "{error}");
}

#[test]
fn state_save_and_load_resume_the_stream() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(EVERY_KIND, "every-kind.yaml").unwrap())
        .unwrap();
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    for round in 0..2 {
        decoder
            .decode(&encoder.encode(&update(round)).unwrap())
            .unwrap();
    }
    let (saved_encoder, saved_decoder) =
        (encoder.save_state().unwrap(), decoder.save_state().unwrap());
    let expected = encoder.encode(&update(2)).unwrap();
    let (mut resumed_encoder, mut resumed_decoder) = (pipeline.encoder(), pipeline.decoder());
    resumed_encoder.load_state(&saved_encoder).unwrap();
    resumed_decoder.load_state(&saved_decoder).unwrap();
    let message = resumed_encoder.encode(&update(2)).unwrap();
    assert_eq!(message, expected);
    assert_eq!(
        &resumed_decoder.decode(&message).unwrap(),
        resumed_encoder.last_reconstruction()
    );
    assert!(resumed_decoder.load_state(&saved_decoder[..10]).is_err());
}

#[test]
fn unknown_stage_names_the_closest_and_the_directories() {
    let registry = directory_registry();
    let spec = PipelineSpec::parse(
        &EVERY_KIND.replace("use: uniform", "use: unifrom"),
        "typo.yaml",
    )
    .unwrap();
    let error = registry.build(&spec).err().unwrap().to_string();
    assert!(error.contains("typo.yaml:6"), "{error}");
    assert!(error.contains("unknown quantizer `unifrom`"), "{error}");
    assert!(error.contains("closest known: uniform"), "{error}");
    assert!(
        error.contains(&build_dir().display().to_string()),
        "{error}"
    );
}

#[test]
fn invalid_parameters_name_the_stage_and_the_field() {
    let registry = registry();
    let spec =
        PipelineSpec::parse(&EVERY_KIND.replace("bits: 4", "bits: 40"), "bits.yaml").unwrap();
    let error = registry.build(&spec).err().unwrap().to_string();
    assert!(
        error.contains("quantizer `uniform`") && error.contains("`bits`"),
        "{error}"
    );
    let spec =
        PipelineSpec::parse(&EVERY_KIND.replace("gamma: 0.9", "gama: 0.9"), "gamma.yaml").unwrap();
    let error = registry.build(&spec).err().unwrap().to_string();
    assert!(
        error.contains("memory-decay") && error.contains("gama"),
        "{error}"
    );
    let spec = PipelineSpec::parse(
        &EVERY_KIND.replace("gamma: 0.9", "gamma: high"),
        "type.yaml",
    )
    .unwrap();
    let error = registry.build(&spec).err().unwrap().to_string();
    assert!(error.contains("field `gamma`"), "{error}");
    let spec =
        PipelineSpec::parse(&EVERY_KIND.replace("uniform,", "uniform@7,"), "pin.yaml").unwrap();
    let error = registry.build(&spec).err().unwrap().to_string();
    assert!(
        error.contains("uniform@7") && error.contains("loaded versions: 1"),
        "{error}"
    );
}

#[test]
fn non_finite_values_are_refused_naming_the_tensor() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(EVERY_KIND, "every-kind.yaml").unwrap())
        .unwrap();
    let mut encoder = pipeline.encoder();
    let mut bad = update(0);
    bad.tensors[2].data[[3, 5]] = f32::NAN;
    let error = encoder.encode(&bad).unwrap_err().to_string();
    assert!(
        error.contains("fc.weight") && error.contains("NaN"),
        "{error}"
    );
    assert_eq!(
        encoder.round(),
        0,
        "a refused update must not advance the stream"
    );
    encoder.set_non_finite(gradcodec::NonFinitePolicy::ReplaceWithZero);
    assert!(encoder.encode(&bad).is_ok());
}

/// Where the quantizer is CHECKS_FINITE and sees the input first (f32, fp16,
/// bf16), the host leaves the scan of coded tensors to it; the errors are the
/// host's own, for coded and raw tensors alike, and the decoder refuses NaN
/// words without its own scan of x̂.
#[test]
fn checks_finite_quantizers_refuse_non_finite_values_as_the_host_would() {
    let registry = registry();
    for stage in ["raw", "fp16", "bf16"] {
        let spec = format!(
            "name: {stage}\nstages:\n  - quantizer: {{ use: {stage} }}\n  - entropy-coder: {{ use: bitpack }}\nuncompressed: {{ below_entries: 32 }}\n"
        );
        let pipeline = registry
            .build(&PipelineSpec::parse(&spec, "checks-finite.yaml").unwrap())
            .unwrap();
        assert!(pipeline.quantizer_guards_input(), "{stage}");
        for (tensor, place, bad) in [
            (2, [3, 5], f32::NAN),
            (2, [9, 63], f32::INFINITY),
            (1, [4, 0], f32::NEG_INFINITY),
        ] {
            let mut encoder = pipeline.encoder();
            let good = encoder.encode(&update(0)).unwrap();
            let mut hostile = update(1);
            let name = hostile.tensors[tensor].name.clone();
            let data = &mut hostile.tensors[tensor].data;
            if tensor == 1 {
                data[[place[0]]] = bad;
            } else {
                data[[place[0], place[1]]] = bad;
            }
            let error = encoder.encode(&hostile).unwrap_err().to_string();
            assert_eq!(
                error,
                format!("invalid update: tensor `{name}` holds 1 NaN or infinite values"),
                "{stage}"
            );
            assert_eq!(
                encoder.round(),
                1,
                "{stage}: a refused update must not advance"
            );
            let mut decoder = pipeline.decoder();
            decoder.decode(&good).unwrap();
            assert!(encoder.encode(&update(1)).is_ok(), "{stage}");
        }
    }
    // An error feedback that sees the input first: every block is compensated
    // before any stage advances, so a refused update leaves the stream exactly
    // as it was (the next message is the one a stream that never saw it sends).
    for spec in [
        "name: ef-sign\nstages:\n  - error-correction: { use: error-feedback }\n  - quantizer: { use: sign }\n  - entropy-coder: { use: bitpack }\nuncompressed: { below_entries: 32 }\n",
        "name: md-uniform\nstages:\n  - error-correction: { use: memory-decay }\n  - quantizer: { use: uniform, params: { bits: 4 } }\n  - entropy-coder: { use: bitpack }\nuncompressed: { below_entries: 32 }\n",
    ] {
        let pipeline = registry
            .build(&PipelineSpec::parse(spec, "ef.yaml").unwrap())
            .unwrap();
        assert!(pipeline.correction_guards_input(), "{spec}");
        let (mut encoder, mut clean) = (pipeline.encoder(), pipeline.encoder());
        for round in 0..3u32 {
            let mut hostile = update(round);
            hostile.tensors[2].data[[round as usize, 7]] = f32::NAN;
            let error = encoder.encode(&hostile).unwrap_err().to_string();
            assert_eq!(
                error,
                "invalid update: tensor `fc.weight` holds 1 NaN or infinite values"
            );
            assert_eq!(encoder.round(), u64::from(round));
            assert_eq!(
                encoder.encode(&update(round)).unwrap(),
                clean.encode(&update(round)).unwrap(),
                "round {round}: the refused update changed the stream"
            );
        }
    }
    // A NaN word in a coded f32 stream (CRC resealed) is refused by the stage.
    let pipeline = registry
        .build(&PipelineSpec::parse(F32, "f32.yaml").unwrap())
        .unwrap();
    let mut message = pipeline.encoder().encode(&update(0)).unwrap();
    let at = message.len() - 4 - 640 * 4 + 8;
    message[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let body = message.len() - 4;
    let crc = crc32fast::hash(&message[..body]);
    message[body..].copy_from_slice(&crc.to_le_bytes());
    let error = pipeline.decoder().decode(&message).unwrap_err().to_string();
    assert!(error.contains("NaN or an infinity"), "{error}");
}

#[test]
fn old_abi_plugin_is_refused_with_both_versions() {
    let registry = fixture_registry(&["gcfixture_old_abi", "gradcodec_plugin_quantizers"]);
    assert_eq!(registry.failures().len(), 1);
    let message = &registry.failures()[0].message;
    assert!(
        message.contains("0.0.3") && message.contains(gradcodec::abi::ABI_VERSION),
        "{message}"
    );
    assert!(message.contains("rebuild the plugin"), "{message}");
    // The good library next to it still loads.
    assert!(registry
        .find(gradcodec::abi::StageKind::QUANTIZER, "raw", None)
        .is_ok());
}

#[test]
fn a_plugin_built_against_a_newer_minor_is_refused_naming_both_versions() {
    let registry = fixture_registry(&["gcfixture_future_abi", "gradcodec_plugin_quantizers"]);
    assert_eq!(registry.failures().len(), 1, "{:?}", registry.failures());
    let message = &registry.failures()[0].message;
    assert!(
        message.contains("1.99.0")
            && message.contains(gradcodec::abi::ABI_VERSION)
            && message.contains("newer"),
        "{message}"
    );
    assert!(registry
        .find(gradcodec::abi::StageKind::QUANTIZER, "raw", None)
        .is_ok());
}

/// The plugin of core/fixtures/abi-1.0, written against the frozen
/// gradcodec-abi 1.0.0 in a workspace of its own: built once per test run
/// (offline when the registry cache holds abi_stable, as after building this
/// workspace) into `<target>/abi-1.0-fixture`.
fn abi_1_0_fixture() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/abi-1.0/Cargo.toml");
            let target = build_dir()
                .parent()
                .expect("the build directory is inside the target directory")
                .join("abi-1.0-fixture");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let build = |offline: bool| {
                let mut command = Command::new(&cargo);
                command
                    .args(["build", "--quiet", "--manifest-path"])
                    .arg(&manifest)
                    .arg("--target-dir")
                    .arg(&target)
                    .env_remove("CARGO_TARGET_DIR");
                if offline {
                    command.arg("--offline");
                }
                command.output().expect("cargo runs")
            };
            let mut output = build(true);
            if !output.status.success() {
                output = build(false);
            }
            assert!(
                output.status.success(),
                "building {} failed:\n{}",
                manifest.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let library = target.join("debug/libgcfixture_abi_1_0.so");
            assert!(library.exists(), "{} was not built", library.display());
            library
        })
        .clone()
}

const FIXTURE_SIGN: &str = "name: abi-1.0-sign\nabout: a quantizer of a plugin built against ABI 1.0, a coder of this build\nstages:\n  - quantizer: { use: fixture-sign }\n  - entropy-coder: { use: bitpack }\nuncompressed: { below_entries: 32 }\n";

#[test]
fn a_plugin_built_against_abi_1_0_loads_and_runs_in_this_host() {
    let fixture = abi_1_0_fixture();
    let registry = Registry::discover(&PluginSearch::only(
        vec![],
        vec![fixture.clone(), library("gradcodec_plugin_entropy_coders")],
    ))
    .unwrap();
    assert!(
        registry.failures().is_empty(),
        "load failures: {:?}",
        registry.failures()
    );
    assert_ne!(
        gradcodec::abi::ABI_VERSION,
        "1.0.0",
        "the host is a later minor"
    );
    let old = registry
        .libraries()
        .iter()
        .find(|l| l.path == fixture)
        .expect("the 1.0 fixture loaded");
    assert_eq!(old.manifest.abi_version.as_str(), "1.0.0");
    // Its root module lacks the fields appended after 1.0: read as absent.
    assert!(old.root.fused_pairs().is_none() && old.root.new_fused().is_none());
    let current = registry
        .libraries()
        .iter()
        .find(|l| l.path != fixture)
        .unwrap();
    assert!(current.root.fused_pairs().is_some() && current.root.new_fused().is_some());

    let pipeline = registry
        .build(&PipelineSpec::parse(FIXTURE_SIGN, "abi-1.0-sign.yaml").unwrap())
        .unwrap();
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    for round in 0..3 {
        let original = update(round);
        let message = encoder.encode(&original).unwrap();
        let decoded = decoder.decode(&message).unwrap();
        assert_eq!(&decoded, encoder.last_reconstruction(), "round {round}");
        // fc.weight went through fixture-sign: the sign of each entry, times
        // the mean magnitude.
        let input: Vec<f32> = original.tensors[2].data.iter().copied().collect();
        let output: Vec<f32> = decoded.tensors[2].data.iter().copied().collect();
        let mean = input.iter().map(|v| f64::from(v.abs())).sum::<f64>() / input.len() as f64;
        assert!(mean > 0.0);
        for (x, y) in input.iter().zip(&output) {
            assert_eq!(x.is_sign_negative(), y.is_sign_negative(), "round {round}");
            assert!(
                (f64::from(y.abs()) - mean).abs() <= mean * 1e-6,
                "round {round}: |{y}| is not the mean magnitude {mean}"
            );
        }
        // The tiny bias is sent raw, so it is exact.
        assert_eq!(decoded.tensors[1], original.tensors[1]);
    }
    // A corrupt message is refused, the stream goes on.
    let mut message = encoder.encode(&update(9)).unwrap();
    let last = message.len() - 1;
    message[last] ^= 0xFF;
    assert!(decoder.decode(&message).is_err());
}

fn faulty_spec(kind_line: &str) -> String {
    format!("name: faulty\nstages:\n{kind_line}\n  - entropy-coder: {{ use: faulty-coder }}\n")
}

#[test]
fn panicking_plugin_gives_an_error_naming_the_stage_and_the_host_survives() {
    let registry = fixture_registry(&["gcfixture_faulty"]);
    for (stage_line, method) in [
        ("  - predictor: { use: faulty-predictor, params: { panic_in: predict } }\n  - quantizer: { use: faulty-quantizer }", "predict"),
        ("  - predictor: { use: faulty-predictor, params: { panic_in: commit } }\n  - quantizer: { use: faulty-quantizer }", "commit"),
        ("  - error-correction: { use: faulty-correction, params: { panic_in: compensate } }\n  - quantizer: { use: faulty-quantizer }", "compensate"),
        ("  - error-correction: { use: faulty-correction, params: { panic_in: feedback } }\n  - quantizer: { use: faulty-quantizer }", "feedback"),
        ("  - quantizer: { use: faulty-quantizer, params: { panic_in: quantize } }", "quantize"),
        ("  - quantizer: { use: faulty-quantizer, params: { panic_in: new } }", "new"),
    ] {
        let spec = PipelineSpec::parse(&faulty_spec(stage_line), "faulty.yaml").unwrap();
        let pipeline = registry.build(&spec).unwrap();
        let error = pipeline.encoder().encode(&update(0)).unwrap_err().to_string();
        assert!(error.contains("faulty-") && error.contains("panic"), "{method}: {error}");
        assert!(error.contains(&format!("injected panic in {method}")), "{method}: {error}");
    }
    // Decoder-side panics: the encoder never calls these methods, so the same
    // pipeline encodes and only the decoder meets the panic. (Without error
    // feedback or a predictor, the encoder of a stateless quantizer leaves
    // `dequantize` for x̂ until it is asked for: the panic is then an error of
    // `try_last_reconstruction`.)
    let line = "  - quantizer: { use: faulty-quantizer, params: { panic_in: dequantize } }";
    let pipeline = registry
        .build(&PipelineSpec::parse(&faulty_spec(line), "deq.yaml").unwrap())
        .unwrap();
    let mut encoder = pipeline.encoder();
    encoder.encode(&update(0)).unwrap();
    let error = encoder.try_last_reconstruction().unwrap_err().to_string();
    assert!(error.contains("injected panic in dequantize"), "{error}");
    for (line, method) in [
        (line.to_string(), "dequantize"),
        ("  - quantizer: { use: faulty-quantizer, params: { panic_in: describe_streams } }".to_string(), "describe_streams"),
        ("  - quantizer: { use: faulty-quantizer }\n  - entropy-coder: { use: faulty-coder, params: { panic_in: decode }, roles: [raw-words] }".to_string(), "decode"),
    ] {
        let pipeline = registry.build(&PipelineSpec::parse(&faulty_spec(&line), "dec.yaml").unwrap()).unwrap();
        let message = pipeline.encoder().encode(&update(0)).unwrap();
        let mut decoder = pipeline.decoder();
        for _ in 0..2 {
            let error = decoder.decode(&message).unwrap_err().to_string();
            assert!(error.contains("faulty-") && error.contains("panic"), "{method}: {error}");
        }
    }
}

#[test]
fn wrong_lengths_and_garbage_symbols_are_errors() {
    let registry = fixture_registry(&["gcfixture_faulty"]);
    for (line, expect) in [
        ("  - quantizer: { use: faulty-quantizer, params: { wrong_length: true } }", "dequantized tensor"),
        ("  - predictor: { use: faulty-predictor, params: { wrong_length: true } }\n  - quantizer: { use: faulty-quantizer }", "prediction"),
        ("  - error-correction: { use: faulty-correction, params: { wrong_length: true } }\n  - quantizer: { use: faulty-quantizer }", "compensated"),
        ("  - quantizer: { use: faulty-quantizer, params: { garbage_symbols: true } }", "outside"),
        ("  - quantizer: { use: faulty-quantizer, params: { model_drift: true } }", "stream models differ"),
    ] {
        let pipeline = registry.build(&PipelineSpec::parse(&faulty_spec(line), "f.yaml").unwrap()).unwrap();
        let result = pipeline.encoder().encode(&update(0));
        let error = match result {
            Err(error) => error.to_string(),
            Ok(message) => pipeline.decoder().decode(&message).unwrap_err().to_string(),
        };
        assert!(error.contains(expect), "{line}: {error}");
    }
    // A coder that decodes garbage symbols or too few symbols is caught by the host.
    for (params, expect) in [
        ("garbage_symbols: true", "NaN"),
        ("wrong_length: true", "stream 0"),
    ] {
        let line = format!("  - quantizer: {{ use: faulty-quantizer }}\n  - entropy-coder: {{ use: faulty-coder, params: {{ {params} }}, roles: [raw-words] }}");
        let spec = faulty_spec(&line);
        let pipeline = registry
            .build(&PipelineSpec::parse(&spec, "c.yaml").unwrap())
            .unwrap();
        let message = pipeline.encoder().encode(&update(0)).unwrap();
        let error = pipeline.decoder().decode(&message).unwrap_err().to_string();
        assert!(error.contains(expect), "{params}: {error}");
    }
}

#[test]
fn a_broken_copy_does_not_shadow_a_working_library() {
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("libgradcodec_plugin_quantizers.so"),
        b"not a library",
    )
    .unwrap();
    library("gradcodec_plugin_quantizers");
    let search = PluginSearch::only(vec![broken.path().to_path_buf(), build_dir()], vec![]);
    let registry = Registry::discover(&search).unwrap();
    assert!(registry
        .failures()
        .iter()
        .any(|f| f.path.starts_with(broken.path())));
    let found = registry
        .find(gradcodec::abi::StageKind::QUANTIZER, "uniform", None)
        .unwrap();
    assert!(found.library.path.starts_with(build_dir()));
    // A working copy earlier in the search does shadow later ones.
    let search = PluginSearch::only(vec![build_dir(), build_dir().join("deps")], vec![]);
    let registry = Registry::discover(&search).unwrap();
    let copies = registry
        .libraries()
        .iter()
        .filter(|l| {
            l.path
                .file_name()
                .is_some_and(|n| n == "libgradcodec_plugin_quantizers.so")
        })
        .count();
    assert_eq!(copies, 1);
}

/// ResFed with a lossless quantizer over 10 rounds on both links: each decoder
/// reproduces its encoder's reconstruction bit for bit every round (no drift),
/// and the reconstruction stays within f32 rounding of the model (residual
/// arithmetic `p + (x - p)` is exact only up to rounding, which does not
/// accumulate because both ends predict from the same reconstructions).
#[test]
fn resfed_with_a_lossless_quantizer_does_not_drift_on_either_link() {
    let registry = Registry::discover(&PluginSearch::only(vec![build_dir()], vec![])).unwrap();
    let spec = "name: resfed-lossless\nstages:\n  - predictor: { use: res1 }\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\n";
    let Ok(pipeline) = registry.build(&PipelineSpec::parse(spec, "resfed-lossless.yaml").unwrap())
    else {
        panic!("res1 (plugins/feedback) must be built: cargo build --workspace");
    };
    let (mut up_encoder, mut up_decoder) = (pipeline.encoder(), pipeline.decoder());
    let (mut down_encoder, mut down_decoder) = (pipeline.encoder(), pipeline.decoder());
    let mut model = update(0);
    for round in 0..10u32 {
        // Downlink: the server sends the global model; the client receives it.
        let down = down_encoder.encode(&model).unwrap();
        let received = down_decoder.decode(&down).unwrap();
        assert_eq!(
            &received,
            down_encoder.last_reconstruction(),
            "round {round}: downlink drifted"
        );
        // Both uplink ends observe the client's received trajectory (Res-1's O).
        up_encoder.observe(&received).unwrap();
        up_decoder.observe(&received).unwrap();
        // Uplink: the client's locally trained model.
        let mut local = received.clone();
        for (tensor, step) in local.tensors.iter_mut().zip(update(round + 100).tensors) {
            tensor.data = &tensor.data - &(step.data * 0.1);
        }
        let up = up_encoder.encode(&local).unwrap();
        let at_server = up_decoder.decode(&up).unwrap();
        assert_eq!(
            &at_server,
            up_encoder.last_reconstruction(),
            "round {round}: uplink drifted"
        );
        let error = metrics::relative_mse(&local, &at_server);
        assert!(error < 1e-12, "round {round}: relative error {error}");
        model = at_server;
    }
}

#[test]
fn a_corrupt_message_from_one_client_leaves_other_clients_untouched() {
    let registry = registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(EVERY_KIND, "every-kind.yaml").unwrap())
        .unwrap();
    let mut clients: Vec<_> = (0..3)
        .map(|_| (pipeline.encoder(), pipeline.decoder()))
        .collect();
    for round in 0..4u32 {
        for (client, (encoder, decoder)) in clients.iter_mut().enumerate() {
            let message = encoder.encode(&update(round * 10 + client as u32)).unwrap();
            if client == 1 && round == 2 {
                let mut bad = message.clone();
                let at = bad.len() / 3;
                bad[at] ^= 0x5A;
                assert!(decoder.decode(&bad).is_err());
            }
            assert_eq!(
                &decoder.decode(&message).unwrap(),
                encoder.last_reconstruction(),
                "client {client} round {round}"
            );
        }
    }
}
