//! Hostile inputs, round 2 (issue 15): hand-made messages with edited fields
//! and a re-sealed CRC, tensor files and specs that lie about their size, and
//! plugin folders with broken files. Each is a clean error, in bounded time and
//! memory. Plugins load from the build directory (`cargo build --workspace`).

use gradcodec::container::{Limits, MessageWriter};
use gradcodec::{
    decoder_for_message, loader, CanonicalPipeline, ExpectedLayout, NamedTensor, PipelineSpec,
    PluginSearch, Registry, Update,
};
use std::time::{Duration, Instant};

mod common;
use common::library;

fn registry() -> Registry {
    let files = vec![
        library("gradcodec_plugin_quantizers"),
        library("gradcodec_plugin_entropy_coders"),
    ];
    Registry::discover(&PluginSearch::only(vec![], files)).unwrap()
}

const F32: &str =
    "name: f32\nstages:\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\n";
const ZSTD: &str =
    "name: zstd\nstages:\n  - quantizer: { use: raw }\n  - entropy-coder: { use: zstd, params: { level: 3 } }\n";

fn pipeline(yaml: &str) -> std::sync::Arc<gradcodec::Pipeline> {
    registry()
        .build(&PipelineSpec::parse(yaml, "test.yaml").unwrap())
        .unwrap()
}

fn error_text<T>(result: gradcodec::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => error.to_string(),
    }
}

/// Case 1: dims [2^40, 2^40, 0] passed the saturating entry check (product 0)
/// and `TensorRecord::entries` then overflowed (a panic in debug builds).
#[test]
fn a_zero_dimension_cannot_hide_an_overflowing_shape() {
    let p = pipeline(F32);
    let mut writer = MessageWriter::new();
    writer.add_raw("t", &[1 << 40, 1 << 40, 0], &[]);
    let message = writer.finish(0, p.fingerprint(), Some(p.embedded_json()));
    let text = error_text(p.decoder().decode(&message));
    assert!(text.contains("spans more than the limit"), "{text}");
    let text = error_text(gradcodec::report::describe(&message, None));
    assert!(text.contains("spans more than the limit"), "{text}");
    // A zero dimension with small others is a valid empty tensor.
    let empty = Update::new(vec![
        NamedTensor::from_vec("empty", &[3, 0, 5], vec![]).unwrap()
    ]);
    let message = p.encoder().encode(&empty).unwrap();
    let update = p.decoder().decode(&message).unwrap();
    assert_eq!(update.tensors[0].data.shape(), &[3, 0, 5]);
}

/// Case 2: round 2^64 - 1 on a stateless pipeline overflowed `round + 1`.
#[test]
fn the_last_round_number_is_refused() {
    for yaml in [F32, ZSTD] {
        let p = pipeline(yaml);
        let mut writer = MessageWriter::new();
        writer.add_raw("t", &[2], &[1.0, 2.0]);
        let message = writer.finish(u64::MAX, p.fingerprint(), Some(p.embedded_json()));
        let text = error_text(p.decoder().decode(&message));
        assert!(text.contains("past the last round"), "{text}");
        let mut decoder = decoder_for_message(&registry(), &message).unwrap();
        assert!(decoder.decode(&message).is_err());
    }
    let mut encoder = pipeline(F32).encoder();
    let state = {
        // A saved state whose round is the last one (edit the round field).
        let mut fresh = pipeline(F32).encoder();
        fresh
            .encode(&Update::new(vec![NamedTensor::from_vec(
                "t",
                &[1],
                vec![1.0],
            )
            .unwrap()]))
            .unwrap();
        fresh.save_state().unwrap()
    };
    encoder.load_state(&state).unwrap();
    assert_eq!(encoder.round(), 1);
}

