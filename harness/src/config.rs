//! The run configuration: everything that determines a run's results, with
//! defaults, strict parsing (unknown fields rejected) and validation with clear
//! messages. The resolved configuration is written to `runs/<name>/config.json`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::partition::Partition;
use crate::data::DatasetKind;
use crate::models::aop::AopConfig;
use crate::models::ModelKind;

/// Training mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Federated averaging: clients train E local epochs and send model deltas
    /// (or models, for predictive pipelines).
    Fedavg,
    /// Distributed SGD: every step, each worker sends its gradient; the server
    /// averages the decoded gradients and takes an SGD step.
    Dsgd,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fedavg" => Ok(Mode::Fedavg),
            "dsgd" => Ok(Mode::Dsgd),
            _ => Err(format!("unknown mode {s:?}; expected fedavg or dsgd")),
        }
    }
}

/// What the uplink carries in `fedavg` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Payload {
    /// `model` when the uplink pipeline has a predictor (ResFed codes models as
    /// residuals against a shared prediction), else `delta`.
    Auto,
    /// The model delta `local - start`.
    Delta,
    /// The local model itself.
    Model,
}

impl FromStr for Payload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Payload::Auto),
            "delta" => Ok(Payload::Delta),
            "model" => Ok(Payload::Model),
            _ => Err(format!(
                "unknown payload {s:?}; expected auto, delta or model"
            )),
        }
    }
}

/// Where to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device (an error when there is none).
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            _ => Err(format!("unknown device {s:?}; expected auto, cpu or cuda")),
        }
    }
}

impl DeviceChoice {
    /// Resolves to a tch device.
    pub fn resolve(self) -> Result<tch::Device, String> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => Err(
                "--device cuda: no CUDA device is available to libtorch (is this the CPU-only \
                 libtorch? run scripts/setup-libtorch on a machine where nvidia-smi finds a GPU)"
                    .into(),
            ),
        }
    }
}

/// A run's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name: outputs go to `<out_dir>/<name>/`.
    pub name: String,
    /// Training mode.
    pub mode: Mode,
    /// Data set.
    pub dataset: DatasetKind,
    /// Folder with the data set's files (None: the cached default).
    pub data_dir: Option<PathBuf>,
    /// Use only the first N training examples.
    pub train_limit: Option<usize>,
    /// Use only the first N test examples.
    pub test_limit: Option<usize>,
    /// Model.
    pub model: ModelKind,
    /// Number of clients (fedavg) or workers (dsgd), K.
    pub clients: usize,
    /// Fraction of clients taking part in each round (fedavg).
    pub participation: f64,
    /// How the training set is split among clients.
    pub partition: Partition,
    /// Communication rounds (fedavg) or evaluation periods (dsgd).
    pub rounds: usize,
    /// Local epochs per round (fedavg).
    pub local_epochs: usize,
    /// SGD steps per round (dsgd); None: one pass over the smallest shard.
    pub steps_per_round: Option<usize>,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum (PyTorch convention, no dampening).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Uplink pipeline spec (None: uncompressed f32, counted as 4 bytes/entry).
    pub uplink: Option<PathBuf>,
    /// Downlink pipeline spec for the server-to-client model (fedavg; None: sent
    /// uncompressed, counted as 4 bytes/entry).
    pub downlink: Option<PathBuf>,
    /// What the uplink carries (fedavg).
    pub uplink_payload: Payload,
    /// Target test accuracy for rounds-to-target and bits-to-target.
    pub target_accuracy: f64,
    /// The M of the M-weighted distortion.
    pub distortion_m: f64,
    /// Seed of everything random (initialization, split, shuffling, sampling).
    pub seed: u64,
    /// libtorch intra-op threads (fixed for repeatable runs).
    pub threads: usize,
    /// Device.
    pub device: DeviceChoice,
    /// Mem-AOP-GD on the linear layers (None: exact gradients).
    pub mem_aop: Option<AopConfig>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "run".into(),
            mode: Mode::Fedavg,
            dataset: DatasetKind::FashionMnist,
            data_dir: None,
            train_limit: None,
            test_limit: None,
            model: ModelKind::Mlp,
            clients: 10,
            participation: 1.0,
            partition: Partition::Iid,
            rounds: 20,
            local_epochs: 1,
            steps_per_round: None,
            batch_size: 64,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            uplink: None,
            downlink: None,
            uplink_payload: Payload::Auto,
            target_accuracy: 0.8,
            distortion_m: 2.0,
            seed: 1,
            threads: 2,
            device: DeviceChoice::Auto,
            mem_aop: None,
        }
    }
}

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        message: message.into(),
    }
}

