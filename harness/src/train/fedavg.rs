//! Federated averaging with compressed links.
//!
//! Each round: a seeded sample of clients receives the global model over the
//! downlink (its own stream, or exactly when uncompressed), trains E local
//! epochs of SGD with momentum (momentum reset every round), and sends its
//! update over the uplink: the delta `local - start`, or the local model itself
//! for predictive pipelines (ResFed). The server averages what it decoded,
//! weighted by the clients' example counts. Batch-norm statistics travel raw
//! and are averaged the same way.
//!
//! With model payloads both links feed their predictors the opposite link's
//! trajectory: the uplink stream of client k observes the model k received, and
//! the downlink stream of k observes the model the server decoded from k, on
//! both ends.
//!
//! The round is one aggregation of the CEO limit ([`crate::ceo`]): the raw
//! deltas of the participants against the deltas the server decoded, weighted
//! as in the aggregate.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use gradcodec::metrics::{relative_mse, relative_weighted_distortion};
use gradcodec::Update;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::run::Ctx;
use super::{epoch_batches, gradients, mix_seed, AopStep};
use crate::ceo::{Aggregation, CeoRound};
use crate::checkpoint::Checkpoint;
use crate::codec::Link;
use crate::config::Payload;
use crate::metrics::RoundRecord;
use crate::models::aop::AopCounts;
use crate::optim::Sgd;
use crate::params::{add_scaled, from_update, sub, to_update, zeros_like, HostState};

/// Seed-mixing tags, so different uses of the seed never collide.
const TAG_PARTICIPANTS: u64 = 0x5041;
const TAG_LOCAL: u64 = 0x4c4f;

/// The server's and clients' state between rounds.
pub struct FedAvg {
    /// The global model.
    pub global: HostState,
    /// Client-to-server streams.
    pub up: Link,
    /// Server-to-client streams.
    pub down: Link,
    /// What the uplink carries (resolved: delta or model).
    pub payload: Payload,
    /// Mem-AOP-GD memory of each client.
    pub aop_memory: Vec<BTreeMap<String, Tensor>>,
}

impl FedAvg {
    /// The state before round 1: the initial model as the global model.
    pub fn new(ctx: &Ctx<'_>, up: Link, down: Link, payload: Payload) -> FedAvg {
        FedAvg {
            global: HostState::read(ctx.model),
            up,
            down,
            payload,
            aop_memory: (0..ctx.cfg.clients).map(|_| BTreeMap::new()).collect(),
        }
    }

    /// The clients taking part in `round` (sorted).
    pub fn participants(ctx: &Ctx<'_>, round: usize) -> Vec<usize> {
        let k = ctx.cfg.clients;
        let m = ((ctx.cfg.participation * k as f64).round() as usize).clamp(1, k);
        if m == k {
            return (0..k).collect();
        }
        let mut rng =
            ChaCha8Rng::seed_from_u64(mix_seed(&[ctx.cfg.seed, TAG_PARTICIPANTS, round as u64]));
        let mut chosen = sample(&mut rng, k, m).into_vec();
        chosen.sort_unstable();
        chosen
    }

