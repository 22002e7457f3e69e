//! `capture`: writes one real gradient or model delta as `.safetensors`, for
//! regression fixtures (the snapshot suite and codec tests read such files).
//!
//! The model is trained `warmup` SGD steps first (so the capture is not taken at
//! random initialization), then either the gradient of the next batch, or the
//! model delta over the next `steps` steps, is written as one update whose
//! tensors are the model's trainable parameters.

use std::path::Path;

use anyhow::Context;
use gradcodec::metrics::bits_per_entry;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::data::partition::Partition;
use crate::models::Model;
use crate::optim::Sgd;
use crate::params::{sub, tensor_to_vec, to_update, var_specs, HostState};
use crate::train::{epoch_batches, gradients, mix_seed, prepare, trainable};

/// What to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureKind {
    /// The gradient of one mini-batch.
    Gradient,
    /// The model delta over `steps` SGD steps.
    Delta,
}

impl std::str::FromStr for CaptureKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gradient" => Ok(CaptureKind::Gradient),
            "delta" => Ok(CaptureKind::Delta),
            _ => Err(format!("unknown capture {s:?}; expected gradient or delta")),
        }
    }
}

/// Captures one update with `cfg`'s data, model, seed and optimizer settings;
/// returns the number of entries written.
pub fn capture(
    cfg: &RunConfig,
    kind: CaptureKind,
    warmup: usize,
    steps: usize,
    output: &Path,
) -> anyhow::Result<usize> {
    let cfg = RunConfig {
        clients: 1,
        partition: Partition::Iid,
        ..cfg.clone()
    };
    cfg.validate()?;
    anyhow::ensure!(
        steps > 0 || kind == CaptureKind::Gradient,
        "--steps must be at least 1"
    );
    let _generator = crate::torch_rng::exclusive();
    tch::set_num_threads(cfg.threads as i32);
    let device = cfg.device.resolve().map_err(anyhow::Error::msg)?;
    let prep = prepare(&cfg, device)?;
    tch::manual_seed(cfg.seed as i64);
    let model = Model::new(cfg.model, prep.input, device).map_err(anyhow::Error::msg)?;
    let specs = var_specs(&model);
    let (names, params) = trainable(&model);
    let mut sgd = Sgd::new(cfg.lr, cfg.momentum, cfg.weight_decay, params.len());
    let shard = &prep.shards[0];
    let mut batches = Vec::new();
    let need = warmup + steps.max(1);
    let mut epoch = 0u64;
    while batches.len() < need {
        batches.extend(epoch_batches(
            shard,
            cfg.batch_size,
            mix_seed(&[cfg.seed, 0x4341, epoch]),
        ));
        epoch += 1;
    }
    let step = |batch: &[i64], sgd: &mut Sgd| {
        let (loss, grads) = gradients(&model, &names, &params, &prep.train, batch, None);
        sgd.step(&params, &grads);
        (loss, grads)
    };
    for b in &batches[..warmup] {
        step(b, &mut sgd);
    }
    let values: Vec<Vec<f32>> = match kind {
        CaptureKind::Gradient => {
            let (_, grads) =
                gradients(&model, &names, &params, &prep.train, &batches[warmup], None);
            grads.iter().map(tensor_to_vec).collect()
        }
        CaptureKind::Delta => {
            let before = HostState::read(&model);
            for b in &batches[warmup..warmup + steps] {
                step(b, &mut sgd);
            }
            sub(&HostState::read(&model).params, &before.params)
        }
    };
    let update = to_update(&specs, &values);
    if let Some(parent) = output.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    update
        .write(output)
        .with_context(|| format!("writing {}", output.display()))?;
    let entries = update.entries();
    let size = std::fs::metadata(output)?.len();
    eprintln!(
        "captured {} of {} ({} tensors, {entries} entries, {:.1} bits/entry on disk) into {}",
        match kind {
            CaptureKind::Gradient => "a gradient",
            CaptureKind::Delta => "a model delta",
        },
        cfg.model,
        update.tensors.len(),
        bits_per_entry(size, entries as u64),
        output.display()
    );
    Ok(entries)
}
