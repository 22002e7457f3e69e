//! Tensors cut into blocks (run `cargo build --workspace` first: the plugins load
//! from their .so files): a tensor above the pipeline's block size is coded as
//! independent blocks of whole rows, in parallel, with the same bytes for any
//! thread count; its messages are format version 2, and a tensor that fits one
//! block is coded exactly as before (version 1).

use gradcodec::{NamedTensor, PipelineSpec, PluginSearch, Registry, Update};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

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

/// A pipeline from pipelines/ with `blocks: { entries: 4096 }` added.
fn small_blocks(name: &str) -> Arc<gradcodec::Pipeline> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../pipelines/{name}.yaml"));
    let text = std::fs::read_to_string(path).unwrap() + "\nblocks: { entries: 4096 }\n";
    registry()
        .build(&PipelineSpec::parse(&text, name).unwrap())
        .unwrap()
}

/// Deterministic gradient-like values with a few scales.
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let u = (state as f32 / u32::MAX as f32) - 0.5;
            u * if i % 7 == 0 { 1e-2 } else { 1e-3 }
        })
        .collect()
}

fn update(round: u32) -> Update {
    Update::new(vec![
        // 300 rows of 70: 58 rows per block, 6 blocks, the last one shorter.
        NamedTensor::from_vec("w", &[300, 70], values(21_000, round)).unwrap(),
        NamedTensor::from_vec("small", &[1000], values(1000, round + 100)).unwrap(),
    ])
}

fn in_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(work)
}

/// Encodes three rounds; returns the messages.
fn encode_rounds(pipeline: &Arc<gradcodec::Pipeline>) -> Vec<Vec<u8>> {
    let mut encoder = pipeline.encoder();
    (0..3)
        .map(|round| encoder.encode(&update(round)).unwrap())
        .collect()
}

#[test]
fn blocked_messages_are_identical_for_any_thread_count_and_decode_to_the_reconstruction() {
    for name in ["co3-fp4", "qsgd", "topk-ef-1pct", "f32", "terngrad"] {
        let pipeline = small_blocks(name);
        let one = in_pool(1, || encode_rounds(&pipeline));
        let two = in_pool(2, || encode_rounds(&pipeline));
        let four = in_pool(4, || encode_rounds(&pipeline));
        assert_eq!(one, two, "{name}: 1 vs 2 threads");
        assert_eq!(one, four, "{name}: 1 vs 4 threads");
        assert_eq!(
            one[0][4], 2,
            "{name}: a message with blocks is format version 2"
        );
        let report = gradcodec::report::describe(&one[0], Some(&pipeline)).unwrap();
        assert_eq!(report.tensors[0].blocks, Some(6), "{name}");
        assert_eq!(report.tensors[1].blocks, None, "{name}");
        // The decoder reproduces what the encoder reconstructed, round by round.
        let mut encoder = pipeline.encoder();
        let mut decoder = pipeline.decoder();
        for round in 0..3 {
            let message = encoder.encode(&update(round)).unwrap();
            let decoded = decoder.decode(&message).unwrap();
            assert_eq!(
                &decoded,
                encoder.last_reconstruction(),
                "{name} round {round}"
            );
            assert_eq!(decoded.tensors[0].data.shape(), &[300, 70]);
        }
    }
}

#[test]
fn blocks_code_independently_so_a_lossless_pipeline_stays_exact() {
    let pipeline = small_blocks("f32");
    let mut encoder = pipeline.encoder();
    let message = encoder.encode(&update(0)).unwrap();
    let decoded = pipeline.decoder().decode(&message).unwrap();
    assert_eq!(decoded, update(0));
}

#[test]
fn a_tensor_within_one_block_is_coded_as_before_blocks() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/co3-fp4.yaml");
    let plain = registry()
        .build(&PipelineSpec::from_file(&path).unwrap())
        .unwrap();
    let blocked = small_blocks("co3-fp4");
    assert_ne!(
        plain.fingerprint(),
        blocked.fingerprint(),
        "the block size is part of the codec"
    );
    let message = plain.encoder().encode(&update(0)).unwrap();
    assert_eq!(
        message[4], 1,
        "no tensor above 2^20 entries: format version 1"
    );
}

