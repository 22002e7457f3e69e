//! A diverging run is recorded (round and reason) and a sweep goes on with the
//! other pipelines; runs of several seeds aggregate into mean and spread.

mod common;

use common::{data, opts, registry};

use gradcodec_harness::config::RunConfig;
use gradcodec_harness::seeds;
use gradcodec_harness::sweep::{sweep, SweepEntry};
use gradcodec_harness::train::run::run;

#[test]
fn a_diverging_pipeline_is_recorded_and_the_sweep_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    // A learning rate this large makes the loss overflow within a few steps.
    let base = RunConfig {
        lr: 1e12,
        momentum: 0.9,
        ..common::tiny_config("diverging", &data)
    };
    let entries = [
        SweepEntry::parse(common::spec("signsgd-ef").to_str().unwrap()),
        SweepEntry::parse(common::spec("f32").to_str().unwrap()),
    ];
    let out = sweep(&base, &entries, None, Some(&registry()), &opts(tmp.path())).unwrap();
    assert_eq!(out.summaries.len(), 2, "{}", out.table);
    for summary in &out.summaries {
        let diverged = summary
            .diverged
            .as_ref()
            .unwrap_or_else(|| panic!("{summary:?}"));
        assert!(
            diverged.round >= 1 && diverged.round <= base.rounds,
            "{diverged:?}"
        );
        assert!(
            diverged.reason.contains("non-finite") && !diverged.reason.trim().is_empty(),
            "{diverged:?}"
        );
    }
    assert!(out.table.contains("diverged at round"), "{}", out.table);
}

#[test]
fn seeds_aggregate_into_mean_and_spread_with_failures_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let dir = tmp.path().join("multi");
    let reg = registry();
    for seed in [1u64, 2] {
        for (label, spec) in [
            ("f32", None),
            ("signsgd-ef", Some(common::spec("signsgd-ef"))),
        ] {
            let cfg = RunConfig {
                seed,
                uplink: spec,
                ..common::tiny_config(&format!("{label}@seed{seed}"), &data)
            };
            run(&cfg, Some(&reg), &opts(&dir)).unwrap();
        }
    }
    // A run that left no summary (it failed) is reported from its log.
    std::fs::create_dir_all(dir.join("qsgd@seed1")).unwrap();
    std::fs::write(dir.join("qsgd@seed1/train.log"), "error: something broke\n").unwrap();

    let runs = seeds::collect(&dir).unwrap();
    assert_eq!(runs.len(), 5);
    let stats = seeds::stats(&runs, "f32");
    let f32 = stats.iter().find(|s| s.label == "f32").unwrap();
    let sign = stats.iter().find(|s| s.label == "signsgd-ef").unwrap();
    assert_eq!((f32.finished, sign.finished), (2, 2));
    let accuracy = f32.final_accuracy.unwrap();
    assert!(accuracy.min <= accuracy.mean && accuracy.mean <= accuracy.max);
    // signSGD sends about 1 bit per entry: far less volume than f32.
    assert!(sign.uplink_mb.unwrap().mean < f32.uplink_mb.unwrap().mean / 10.0);
    let qsgd = stats.iter().find(|s| s.label == "qsgd").unwrap();
    assert_eq!(
        qsgd.failed,
        vec!["seed 1: error: something broke".to_string()]
    );

    let (table, written) = seeds::report(&dir, "f32", 0.5, "test").unwrap();
    assert!(
        table.contains("| f32 | 2/2 |") && table.contains("| signsgd-ef | 2/2 |"),
        "{table}"
    );
    assert!(table.contains("`qsgd` failed"), "{table}");
    for path in written {
        assert!(path.metadata().unwrap().len() > 100, "{}", path.display());
    }
}

#[test]
fn a_pipeline_run_in_the_other_mode_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    let warnings = |name: &str, pipeline: &str| {
        let cfg = RunConfig {
            rounds: 1,
            uplink: Some(common::spec(pipeline)),
            ..common::tiny_config(name, &data)
        };
        let result = run(&cfg, Some(&reg), &opts(tmp.path())).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(result.dir.join("config.json")).unwrap())
                .unwrap();
        config["resolved"]["warnings"].clone()
    };
    // dgc says `meant_for: dsgd`; the tiny config is FedAvg.
    let dgc = warnings("dgc-in-fedavg", "dgc");
    assert!(
        dgc[0]
            .as_str()
            .unwrap()
            .contains("meant for per-step gradients"),
        "{dgc}"
    );
    assert_eq!(warnings("f32-in-fedavg", "f32"), serde_json::json!([]));
}
