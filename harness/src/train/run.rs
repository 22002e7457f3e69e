//! Running one configuration end to end: data, model, links, rounds,
//! checkpoints and resume, progress, and the outputs under `runs/<name>/`:
//! `config.json` (resolved), `metrics.csv`, `summary.json`, and the plots
//! `accuracy_vs_bits.{png,svg}`, `accuracy_vs_rounds.{png,svg}` and
//! `bits_vs_ceo.{png,svg}`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use gradcodec::{Pipeline, Registry};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tch::Tensor;

use super::dsgd::Dsgd;
use super::fedavg::FedAvg;
use super::{evaluate, mix_seed, prepare, trainable, Prepared};
use crate::checkpoint::Checkpoint;
use crate::codec::{discover_registry, has_predictor, load_pipeline, Link};
use crate::config::{Mode, Payload, RunConfig};
use crate::metrics::{self, Divergence, RoundRecord, Summary};
use crate::models::Model;
use crate::params::{var_specs, VarSpec};
use crate::plot;

/// What a round of training works with.
pub struct Ctx<'a> {
    /// The configuration.
    pub cfg: &'a RunConfig,
    /// Data on the device.
    pub prep: &'a Prepared,
    /// The model being trained (a client's copy in fedavg, the global model in dsgd).
    pub model: &'a Model,
    /// The model's variables.
    pub specs: Vec<VarSpec>,
    /// Names of the trainable parameters.
    pub names: Vec<String>,
    /// The trainable parameters.
    pub params: Vec<Tensor>,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parent folder of the run folder.
    pub out_dir: PathBuf,
    /// Discard an existing checkpoint instead of resuming from it.
    pub fresh: bool,
    /// Stop after this round as if interrupted (tests and demos of resume).
    pub halt_after: Option<usize>,
    /// Show progress (a bar on a terminal, a line per round otherwise).
    pub progress: bool,
    /// A finished run to compare with (its folder).
    pub baseline: Option<PathBuf>,
    /// Keep a copy of every coded message under `<run>/messages/`.
    pub save_messages: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out_dir: PathBuf::from("runs"),
            fresh: false,
            halt_after: None,
            progress: true,
            baseline: None,
            save_messages: false,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The run folder.
    pub dir: PathBuf,
    /// Records of rounds 0..=last.
    pub records: Vec<RoundRecord>,
    /// The summary (None when the run stopped early).
    pub summary: Option<Summary>,
}

enum State {
    FedAvg(FedAvg),
    Dsgd(Dsgd),
}

impl State {
    fn round(&mut self, ctx: &mut Ctx<'_>, r: usize) -> anyhow::Result<RoundRecord> {
        match self {
            State::FedAvg(s) => s.round(ctx, r),
            State::Dsgd(s) => s.round(ctx, r),
        }
    }
    fn sync_model(&self, ctx: &Ctx<'_>) {
        match self {
            State::FedAvg(s) => s.sync_model(ctx),
            State::Dsgd(s) => s.sync_model(ctx),
        }
    }
    fn save(&self, ctx: &Ctx<'_>, ck: &mut Checkpoint) -> anyhow::Result<()> {
        match self {
            State::FedAvg(s) => s.save(ctx, ck),
            State::Dsgd(s) => s.save(ctx, ck),
        }
    }
    fn load(&mut self, ctx: &Ctx<'_>, ck: &mut Checkpoint) -> anyhow::Result<()> {
        match self {
            State::FedAvg(s) => s.load(ctx, ck),
            State::Dsgd(s) => s.load(ctx, ck),
        }
    }
}

/// Stores both links' codec states and warm-up updates.
pub fn save_links(ck: &mut Checkpoint, up: &Link, down: &Link) -> anyhow::Result<()> {
    for (dir, link) in [("up", up), ("down", down)] {
        for (k, offset) in link.offsets().iter().enumerate() {
            if let Some(u) = offset {
                for (i, t) in u.tensors.iter().enumerate() {
                    ck.floats.insert(
                        format!("warmup/{dir}/{k}/{i}"),
                        t.data.iter().copied().collect(),
                    );
                }
            }
        }
        for (k, (e, d)) in link.save_state()?.into_iter().enumerate() {
            ck.blobs.insert(format!("codec/{dir}/{k}/encoder"), e);
            ck.blobs.insert(format!("codec/{dir}/{k}/decoder"), d);
        }
    }
    Ok(())
}

