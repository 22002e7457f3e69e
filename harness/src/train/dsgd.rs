//! Distributed SGD with compressed gradients (as in CO3).
//!
//! Every step, each of the K workers computes the gradient of its next
//! mini-batch on the shared model and sends it over its uplink stream; the
//! server averages the decoded gradients and takes one SGD-with-momentum step.
//! A "round" is `steps_per_round` steps (default: one pass over the smallest
//! shard), after which the model is evaluated. Worker k's batch at global step
//! t is batch `t mod n_k` of its epoch `t / n_k`'s seeded permutation, so the
//! schedule needs no saved position.
//!
//! Every step is one aggregation of the CEO limit ([`crate::ceo`]): the
//! workers' raw gradients against the decoded ones, weight `1/K` each; the
//! round adds the steps' bits.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use gradcodec::metrics::{relative_mse, relative_weighted_distortion};
use tch::Tensor;

use super::run::Ctx;
use super::{epoch_batches, gradients, mix_seed, AopStep};
use crate::ceo::{Aggregation, CeoRound};
use crate::checkpoint::Checkpoint;
use crate::codec::Link;
use crate::metrics::RoundRecord;
use crate::models::aop::AopCounts;
use crate::optim::Sgd;
use crate::params::{
    add_scaled, from_update, tensor_to_vec, to_update, zeros_like, HostState, VarSpec,
};

const TAG_WORKER: u64 = 0x4453;

/// The server's and workers' state between rounds (the model lives in the
/// context's model).
pub struct Dsgd {
    /// Worker-to-server streams.
    pub up: Link,
    /// The server's optimizer.
    pub sgd: Sgd,
    /// Mem-AOP-GD memory of each worker.
    pub aop_memory: Vec<BTreeMap<String, Tensor>>,
    /// Steps taken so far.
    pub steps: u64,
    /// Cached batches: (worker, epoch) → batches.
    cache: Vec<Option<(u64, Vec<Vec<i64>>)>>,
}

impl Dsgd {
    /// The state before the first step.
    pub fn new(ctx: &Ctx<'_>, up: Link) -> Dsgd {
        let cfg = ctx.cfg;
        Dsgd {
            up,
            sgd: Sgd::new(cfg.lr, cfg.momentum, cfg.weight_decay, ctx.params.len()),
            aop_memory: (0..cfg.clients).map(|_| BTreeMap::new()).collect(),
            steps: 0,
            cache: vec![None; cfg.clients],
        }
    }

    /// Steps per round.
    pub fn steps_per_round(ctx: &Ctx<'_>) -> usize {
        ctx.cfg.steps_per_round.unwrap_or_else(|| {
            let smallest = ctx.prep.shards.iter().map(Vec::len).min().unwrap_or(1);
            smallest.div_ceil(ctx.cfg.batch_size).max(1)
        })
    }

    fn batch(&mut self, ctx: &Ctx<'_>, k: usize, t: u64) -> Vec<i64> {
        let shard = &ctx.prep.shards[k];
        let per_epoch = shard.len().div_ceil(ctx.cfg.batch_size).max(1) as u64;
        let (epoch, within) = (t / per_epoch, (t % per_epoch) as usize);
        let fresh = !matches!(&self.cache[k], Some((e, _)) if *e == epoch);
        if fresh {
            let seed = mix_seed(&[ctx.cfg.seed, TAG_WORKER, k as u64, epoch]);
            self.cache[k] = Some((epoch, epoch_batches(shard, ctx.cfg.batch_size, seed)));
        }
        self.cache[k].as_ref().expect("filled above").1[within].clone()
    }

