//! The benchmark inputs: a real gradient fixture tiled to N entries, and seeded
//! GenNorm(β) samples of N entries, for each size N of the run.

use gradcodec::{NamedTensor, Update};
use gradcodec_numerics::gennorm::GenNorm;
use rand_chacha::rand_core::SeedableRng;

/// The real fixture that is tiled (a ResFed CNN gradient late in training).
pub const FIXTURE: &str = "resfed-cnn-grad-late";

/// GenNorm shapes of the synthetic inputs (1 is Laplace; real gradients fit β < 1).
pub const BETAS: [f64; 2] = [1.0, 0.5];

/// GenNorm scale of the synthetic inputs (the default of `gradcodec synth`).
const ALPHA: f64 = 1e-3;

/// Columns of the matrix shape of a synthetic input (and of the single tensor
/// the stage benchmarks see), when N is a multiple of it.
const COLUMNS: usize = 1000;

/// One input, in the forms the benchmarks need.
pub struct Input {
    /// Label in group names, e.g. `resfed-late-1M`.
    pub label: String,
    /// The update the pipelines encode.
    pub update: Update,
    /// Every entry of `update`, in order, as one slice (the stages' input).
    pub values: Vec<f32>,
    /// `values` as little-endian bytes (the memcpy and zstd input).
    pub bytes: Vec<u8>,
}

impl Input {
    fn new(label: String, update: Update) -> Self {
        let values: Vec<f32> = update
            .tensors
            .iter()
            .flat_map(|t| t.data.iter().copied())
            .collect();
        let bytes = f32_bytes(&values);
        Self {
            label,
            update,
            values,
            bytes,
        }
    }

    /// Number of entries.
    pub fn entries(&self) -> u64 {
        self.values.len() as u64
    }
}

/// Little-endian bytes of `values`.
fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `1M`, `64k`, or the plain number.
pub fn size_label(entries: usize) -> String {
    if entries.is_multiple_of(1_000_000) {
        format!("{}M", entries / 1_000_000)
    } else if entries.is_multiple_of(1000) {
        format!("{}k", entries / 1000)
    } else {
        entries.to_string()
    }
}

/// The shape the stages see for `entries` values: `[N / 1000, 1000]` when that
/// divides (so matrix stages such as PowerSGD have a matrix), else `[N]`.
pub fn matrix_shape(entries: usize) -> Vec<usize> {
    if entries >= COLUMNS && entries.is_multiple_of(COLUMNS) {
        vec![entries / COLUMNS, COLUMNS]
    } else {
        vec![entries]
    }
}

/// The tensors of `update` repeated (names prefixed `copy<k>.`) until exactly
/// `entries` entries; the last tensor may be cut to its first entries (1-D).
/// Copy k is scaled by `1 + k/100`, so that no two copies share bytes: zstd
/// would otherwise find the repeats and look faster and smaller than on a real
/// model, while the per-tensor codecs see the same data up to scale.
pub fn tiled(update: &Update, entries: usize) -> Update {
    assert!(update.entries() > 0, "cannot tile an empty update");
    let mut tensors = Vec::new();
    let mut left = entries;
    let mut copy = 0;
    while left > 0 {
        for tensor in update.tensors.iter().filter(|t| !t.is_empty()) {
            if left == 0 {
                break;
            }
            let name = format!("copy{copy}.{}", tensor.name);
            let scale = 1.0 + copy as f32 / 100.0;
            if tensor.len() <= left {
                tensors.push(NamedTensor::new(name, tensor.data.mapv(|v| v * scale)));
                left -= tensor.len();
            } else {
                let values: Vec<f32> = tensor.data.iter().take(left).map(|v| v * scale).collect();
                let cut = NamedTensor::from_vec(name, &[left], values)
                    .unwrap_or_else(|e| panic!("tiling {}: {e}", tensor.name));
                tensors.push(cut);
                left = 0;
            }
        }
        copy += 1;
    }
    Update::new(tensors)
}

/// `entries` GenNorm(β, α = 1e-3) samples, seeded, as one tensor `gennorm`.
pub fn gennorm(beta: f64, entries: usize, seed: u64) -> Update {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = GenNorm::new(beta, ALPHA)
        .sample(&mut rng, entries)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let tensor = NamedTensor::from_vec("gennorm", &matrix_shape(entries), values)
        .unwrap_or_else(|e| panic!("GenNorm input: {e}"));
    Update::new(vec![tensor])
}

/// Every input of the run: for each size, the tiled fixture and one GenNorm
/// input per β in [`BETAS`].
pub fn all(sizes: &[usize]) -> Vec<Input> {
    let (_, fixture) = gradcodec_snapshots::fixtures()
        .into_iter()
        .find(|(name, _)| name == FIXTURE)
        .unwrap_or_else(|| panic!("fixture {FIXTURE}.safetensors not found in snapshots/fixtures"));
    let mut inputs = Vec::new();
    for &entries in sizes {
        let size = size_label(entries);
        inputs.push(Input::new(
            format!("resfed-late-{size}"),
            tiled(&fixture, entries),
        ));
        for (seed, beta) in BETAS.into_iter().enumerate() {
            inputs.push(Input::new(
                format!("gennorm-b{beta}-{size}"),
                gennorm(beta, entries, seed as u64),
            ));
        }
    }
    inputs
}
