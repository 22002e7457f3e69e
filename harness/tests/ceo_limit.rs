//! The CEO limit beside each round's real uplink bits (ALGORITHMS.md §4): lossy
//! pipelines send more than the limit at the distortion they reach, a lossless
//! link reaches exactly the averaging floor `σ_N²/K`, and a round with a single
//! learner records why it has no limit. `--nocapture` prints each round's
//! figures.

mod common;

use common::{data, opts, registry};

use std::sync::{Mutex, MutexGuard};

use gradcodec_harness::config::{Mode, RunConfig};
use gradcodec_harness::data::partition::Partition;
use gradcodec_harness::metrics::{read_csv, RoundRecord, Summary};
use gradcodec_harness::train::run::{run, RunResult};

/// libtorch's random generator is global to the process: runs in parallel tests
/// would seed and draw from it in turn and lose their exact trajectories (which
/// `lossless_links_reach_the_averaging_floor` compares). Each test holds this.
static TORCH: Mutex<()> = Mutex::new(());

fn torch() -> MutexGuard<'static, ()> {
    TORCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn trained(r: &RunResult) -> &[RoundRecord] {
    &r.records[1..]
}

/// The run's summary, and the same read back from its `summary.json`.
fn summary(r: &RunResult) -> Summary {
    let s = r.summary.clone().unwrap();
    let saved: Summary =
        serde_json::from_str(&std::fs::read_to_string(r.dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(saved, s);
    s
}

/// Checks the records of a run whose every round has the limit: per round and
/// in the summary, in `metrics.csv` and the plot. `positive`: some round needs
/// more than 0 bits (the limit is 0 once `D ≥ σ_X²`).
fn check_evaluated(r: &RunResult, lossy: bool, positive: bool) {
    for rec in trained(r) {
        let c = &rec.ceo;
        let real = 8.0 * rec.uplink_bytes as f64;
        eprintln!(
            "{} round {}: real {real:.4e} bits, CEO {:?}, averaging {:?}, D {:?}, sigma_X^2 {:?}, \
             sigma_N^2/K {:?}",
            r.summary.as_ref().unwrap().name,
            rec.round,
            c.ceo_bits,
            c.averaging_bits,
            c.achieved_distortion,
            c.sigma_x2,
            c.sigma_n2.map(|v| v / rec.participants as f64)
        );
        let (d, bits) = (c.achieved_distortion.unwrap(), c.ceo_bits.unwrap());
        let floor = c.sigma_n2.unwrap() / rec.participants as f64;
        assert!(c.sigma_x2.unwrap() > 0.0 && floor > 0.0, "{rec:?}");
        assert!(bits.is_finite() && bits >= 0.0, "{rec:?}");
        assert!(
            bits <= real,
            "round {}: CEO {bits} > real {real}",
            rec.round
        );
        assert_eq!(c.skip_reason, None);
        if lossy {
            assert!(
                d > floor * (1.0 + 1e-9),
                "round {}: D {d}, floor {floor}",
                rec.round
            );
            let avg = c.averaging_bits.expect("defined above the floor");
            assert!(avg >= bits && avg.is_finite(), "{rec:?}");
        } else {
            assert!(
                ((d - floor) / floor).abs() < 1e-12,
                "round {}: D {d} vs sigma_N^2/K {floor}",
                rec.round
            );
            assert_eq!(c.averaging_bits, None, "{rec:?}");
        }
    }
    let s = summary(r).ceo;
    let rounds = trained(r).len();
    assert_eq!(s.total_ceo_bits > 0.0, positive, "{s:?}");
    assert_eq!((s.rounds_evaluated, s.rounds_skipped), (rounds, 0));
    assert_eq!(s.skip_reason, None);
    let real: f64 = trained(r).iter().map(|x| 8.0 * x.uplink_bytes as f64).sum();
    let ceo: f64 = trained(r).iter().map(|x| x.ceo.ceo_bits.unwrap()).sum();
    assert_eq!(s.total_real_bits, real);
    assert!((s.total_ceo_bits - ceo).abs() <= 1e-9 * ceo);
    if ceo > 0.0 {
        assert!(s.real_over_ceo.unwrap() >= 1.0, "{s:?}");
    } else {
        assert_eq!(s.real_over_ceo, None);
    }
    assert_eq!(s.total_averaging_bits.is_some(), lossy);
    assert_eq!(s.per_round.round, (1..=rounds).collect::<Vec<_>>());
    assert_eq!(s.per_round.ceo_bits.len(), rounds);
    assert_eq!(
        s.per_round.real_bits[0],
        8.0 * r.records[1].uplink_bytes as f64
    );
    let back = read_csv(&r.dir.join("metrics.csv")).unwrap();
    for (a, b) in back.iter().zip(&r.records) {
        assert_eq!(a.ceo, b.ceo, "round {}", a.round);
    }
    for f in ["bits_vs_ceo.png", "bits_vs_ceo.svg"] {
        assert!(r.dir.join(f).metadata().unwrap().len() > 100, "{f}");
    }
}

#[test]
fn lossy_pipelines_send_more_than_the_ceo_limit() {
    let _torch = torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    for spec in ["co3-fp4", "signsgd-ef"] {
        let cfg = RunConfig {
            uplink: Some(common::spec(spec)),
            partition: Partition::Iid,
            ..common::tiny_config(spec, &data)
        };
        let out = run(&cfg, Some(&reg), &opts(tmp.path())).unwrap();
        check_evaluated(&out, true, true);
        let s = out.summary.as_ref().unwrap();
        eprintln!(
            "fedavg {spec}: real {:.4e} bits, CEO {:.4e} bits, averaging {:?}, real/CEO {:?}",
            s.ceo.total_real_bits,
            s.ceo.total_ceo_bits,
            s.ceo.total_averaging_bits,
            s.ceo.real_over_ceo
        );
    }
    // dsgd: two aggregations per round, their bits added.
    let cfg = RunConfig {
        mode: Mode::Dsgd,
        uplink: Some(common::spec("co3-fp4")),
        steps_per_round: Some(2),
        rounds: 2,
        partition: Partition::Iid,
        ..common::tiny_config("dsgd-co3", &data)
    };
    let out = run(&cfg, Some(&reg), &opts(tmp.path())).unwrap();
    check_evaluated(&out, true, true);
}

#[test]
fn lossless_links_reach_the_averaging_floor() {
    let _torch = torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    let f32cfg = RunConfig {
        uplink: Some(common::spec("f32")),
        partition: Partition::Iid,
        ..common::tiny_config("f32", &data)
    };
    let coded = run(&f32cfg, Some(&reg), &opts(tmp.path())).unwrap();
    check_evaluated(&coded, false, true);
    // The uncompressed link measures the same updates: the same figures.
    let plain = run(
        &RunConfig {
            partition: Partition::Iid,
            ..common::tiny_config("plain", &data)
        },
        Some(&reg),
        &opts(tmp.path()),
    )
    .unwrap();
    check_evaluated(&plain, false, true);
    for (a, b) in trained(&coded).iter().zip(trained(&plain)) {
        assert_eq!(a.ceo, b.ceo, "round {}", a.round);
    }
    // dsgd, 4 classes per worker: the workers' noise swamps the mean gradient
    // (σ_N²/K ≥ σ_X²), so even the lossless D needs 0 bits.
    let cfg = RunConfig {
        mode: Mode::Dsgd,
        uplink: Some(common::spec("f32")),
        steps_per_round: Some(2),
        rounds: 2,
        ..common::tiny_config("dsgd-f32", &data)
    };
    check_evaluated(
        &run(&cfg, Some(&reg), &opts(tmp.path())).unwrap(),
        false,
        false,
    );
}

#[test]
fn a_single_learner_records_why_there_is_no_limit() {
    let _torch = torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let reg = registry();
    let dsgd = RunConfig {
        mode: Mode::Dsgd,
        uplink: Some(common::spec("co3-fp4")),
        clients: 1,
        partition: Partition::Iid,
        steps_per_round: Some(2),
        rounds: 2,
        ..common::tiny_config("dsgd-one", &data)
    };
    // fedavg with 3 clients and participation 0.2: one client per round.
    let fedavg = RunConfig {
        uplink: Some(common::spec("co3-fp4")),
        participation: 0.2,
        ..common::tiny_config("fedavg-one", &data)
    };
    for cfg in [dsgd, fedavg] {
        let out = run(&cfg, Some(&reg), &opts(tmp.path())).unwrap();
        for rec in trained(&out) {
            assert_eq!(rec.participants, 1);
            let c = &rec.ceo;
            assert_eq!(
                (c.ceo_bits, c.averaging_bits, c.achieved_distortion),
                (None, None, None)
            );
            let reason = c.skip_reason.as_deref().unwrap();
            assert!(reason.contains("K = 1"), "{reason}");
        }
        let s = summary(&out).ceo;
        assert_eq!((s.rounds_evaluated, s.rounds_skipped), (0, cfg.rounds));
        assert!(s.skip_reason.unwrap().contains("K = 1"));
        assert_eq!((s.total_ceo_bits, s.real_over_ceo), (0.0, None));
        assert_eq!(s.per_round.ceo_bits, vec![None; cfg.rounds]);
        assert!(out.dir.join("bits_vs_ceo.png").metadata().unwrap().len() > 100);
        let csv = std::fs::read_to_string(out.dir.join("metrics.csv")).unwrap();
        assert!(csv.lines().nth(1).unwrap().ends_with(",,,,,"), "{csv}");
    }
}