/// Cases 3 and 4: a zstd stream claiming far more symbols than its frame holds,
/// and the limits that bound what any message can make the decoder allocate.
#[test]
fn claimed_sizes_beyond_the_limits_are_refused_before_allocating() {
    let p = pipeline(ZSTD);
    let small = zstd::bulk::compress(&[0u8; 64], 3).unwrap();
    // 2^28 entries (1 GiB of f32): over the default limit of 2^26.
    let shape = [1u64 << 14, 1 << 14];
    let message = coded_message(&p, &shape, 1 << 28, &small);
    let start = Instant::now();
    let text = error_text(p.decoder().decode(&message));
    assert!(
        text.contains("spans more than the limit of 67108864 entries"),
        "{text}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // Raised limits reach the coder, whose frame falls short: an error, not a
    // 1 GiB reservation.
    let mut decoder = p.decoder();
    decoder.set_limits(Limits::with_max_entries(1 << 28));
    let text = error_text(decoder.decode(&message));
    assert!(text.contains("zstd: frame holds 64 bytes"), "{text}");
    // An expected layout refuses any other tensor or shape outright.
    let layout = ExpectedLayout::new([("w", vec![16u64, 16])]);
    assert_eq!(layout.limits().max_total_entries, 256);
    let mut decoder = p.decoder();
    decoder.set_expected_layout(layout);
    let text = error_text(decoder.decode(&message));
    assert!(text.contains("spans more than the limit of 256"), "{text}");
    let fits = coded_message(&p, &[8, 32], 256, &small);
    let text = error_text(decoder.decode(&fits));
    assert!(
        text.contains("has shape [8, 32], this receiver expects [16, 16]"),
        "{text}"
    );
}

/// A message with one coded tensor `w` of `shape` whose single stream claims
/// `symbols` and holds `bytes`.
fn coded_message(p: &gradcodec::Pipeline, shape: &[u64], symbols: u64, bytes: &[u8]) -> Vec<u8> {
    let mut writer = MessageWriter::new();
    writer.add_coded(&gradcodec::container::CodedTensor {
        name: "w",
        shape,
        block_rows: None,
        blocks: vec![gradcodec::container::CodedBlock {
            side_info: &[],
            streams: vec![(symbols, bytes)],
            model_crc: None,
        }],
    });
    writer.finish(0, p.fingerprint(), Some(p.embedded_json()))
}

/// Case 5: an .npy header claiming 2^50 entries made `encode` allocate 4 PB.
#[test]
fn an_npy_header_must_match_the_file_size() {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1125899906842624,), }";
    let mut header = header.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.npy");
    std::fs::write(&path, &bytes).unwrap();
    let text = error_text(Update::read(&path));
    assert!(
        text.contains("claims shape [1125899906842624]") && text.contains("holds 64 bytes"),
        "{text}"
    );
    let text = Update::parse_npy(&bytes[..20], "x".into()).unwrap_err();
    assert!(text.contains("truncated .npy header"), "{text}");
    // A real file still reads.
    let real = dir.path().join("real.npy");
    Update::new(vec![
        NamedTensor::from_vec("real", &[2, 3], vec![1.0; 6]).unwrap()
    ])
    .write(&real)
    .unwrap();
    assert_eq!(Update::read(&real).unwrap().entries(), 6);
}

/// Case 6: 100k nested `[` took 93 s before "recursion limit exceeded".
#[test]
fn deep_nesting_in_a_spec_is_refused_before_parsing() {
    let spec = format!("name: x\nstages: {}", "[".repeat(100_000));
    let start = Instant::now();
    let text = error_text(PipelineSpec::parse(&spec, "deep.yaml"));
    assert!(text.contains("nested more than 32 deep"), "{text}");
    assert!(start.elapsed() < Duration::from_secs(2));
    let spec = format!("name: x\nstages:\n{}- a\n", " ".repeat(5_000));
    let text = error_text(PipelineSpec::parse(&spec, "indent.yaml"));
    assert!(text.contains("deeper than a spec may nest"), "{text}");
    // Brackets in quotes and comments do not count.
    let fine = format!(
        "name: x\nabout: \"{}\"\n# {}\nstages:\n  - quantizer: {{ use: raw }}\n  - entropy-coder: {{ use: bitpack }}\n",
        "[".repeat(100),
        "{".repeat(100)
    );
    PipelineSpec::parse(&fine, "quoted.yaml").unwrap();
}

/// Cases 7 and 8, and the other-architecture message: plugin candidates are
/// checked before `dlopen` (truncated copies killed every command with SIGBUS;
/// a FIFO blocked `open` forever).
#[test]
fn broken_plugin_files_are_refused_before_dlopen() {
    let real = std::fs::read(library("gradcodec_plugin_quantizers")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("libgradcodec_plugin_half.so");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let text = loader::load_library(&truncated).err().unwrap();
    assert!(text.contains("truncated"), "{text}");

    let mut foreign = real.clone();
    foreign[18..20].copy_from_slice(&183u16.to_le_bytes()); // e_machine = AArch64
    let other_arch = dir.path().join("libgradcodec_plugin_arm.so");
    std::fs::write(&other_arch, &foreign).unwrap();
    let text = loader::load_library(&other_arch).err().unwrap();
    assert!(text.contains("built for Aarch64"), "{text}");

    let fifo = dir.path().join("libgradcodec_plugin_fifo.so");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let start = Instant::now();
    let registry =
        Registry::discover(&PluginSearch::only(vec![dir.path().into()], vec![])).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    let failures: Vec<String> = registry
        .failures()
        .iter()
        .map(|f| format!("{}: {}", f.path.display(), f.message))
        .collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures
        .iter()
        .any(|f| f.contains("fifo") && f.contains("not a regular file")));
    assert!(loader::check_library_bytes(b"\x7fELF").is_err());
    // Every input the plugin_candidate fuzzer kept (e_phoff = 0: the loader
    // reads the table over the header, and crashed with SIGBUS) is refused.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/plugin_candidate");
    let kept: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(!kept.is_empty());
    for entry in kept {
        let bytes = std::fs::read(entry.path()).unwrap();
        let text = loader::check_library_bytes(&bytes).unwrap_err();
        assert!(!text.is_empty(), "{}", entry.path().display());
    }
}

