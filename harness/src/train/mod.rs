//! Training: data on the device, evaluation, mini-batches, gradient steps, and
//! the two modes ([`fedavg`], [`dsgd`]) driven round by round by [`run`].
//!
//! Everything random is derived from the run's seed and the position in the run
//! (round, client, epoch, step) through [`mix_seed`], never from a stream whose
//! position would have to be saved, so a resumed run repeats exactly what the
//! uninterrupted one does.

pub mod dsgd;
pub mod fedavg;
pub mod run;

use std::collections::BTreeMap;

use anyhow::Context;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::config::RunConfig;
use crate::data::{self, partition, Dataset, DeviceSplit};
use crate::models::aop::{AopConfig, AopCounts};
use crate::models::{InputShape, Model};

/// Mixes several integers into one seed (SplitMix64 steps).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for &p in parts {
        h ^= p;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h = z ^ (z >> 31);
    }
    h
}

/// The data of a run, on its device, split among its clients.
pub struct Prepared {
    /// Device of the tensors.
    pub device: Device,
    /// Training split.
    pub train: DeviceSplit,
    /// Test split.
    pub test: DeviceSplit,
    /// Training-example indices of each client.
    pub shards: Vec<Vec<i64>>,
    /// Input shape and classes.
    pub input: InputShape,
}

/// Loads the data set, moves it to the device, and partitions it.
pub fn prepare(cfg: &RunConfig, device: Device) -> anyhow::Result<Prepared> {
    let mut ds = Dataset::load(cfg.dataset, cfg.data_dir.as_deref())
        .with_context(|| format!("loading data set {}", cfg.dataset.name()))?;
    ds.limit(cfg.train_limit, cfg.test_limit);
    let stats = ds.channel_stats();
    let parts = partition::split(
        &ds.train.labels,
        ds.num_classes,
        cfg.clients,
        cfg.partition,
        cfg.seed,
    )
    .map_err(|m| anyhow::anyhow!("partition: {m}"))?;
    let input = InputShape {
        channels: ds.channels as i64,
        height: ds.height as i64,
        width: ds.width as i64,
        classes: ds.num_classes as i64,
    };
    Ok(Prepared {
        device,
        train: data::to_device(&ds, &ds.train, &stats, device),
        test: data::to_device(&ds, &ds.test, &stats, device),
        shards: parts
            .into_iter()
            .map(|p| p.into_iter().map(|i| i as i64).collect())
            .collect(),
        input,
    })
}

/// Test accuracy and mean cross-entropy of `model` on `split`.
pub fn evaluate(model: &Model, split: &DeviceSplit) -> (f64, f64) {
    let _guard = tch::no_grad_guard();
    let n = split.len() as i64;
    let (mut correct, mut loss) = (0f64, 0f64);
    let batch = 1000;
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let x = split.images.narrow(0, start, len);
        let y = split.labels.narrow(0, start, len);
        let logits = model.forward(&x, false);
        loss += logits
            .cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0)
            .double_value(&[]);
        correct += logits
            .argmax(-1, false)
            .eq_tensor(&y)
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        start += len;
    }
    (correct / n as f64, loss / n as f64)
}

/// One epoch's mini-batches of a shard, shuffled with `seed` (the last batch
/// may be smaller).
pub fn epoch_batches(shard: &[i64], batch: usize, seed: u64) -> Vec<Vec<i64>> {
    let mut order = shard.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.chunks(batch).map(<[i64]>::to_vec).collect()
}

/// The trainable parameters of a model, with their names, in model order.
pub fn trainable(model: &Model) -> (Vec<String>, Vec<Tensor>) {
    model
        .variables()
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .unzip()
}

/// Mem-AOP-GD state passed to a gradient computation.
pub struct AopStep<'a> {
    /// Settings.
    pub config: &'a AopConfig,
    /// The learner's memory (one matrix per linear layer).
    pub memory: &'a mut BTreeMap<String, Tensor>,
    /// Seed of this step (random policy).
    pub seed: u64,
    /// Multiply-add counts, accumulated.
    pub counts: &'a mut AopCounts,
}

/// Forward and backward on one batch: the loss and one gradient per trainable
/// parameter (Mem-AOP-GD gradients for the linear weights when `aop` is given).
/// The gradients are fresh tensors, safe to keep.
pub fn gradients(
    model: &Model,
    names: &[String],
    params: &[Tensor],
    split: &DeviceSplit,
    batch: &[i64],
    aop: Option<AopStep<'_>>,
) -> (f64, Vec<Tensor>) {
    for p in params {
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
    let idx = Tensor::from_slice(batch).to_device(split.images.device());
    let x = split.images.index_select(0, &idx);
    let y = split.labels.index_select(0, &idx);
    model.set_aop(aop.is_some());
    let logits = model.forward(&x, true);
    let loss = logits.cross_entropy_for_logits(&y);
    loss.backward();
    let mut overrides: BTreeMap<String, Tensor> = BTreeMap::new();
    if let Some(step) = aop {
        let mut tape = model.aop_tape();
        if let Some(tape) = tape.as_mut() {
            overrides = tape
                .weight_gradients(step.config, step.memory, step.seed, step.counts)
                .into_iter()
                .collect();
        }
    }
    model.set_aop(false);
    let grads = names
        .iter()
        .zip(params)
        .map(|(n, p)| match overrides.remove(n) {
            Some(g) => g,
            None => {
                let g = p.grad();
                if g.defined() {
                    g.detach().copy()
                } else {
                    p.zeros_like()
                }
            }
        })
        .collect();
    (loss.double_value(&[]), grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_batches_are_deterministic() {
        assert_eq!(mix_seed(&[1, 2, 3]), mix_seed(&[1, 2, 3]));
        assert_ne!(mix_seed(&[1, 2, 3]), mix_seed(&[1, 3, 2]));
        let shard: Vec<i64> = (0..10).collect();
        let a = epoch_batches(&shard, 4, 7);
        assert_eq!(a, epoch_batches(&shard, 4, 7));
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<i64> = a.concat();
        all.sort_unstable();
        assert_eq!(all, shard);
    }
}
