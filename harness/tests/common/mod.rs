//! Shared helpers of the harness tests: small data sets written in the real
//! file formats, and configurations that train in a second or two on CPU.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use gradcodec::Registry;
use gradcodec_harness::codec::discover_registry;
use gradcodec_harness::config::RunConfig;
use gradcodec_harness::data::cifar::{encode_batch, IMAGE_BYTES};
use gradcodec_harness::data::idx::{encode_idx, IdxArray};
use gradcodec_harness::data::partition::Partition;
use gradcodec_harness::data::DatasetKind;
use gradcodec_harness::models::ModelKind;
use gradcodec_harness::train::run::RunOptions;

/// The workspace root (for pipelines/).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A pipeline spec of the workspace.
pub fn spec(name: &str) -> PathBuf {
    workspace().join("pipelines").join(format!("{name}.yaml"))
}

/// Deterministic pseudo-random bytes.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 56) as u8
    }
}

/// `n` images `side × side` whose class shows as a bright block at a
/// class-specific place, over noise; labels cycle through 0..10.
pub fn images(n: usize, side: usize, channels: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Lcg(seed);
    let mut px = Vec::with_capacity(n * channels * side * side);
    let mut labels = Vec::with_capacity(n);
    let block = side / 5;
    for i in 0..n {
        let c = i % 10;
        labels.push(c as u8);
        let (r0, c0) = ((c % 5) * block, (c / 5) * (side / 2) + 2);
        for _ch in 0..channels {
            for r in 0..side {
                for q in 0..side {
                    let inside = r >= r0 && r < r0 + block && q >= c0 && q < c0 + block;
                    let noise = rng.next() / 4;
                    px.push(if inside {
                        200u8.saturating_add(noise / 2)
                    } else {
                        noise
                    });
                }
            }
        }
    }
    (px, labels)
}

/// Writes an MNIST-style IDX folder (gzip-compressed when `gz`).
pub fn write_idx_dataset(dir: &Path, train: usize, test: usize, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n, seed) in [("train", train, 1), ("t10k", test, 2)] {
        let (px, labels) = images(n, 28, 1, seed);
        let files = [
            (
                format!("{prefix}-images-idx3-ubyte"),
                encode_idx(&IdxArray {
                    dims: vec![n, 28, 28],
                    data: px,
                }),
            ),
            (
                format!("{prefix}-labels-idx1-ubyte"),
                encode_idx(&IdxArray {
                    dims: vec![n],
                    data: labels,
                }),
            ),
        ];
        for (name, bytes) in files {
            if gz {
                let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
                let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                enc.write_all(&bytes).unwrap();
                enc.finish().unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

/// Writes a CIFAR-10 binary folder with `batches` training batches of `per_batch`.
pub fn write_cifar_dataset(dir: &Path, batches: usize, per_batch: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for b in 1..=batches {
        let (px, labels) = images(per_batch, 32, 3, b as u64);
        assert_eq!(px.len(), per_batch * IMAGE_BYTES);
        std::fs::write(
            dir.join(format!("data_batch_{b}.bin")),
            encode_batch(&px, &labels),
        )
        .unwrap();
    }
    let (px, labels) = images(test, 32, 3, 99);
    std::fs::write(dir.join("test_batch.bin"), encode_batch(&px, &labels)).unwrap();
}

/// A tiny federated configuration over an IDX folder.
pub fn tiny_config(name: &str, data: &Path) -> RunConfig {
    RunConfig {
        name: name.into(),
        dataset: DatasetKind::Mnist,
        data_dir: Some(data.to_path_buf()),
        model: ModelKind::Mlp,
        clients: 3,
        partition: Partition::Classes { per_client: 4 },
        rounds: 3,
        batch_size: 32,
        lr: 0.05,
        threads: 1,
        seed: 7,
        target_accuracy: 0.5,
        ..Default::default()
    }
}

/// Compares the deterministic fields of two runs' records (all but timings).
pub fn same_trajectory(
    a: &[gradcodec_harness::metrics::RoundRecord],
    b: &[gradcodec_harness::metrics::RoundRecord],
) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.round == y.round
                && x.test_accuracy == y.test_accuracy
                && x.test_loss == y.test_loss
                && x.train_loss == y.train_loss
                && x.uplink_bytes == y.uplink_bytes
                && x.downlink_bytes == y.downlink_bytes
                && x.cum_uplink_bits == y.cum_uplink_bits
                && x.rel_mse == y.rel_mse
                && x.weighted_distortion == y.weighted_distortion
        })
}

/// The plugin registry of the workspace build.
pub fn registry() -> Registry {
    discover_registry().expect("plugins are built (cargo build) before the harness tests")
}

/// Run options writing under `out`, without a progress bar.
pub fn opts(out: &Path) -> RunOptions {
    RunOptions {
        out_dir: out.to_path_buf(),
        progress: false,
        ..Default::default()
    }
}

/// A small IDX data set (600 training, 200 test images) under `tmp/data`.
pub fn data(tmp: &Path) -> PathBuf {
    let dir = tmp.join("data");
    write_idx_dataset(&dir, 600, 200, true);
    dir
}
