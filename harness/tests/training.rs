//! End-to-end runs on a tiny data set written in IDX format: a lossless
//! pipeline reproduces uncompressed training exactly, a lossy one sends fewer
//! bytes and the records equal the real message sizes, an interrupted run
//! resumes into the uninterrupted one, and bad configurations fail clearly.

mod common;

use common::{data, opts, registry};

use std::path::Path;

use gradcodec::PipelineSpec;
use gradcodec_harness::capture::{capture, CaptureKind};
use gradcodec_harness::config::{Mode, RunConfig};
use gradcodec_harness::data::partition::Partition;
use gradcodec_harness::models::aop::{AopConfig, AopPolicy};
use gradcodec_harness::models::ModelKind;
use gradcodec_harness::sweep::{sweep, SweepEntry};
use gradcodec_harness::train::run::run;

#[test]
fn lossless_pipeline_gives_the_uncompressed_trajectory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    let plain = run(
        &common::tiny_config("plain", &data),
        Some(&reg),
        &opts(tmp.path()),
    )
    .unwrap();
    let f32cfg = RunConfig {
        uplink: Some(common::spec("f32")),
        ..common::tiny_config("f32", &data)
    };
    let coded = run(&f32cfg, Some(&reg), &opts(tmp.path())).unwrap();
    assert_eq!(plain.records.len(), 4);
    for (a, b) in plain.records.iter().zip(&coded.records) {
        assert_eq!(a.test_accuracy, b.test_accuracy, "round {}", a.round);
        assert_eq!(a.test_loss, b.test_loss, "round {}", a.round);
        assert_eq!(a.train_loss, b.train_loss, "round {}", a.round);
        assert_eq!(b.rel_mse, 0.0);
    }
    // It learns something, and f32 costs 32 bits per entry plus the container.
    let last = coded.records.last().unwrap();
    assert!(
        last.test_accuracy > plain.records[0].test_accuracy + 0.2,
        "{last:?}"
    );
    assert!(last.uplink_bits_per_entry > 32.0 && last.uplink_bits_per_entry < 32.1);
    assert!(coded.summary.unwrap().uplink_lossless);
}

/// Sizes of the files `prefix-<stream>-<n>.*` of message number `n`.
fn message_bytes(dir: &Path, prefix: &str, n: usize) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("{prefix}-")) && name.contains(&format!("-{n:05}."))
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn lossy_pipeline_sends_fewer_bytes_and_records_the_real_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    let mut o = opts(tmp.path());
    o.save_messages = true;
    let base = run(&common::tiny_config("base", &data), Some(&reg), &o).unwrap();
    let cfg = RunConfig {
        uplink: Some(common::spec("co3-fp4")),
        ..common::tiny_config("co3", &data)
    };
    let lossy = run(&cfg, Some(&reg), &o).unwrap();
    let messages = lossy.dir.join("messages");
    let spec = PipelineSpec::from_file(common::spec("co3-fp4")).unwrap();
    let pipeline = reg.build(&spec).unwrap();
    let mut decoders: Vec<_> = (0..3).map(|_| pipeline.decoder()).collect();
    for r in &lossy.records[1..] {
        let n = r.round - 1;
        assert_eq!(
            r.uplink_bytes,
            message_bytes(&messages, "up", n),
            "round {}",
            r.round
        );
        assert_eq!(r.uplink_messages, 3);
        // Every saved message decodes with a fresh stream of the same pipeline.
        for (k, dec) in decoders.iter_mut().enumerate() {
            let bytes = std::fs::read(messages.join(format!("up-{k:03}-{n:05}.gcm"))).unwrap();
            let update = dec.decode(&bytes).unwrap();
            assert_eq!(update.entries(), 199_210);
        }
        let base_r = &base.records[r.round];
        assert!(
            r.uplink_bytes * 4 < base_r.uplink_bytes,
            "{} vs {}",
            r.uplink_bytes,
            base_r.uplink_bytes
        );
        assert!(r.rel_mse > 0.0 && r.weighted_distortion > 0.0);
    }
    let s = lossy.summary.unwrap();
    assert!(!s.uplink_lossless);
    assert!(s.mean_uplink_bits_per_entry < 8.0, "{s:?}");
    let cum: f64 = lossy
        .records
        .iter()
        .map(|r| 8.0 * r.uplink_bytes as f64)
        .sum();
    assert_eq!(s.total_uplink_bits, cum);
    for f in [
        "config.json",
        "metrics.csv",
        "summary.json",
        "accuracy_vs_bits.png",
        "accuracy_vs_bits.svg",
        "accuracy_vs_rounds.png",
        "accuracy_vs_rounds.svg",
    ] {
        assert!(lossy.dir.join(f).metadata().unwrap().len() > 100, "{f}");
    }
    // metrics.csv reads back into the same records.
    let back = gradcodec_harness::metrics::read_csv(&lossy.dir.join("metrics.csv")).unwrap();
    assert!(common::same_trajectory(&back, &lossy.records));
}