/// Restores both links' codec states and warm-up updates (`specs`: the model's
/// variables, which shape the warm-up updates).
pub fn load_links(
    ck: &mut Checkpoint,
    specs: &[VarSpec],
    up: &mut Link,
    down: &mut Link,
) -> anyhow::Result<()> {
    let trainable: Vec<&VarSpec> = specs.iter().filter(|s| s.trainable).collect();
    for (dir, link) in [("up", up), ("down", down)] {
        let mut offsets = Vec::new();
        for k in 0..link.offsets().len() {
            if !ck.floats.contains_key(&format!("warmup/{dir}/{k}/0")) {
                offsets.push(None);
                continue;
            }
            let lens: Vec<usize> = trainable.iter().map(|s| s.numel()).collect();
            let values = ck.take_list(&format!("warmup/{dir}/{k}"), &lens)?;
            offsets.push(Some(crate::params::to_update(specs, &values)));
        }
        link.set_offsets(offsets);
        let mut states = Vec::new();
        for k in 0..link.streams() {
            let mut get = |side: &str| {
                ck.blobs
                    .remove(&format!("codec/{dir}/{k}/{side}"))
                    .ok_or_else(|| anyhow::anyhow!("checkpoint lacks the {dir}link {side} {k}"))
            };
            states.push((get("encoder")?, get("decoder")?));
        }
        link.load_state(&states)?;
    }
    Ok(())
}

/// Stores the learners' Mem-AOP memories.
pub fn save_aop(ck: &mut Checkpoint, memory: &[BTreeMap<String, Tensor>]) {
    for (k, m) in memory.iter().enumerate() {
        for (layer, t) in m {
            ck.floats
                .insert(format!("aop/{k}/{layer}"), crate::params::tensor_to_vec(t));
        }
    }
}

/// Restores the learners' Mem-AOP memories (shaped like their layers' weights).
pub fn load_aop(
    ck: &mut Checkpoint,
    ctx: &Ctx<'_>,
) -> anyhow::Result<Vec<BTreeMap<String, Tensor>>> {
    let mut out: Vec<BTreeMap<String, Tensor>> =
        (0..ctx.cfg.clients).map(|_| BTreeMap::new()).collect();
    let keys: Vec<String> = ck
        .floats
        .keys()
        .filter(|k| k.starts_with("aop/"))
        .cloned()
        .collect();
    for key in keys {
        let values = ck.floats.remove(&key).expect("key listed above");
        let rest = &key["aop/".len()..];
        let (k, layer) = rest
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("checkpoint key {key} is malformed"))?;
        let k: usize = k.parse().with_context(|| format!("checkpoint key {key}"))?;
        let spec = ctx.specs.iter().find(|s| s.name == layer).ok_or_else(|| {
            anyhow::anyhow!("checkpoint Mem-AOP memory for unknown layer {layer}")
        })?;
        anyhow::ensure!(
            values.len() == spec.numel() && k < out.len(),
            "checkpoint Mem-AOP memory {key} does not fit the model"
        );
        let shape: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
        out[k].insert(
            layer.to_string(),
            Tensor::from_slice(&values)
                .view(shape.as_slice())
                .to_device(ctx.prep.device),
        );
    }
    Ok(out)
}

/// The payload a run actually sends.
pub fn resolve_payload(cfg: &RunConfig, uplink: Option<&Arc<Pipeline>>) -> Payload {
    match (cfg.mode, cfg.uplink_payload) {
        (Mode::Dsgd, _) => Payload::Delta,
        (_, Payload::Auto) => {
            if uplink.is_some_and(|p| has_predictor(p)) {
                Payload::Model
            } else {
                Payload::Delta
            }
        }
        (_, p) => p,
    }
}

