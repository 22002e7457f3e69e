//! Data sets: loaders for the standard file formats, the embedded default
//! (Fashion-MNIST from a Debian package), client partitions, and the device copy
//! used for training.
//!
//! - [`idx`]: MNIST / Fashion-MNIST IDX files, plain or gzip;
//! - [`cifar`]: CIFAR-10 binary batches;
//! - [`fetch`]: obtains and caches Fashion-MNIST on a fresh machine;
//! - [`partition`]: IID, c classes per client (ResFed's rule), Dirichlet(α).

pub mod cifar;
pub mod fetch;
pub mod idx;
pub mod partition;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Errors while reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file was read but its content is not what the format requires.
    #[error("malformed data file {path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file the data set needs is missing.
    #[error("data set {dataset}: none of {candidates:?} found in {dir}")]
    Missing {
        /// The data set's name.
        dataset: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The file names tried.
        candidates: Vec<String>,
    },
    /// The files disagree with each other (counts, shapes).
    #[error("data set {dataset}: {message}")]
    Inconsistent {
        /// The data set's name.
        dataset: String,
        /// What disagrees.
        message: String,
    },
    /// Fetching the default data set failed.
    #[error("cannot fetch {dataset}: {message}")]
    Fetch {
        /// The data set's name.
        dataset: String,
        /// Why.
        message: String,
    },
}

/// The data set formats the harness reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Fashion-MNIST (IDX); fetched from Debian's `dataset-fashion-mnist` when no
    /// directory is given.
    FashionMnist,
    /// MNIST (IDX) from a directory.
    Mnist,
    /// CIFAR-10 binary batches from a directory.
    Cifar10,
}

impl DatasetKind {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }
}

/// One split (train or test) of a data set, as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// `len × channels × height × width` pixel bytes, CHW order per image.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps only the first `n` examples.
    pub fn truncate(&mut self, n: usize, image_bytes: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.images.truncate(n * image_bytes);
        }
    }
}

/// A labelled image data set held in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Its name (for reports).
    pub name: String,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes (labels are `0..num_classes`).
    pub num_classes: usize,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
}

impl Dataset {
    /// Bytes per image.
    pub fn image_bytes(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Loads a data set of the given kind from `dir`. For Fashion-MNIST, `dir =
    /// None` means the cached default, fetched on first use.
    pub fn load(kind: DatasetKind, dir: Option<&Path>) -> Result<Dataset, DataError> {
        match (kind, dir) {
            (DatasetKind::FashionMnist, None) => {
                let dir = fetch::fashion_mnist_dir()?;
                load_idx_dir(kind.name(), &dir)
            }
            (DatasetKind::FashionMnist | DatasetKind::Mnist, Some(dir)) => {
                load_idx_dir(kind.name(), dir)
            }
            (DatasetKind::Mnist, None) => Err(DataError::Fetch {
                dataset: "mnist".into(),
                message: "MNIST has no embedded default here; pass --data-dir with its IDX files"
                    .into(),
            }),
            (DatasetKind::Cifar10, Some(dir)) => load_cifar_dir(dir),
            (DatasetKind::Cifar10, None) => Err(DataError::Fetch {
                dataset: "cifar10".into(),
                message: "CIFAR-10 is not obtainable on this machine; pass --data-dir with \
                          data_batch_*.bin and test_batch.bin"
                    .into(),
            }),
        }
    }

    /// Keeps the first `train` and `test` examples (when given).
    pub fn limit(&mut self, train: Option<usize>, test: Option<usize>) {
        let ib = self.image_bytes();
        if let Some(n) = train {
            self.train.truncate(n, ib);
        }
        if let Some(n) = test {
            self.test.truncate(n, ib);
        }
    }

    /// Per-channel mean and standard deviation of the training pixels in [0, 1].
    pub fn channel_stats(&self) -> Vec<(f64, f64)> {
        let plane = self.height * self.width;
        let mut sums = vec![(0f64, 0f64); self.channels];
        for image in self.train.images.chunks_exact(self.image_bytes()) {
            for (c, s) in sums.iter_mut().enumerate() {
                for &p in &image[c * plane..(c + 1) * plane] {
                    let v = p as f64 / 255.0;
                    s.0 += v;
                    s.1 += v * v;
                }
            }
        }
        let n = (self.train.len() * plane).max(1) as f64;
        sums.into_iter()
            .map(|(s, s2)| {
                let mean = s / n;
                let var = (s2 / n - mean * mean).max(1e-12);
                (mean, var.sqrt())
            })
            .collect()
    }
}

/// A split on the training device: normalized images and labels.
pub struct DeviceSplit {
    /// `N × C × H × W` float images, normalized per channel.
    pub images: Tensor,
    /// `N` int64 labels.
    pub labels: Tensor,
    /// Labels on the host (for partitions).
    pub host_labels: Vec<u8>,
}

impl DeviceSplit {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.host_labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.host_labels.is_empty()
    }
}

/// Moves a split to `device`, normalizing with the given per-channel statistics.
pub fn to_device(ds: &Dataset, split: &Split, stats: &[(f64, f64)], device: Device) -> DeviceSplit {
    let n = split.len() as i64;
    let shape = [n, ds.channels as i64, ds.height as i64, ds.width as i64];
    let images = Tensor::from_slice(&split.images)
        .to_kind(Kind::Float)
        .view(shape)
        / 255.0;
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let std: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
    let c = ds.channels as i64;
    let images = (images - Tensor::from_slice(&mean).view([1, c, 1, 1]))
        / Tensor::from_slice(&std).view([1, c, 1, 1]);
    let labels: Vec<i64> = split.labels.iter().map(|&l| l as i64).collect();
    DeviceSplit {
        images: images.to_device(device),
        labels: Tensor::from_slice(&labels).to_device(device),
        host_labels: split.labels.clone(),
    }
}