fn interrupted_equals_uninterrupted(cfg: RunConfig, halt_after: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry();
    let full = run(&cfg, Some(&reg), &opts(&tmp.path().join("a"))).unwrap();
    let mut o = opts(&tmp.path().join("b"));
    o.halt_after = Some(halt_after);
    let first = run(&cfg, Some(&reg), &o).unwrap();
    assert!(first.summary.is_none());
    assert_eq!(first.records.len(), halt_after + 1);
    o.halt_after = None;
    let resumed = run(&cfg, Some(&reg), &o).unwrap();
    assert!(
        common::same_trajectory(&full.records, &resumed.records),
        "uninterrupted:\n{:#?}\nresumed:\n{:#?}",
        full.records,
        resumed.records
    );
    let (a, b) = (full.summary.unwrap(), resumed.summary.unwrap());
    assert_eq!(a.final_accuracy, b.final_accuracy);
    assert_eq!(a.total_uplink_bits, b.total_uplink_bits);
    // A different configuration refuses the checkpoint instead of mixing runs.
    let other = RunConfig {
        seed: cfg.seed + 1,
        ..cfg
    };
    let err = run(&other, Some(&reg), &o).unwrap_err().to_string();
    assert!(
        err.contains("another configuration") && err.contains("--fresh"),
        "{err}"
    );
}

#[test]
fn resume_reproduces_fedavg_with_predictive_links_sampling_and_mem_aop() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let cfg = RunConfig {
        uplink: Some(common::spec("resfed")),
        downlink: Some(common::spec("co3-fp4")),
        clients: 4,
        participation: 0.5,
        rounds: 4,
        mem_aop: Some(AopConfig {
            keep: 0.5,
            policy: AopPolicy::TopK,
            memory: true,
        }),
        ..common::tiny_config("resume-fedavg", &data)
    };
    interrupted_equals_uninterrupted(cfg, 2);
}

#[test]
fn resume_reproduces_dsgd_with_error_feedback() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let cfg = RunConfig {
        mode: Mode::Dsgd,
        uplink: Some(common::spec("signsgd-ef")),
        model: ModelKind::Lenet5,
        steps_per_round: Some(3),
        rounds: 3,
        mem_aop: Some(AopConfig {
            keep: 0.25,
            policy: AopPolicy::Random,
            memory: true,
        }),
        ..common::tiny_config("resume-dsgd", &data)
    };
    interrupted_equals_uninterrupted(cfg, 1);
}

