//! gradcodec-harness: federated and distributed training with tch (libtorch),
//! measuring how much accuracy a gradcodec pipeline costs for the bits it saves.
//!
//! - [`data`]: IDX and CIFAR-10 loaders, the embedded Fashion-MNIST default,
//!   partitions (IID, c classes per client, Dirichlet);
//! - [`models`]: MLP, LeNet-5, the ResFed CNN, ResNet-8, Mem-AOP-GD linear layers;
//! - [`train`]: `fedavg` and `dsgd` rounds, checkpoints and resume;
//! - [`codec`]: uplink / downlink streams through gradcodec pipelines;
//! - [`metrics`], [`plot`], [`sweep`], [`capture`]: what is recorded and shown;
//! - [`ceo`]: each round's real uplink bits against the CEO limit (ALGORITHMS.md §4).
//!
//! ```no_run
//! use gradcodec_harness::config::RunConfig;
//! use gradcodec_harness::train::run::{run, RunOptions};
//! let cfg = RunConfig { name: "co3".into(), uplink: Some("pipelines/co3-fp4.yaml".into()),
//!                       rounds: 5, ..Default::default() };
//! let result = run(&cfg, None, &RunOptions::default())?;
//! println!("{:?}", result.summary);
//! # anyhow::Ok(())
//! ```

pub mod capture;
pub mod ceo;
pub mod checkpoint;
pub mod cli;
pub mod codec;
pub mod config;
pub mod data;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod params;
pub mod plot;
pub mod seeds;
pub mod sweep;
pub mod torch_rng;
pub mod train;

/// An error with its causes, `a: b: c`, for tables and logs: causes with an
/// empty message are left out (never an empty "Caused by"), and an error with
/// no text at all says so.
pub fn error_text(error: &anyhow::Error) -> String {
    let parts: Vec<String> = error
        .chain()
        .map(|cause| cause.to_string())
        .filter(|text| !text.trim().is_empty())
        .collect();
    if parts.is_empty() {
        format!("an error without a message ({error:?})")
    } else {
        parts.join(": ")
    }
}
