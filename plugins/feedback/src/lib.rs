//! gradcodec's error-feedback family and ResFed predictors:
//!
//! - [`error_feedback::ErrorFeedback`] error correction: classic error feedback,
//!   `a = r + γ·e`, `e = a - â` (γ = 1 by default);
//! - [`dgc::Dgc`] error correction: Deep Gradient Compression's momentum
//!   correction with momentum factor masking;
//! - [`res1::Res1`] predictor: ResFed Res-1, `S[-1] + ½(O[-1] - O[-2])`;
//! - [`ema::Ema`] predictor: exponential moving average of the reconstructions.

pub mod dgc;
pub mod ema;
pub mod error_feedback;
pub mod res1;

gradcodec_sdk::export_plugin! {
    library: "gradcodec-plugin-feedback",
    predictors: [res1::Res1, ema::Ema],
    error_corrections: [error_feedback::ErrorFeedback, dgc::Dgc],
    quantizers: [],
    entropy_coders: [],
}

#[cfg(test)]
mod tests {
    use gradcodec_sdk::abi::StageKind;

    #[test]
    fn every_stage_passes_the_conformance_kit() {
        gradcodec_sdk::conformance::check_library(super::plugin_root());
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
}