#[test]
fn mem_aop_without_memory_is_recorded_and_changes_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    let aop = |memory| AopConfig {
        keep: 0.25,
        policy: AopPolicy::TopK,
        memory,
    };
    let with = RunConfig {
        mode: Mode::Dsgd,
        model: ModelKind::Lenet5,
        steps_per_round: Some(3),
        rounds: 2,
        mem_aop: Some(aop(true)),
        ..common::tiny_config("aop-memory", &data)
    };
    let without = RunConfig {
        name: "aop-no-memory".into(),
        mem_aop: Some(aop(false)),
        ..with.clone()
    };
    let a = run(&with, Some(&reg), &opts(tmp.path())).unwrap();
    let b = run(&without, Some(&reg), &opts(tmp.path())).unwrap();
    // Same kept products and compute saved; different trajectories.
    assert_eq!(
        a.records[1].aop_saved_fraction,
        b.records[1].aop_saved_fraction
    );
    assert!((b.records[1].aop_saved_fraction - 0.75).abs() < 1e-9);
    assert!(!common::same_trajectory(&a.records, &b.records));
    // config.json records the choice (and reads back into the same config).
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["config"]["mem_aop"]["memory"], serde_json::json!(false));
    let back = RunConfig::from_file(&b.dir.join("config.json")).unwrap();
    assert_eq!(back.mem_aop, Some(aop(false)));
    // The command line: --mem-aop-no-memory, and an error without --mem-aop.
    use clap::Parser;
    let parse = |args: &[&str]| {
        let cli = gradcodec_harness::cli::Cli::try_parse_from(
            ["gradcodec-harness", "train"].iter().chain(args),
        )
        .unwrap();
        match cli.command {
            gradcodec_harness::cli::Command::Train { run, .. } => run.to_config(),
            _ => unreachable!(),
        }
    };
    let c = parse(&["--mem-aop", "0.5", "--mem-aop-no-memory"]).unwrap();
    assert_eq!(c.mem_aop.map(|a| a.memory), Some(false));
    let c = parse(&["--mem-aop", "0.5"]).unwrap();
    assert_eq!(c.mem_aop.map(|a| a.memory), Some(true));
    let err = parse(&["--mem-aop-no-memory"]).unwrap_err().to_string();
    assert!(err.contains("--mem-aop"), "{err}");
}

#[test]
fn dsgd_sends_one_message_per_worker_and_step() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let mut o = opts(tmp.path());
    o.save_messages = true;
    let cfg = RunConfig {
        mode: Mode::Dsgd,
        uplink: Some(common::spec("co3-fp4")),
        steps_per_round: Some(4),
        rounds: 2,
        partition: Partition::Iid,
        ..common::tiny_config("dsgd", &data)
    };
    let out = run(&cfg, Some(&registry()), &o).unwrap();
    let files = std::fs::read_dir(out.dir.join("messages")).unwrap().count();
    assert_eq!(files, 3 * 4 * 2);
    let r = &out.records[1];
    assert_eq!(r.uplink_messages, 12);
    let total: u64 = (0..4)
        .map(|n| message_bytes(&out.dir.join("messages"), "up", n))
        .sum();
    assert_eq!(r.uplink_bytes, total);
    assert!(out.records[2].test_accuracy > out.records[0].test_accuracy);
}

