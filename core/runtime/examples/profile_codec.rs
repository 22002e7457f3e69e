//! Loops one side of a pipeline for a profiler (`perf record`):
//!
//! ```sh
//! GRADCODEC_PLUGIN_PATH=target/release cargo run --release -p gradcodec --example profile_codec -- \
//!     pipelines/co3-fp4.yaml snapshots/fixtures/resfed-cnn-grad-late.safetensors encode 9 200
//! ```
//!
//! Arguments: spec, update file, `encode` or `decode`, how many copies of each
//! tensor to stack along its first axis, repetitions. Prints M entries/s.

use gradcodec::{NamedTensor, PipelineSpec, PluginSearch, Registry, Update};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, spec, input, side, copies, repetitions] = args.as_slice() else {
        anyhow::bail!("usage: profile_codec SPEC UPDATE encode|decode COPIES REPETITIONS");
    };
    let (copies, repetitions): (usize, usize) = (copies.parse()?, repetitions.parse()?);
    let registry = Registry::discover(&PluginSearch::from_env())?;
    let pipeline = registry.build(&PipelineSpec::from_file(spec)?)?;
    let update = Update::read(input)?;
    let tensors = update
        .tensors
        .iter()
        .map(|t| {
            let values: Vec<f32> = (0..copies).flat_map(|_| t.data.iter().copied()).collect();
            let mut shape = t.data.shape().to_vec();
            if shape.is_empty() {
                shape.push(1);
            }
            shape[0] *= copies;
            NamedTensor::from_vec(t.name.clone(), &shape, values)
        })
        .collect::<gradcodec::Result<Vec<_>>>()?;
    let update = Update::new(tensors);
    let mut encoder = pipeline.encoder();
    let message = encoder.encode(&update)?;
    let mut decoder = pipeline.decoder();
    let start = Instant::now();
    for _ in 0..repetitions {
        if side == "encode" {
            encoder.reset();
            std::hint::black_box(encoder.encode(&update)?);
        } else {
            decoder.reset();
            std::hint::black_box(decoder.decode(&message)?);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{side}: {:.1} M entries/s ({} entries, {repetitions} repetitions)",
        update.entries() as f64 * repetitions as f64 / seconds / 1e6,
        update.entries()
    );
    Ok(())
}
