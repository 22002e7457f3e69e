//! Every spec in pipelines/ on every real gradient fixture, pinned with insta.
//!
//! - `every_pipeline_on_every_fixture`: one snapshot per (spec, fixture).
//! - `stateful_pipelines_over_rounds`: every stateful spec over each fixture
//!   sequence (5 rounds), so state handling is pinned too.
//! - `golden_messages_still_decode`: one committed message per spec must decode
//!   to its committed hash (the format's backward-compatibility promise).
//! - `no_unreferenced_snapshots`: every .snap file belongs to a current pair.
//!
//! Accepting an intended change: docs/snapshots.md.

use gradcodec::{decoder_for_message, spec::spec_files, PipelineSpec};
use gradcodec_snapshots::{
    build_registry, fixtures, pipelines_dir, sequences, small_tensors, snapshot_rounds,
    snapshot_update, update_hash, workspace_root,
};
use std::collections::BTreeSet;

fn spec_names() -> Vec<(String, std::path::PathBuf)> {
    spec_files(&pipelines_dir())
        .unwrap()
        .into_iter()
        .map(|p| (p.file_stem().unwrap().to_string_lossy().to_string(), p))
        .collect()
}

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings
}

#[test]
fn every_pipeline_on_every_fixture() {
    let registry = build_registry();
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 3,
        "expected the committed fixtures in snapshots/fixtures"
    );
    settings().bind(|| {
        for (spec_name, path) in spec_names() {
            let pipeline = registry
                .build(&PipelineSpec::from_file(&path).unwrap())
                .unwrap_or_else(|e| panic!("{e}"));
            for (fixture_name, update) in &fixtures {
                let snapshot = snapshot_update(&pipeline, update)
                    .unwrap_or_else(|e| panic!("{spec_name} on {fixture_name}: {e}"));
                insta::assert_yaml_snapshot!(format!("{spec_name}@{fixture_name}"), snapshot);
            }
        }
    });
}

#[test]
fn stateful_pipelines_over_rounds() {
    let registry = build_registry();
    let sequences = sequences();
    assert!(
        !sequences.is_empty(),
        "expected a fixture sequence in snapshots/fixtures/<name>/"
    );
    settings().bind(|| {
        for (spec_name, path) in spec_names() {
            let pipeline = registry
                .build(&PipelineSpec::from_file(&path).unwrap())
                .unwrap();
            if !pipeline.is_stateful() {
                continue;
            }
            for (sequence_name, updates) in &sequences {
                assert!(updates.len() >= 5, "{sequence_name}: fewer than 5 rounds");
                let snapshot = snapshot_rounds(&pipeline, &updates[..5])
                    .unwrap_or_else(|e| panic!("{spec_name} over {sequence_name}: {e}"));
                insta::assert_yaml_snapshot!(
                    format!("{spec_name}@{sequence_name}-rounds"),
                    snapshot
                );
            }
        }
    });
}

/// Golden inputs: the fixture's tensors of at most this many entries.
const GOLDEN_MAX_ENTRIES: usize = 5_000;

#[test]
fn golden_messages_still_decode() {
    let registry = build_registry();
    let golden = workspace_root().join("snapshots/golden");
    let bless = std::env::var_os("GRADCODEC_BLESS_GOLDEN").is_some();
    let (_, first) = fixtures().into_iter().next().expect("a fixture");
    let input = small_tensors(&first, GOLDEN_MAX_ENTRIES);
    let mut missing = Vec::new();
    for (spec_name, path) in spec_names() {
        let message_path = golden.join(format!("{spec_name}.gcm"));
        let hash_path = golden.join(format!("{spec_name}.decoded-xxh3"));
        if bless && !message_path.exists() {
            let pipeline = registry
                .build(&PipelineSpec::from_file(&path).unwrap())
                .unwrap();
            let mut encoder = pipeline.encoder();
            let message = encoder.encode(&input).unwrap();
            std::fs::write(&message_path, &message).unwrap();
            std::fs::write(
                &hash_path,
                update_hash(encoder.last_reconstruction()) + "\n",
            )
            .unwrap();
        }
        let (Ok(message), Ok(expected)) = (
            std::fs::read(&message_path),
            std::fs::read_to_string(&hash_path),
        ) else {
            missing.push(spec_name);
            continue;
        };
        // Decoded without the spec: the message names its pipeline.
        let mut decoder =
            decoder_for_message(&registry, &message).unwrap_or_else(|e| panic!("{spec_name}: {e}"));
        let decoded = decoder
            .decode(&message)
            .unwrap_or_else(|e| panic!("{spec_name}: {e}"));
        assert_eq!(
            update_hash(&decoded),
            expected.trim(),
            "{spec_name}: golden message decodes differently"
        );
    }
    assert!(
        missing.is_empty(),
        "no golden message for {missing:?}: run GRADCODEC_BLESS_GOLDEN=1 cargo test -p gradcodec-snapshots (see docs/snapshots.md)"
    );
}

#[test]
fn no_unreferenced_snapshots() {
    let registry = build_registry();
    let mut expected = BTreeSet::new();
    let fixture_names: Vec<String> = fixtures().into_iter().map(|(n, _)| n).collect();
    let sequence_names: Vec<String> = sequences().into_iter().map(|(n, _)| n).collect();
    for (spec_name, path) in spec_names() {
        for fixture in &fixture_names {
            expected.insert(format!("{spec_name}@{fixture}.snap"));
        }
        let pipeline = registry
            .build(&PipelineSpec::from_file(&path).unwrap())
            .unwrap();
        if pipeline.is_stateful() {
            for sequence in &sequence_names {
                expected.insert(format!("{spec_name}@{sequence}-rounds.snap"));
            }
        }
    }
    let dir = workspace_root().join("snapshots/tests/snapshots");
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".snap"))
                .collect()
        })
        .unwrap_or_default();
    let unreferenced: Vec<&String> = present.difference(&expected).collect();
    assert!(
        unreferenced.is_empty(),
        "snapshots without a current (spec, fixture) pair: {unreferenced:?}; delete them (see docs/snapshots.md)"
    );
    let golden = workspace_root().join("snapshots/golden");
    let specs: BTreeSet<String> = spec_names().into_iter().map(|(n, _)| n).collect();
    for entry in std::fs::read_dir(&golden)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().to_string();
        let stem = name
            .strip_suffix(".gcm")
            .or_else(|| name.strip_suffix(".decoded-xxh3"))
            .unwrap_or(&name)
            .to_string();
        assert!(
            specs.contains(&stem),
            "golden file {name} has no spec in pipelines/"
        );
    }
}