    /// Runs one round; the record lacks the evaluation and cumulative fields.
    pub fn round(&mut self, ctx: &mut Ctx<'_>, round: usize) -> anyhow::Result<RoundRecord> {
        let cfg = ctx.cfg;
        let k_workers = cfg.clients;
        let mut rec = RoundRecord {
            round,
            participants: k_workers,
            ..Default::default()
        };
        let (mut loss_sum, mut loss_n) = (0f64, 0usize);
        let mut counts = AopCounts::default();
        let (mut enc_s, mut dec_s, mut train_s) = (0f64, 0f64, 0f64);
        let mut param_entries = 0u64;
        let mut bounds = Vec::new();
        let lens: Vec<usize> = ctx
            .specs
            .iter()
            .filter(|s| s.trainable)
            .map(VarSpec::numel)
            .collect();
        for _ in 0..Self::steps_per_round(ctx) {
            let t = self.steps;
            let mut avg: Option<Vec<Vec<f32>>> = None;
            let mut bound = Aggregation::new(&ctx.names, &lens, k_workers);
            for k in 0..k_workers {
                let batch = self.batch(ctx, k, t);
                let t0 = Instant::now();
                let aop = cfg.mem_aop.as_ref().map(|config| AopStep {
                    config,
                    memory: &mut self.aop_memory[k],
                    seed: mix_seed(&[cfg.seed, TAG_WORKER, k as u64, t, 1]),
                    counts: &mut counts,
                });
                let (loss, grads) = gradients(
                    ctx.model,
                    &ctx.names,
                    &ctx.params,
                    &ctx.prep.train,
                    &batch,
                    aop,
                );
                let host: Vec<Vec<f32>> = grads.iter().map(tensor_to_vec).collect();
                train_s += t0.elapsed().as_secs_f64();
                loss_sum += loss;
                loss_n += 1;
                let update = to_update(&ctx.specs, &host);
                param_entries = update.entries() as u64;
                let d = self
                    .up
                    .send(k, &update)
                    .with_context(|| format!("round {round}, step {t}: uplink from worker {k}"))?;
                rec.uplink_bytes += d.bytes;
                rec.uplink_messages += 1;
                enc_s += d.encode_s;
                dec_s += d.decode_s;
                rec.rel_mse += relative_mse(&update, &d.decoded);
                rec.weighted_distortion +=
                    relative_weighted_distortion(&update, &d.decoded, cfg.distortion_m);
                let decoded = from_update(&ctx.specs, &d.decoded).map_err(anyhow::Error::msg)?;
                let acc = avg.get_or_insert_with(|| zeros_like(&decoded));
                let weight = 1.0 / k_workers as f32;
                add_scaled(acc, &decoded, weight);
                bound.add(f64::from(weight), host, &decoded);
            }
            bounds.push(bound.finish());
            let t0 = Instant::now();
            let avg = avg.expect("at least one worker");
            let grads: Vec<Tensor> = avg
                .iter()
                .zip(&ctx.params)
                .map(|(g, p)| {
                    Tensor::from_slice(g)
                        .view(p.size().as_slice())
                        .to_device(p.device())
                })
                .collect();
            self.sgd.step(&ctx.params, &grads);
            train_s += t0.elapsed().as_secs_f64();
            self.steps += 1;
        }
        let m = rec.uplink_messages.max(1) as f64;
        rec.uplink_bits_per_entry = gradcodec::metrics::bits_per_entry(
            rec.uplink_bytes,
            rec.uplink_messages * param_entries,
        );
        rec.rel_mse /= m;
        rec.weighted_distortion /= m;
        rec.train_loss = if loss_n > 0 {
            loss_sum / loss_n as f64
        } else {
            0.0
        };
        rec.encode_ms = enc_s * 1e3;
        rec.decode_ms = dec_s * 1e3;
        rec.train_s = train_s;
        rec.aop_saved_fraction = counts.saved_fraction();
        rec.ceo = CeoRound::from_steps(bounds);
        Ok(rec)
    }

    /// The model is the global model already.
    pub fn sync_model(&self, _ctx: &Ctx<'_>) {}

    /// Stores the state in a checkpoint.
    pub fn save(&self, ctx: &Ctx<'_>, ck: &mut Checkpoint) -> anyhow::Result<()> {
        let state = HostState::read(ctx.model);
        ck.put_list("global/params", &state.params);
        ck.put_list("global/buffers", &state.buffers);
        for (i, v) in self.sgd.velocity_host().into_iter().enumerate() {
            if let Some(v) = v {
                ck.floats.insert(format!("velocity/{i}"), v);
            }
        }
        ck.blobs
            .insert("dsgd/steps".into(), self.steps.to_le_bytes().to_vec());
        super::run::save_links(ck, &self.up, &Link::new(None, 0, false))?;
        super::run::save_aop(ck, &self.aop_memory);
        Ok(())
    }

    /// Restores the state from a checkpoint.
    pub fn load(&mut self, ctx: &Ctx<'_>, ck: &mut Checkpoint) -> anyhow::Result<()> {
        let current = HostState::read(ctx.model);
        let plens: Vec<usize> = current.params.iter().map(Vec::len).collect();
        let blens: Vec<usize> = current.buffers.iter().map(Vec::len).collect();
        HostState {
            params: ck.take_list("global/params", &plens)?,
            buffers: ck.take_list("global/buffers", &blens)?,
        }
        .write(ctx.model);
        let velocity: Vec<Option<Vec<f32>>> = (0..ctx.params.len())
            .map(|i| ck.floats.remove(&format!("velocity/{i}")))
            .collect();
        self.sgd.load_velocity(&ctx.params, &velocity);
        let steps: [u8; 8] = ck
            .blobs
            .remove("dsgd/steps")
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("checkpoint lacks the dsgd step count"))?;
        self.steps = u64::from_le_bytes(steps);
        super::run::load_links(ck, &ctx.specs, &mut self.up, &mut Link::new(None, 0, false))?;
        self.aop_memory = super::run::load_aop(ck, ctx)?;
        Ok(())
    }
}