impl RunConfig {
    /// Reads a configuration from a JSON or YAML file (unknown fields rejected).
    pub fn from_file(path: &Path) -> anyhow::Result<RunConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let is_json = path.extension().is_some_and(|e| e == "json");
        let value: serde_json::Value = if is_json {
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
        } else {
            serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
        };
        // A run's config.json holds {"config": …, "resolved": …}: take its config.
        let value = match value {
            serde_json::Value::Object(mut m) if m.contains_key("resolved") => {
                m.remove("config").unwrap_or_default()
            }
            v => v,
        };
        serde_json::from_value(value).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    /// Checks every field that can be checked without loading data.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.contains(['/', '\\'])
            || self.name == "."
            || self.name == ".."
        {
            return Err(bad(
                "name",
                format!("{:?} is not a plain folder name", self.name),
            ));
        }
        if self.clients == 0 {
            return Err(bad("clients", "K must be at least 1 (got 0)"));
        }
        if !(self.participation > 0.0 && self.participation <= 1.0) {
            return Err(bad(
                "participation",
                format!("must be in (0, 1], got {}", self.participation),
            ));
        }
        if self.rounds == 0 {
            return Err(bad("rounds", "must be at least 1"));
        }
        if self.mode == Mode::Fedavg && self.local_epochs == 0 {
            return Err(bad("local_epochs", "must be at least 1"));
        }
        if self.steps_per_round == Some(0) {
            return Err(bad("steps_per_round", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", "must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(bad("lr", format!("must be positive, got {}", self.lr)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(bad(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(bad("weight_decay", "must be >= 0"));
        }
        if !(0.0..=1.0).contains(&self.target_accuracy) {
            return Err(bad("target_accuracy", "must be in [0, 1]"));
        }
        if !(self.distortion_m >= 0.0 && self.distortion_m.is_finite()) {
            return Err(bad("distortion_m", "must be >= 0"));
        }
        if self.threads == 0 {
            return Err(bad("threads", "must be at least 1"));
        }
        if self.train_limit == Some(0) || self.test_limit == Some(0) {
            return Err(bad(
                "train_limit/test_limit",
                "must be at least 1 when given",
            ));
        }
        for (field, spec) in [("uplink", &self.uplink), ("downlink", &self.downlink)] {
            if let Some(p) = spec {
                if !p.is_file() {
                    return Err(bad(
                        field,
                        format!("pipeline spec {} does not exist", p.display()),
                    ));
                }
            }
        }
        if self.mode == Mode::Dsgd && self.downlink.is_some() {
            return Err(bad(
                "downlink",
                "dsgd mode has no downlink pipeline (workers share the server's model)",
            ));
        }
        if self.mode == Mode::Dsgd && self.uplink_payload == Payload::Model {
            return Err(bad(
                "uplink_payload",
                "dsgd workers send gradients, not models",
            ));
        }
        if let Some(aop) = &self.mem_aop {
            if !(aop.keep > 0.0 && aop.keep <= 1.0) {
                return Err(bad(
                    "mem_aop.keep",
                    format!("k/B must be in (0, 1], got {}", aop.keep),
                ));
            }
        }
        self.partition
            .validate(10)
            .map_err(|m| bad("partition", m))?;
        Ok(())
    }

    /// A fingerprint of everything that determines the results except `name` and
    /// `rounds` (a checkpoint is resumable, and extendable, under the same
    /// fingerprint). Pipeline specs are hashed by content.
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.name = String::new();
        c.rounds = 0;
        let mut text = serde_json::to_string(&c).expect("config serializes");
        for p in [&self.uplink, &self.downlink].into_iter().flatten() {
            text.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
        format!("{:016x}", fnv1a(text.as_bytes()))
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_fields_with_their_names() {
        let err = RunConfig {
            clients: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "clients");
        assert!(err.to_string().contains("K must be at least 1"));
        let err = RunConfig {
            uplink: Some("no/such/spec.yaml".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.to_string().contains("no/such/spec.yaml does not exist"),
            "{err}"
        );
        assert!(serde_json::from_str::<RunConfig>(r#"{"modle": "mlp"}"#)
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        assert!(serde_json::from_str::<RunConfig>(r#"{"model": "vgg"}"#).is_err());
        RunConfig::default().validate().unwrap();
    }

    #[test]
    fn reads_yaml_and_a_runs_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("run.yaml");
        std::fs::write(
            &yaml,
            "name: y\nmodel: lenet5\npartition: { kind: classes, per_client: 2 }\n",
        )
        .unwrap();
        let c = RunConfig::from_file(&yaml).unwrap();
        assert_eq!(c.model, ModelKind::Lenet5);
        assert_eq!(c.partition, Partition::Classes { per_client: 2 });
        let json = dir.path().join("config.json");
        std::fs::write(
            &json,
            serde_json::json!({ "config": c, "resolved": { "device": "Cpu" } }).to_string(),
        )
        .unwrap();
        assert_eq!(RunConfig::from_file(&json).unwrap(), c);
        std::fs::write(&yaml, "name: y\nclients: [3]\n").unwrap();
        let err = RunConfig::from_file(&yaml).unwrap_err().to_string();
        assert!(err.contains("run.yaml"), "{err}");
    }

    #[test]
    fn fingerprint_ignores_name_and_rounds_only() {
        let a = RunConfig::default();
        let b = RunConfig {
            name: "other".into(),
            rounds: 99,
            ..Default::default()
        };
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = RunConfig {
            seed: 2,
            ..Default::default()
        };
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