#[test]
fn randomized_blocks_draw_different_streams() {
    // terngrad rounds stochastically; identical blocks must not get identical draws.
    let pipeline = small_blocks("terngrad");
    let row: Vec<f32> = values(70 * 58, 9);
    let repeated: Vec<f32> = (0..6).flat_map(|_| row.iter().copied()).collect();
    let tensor = NamedTensor::from_vec("w", &[348, 70], repeated).unwrap();
    let mut encoder = pipeline.encoder();
    encoder.encode(&Update::new(vec![tensor])).unwrap();
    let x_hat = encoder.last_reconstruction().tensors[0]
        .data
        .as_slice()
        .unwrap()
        .to_vec();
    let block = 70 * 58;
    assert_ne!(
        x_hat[..block],
        x_hat[block..2 * block],
        "blocks 0 and 1 drew the same stream"
    );
}

#[test]
fn a_block_layout_other_than_the_pipeline_rule_is_refused() {
    let blocked = small_blocks("qsgd");
    let other = {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/qsgd.yaml");
        let text = std::fs::read_to_string(path).unwrap() + "\nblocks: { entries: 8192 }\n";
        registry()
            .build(&PipelineSpec::parse(&text, "other").unwrap())
            .unwrap()
    };
    let message = blocked.encoder().encode(&update(0)).unwrap();
    let err = other.decoder().decode(&message).unwrap_err().to_string();
    assert!(err.contains("another pipeline"), "{err}");
    let err = PipelineSpec::parse(
        "name: x\nstages:\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\nblocks: { entries: 10 }\n",
        "tiny.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("below the minimum of 4096"), "{err}");
}

#[test]
fn checkpoints_keep_every_block_state() {
    let pipeline = small_blocks("co3-fp4");
    let mut encoder = pipeline.encoder();
    encoder.encode(&update(0)).unwrap();
    let saved = encoder.save_state().unwrap();
    assert_eq!(&saved[..5], b"GCST\x02", "blocks need state version 2");
    let mut restored = pipeline.encoder();
    restored.load_state(&saved).unwrap();
    assert_eq!(
        encoder.encode(&update(1)).unwrap(),
        restored.encode(&update(1)).unwrap()
    );
}

#[test]
fn runtime_errors_are_typed_variants() {
    use gradcodec::{Error, Limits};
    let pipeline = small_blocks("co3-fp4");
    let mut encoder = pipeline.encoder();
    let first = encoder.encode(&update(0)).unwrap();
    let second = encoder.encode(&update(1)).unwrap();
    // A stateful stream must get its rounds in order.
    let mut decoder = pipeline.decoder();
    match decoder.decode(&second).unwrap_err() {
        Error::RoundGap { expected, got } => assert_eq!((expected, got), (0, 1)),
        other => panic!("not a round gap: {other}"),
    }
    decoder.decode(&first).unwrap();
    // Another pipeline's message.
    let other = small_blocks("qsgd");
    match other.decoder().decode(&first).unwrap_err() {
        Error::FingerprintMismatch {
            message,
            decoder,
            pipeline,
        } => {
            assert_eq!(message, blocked_fingerprint(&first));
            assert_eq!(decoder, other.fingerprint());
            assert_eq!(pipeline, "qsgd");
        }
        other => panic!("not a fingerprint mismatch: {other}"),
    }
    // An update beyond the receiver's limits, refused before any state changes.
    let mut limited = pipeline.encoder();
    limited.set_limits(Limits::with_max_entries(10_000));
    match limited.encode(&update(0)).unwrap_err() {
        Error::LimitExceeded {
            value, unit, limit, ..
        } => {
            assert_eq!((value, unit, limit), (21_000, "entries", 10_000))
        }
        other => panic!("not a limit: {other}"),
    }
    // A spec error with its place and field.
    let text = "name: x\nstages:\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\nblocks: { entries: 10 }\n";
    match PipelineSpec::parse(text, "tiny.yaml").unwrap_err() {
        Error::SpecAt { origin, field, .. } => {
            assert_eq!(origin, "tiny.yaml");
            assert_eq!(field.as_deref(), Some("blocks.entries"));
        }
        other => panic!("not a placed spec error: {other}"),
    }
    match PipelineSpec::parse("name: x\nstages: 3\n", "bad.yaml").unwrap_err() {
        Error::SpecAt { line, column, .. } => assert_eq!((line, column), (Some(2), Some(9))),
        other => panic!("not a placed spec error: {other}"),
    }
}

/// The fingerprint field of a message (bytes 7.. after magic, version, flags, round 0).
fn blocked_fingerprint(message: &[u8]) -> u64 {
    u64::from_le_bytes(message[7..15].try_into().unwrap())
}