    /// Runs one round; the record lacks the evaluation and cumulative fields.
    pub fn round(&mut self, ctx: &mut Ctx<'_>, round: usize) -> anyhow::Result<RoundRecord> {
        let cfg = ctx.cfg;
        let participants = Self::participants(ctx, round);
        let total: f64 = participants
            .iter()
            .map(|&k| ctx.prep.shards[k].len() as f64)
            .sum();
        let param_entries = self.global.param_entries() as u64;
        let buffer_bytes = 4 * self.global.buffer_entries() as u64;
        let global_update = to_update(&ctx.specs, &self.global.params);

        let mut agg = zeros_like(&self.global.params);
        let mut agg_buffers = zeros_like(&self.global.buffers);
        let mut rec = RoundRecord {
            round,
            participants: participants.len(),
            ..Default::default()
        };
        let (mut down_msg_bytes, mut down_msgs) = (0u64, 0u64);
        let (mut loss_sum, mut loss_n) = (0f64, 0usize);
        let mut counts = AopCounts::default();
        let (mut enc_s, mut dec_s, mut train_s) = (0f64, 0f64, 0f64);
        let lens: Vec<usize> = self.global.params.iter().map(Vec::len).collect();
        let mut bound = Aggregation::new(&ctx.names, &lens, participants.len());

        for &k in &participants {
            let w = (ctx.prep.shards[k].len() as f64 / total) as f32;
            // Downlink: the global model.
            let (start, start_update) = if self.down.pipeline().is_some() {
                let d = self
                    .down
                    .send(k, &global_update)
                    .with_context(|| format!("round {round}: downlink to client {k}"))?;
                rec.downlink_rel_mse += relative_mse(&global_update, &d.decoded);
                down_msg_bytes += d.bytes;
                down_msgs += 1;
                enc_s += d.encode_s;
                dec_s += d.decode_s;
                let start = from_update(&ctx.specs, &d.decoded).map_err(anyhow::Error::msg)?;
                (start, d.decoded)
            } else {
                down_msg_bytes += 4 * param_entries;
                down_msgs += 1;
                (self.global.params.clone(), global_update.clone())
            };
            rec.downlink_bytes += buffer_bytes;
            if self.payload == Payload::Model {
                self.up.observe(k, &start_update)?;
            }

            // Local training.
            let t0 = Instant::now();
            HostState {
                params: start.clone(),
                buffers: self.global.buffers.clone(),
            }
            .write(ctx.model);
            let mut sgd = Sgd::new(cfg.lr, cfg.momentum, cfg.weight_decay, ctx.params.len());
            let mut step = 0u64;
            for epoch in 0..cfg.local_epochs {
                let seed = mix_seed(&[cfg.seed, TAG_LOCAL, round as u64, k as u64, epoch as u64]);
                for batch in epoch_batches(&ctx.prep.shards[k], cfg.batch_size, seed) {
                    let aop = cfg.mem_aop.as_ref().map(|config| AopStep {
                        config,
                        memory: &mut self.aop_memory[k],
                        seed: mix_seed(&[seed, step]),
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
                    sgd.step(&ctx.params, &grads);
                    loss_sum += loss;
                    loss_n += 1;
                    step += 1;
                }
            }
            let local = HostState::read(ctx.model);
            train_s += t0.elapsed().as_secs_f64();

            // Uplink.
            let delta = sub(&local.params, &start);
            let update = match self.payload {
                Payload::Model => to_update(&ctx.specs, &local.params),
                _ => to_update(&ctx.specs, &delta),
            };
            let d = self
                .up
                .send(k, &update)
                .with_context(|| format!("round {round}: uplink from client {k}"))?;
            rec.uplink_bytes += d.bytes;
            rec.uplink_messages += 1;
            rec.uplink_buffer_bytes += buffer_bytes;
            enc_s += d.encode_s;
            dec_s += d.decode_s;
            let decoded = from_update(&ctx.specs, &d.decoded).map_err(anyhow::Error::msg)?;
            let decoded_delta = match self.payload {
                Payload::Model => Some(sub(&decoded, &start)),
                _ => None,
            };
            let (true_delta, got_delta): (Update, Update) = match &decoded_delta {
                Some(got) => (to_update(&ctx.specs, &delta), to_update(&ctx.specs, got)),
                None => (update, d.decoded.clone()),
            };
            rec.rel_mse += relative_mse(&true_delta, &got_delta);
            rec.weighted_distortion +=
                relative_weighted_distortion(&true_delta, &got_delta, cfg.distortion_m);
            bound.add(
                f64::from(w),
                delta,
                decoded_delta.as_deref().unwrap_or(&decoded),
            );
            if self.payload == Payload::Model {
                self.down.observe(k, &d.decoded)?;
            }
            // Model payload: agg = Σ w·x̂ (the new global model); delta: Σ w·δ̂.
            add_scaled(&mut agg, &decoded, w);
            add_scaled(&mut agg_buffers, &local.buffers, w);
        }

        if self.payload == Payload::Model {
            self.global.params = agg;
        } else {
            add_scaled(&mut self.global.params, &agg, 1.0);
        }
        if !self.global.buffers.is_empty() {
            self.global.buffers = agg_buffers;
        }

        let n = participants.len() as f64;
        rec.downlink_bytes += down_msg_bytes;
        rec.uplink_bits_per_entry = gradcodec::metrics::bits_per_entry(
            rec.uplink_bytes,
            rec.uplink_messages * param_entries,
        );
        rec.downlink_bits_per_entry =
            gradcodec::metrics::bits_per_entry(down_msg_bytes, down_msgs * param_entries);
        rec.rel_mse /= n;
        rec.weighted_distortion /= n;
        rec.downlink_rel_mse /= n;
        rec.train_loss = if loss_n > 0 {
            loss_sum / loss_n as f64
        } else {
            0.0
        };
        rec.encode_ms = enc_s * 1e3;
        rec.decode_ms = dec_s * 1e3;
        rec.train_s = train_s;
        rec.aop_saved_fraction = counts.saved_fraction();
        rec.ceo = CeoRound::from_steps(vec![bound.finish()]);
        Ok(rec)
    }

    /// Loads the global model into the model (for evaluation).
    pub fn sync_model(&self, ctx: &Ctx<'_>) {
        self.global.write(ctx.model);
    }

    /// Stores the state in a checkpoint.
    pub fn save(&self, ctx: &Ctx<'_>, ck: &mut Checkpoint) -> anyhow::Result<()> {
        ck.put_list("global/params", &self.global.params);
        ck.put_list("global/buffers", &self.global.buffers);
        super::run::save_links(ck, &self.up, &self.down)?;
        super::run::save_aop(ck, &self.aop_memory);
        let _ = ctx;
        Ok(())
    }

    /// Restores the state from a checkpoint.
    pub fn load(&mut self, ctx: &Ctx<'_>, ck: &mut Checkpoint) -> anyhow::Result<()> {
        let plens: Vec<usize> = self.global.params.iter().map(Vec::len).collect();
        let blens: Vec<usize> = self.global.buffers.iter().map(Vec::len).collect();
        self.global.params = ck.take_list("global/params", &plens)?;
        self.global.buffers = ck.take_list("global/buffers", &blens)?;
        super::run::load_links(ck, &ctx.specs, &mut self.up, &mut self.down)?;
        self.aop_memory = super::run::load_aop(ck, ctx)?;
        Ok(())
    }
}