/// Reads a file, decompressing it when it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = fs::read(path).map_err(io)?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        idx::read_all(flate2::read::GzDecoder::new(&raw[..])).map_err(|e| DataError::Malformed {
            path: path.to_path_buf(),
            message: format!("corrupt or truncated gzip stream: {e}"),
        })
    } else {
        Ok(raw)
    }
}

/// Finds the first existing file among `stems` with or without `.gz`.
fn find_file(dataset: &str, dir: &Path, stems: &[&str]) -> Result<PathBuf, DataError> {
    let mut candidates = Vec::new();
    for stem in stems {
        for name in [format!("{stem}.gz"), stem.to_string()] {
            let p = dir.join(&name);
            if p.is_file() {
                return Ok(p);
            }
            candidates.push(name);
        }
    }
    Err(DataError::Missing {
        dataset: dataset.to_string(),
        dir: dir.to_path_buf(),
        candidates,
    })
}

fn load_idx_split(
    dataset: &str,
    dir: &Path,
    prefix: &str,
) -> Result<(Split, usize, usize), DataError> {
    let img_path = find_file(
        dataset,
        dir,
        &[
            &format!("{prefix}-images-idx3-ubyte"),
            &format!("{prefix}-images.idx3-ubyte"),
        ],
    )?;
    let lbl_path = find_file(
        dataset,
        dir,
        &[
            &format!("{prefix}-labels-idx1-ubyte"),
            &format!("{prefix}-labels.idx1-ubyte"),
        ],
    )?;
    let images = idx::read_idx_file(&img_path)?;
    let labels = idx::read_idx_file(&lbl_path)?;
    if images.dims.len() != 3 {
        return Err(DataError::Malformed {
            path: img_path,
            message: format!(
                "expected 3 dimensions (count, rows, columns), found {:?}",
                images.dims
            ),
        });
    }
    if labels.dims.len() != 1 {
        return Err(DataError::Malformed {
            path: lbl_path,
            message: format!("expected 1 dimension (count), found {:?}", labels.dims),
        });
    }
    if images.dims[0] != labels.dims[0] {
        return Err(DataError::Inconsistent {
            dataset: dataset.into(),
            message: format!(
                "{} has {} images but {} has {} labels",
                img_path.display(),
                images.dims[0],
                lbl_path.display(),
                labels.dims[0]
            ),
        });
    }
    Ok((
        Split {
            images: images.data,
            labels: labels.data,
        },
        images.dims[1],
        images.dims[2],
    ))
}

/// Loads an MNIST-style IDX directory (`train-*` and `t10k-*` files).
pub fn load_idx_dir(dataset: &str, dir: &Path) -> Result<Dataset, DataError> {
    let (train, h, w) = load_idx_split(dataset, dir, "train")?;
    let (test, th, tw) = load_idx_split(dataset, dir, "t10k")?;
    if (h, w) != (th, tw) {
        return Err(DataError::Inconsistent {
            dataset: dataset.into(),
            message: format!("train images are {h}x{w} but test images are {th}x{tw}"),
        });
    }
    finish(dataset, 1, h, w, train, test)
}

/// Loads a CIFAR-10 binary directory (or its `cifar-10-batches-bin` subfolder).
pub fn load_cifar_dir(dir: &Path) -> Result<Dataset, DataError> {
    let sub = dir.join("cifar-10-batches-bin");
    let dir = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let mut train = cifar::CifarRecords::default();
    let mut found = 0;
    for i in 1..=5 {
        let stem = format!("data_batch_{i}.bin");
        if let Ok(p) = find_file("cifar10", &dir, &[&stem]) {
            cifar::read_batch_file(&p, &mut train)?;
            found += 1;
        }
    }
    if found == 0 {
        return Err(DataError::Missing {
            dataset: "cifar10".into(),
            dir,
            candidates: (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        });
    }
    let mut test = cifar::CifarRecords::default();
    cifar::read_batch_file(&find_file("cifar10", &dir, &["test_batch.bin"])?, &mut test)?;
    finish(
        "cifar10",
        3,
        cifar::SIDE,
        cifar::SIDE,
        Split {
            images: train.images,
            labels: train.labels,
        },
        Split {
            images: test.images,
            labels: test.labels,
        },
    )
}

fn finish(
    dataset: &str,
    channels: usize,
    height: usize,
    width: usize,
    train: Split,
    test: Split,
) -> Result<Dataset, DataError> {
    if train.is_empty() || test.is_empty() {
        return Err(DataError::Inconsistent {
            dataset: dataset.into(),
            message: format!(
                "{} training and {} test examples; both must be non-empty",
                train.len(),
                test.len()
            ),
        });
    }
    let max_label = train
        .labels
        .iter()
        .chain(&test.labels)
        .copied()
        .max()
        .unwrap_or(0);
    Ok(Dataset {
        name: dataset.to_string(),
        channels,
        height,
        width,
        num_classes: (max_label as usize + 1).max(10),
        train,
        test,
    })
}
