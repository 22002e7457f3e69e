//! The command line: `train`, `sweep`, `capture`, `models`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::capture::CaptureKind;
use crate::config::{DeviceChoice, Mode, Payload, RunConfig};
use crate::data::partition::Partition;
use crate::data::DatasetKind;
use crate::models::aop::{AopConfig, AopPolicy};
use crate::models::ModelKind;

/// gradcodec's training harness: accuracy against the bits really sent.
#[derive(Debug, Parser)]
#[command(name = "gradcodec-harness", version, about, args_override_self = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one configuration (resumes from runs/<name>/checkpoint.safetensors).
    Train {
        /// Run settings.
        #[command(flatten)]
        run: RunArgs,
        /// Uplink pipeline spec (default: uncompressed f32).
        #[arg(long)]
        uplink: Option<PathBuf>,
        /// A finished run folder to compare with (accuracy loss, bits to target).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Output settings.
        #[command(flatten)]
        out: OutArgs,
    },
    /// Run the same configuration with several uplink pipelines and compare.
    Sweep {
        /// Run settings (--name names the sweep folder).
        #[command(flatten)]
        run: RunArgs,
        /// Uplink pipeline specs (repeat, or comma-separate); `none` = uncompressed.
        #[arg(long = "pipeline", required = true, value_delimiter = ',')]
        pipelines: Vec<String>,
        /// The entry the others are compared with (default: the first).
        #[arg(long)]
        baseline: Option<String>,
        /// Output settings.
        #[command(flatten)]
        out: OutArgs,
    },
    /// Write one real gradient or model delta as .safetensors (fixtures).
    Capture {
        /// Run settings (data, model, seed, batch size, lr).
        #[command(flatten)]
        run: RunArgs,
        /// gradient or delta.
        #[arg(long, default_value = "gradient")]
        what: CaptureKind,
        /// SGD steps before the capture.
        #[arg(long, default_value_t = 50)]
        warmup: usize,
        /// Steps the delta spans.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Output file (.safetensors, or .npy for a one-tensor update).
        #[arg(long)]
        output: PathBuf,
    },
    /// Compare runs of several seeds: every `<pipeline>@seed<N>` folder of a
    /// directory (each a `train` run), as mean and spread over the seeds, in
    /// comparison.md and comparison.{png,svg} (mean curves with min-max bands).
    Aggregate {
        /// The folder holding the `<pipeline>@seed<N>` runs.
        #[arg(long)]
        dir: PathBuf,
        /// The pipeline the savings are measured against.
        #[arg(long, default_value = "f32")]
        baseline: String,
        /// The accuracy "bits to target" counts to.
        #[arg(long)]
        target_accuracy: f64,
        /// The table's and plot's title line.
        #[arg(long, default_value = "")]
        about: String,
    },
    /// List the models and their parameter counts.
    Models,
}

/// Where outputs go and how the run behaves.
#[derive(Debug, Args)]
pub struct OutArgs {
    /// Parent folder of the run folders.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Start over, discarding an existing checkpoint.
    #[arg(long)]
    pub fresh: bool,
    /// Stop after this round as if interrupted (to exercise resume).
    #[arg(long)]
    pub halt_after: Option<usize>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Keep a copy of every coded message under <run>/messages/.
    #[arg(long)]
    pub save_messages: bool,
}

/// Run settings; each overrides the value from --config (or the default).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A JSON or YAML run configuration to start from (e.g. a run's config.json `config`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run name (output folder).
    #[arg(long)]
    pub name: Option<String>,
    /// fedavg or dsgd.
    #[arg(long)]
    pub mode: Option<Mode>,
    /// fashion-mnist, mnist or cifar10.
    #[arg(long, value_parser = parse_dataset)]
    pub dataset: Option<DatasetKind>,
    /// Folder with the data set's files (default for fashion-mnist: fetched and cached).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Use the first N test examples.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// mlp, lenet5, resfed-cnn or resnet8.
    #[arg(long)]
    pub model: Option<ModelKind>,
    /// Number of clients / workers (K).
    #[arg(long, short = 'k')]
    pub clients: Option<usize>,
    /// Fraction of clients per round (fedavg).
    #[arg(long)]
    pub participation: Option<f64>,
    /// iid, classes:C or dirichlet:ALPHA.
    #[arg(long)]
    pub partition: Option<Partition>,
    /// Rounds.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Local epochs per round (fedavg).
    #[arg(long)]
    pub local_epochs: Option<usize>,
    /// SGD steps per round (dsgd).
    #[arg(long)]
    pub steps_per_round: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Downlink pipeline spec for the server-to-client model (fedavg).
    #[arg(long)]
    pub downlink: Option<PathBuf>,
    /// What the uplink carries: auto, delta or model.
    #[arg(long)]
    pub uplink_payload: Option<Payload>,
    /// Target test accuracy.
    #[arg(long)]
    pub target_accuracy: Option<f64>,
    /// M of the M-weighted distortion.
    #[arg(long)]
    pub distortion_m: Option<f64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// libtorch threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// auto, cpu or cuda.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// Mem-AOP-GD on the linear layers, keeping this fraction k/B of the outer products.
    #[arg(long)]
    pub mem_aop: Option<f64>,
    /// Mem-AOP-GD selection: top-k or random.
    #[arg(long, default_value = "top-k")]
    pub mem_aop_policy: AopPolicy,
    /// Mem-AOP-GD without its memory: the dropped outer products are discarded
    /// instead of folded into the next step (plain AOP-GD, for ablations).
    #[arg(long)]
    pub mem_aop_no_memory: bool,
}

fn parse_dataset(s: &str) -> Result<DatasetKind, String> {
    match s {
        "fashion-mnist" => Ok(DatasetKind::FashionMnist),
        "mnist" => Ok(DatasetKind::Mnist),
        "cifar10" | "cifar-10" => Ok(DatasetKind::Cifar10),
        _ => Err(format!(
            "unknown data set {s:?}; expected fashion-mnist, mnist or cifar10"
        )),
    }
}

impl RunArgs {
    /// The configuration: --config (or the defaults) with these overrides.
    pub fn to_config(&self) -> anyhow::Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => RunConfig::from_file(p)?,
            None => RunConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        set!(
            name,
            mode,
            dataset,
            model,
            clients,
            participation,
            partition,
            rounds,
            local_epochs,
            batch_size,
            lr,
            momentum,
            weight_decay,
            uplink_payload,
            target_accuracy,
            distortion_m,
            seed,
            threads,
            device
        );
        macro_rules! set_opt {
            ($($f:ident),*) => { $( if self.$f.is_some() { c.$f = self.$f.clone(); } )* };
        }
        set_opt!(data_dir, train_limit, test_limit, steps_per_round, downlink);
        if let Some(keep) = self.mem_aop {
            c.mem_aop = Some(AopConfig {
                keep,
                policy: self.mem_aop_policy,
                memory: true,
            });
        }
        if self.mem_aop_no_memory {
            match c.mem_aop.as_mut() {
                Some(aop) => aop.memory = false,
                None => anyhow::bail!(
                    "--mem-aop-no-memory needs Mem-AOP-GD on (--mem-aop K, or mem_aop in --config)"
                ),
            }
        }
        Ok(c)
    }
}
