//! gradcodec's entropy coders:
//!
//! - [`ans::Ans`]: rANS / range coding (constriction) with a static (sent),
//!   adaptive or parametric (quantizer-given) model;
//! - [`elias_gamma::EliasGamma`]: Elias gamma codes of position gaps or values;
//! - [`golomb_rice::GolombRice`]: Rice codes with a per-stream parameter;
//! - [`zstd_coder::Zstd`]: byte packing plus Zstandard, the generic baseline.
//!
//! Every decoder allocates at most `count` symbols, rejects truncated or
//! trailing data and symbols outside the alphabet with an error, never a panic.

pub mod ans;
pub mod bits;
pub mod common;
pub mod elias_gamma;
pub mod golomb_rice;
pub mod zstd_coder;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-entropy",
    predictors: [],
    error_corrections: [],
    quantizers: [],
    entropy_coders: [
        ans::Ans,
        elias_gamma::EliasGamma,
        golomb_rice::GolombRice,
        zstd_coder::Zstd,
    ],
}

#[cfg(test)]
mod tests {
    use gradcodec_sdk::abi::StageKind;

    #[test]
    fn every_stage_passes_the_conformance_kit() {
        gradcodec_sdk::conformance::check_library(super::plugin_root());
    }

    /// The kit again for the other ANS models and zstd levels.
    #[test]
    fn other_parameters_pass_the_conformance_kit() {
        let root = super::plugin_root();
        let manifest = (root.manifest())();
        for (name, params) in [
            ("ans", r#"{"model": "adaptive"}"#),
            ("ans", r#"{"model": "parametric"}"#),
            ("zstd", r#"{"level": -5}"#),
            ("zstd", r#"{"level": 19}"#),
        ] {
            let mut stage = manifest
                .stages
                .iter()
                .find(|s| s.kind == StageKind::ENTROPY_CODER && s.name.as_str() == name)
                .unwrap_or_else(|| panic!("no stage {name}"))
                .clone();
            stage.example_params = params.into();
            gradcodec_sdk::conformance::check_stage(root, &stage);
        }
    }

    /// The pipelines this family ships stages for; their parameters must be valid
    /// for this library's stages (stages of other libraries are skipped).
    const PIPELINES: [&str; 13] = [
        "qsgd.yaml",
        "terngrad.yaml",
        "signsgd-ef.yaml",
        "topk-ef-1pct.yaml",
        "topk-ef-0.1pct.yaml",
        "randk-ef.yaml",
        "dgc.yaml",
        "powersgd-r4.yaml",
        "fp16.yaml",
        "bf16.yaml",
        "f32.yaml",
        "zstd.yaml",
        "resfed.yaml",
    ];

    #[test]
    fn pipeline_specs_give_valid_parameters_to_these_stages() {
        use gradcodec_sdk::abi::abi_stable::std_types::{RResult, RStr};
        let root = super::plugin_root();
        let manifest = (root.manifest())();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        let mut checked = 0;
        for file in PIPELINES {
            let text =
                std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let spec: serde_yaml::Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(
                spec["about"].as_str().is_some_and(|a| a.len() > 20),
                "{file}: about"
            );
            let stages = spec["stages"].as_sequence().expect("stages");
            for entry in stages {
                let (kind, body) = entry
                    .as_mapping()
                    .and_then(|m| m.iter().next())
                    .expect("stage entry");
                let kind = StageKind::parse(kind.as_str().expect("kind")).expect("kind");
                let name = body["use"].as_str().expect("use");
                let name = name.split('@').next().unwrap_or(name);
                if !manifest
                    .stages
                    .iter()
                    .any(|s| s.kind == kind && s.name.as_str() == name)
                {
                    continue;
                }
                let params = match body.get("params") {
                    Some(params) => serde_json::to_string(params).expect("params as JSON"),
                    None => "{}".to_string(),
                };
                match (root.canonical_config())(kind, RStr::from(name), RStr::from(params.as_str()))
                {
                    RResult::ROk(_) => checked += 1,
                    RResult::RErr(error) => panic!("{file}: {kind} `{name}`: {error}"),
                }
            }
        }
        assert!(checked > 0, "no pipeline uses this library");
    }

    /// Every stage the pipelines name exists in this family or the basic plugin,
    /// in the canonical order, and every stream role finds a coder.
    #[test]
    fn pipeline_specs_name_known_stages_in_order() {
        let known: [(&str, &[&str]); 4] = [
            ("predictor", &["res1", "ema", "last-sent"]),
            (
                "error-correction",
                &["error-feedback", "dgc", "memory-decay"],
            ),
            (
                "quantizer",
                &[
                    "qsgd",
                    "terngrad",
                    "sign",
                    "topk",
                    "randk",
                    "threshold",
                    "median",
                    "powersgd",
                    "fp16",
                    "bf16",
                    "raw",
                    "uniform",
                ],
            ),
            (
                "entropy-coder",
                &["ans", "elias-gamma", "golomb-rice", "zstd", "bitpack"],
            ),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        for file in PIPELINES {
            let text = std::fs::read_to_string(dir.join(file)).expect("pipeline");
            let spec: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
            assert_eq!(
                spec["name"].as_str(),
                file.strip_suffix(".yaml"),
                "{file}: name"
            );
            let mut last_kind = 0;
            let mut default_coder = false;
            for entry in spec["stages"].as_sequence().expect("stages") {
                let (kind, body) = entry
                    .as_mapping()
                    .and_then(|m| m.iter().next())
                    .expect("entry");
                let kind = kind.as_str().expect("kind");
                let position = known.iter().position(|(k, _)| *k == kind).expect("kind");
                assert!(position >= last_kind, "{file}: {kind} out of order");
                last_kind = position;
                let name = body["use"].as_str().expect("use");
                assert!(
                    known[position].1.contains(&name),
                    "{file}: unknown {kind} {name}"
                );
                if kind == "entropy-coder" && body.get("roles").is_none() {
                    default_coder = true;
                }
            }
            assert!(default_coder, "{file}: no default entropy coder");
        }
    }
}
