//! M22 on real gradients: the shipped `m22` pipeline (M = 2) must beat its MSE
//! reference `m20` (M = 0) on the M = 2 distortion it is designed for, at equal
//! or fewer bits, on every real fixture — the property the original model-only
//! design lost (0.222 against 0.205 on the LeNet-5 gradient, relative MSE 19).

use gradcodec::metrics::{relative_mse, relative_weighted_distortion};
use gradcodec::{PipelineSpec, PluginSearch, Registry, Update};
use std::path::{Path, PathBuf};

mod common;
use common::build_dir;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (bits per entry, relative MSE, relative M = 2 distortion) of one message.
fn measure(registry: &Registry, spec: &str, update: &Update) -> (f64, f64, f64) {
    let spec = PipelineSpec::from_file(root().join("pipelines").join(spec)).unwrap();
    let pipeline = registry.build(&spec).unwrap();
    let message = pipeline.encoder().encode(update).unwrap();
    let decoded = pipeline.decoder().decode(&message).unwrap();
    (
        8.0 * message.len() as f64 / update.entries() as f64,
        relative_mse(update, &decoded),
        relative_weighted_distortion(update, &decoded, 2.0),
    )
}

#[test]
fn m22_beats_m20_on_the_m2_distortion_at_no_more_bits() {
    common::library("gradcodec_plugin_lloyd_max");
    let registry = Registry::discover(&PluginSearch::only(vec![build_dir()], vec![])).unwrap();
    for fixture in [
        "lenet5-grad",
        "lenet5-fedavg-delta",
        "resfed-cnn-grad-early",
        "resfed-cnn-grad-late",
    ] {
        let path = root().join(format!("snapshots/fixtures/{fixture}.safetensors"));
        let update = Update::read(&path).unwrap();
        let (m20_bits, m20_mse, m20_d2) = measure(&registry, "m20.yaml", &update);
        let (m22_bits, m22_mse, m22_d2) = measure(&registry, "m22.yaml", &update);
        println!(
            "{fixture}: m20 {m20_bits:.4} bits/entry, rel. MSE {m20_mse:.3e}, d2 {m20_d2:.3e}; \
             m22 {m22_bits:.4} bits/entry, rel. MSE {m22_mse:.3e}, d2 {m22_d2:.3e}"
        );
        assert!(m22_bits <= m20_bits, "{fixture}: m22 sends more bits");
        assert!(
            m22_d2 < 0.5 * m20_d2,
            "{fixture}: m22's M = 2 distortion {m22_d2} is not well below m20's {m20_d2}"
        );
        // The weighted design trades MSE for d_2, but stays usable as an update.
        assert!(m22_mse < 10.0, "{fixture}: m22 relative MSE {m22_mse}");
    }
}