fn pipeline_json(p: Option<&Arc<Pipeline>>, spec: Option<&Path>) -> serde_json::Value {
    match p {
        None => json!(null),
        Some(p) => json!({
            "spec": spec.map(|s| s.display().to_string()),
            "name": p.name(),
            "about": p.about(),
            "fingerprint": format!("{:016x}", p.fingerprint()),
            "lossless": p.is_lossless(),
            "stateful": p.is_stateful(),
            "canonical": serde_json::from_str::<serde_json::Value>(p.codec_json()).unwrap_or(json!(p.codec_json())),
        }),
    }
}

/// Reads a finished run's records (from its `metrics.csv`) and summary.
pub fn read_run(dir: &Path) -> anyhow::Result<(Vec<RoundRecord>, Summary)> {
    let summary: Summary = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json"))
            .with_context(|| format!("baseline {}: no summary.json", dir.display()))?,
    )
    .with_context(|| format!("baseline {}/summary.json", dir.display()))?;
    let records = metrics::read_csv(&dir.join("metrics.csv"))?;
    Ok((records, summary))
}

/// Runs (or resumes) one configuration. `registry` is used for the pipelines
/// (discovered when None and a pipeline is configured).
pub fn run(
    cfg: &RunConfig,
    registry: Option<&Registry>,
    opts: &RunOptions,
) -> anyhow::Result<RunResult> {
    cfg.validate()?;
    let _generator = crate::torch_rng::exclusive();
    tch::set_num_threads(cfg.threads as i32);
    let device = cfg.device.resolve().map_err(anyhow::Error::msg)?;
    let owned;
    let registry = match (registry, cfg.uplink.is_some() || cfg.downlink.is_some()) {
        (Some(r), _) => Some(r),
        (None, true) => {
            owned = discover_registry()?;
            Some(&owned)
        }
        (None, false) => None,
    };
    let load = |spec: &Option<PathBuf>| -> anyhow::Result<Option<Arc<Pipeline>>> {
        match (spec, registry) {
            (Some(s), Some(r)) => Ok(Some(load_pipeline(r, s)?)),
            _ => Ok(None),
        }
    };
    let up_pipeline = load(&cfg.uplink)?;
    let down_pipeline = load(&cfg.downlink)?;
    let warnings: Vec<String> = [("uplink", &up_pipeline), ("downlink", &down_pipeline)]
        .into_iter()
        .filter_map(|(link, pipeline)| mode_warning(pipeline.as_deref()?, cfg.mode, link))
        .collect();
    for warning in &warnings {
        eprintln!("warning: {}: {warning}", cfg.name);
    }
    let payload = resolve_payload(cfg, up_pipeline.as_ref());

    let prep = prepare(cfg, device)?;
    tch::manual_seed(cfg.seed as i64);
    let model = Model::new(cfg.model, prep.input, device).map_err(anyhow::Error::msg)?;
    let specs = var_specs(&model);
    let (names, params) = trainable(&model);
    let mut ctx = Ctx {
        cfg,
        prep: &prep,
        model: &model,
        specs,
        names,
        params,
    };
    let k = cfg.clients;
    let mut state = match cfg.mode {
        Mode::Fedavg => State::FedAvg(FedAvg::new(
            &ctx,
            Link::new(up_pipeline.clone(), k, payload == Payload::Model),
            Link::new(down_pipeline.clone(), k, true),
            payload,
        )),
        Mode::Dsgd => State::Dsgd(Dsgd::new(&ctx, Link::new(up_pipeline.clone(), k, false))),
    };

    let dir = opts.out_dir.join(&cfg.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if opts.save_messages {
        let messages = dir.join("messages");
        if opts.fresh {
            let _ = std::fs::remove_dir_all(&messages);
        }
        match &mut state {
            State::FedAvg(s) => {
                s.up.save_messages(&messages, "up")?;
                s.down.save_messages(&messages, "down")?;
            }
            State::Dsgd(s) => s.up.save_messages(&messages, "up")?,
        }
    }
    let ck_path = dir.join("checkpoint.safetensors");
    // The configuration (with the specs' text) and the built pipelines (stage
    // versions and canonical parameters): a checkpoint resumes only under both.
    let fingerprint = format!(
        "{}-{:016x}-{:016x}",
        cfg.fingerprint(),
        up_pipeline.as_ref().map_or(0, |p| p.fingerprint()),
        down_pipeline.as_ref().map_or(0, |p| p.fingerprint())
    );
    let mut records: Vec<RoundRecord> = Vec::new();
    if opts.fresh {
        for f in ["checkpoint.safetensors", "metrics.csv", "summary.json"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    } else if ck_path.exists() {
        let mut ck = Checkpoint::load(&ck_path)?;
        if ck.fingerprint != fingerprint {
            anyhow::bail!(
                "{} holds a checkpoint of another configuration (fingerprint {} here, {} there); \
                 pass --fresh to start over, or choose another --name",
                dir.display(),
                fingerprint,
                ck.fingerprint
            );
        }
        if ck.round > cfg.rounds {
            anyhow::bail!(
                "{} is already at round {}, beyond rounds = {}; pass --fresh to start over",
                dir.display(),
                ck.round,
                cfg.rounds
            );
        }
        state.load(&ctx, &mut ck)?;
        records = std::mem::take(&mut ck.records);
        if opts.progress {
            eprintln!("{}: resuming after round {}", cfg.name, ck.round);
        }
    }

    let param_entries: usize = ctx
        .specs
        .iter()
        .filter(|s| s.trainable)
        .map(VarSpec::numel)
        .sum();
    let buffer_entries: usize = ctx
        .specs
        .iter()
        .filter(|s| !s.trainable)
        .map(VarSpec::numel)
        .sum();
    let resolved = json!({
        "config": cfg,
        "resolved": {
            "uplink_payload": payload,
            "device": format!("{device:?}"),
            "model_parameters": param_entries,
            "model_buffers": buffer_entries,
            "train_examples": prep.train.len(),
            "test_examples": prep.test.len(),
            "shard_sizes": prep.shards.iter().map(Vec::len).collect::<Vec<_>>(),
            "uplink_pipeline": pipeline_json(up_pipeline.as_ref(), cfg.uplink.as_deref()),
            "downlink_pipeline": pipeline_json(down_pipeline.as_ref(), cfg.downlink.as_deref()),
            "fingerprint": fingerprint,
            "harness_version": env!("CARGO_PKG_VERSION"),
            "warnings": &warnings,
        }
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&resolved)?,
    )
    .context("writing config.json")?;

    if records.is_empty() {
        state.sync_model(&ctx);
        let (acc, loss) = evaluate(&model, &prep.test);
        records.push(RoundRecord {
            round: 0,
            test_accuracy: acc,
            test_loss: loss,
            ..Default::default()
        });
    }
    let start = records.last().map(|r| r.round).unwrap_or(0) + 1;

    let bar = progress_bar(cfg, opts, start - 1);
    let mut diverged = None;
    for r in start..=cfg.rounds {
        let t0 = Instant::now();
        tch::manual_seed(mix_seed(&[cfg.seed, r as u64]) as i64);
        let mut rec = match state.round(&mut ctx, r) {
            Ok(rec) => rec,
            Err(error) => match non_finite_update(&error) {
                Some(reason) => {
                    diverged = Some(Divergence { round: r, reason });
                    break;
                }
                None => return Err(error),
            },
        };
        state.sync_model(&ctx);
        let (acc, loss) = evaluate(&model, &prep.test);
        rec.test_accuracy = acc;
        rec.test_loss = loss;
        if !(rec.train_loss.is_finite() && rec.test_loss.is_finite()) {
            diverged = Some(Divergence {
                round: r,
                reason: format!(
                    "non-finite loss (train {}, test {})",
                    rec.train_loss, rec.test_loss
                ),
            });
            break;
        }
        let prev = records.last().expect("round 0 recorded");
        rec.cum_uplink_bits =
            prev.cum_uplink_bits + 8.0 * (rec.uplink_bytes + rec.uplink_buffer_bytes) as f64;
        rec.cum_downlink_bits = prev.cum_downlink_bits + 8.0 * rec.downlink_bytes as f64;
        rec.wall_s = t0.elapsed().as_secs_f64();
        report_round(&bar, opts.progress, cfg, &rec);
        records.push(rec);

        let mut ck = Checkpoint {
            fingerprint: fingerprint.clone(),
            round: r,
            records: records.clone(),
            ..Default::default()
        };
        state.save(&ctx, &mut ck)?;
        ck.save(&ck_path)?;
        metrics::write_csv(&dir.join("metrics.csv"), &records).context("writing metrics.csv")?;
        if opts.halt_after == Some(r) && r < cfg.rounds {
            if let Some(b) = &bar {
                b.abandon_with_message(format!("halted after round {r}"));
            }
            return Ok(RunResult {
                dir,
                records,
                summary: None,
            });
        }
    }
    if let Some(b) = &bar {
        match &diverged {
            Some(d) => {
                b.abandon_with_message(format!("diverged at round {}: {}", d.round, d.reason))
            }
            None => b.finish(),
        }
    } else if let Some(d) = &diverged {
        eprintln!("{}: diverged at round {}: {}", cfg.name, d.round, d.reason);
    }
    metrics::write_csv(&dir.join("metrics.csv"), &records).context("writing metrics.csv")?;

    let mut summary = metrics::summarize(&cfg.name, &records, cfg.target_accuracy, param_entries);
    summary.diverged = diverged;
    summary.uplink_pipeline = up_pipeline
        .as_ref()
        .map_or("none".into(), |p| p.name().to_string());
    summary.downlink_pipeline = down_pipeline
        .as_ref()
        .map_or("none".into(), |p| p.name().to_string());
    summary.uplink_lossless = up_pipeline.as_ref().is_none_or(|p| p.is_lossless());
    if let Some(base) = &opts.baseline {
        let (brecords, bsummary) = read_run(base)?;
        metrics::compare_with_baseline(
            &mut summary,
            &records,
            &base.display().to_string(),
            &brecords,
            &bsummary,
        );
    }
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )
    .context("writing summary.json")?;
    plot::run_plots(&dir, &cfg.name, &records, cfg.target_accuracy)?;
    Ok(RunResult {
        dir,
        records,
        summary: Some(summary),
    })
}

/// A warning when the spec says the pipeline was designed for the other mode
/// (`meant_for: dsgd` in a FedAvg run, or `fedavg` in a DSGD run).
fn mode_warning(pipeline: &Pipeline, mode: Mode, link: &str) -> Option<String> {
    use gradcodec::spec::MeantFor;
    let (meant, running) = match (pipeline.meant_for(), mode) {
        (MeantFor::Dsgd, Mode::Fedavg) => ("per-step gradients (dsgd)", "fedavg"),
        (MeantFor::Fedavg, Mode::Dsgd) => ("FedAvg deltas or models (fedavg)", "dsgd"),
        _ => return None,
    };
    Some(format!(
        "the {link} pipeline `{}` is meant for {meant}, and this run is {running}: \
         expect it to do worse than in its own mode",
        pipeline.name()
    ))
}

/// The codec's refusal of an update with NaN or infinite values (training
/// diverged), if that is what `error` is.
fn non_finite_update(error: &anyhow::Error) -> Option<String> {
    error
        .chain()
        .find_map(|cause| match cause.downcast_ref::<gradcodec::Error>() {
            Some(gradcodec::Error::Update(message)) if message.contains("NaN or infinite") => {
                Some(format!("non-finite update: {message}"))
            }
            _ => None,
        })
}

fn progress_bar(cfg: &RunConfig, opts: &RunOptions, done: usize) -> Option<ProgressBar> {
    if !opts.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(cfg.rounds as u64).with_position(done as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(cfg.name.clone());
    Some(bar)
}

fn report_round(bar: &Option<ProgressBar>, show: bool, cfg: &RunConfig, r: &RoundRecord) {
    if !show {
        return;
    }
    let line = format!(
        "acc {:.4} loss {:.4} | up {:.3} MB ({:.3} bits/entry) | {:.1}s",
        r.test_accuracy,
        r.test_loss,
        r.cum_uplink_bits / 8e6,
        r.uplink_bits_per_entry,
        r.wall_s
    );
    match bar {
        Some(b) => {
            b.set_message(line);
            b.inc(1);
        }
        None => eprintln!("{} round {}/{}: {line}", cfg.name, r.round, cfg.rounds),
    }
}