#[test]
fn bad_configurations_fail_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    let o = opts(tmp.path());
    let k0 = RunConfig {
        clients: 0,
        ..common::tiny_config("k0", &data)
    };
    let err = run(&k0, Some(&reg), &o).unwrap_err().to_string();
    assert!(
        err.contains("clients") && err.contains("K must be at least 1"),
        "{err}"
    );
    let missing = RunConfig {
        uplink: Some(tmp.path().join("no-such-pipeline.yaml")),
        ..common::tiny_config("missing", &data)
    };
    let err = run(&missing, Some(&reg), &o).unwrap_err().to_string();
    assert!(
        err.contains("uplink") && err.contains("no-such-pipeline.yaml does not exist"),
        "{err}"
    );
    let bad_spec = tmp.path().join("bad.yaml");
    std::fs::write(&bad_spec, "name: bad\nstages:\n  - quantizer: { use: no-such-stage }\n  - entropy-coder: { use: bitpack }\n").unwrap();
    let err = format!(
        "{:#}",
        run(
            &RunConfig {
                uplink: Some(bad_spec),
                ..common::tiny_config("bad-spec", &data)
            },
            Some(&reg),
            &o
        )
        .unwrap_err()
    );
    assert!(
        err.contains("bad.yaml") && err.contains("no-such-stage"),
        "{err}"
    );
    let err = serde_json::from_str::<RunConfig>(r#"{"model": "vgg16"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("vgg16"), "{err}");
    let no_data = RunConfig {
        data_dir: Some(tmp.path().join("nowhere")),
        ..common::tiny_config("no-data", &data)
    };
    let err = format!("{:#}", run(&no_data, Some(&reg), &o).unwrap_err());
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn command_line_reports_bad_options() {
    let exe = env!("CARGO_BIN_EXE_gradcodec-harness");
    let tmp = tempfile::tempdir().unwrap();
    let run_cli = |args: &[&str]| {
        let out = std::process::Command::new(exe)
            .args(args)
            .args(["--out", tmp.path().to_str().unwrap(), "--quiet"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run_cli(&["train", "--model", "vgg16"]);
    assert!(
        err.contains("unknown model \"vgg16\"") && err.contains("resfed-cnn"),
        "{err}"
    );
    let err = run_cli(&["train", "-k", "0"]);
    assert!(err.contains("K must be at least 1"), "{err}");
    let err = run_cli(&["train", "--uplink", "missing.yaml"]);
    assert!(err.contains("missing.yaml does not exist"), "{err}");
    let err = run_cli(&["train", "--partition", "shards:3"]);
    assert!(err.contains("unknown partition"), "{err}");
}

#[test]
fn sweep_writes_one_table_and_one_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let base = RunConfig {
        rounds: 2,
        ..common::tiny_config("sw", &data)
    };
    let entries = [
        SweepEntry::parse(common::spec("f32").to_str().unwrap()),
        SweepEntry::parse(common::spec("signsgd-ef").to_str().unwrap()),
    ];
    let out = sweep(&base, &entries, None, Some(&registry()), &opts(tmp.path())).unwrap();
    assert!(
        out.table.contains("| f32 |") && out.table.contains("| signsgd-ef |"),
        "{}",
        out.table
    );
    for f in [
        "comparison.md",
        "comparison.png",
        "comparison.svg",
        "sweep.json",
    ] {
        assert!(out.dir.join(f).metadata().unwrap().len() > 100, "{f}");
    }
    let sign = &out.summaries[1];
    assert_eq!(sign.baseline.as_deref(), Some("f32"));
    assert!(sign.accuracy_loss_vs_baseline.is_some());
    assert!(sign.mean_uplink_bits_per_entry < 1.2, "{sign:?}");
    let saved: gradcodec_harness::metrics::Summary = serde_json::from_str(
        &std::fs::read_to_string(out.dir.join("signsgd-ef/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(&saved, sign);
}

#[test]
fn capture_writes_a_real_gradient_and_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let cfg = RunConfig {
        model: ModelKind::Lenet5,
        ..common::tiny_config("cap", &data)
    };
    let g = tmp.path().join("g.safetensors");
    let n = capture(&cfg, CaptureKind::Gradient, 5, 0, &g).unwrap();
    assert_eq!(n, 61_706);
    let update = gradcodec::Update::read(&g).unwrap();
    let names: Vec<&str> = update.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[0], "conv1.bias");
    assert!(update
        .tensors
        .iter()
        .all(|t| t.data.iter().any(|v| *v != 0.0)));
    let d = tmp.path().join("d.safetensors");
    capture(&cfg, CaptureKind::Delta, 5, 3, &d).unwrap();
    let delta = gradcodec::Update::read(&d).unwrap();
    assert_eq!(delta.entries(), 61_706);
    assert_ne!(delta, update);
}

#[test]
fn batch_norm_statistics_travel_raw_and_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let cfg = RunConfig {
        model: ModelKind::Resnet8,
        uplink: Some(common::spec("co3-fp4")),
        clients: 2,
        rounds: 1,
        train_limit: Some(200),
        ..common::tiny_config("bn", &data)
    };
    let out = run(&cfg, Some(&registry()), &opts(tmp.path())).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("config.json")).unwrap())
            .unwrap();
    // ResNet-8's batch norms: the stem (16), block 1 (16, 16), blocks 2 and 3
    // (two each plus the shortcut's: 3 x 32, 3 x 64); running mean and variance.
    let buffers = config["resolved"]["model_buffers"].as_u64().unwrap();
    assert_eq!(buffers, 2 * (16 + 2 * 16 + 3 * 32 + 3 * 64));
    let r = &out.records[1];
    assert_eq!(r.uplink_buffer_bytes, 2 * 4 * buffers);
    assert_eq!(
        r.cum_uplink_bits,
        8.0 * (r.uplink_bytes + r.uplink_buffer_bytes) as f64
    );
    assert!(r.test_loss.is_finite());
}
