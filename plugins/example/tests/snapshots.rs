//! How a plugin author pins their own stage's output: encode the project's real
//! gradient fixtures through a pipeline that uses the stage (loaded from its
//! built .so), and snapshot bits, error, message hash and side info with insta.
//! Review intended changes with `cargo insta review` (docs/snapshots.md).

use gradcodec::PipelineSpec;
use gradcodec_snapshots::{build_registry, fixtures, sequences, snapshot_rounds, snapshot_update};

const SPEC: &str = "name: fixed-step-example\nabout: the example plugin's quantizer, packed\nstages:\n  - quantizer: { use: fixed-step, params: { step: 0.0005, max_level: 255 } }\n  - entropy-coder: { use: bitpack }\n";

#[test]
fn fixed_step_on_the_project_fixtures() {
    let registry = build_registry();
    let pipeline = registry
        .build(&PipelineSpec::parse(SPEC, "fixed-step-example.yaml").unwrap())
        .unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_omit_expression(true);
    settings.bind(|| {
        let (name, update) = fixtures()
            .into_iter()
            .find(|(n, _)| n == "lenet5-grad")
            .expect("lenet5-grad fixture");
        insta::assert_yaml_snapshot!(
            format!("fixed-step@{name}"),
            snapshot_update(&pipeline, &update).unwrap()
        );
        let (name, rounds) = sequences().into_iter().next().expect("a fixture sequence");
        insta::assert_yaml_snapshot!(
            format!("fixed-step@{name}-rounds"),
            snapshot_rounds(&pipeline, &rounds).unwrap()
        );
    });
}
