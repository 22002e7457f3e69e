//! The trial run (what `gradcodec check` runs) catches every quantizer / entropy
//! coder mismatch among the shipped stages: for every pair, with the stages'
//! example parameters, the trial fails exactly when coding a real gradient fails.

use gradcodec::trial::{trial_run, TRIAL_ROUNDS};
use gradcodec::{abi::StageKind, PipelineSpec, PluginSearch, Registry, Update};
use std::path::Path;

mod common;
use common::build_dir;

fn registry() -> Registry {
    common::library("gradcodec_plugin_quantizers");
    Registry::discover(&PluginSearch::only(vec![build_dir()], vec![])).unwrap()
}

fn real_rounds(
    pipeline: &std::sync::Arc<gradcodec::Pipeline>,
    update: &Update,
) -> Result<(), String> {
    let (mut encoder, mut decoder) = (pipeline.encoder(), pipeline.decoder());
    for _ in 0..TRIAL_ROUNDS {
        let message = encoder.encode(update).map_err(|e| e.to_string())?;
        decoder.decode(&message).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn the_trial_fails_exactly_when_a_real_update_fails() {
    let registry = registry();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../snapshots/fixtures/lenet5-grad.safetensors");
    let update = Update::read(&fixture).unwrap();
    let of_kind = |kind| {
        registry
            .stages()
            .iter()
            .filter(|s| {
                s.descriptor.kind == kind && !s.library.path.to_string_lossy().contains("example")
            })
            .map(|s| {
                (
                    s.descriptor.name.to_string(),
                    s.descriptor.example_params.to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (quantizers, mut coders) = (
        of_kind(StageKind::QUANTIZER),
        of_kind(StageKind::ENTROPY_CODER),
    );
    assert!(
        quantizers.len() >= 14 && coders.len() >= 7,
        "{quantizers:?} {coders:?}"
    );
    // The models that need the quantizer's help, beside the examples.
    let parametric = r#"{"model": "parametric"}"#;
    coders.push(("huffman".into(), parametric.into()));
    coders.push(("ans".into(), parametric.into()));
    let (mut mismatches, mut pairs) = (Vec::new(), 0);
    for (quantizer, q_params) in &quantizers {
        for (coder, c_params) in &coders {
            pairs += 1;
            let yaml = format!(
                "name: pair\nstages:\n  - quantizer: {{ use: {quantizer}, params: {q_params} }}\n  - entropy-coder: {{ use: {coder}, params: {c_params} }}\n"
            );
            let pipeline = registry
                .build(&PipelineSpec::parse(&yaml, "pair.yaml").unwrap())
                .unwrap();
            let trial = trial_run(&pipeline, TRIAL_ROUNDS)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let real = real_rounds(&pipeline, &update);
            assert_eq!(
                trial.is_err(),
                real.is_err(),
                "{quantizer} + {coder}: trial {trial:?}, real {real:?}"
            );
            if let Err(error) = trial {
                // The failing stage is named.
                assert!(
                    error.contains(&format!("`{coder}`"))
                        || error.contains(&format!("`{quantizer}`")),
                    "{error}"
                );
                mismatches.push(format!("{quantizer}+{coder}"));
            }
        }
    }
    // The shipped stages have real mismatches (e.g. raw words into rans), so
    // the comparison above is not vacuous.
    assert!(
        !mismatches.is_empty() && mismatches.len() < pairs,
        "{mismatches:?}"
    );
    eprintln!(
        "{pairs} pairs, {} mismatches: {mismatches:?}",
        mismatches.len()
    );
}

/// `gradcodec plugins` shows what each coder takes, found by probing.
#[test]
fn probing_finds_each_coders_limits() {
    let registry = registry();
    let probe = |name: &str, params: &str| {
        let stage = registry.find(StageKind::ENTROPY_CODER, name, None).unwrap();
        gradcodec::probe::probe_coder(stage, params).unwrap()
    };
    let rans = probe("rans", "{}");
    assert_eq!(rans.max_values_alphabet, Some(1 << 12));
    assert!(!rans.positions && !rans.raw_words && rans.works_without_model);
    let bitpack = probe("bitpack", "{}");
    assert_eq!(bitpack.max_values_alphabet, Some(1 << 32));
    assert!(bitpack.positions && bitpack.raw_words);
    let parametric = probe("huffman", r#"{"model": "parametric"}"#);
    assert!(!parametric.works_without_model, "{parametric:?}");
    assert!(parametric
        .summary()
        .contains("only with the quantizer's model"));
    assert!(probe("huffman", r#"{"model": "empirical"}"#).works_without_model);
    let quantizer = registry.find(StageKind::QUANTIZER, "raw", None).unwrap();
    assert!(gradcodec::probe::probe_coder(quantizer, "{}").is_none());
}