/// Case 9: an embedded pipeline with two quantizers, stages out of order or
/// 2,000 stages decoded with exit 0 (fingerprint re-computed).
#[test]
fn embedded_pipelines_obey_the_spec_rules() {
    let p = pipeline(F32);
    let canonical = CanonicalPipeline::parse(p.embedded_json()).unwrap();
    let quantizer = canonical.codec.stages[0].clone();
    let coder = canonical.codec.stages[1].clone();
    let cases = [
        (
            vec![quantizer.clone(), quantizer.clone(), coder.clone()],
            "exactly one quantizer",
        ),
        (
            vec![coder.clone(), quantizer.clone()],
            "must be in the order",
        ),
        (
            std::iter::once(quantizer.clone())
                .chain(std::iter::repeat_n(coder.clone(), 1999))
                .collect(),
            "2000 stages, more than the 16",
        ),
    ];
    for (stages, expected) in cases {
        let mut edited = canonical.clone();
        edited.codec.stages = stages;
        let codec_json = edited.codec_json().unwrap();
        let fingerprint = xxhash_rust::xxh3::xxh3_64(codec_json.as_bytes());
        let json = serde_json::to_string(&edited).unwrap();
        let mut writer = MessageWriter::new();
        writer.add_raw("t", &[2], &[1.0, 2.0]);
        let message = writer.finish(0, fingerprint, Some(&json));
        let text = error_text(decoder_for_message(&registry(), &message));
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

/// Case 10: the encoder wrote 70,000 tensors, which its decoder refused.
#[test]
fn the_encoder_refuses_what_the_decoder_would() {
    let p = pipeline(F32);
    let tensors = (0..70_000)
        .map(|i| NamedTensor::from_vec(format!("t{i}"), &[1], vec![0.5]).unwrap())
        .collect();
    let text = error_text(p.encoder().encode(&Update::new(tensors)));
    assert!(
        text.contains("70000 tensors, more than the limit of 65536"),
        "{text}"
    );
    let long_name = "n".repeat(2000);
    let update = Update::new(vec![
        NamedTensor::from_vec(long_name, &[1], vec![0.5]).unwrap()
    ]);
    let text = error_text(p.encoder().encode(&update));
    assert!(text.contains("tensor name of 2000 bytes"), "{text}");
    // With the limits raised on both ends, it goes through.
    let mut encoder = p.encoder();
    let mut decoder = p.decoder();
    let limits = Limits {
        max_name_bytes: 4096,
        ..Limits::default()
    };
    encoder.set_limits(limits);
    decoder.set_limits(limits);
    decoder.decode(&encoder.encode(&update).unwrap()).unwrap();
}

/// The smaller items: `.inf` in a spec, and stage errors not repeated.
#[test]
fn non_finite_spec_numbers_and_stage_errors_read_well() {
    let spec = "name: x\nstages:\n  - error-correction: { use: memory-decay, params: { gamma: .inf } }\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\n";
    let text = error_text(PipelineSpec::parse(spec, "inf.yaml"));
    assert!(
        text.contains("`params.gamma` is not a finite number"),
        "{text}"
    );

    let error = gradcodec::Error::stage(
        "tensor `w`: decode",
        gradcodec::abi::StageError::new(
            gradcodec::abi::ErrorCode::CORRUPT_DATA,
            "qsgd",
            "bad side info",
        ),
    );
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert_eq!(chain.matches("bad side info").count(), 1, "{chain}");
}

/// Found by the `tensor_file` fuzz target: headers the first size check read
/// differently from the array reader (a second `shape` key, `'shape':` inside
/// the descr string), and deep brackets. The header is now read strictly.
#[test]
fn npy_headers_are_read_strictly() {
    let npy = |header: &str, data: usize| {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&vec![0u8; data]);
        bytes
    };
    for (header, expected) in [
        (
            "{'shape': (1,), 'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }",
            "`shape` appears twice",
        ),
        (
            "{'descr': \"'shape': (1,)\", 'fortran_order': False, 'shape': (1099511627776,), }",
            "claims shape [1099511627776]",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': [[[[[[[[[[}",
            "unknown key `x`",
        ),
        (
            "{'descr': '<f4', 'shape': (1,), }",
            "descr or fortran_order missing",
        ),
    ] {
        let text = Update::parse_npy(&npy(header, 4), "t".into()).unwrap_err();
        assert!(text.contains(expected), "{header}: {text}");
    }
    let fine = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }\n",
        8,
    );
    assert_eq!(Update::parse_npy(&fine, "t".into()).unwrap().entries(), 2);
    // Every input the fuzzer kept as a regression: an error, or entries the
    // bytes back.
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/tensor_file");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        let parsed = [
            Update::parse_npy(&bytes, "t".into()),
            Update::parse_safetensors(&bytes),
        ];
        for update in parsed.into_iter().flatten() {
            assert!(
                update.entries() * 4 <= bytes.len(),
                "{}",
                entry.path().display()
            );
        }
    }
}
