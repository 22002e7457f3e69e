//! `gradcodec bench --bound`: a pipeline's real bits per entry next to the
//! single-source rate-distortion limit at the distortion it achieved, and the gap.
//!
//! Per tensor, the limit comes from `gradcodec_bound::tensor_limit` (GenNorm fitted to
//! the tensor, point mass at zero, Blahut–Arimoto; Shannon lower bound below the
//! grid). A tensor the pipeline reconstructs exactly (raw small tensors, lossless
//! pipelines) has no finite limit under a continuous model: it counts at its real
//! coded bits, so it adds nothing to the gap; a pipeline with no lossy tensor has no
//! gap. The gap is `(message bits − Σ tensor limits) / entries`: container, side
//! information and coder redundancy all count against the pipeline, as they should.

use anyhow::Context;
use gradcodec::{Encoder, Update};
use gradcodec_bound::blahut_arimoto::BaConfig;
use gradcodec_bound::tensor_limit::{achieved_distortion, LimitMethod, TensorLimit, TensorSource};
use serde::Serialize;

/// The fitted sources of one input's tensors, shared by every pipeline measured on it.
pub struct InputSources {
    m: f64,
    sources: Vec<TensorSource>,
}

impl InputSources {
    /// Fits every tensor of `update` for the weight `|x|^m`.
    pub fn fit(update: &Update, m: f64) -> anyhow::Result<Self> {
        let sources = update
            .tensors
            .iter()
            .map(|tensor| {
                let values: Vec<f32> = tensor.data.iter().copied().collect();
                TensorSource::fit(&tensor.name, &values, m, BaConfig::default())
                    .with_context(|| format!("fitting tensor `{}`", tensor.name))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(InputSources { m, sources })
    }
}

/// One pipeline against the limit.
#[derive(Debug, Serialize)]
pub struct LimitComparison {
    /// Pipeline name.
    pub pipeline: String,
    /// Weight exponent `M` of the distortion (0: MSE).
    pub m: f64,
    /// Entries of the update.
    pub entries: u64,
    /// The real message, bits per entry.
    pub bits_per_entry: f64,
    /// `Σ n_t D_t / Σ n_t E|X_t|^{M+2}`: the achieved distortion relative to the data.
    pub relative_distortion: f64,
    /// Σ of the tensors' limits (exact tensors at their coded bits), bits per entry;
    /// `None` when a tensor has no figure or no tensor is lossy.
    pub limit_bits_per_entry: Option<f64>,
    /// The same with the Shannon lower bound per lossy tensor (MSE only).
    pub shannon_lower_bound_bits_per_entry: Option<f64>,
    /// `bits_per_entry − limit_bits_per_entry`.
    pub gap_bits_per_entry: Option<f64>,
    /// Tensors reconstructed exactly.
    pub exact_tensors: usize,
    /// Per tensor.
    pub tensors: Vec<TensorLimit>,
}

/// Encodes `update` once with a fresh encoder and compares the message with the limit.
pub fn compare(
    sources: &mut InputSources,
    mut encoder: Encoder,
    update: &Update,
) -> anyhow::Result<LimitComparison> {
    let message = encoder.encode(update)?;
    let reconstruction = encoder.try_last_reconstruction()?;
    let stats = encoder.last_stats();
    let entries = update.entries() as u64;
    let (mut limit_bits, mut slb_bits) = (Some(0.0f64), Some(0.0f64));
    let (mut error_sum, mut energy_sum) = (0.0f64, 0.0f64);
    let mut exact_tensors = 0;
    let mut tensors = Vec::with_capacity(update.tensors.len());
    for (index, (original, source)) in update.tensors.iter().zip(&mut sources.sources).enumerate() {
        let decoded = &reconstruction.tensors[index];
        let x: Vec<f32> = original.data.iter().copied().collect();
        let y: Vec<f32> = decoded.data.iter().copied().collect();
        let (distortion, energy) = achieved_distortion(&x, &y, sources.m)?;
        let n = x.len() as f64;
        error_sum += n * distortion;
        energy_sum += n * energy;
        let limit = source
            .limit_at(distortion)
            .with_context(|| format!("limit of tensor `{}`", original.name))?;
        match (limit.method, limit.bits_per_entry) {
            (LimitMethod::Exact, _) => {
                exact_tensors += 1;
                let coded = stats
                    .tensors
                    .iter()
                    .find(|t| t.name == original.name)
                    .map(|t| t.side_info_bytes + t.streams.iter().map(|s| s.2).sum::<u64>())
                    .unwrap_or(4 * x.len() as u64);
                let bits = 8.0 * coded as f64;
                limit_bits = limit_bits.map(|b| b + bits);
                slb_bits = slb_bits.map(|b| b + bits);
            }
            (_, Some(bits)) => {
                limit_bits = limit_bits.map(|b| b + n * bits);
                slb_bits = match limit.shannon_lower_bound_bits {
                    Some(slb) => slb_bits.map(|b| b + n * slb),
                    None => None,
                };
            }
            (_, None) => {
                limit_bits = None;
                slb_bits = None;
            }
        }
        tensors.push(limit);
    }
    if exact_tensors == tensors.len() {
        limit_bits = None;
        slb_bits = None;
    }
    let per_entry = |bits: f64| bits / entries.max(1) as f64;
    let bits_per_entry = per_entry(8.0 * message.len() as f64);
    let limit_bits_per_entry = limit_bits.map(per_entry);
    Ok(LimitComparison {
        pipeline: encoder.pipeline().name().to_string(),
        m: sources.m,
        entries,
        bits_per_entry,
        relative_distortion: if energy_sum > 0.0 {
            error_sum / energy_sum
        } else {
            0.0
        },
        limit_bits_per_entry,
        shannon_lower_bound_bits_per_entry: slb_bits.map(per_entry),
        gap_bits_per_entry: limit_bits_per_entry.map(|limit| bits_per_entry - limit),
        exact_tensors,
        tensors,
    })
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

/// The table header of [`table_row`].
pub fn table_header() -> String {
    format!(
        "{:<22} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "pipeline", "bits/entry", "rel. dist.", "limit", "SLB", "gap", "exact"
    )
}

/// One line of the plain-text table.
pub fn table_row(c: &LimitComparison) -> String {
    format!(
        "{:<22} {:>10.4} {:>12.4e} {:>12} {:>12} {:>12} {:>10}",
        c.pipeline,
        c.bits_per_entry,
        c.relative_distortion,
        cell(c.limit_bits_per_entry),
        cell(c.shannon_lower_bound_bits_per_entry),
        cell(c.gap_bits_per_entry),
        format!("{}/{}", c.exact_tensors, c.tensors.len())
    )
}

/// The Markdown header of [`markdown_row`].
pub fn markdown_header() -> String {
    "| pipeline | bits/entry | rel. distortion | limit (bits/entry) | SLB (bits/entry) | gap (bits/entry) | bits / limit | exact tensors |\n\
     |---|---:|---:|---:|---:|---:|---:|---:|"
        .to_string()
}

/// One Markdown table row.
pub fn markdown_row(c: &LimitComparison) -> String {
    let ratio = match c.limit_bits_per_entry {
        Some(limit) if limit > 0.0 => format!("{:.2}x", c.bits_per_entry / limit),
        _ => "-".to_string(),
    };
    format!(
        "| {} | {:.4} | {:.3e} | {} | {} | {} | {} | {}/{} |",
        c.pipeline,
        c.bits_per_entry,
        c.relative_distortion,
        cell(c.limit_bits_per_entry),
        cell(c.shannon_lower_bound_bits_per_entry),
        cell(c.gap_bits_per_entry),
        ratio,
        c.exact_tensors,
        c.tensors.len()
    )
}
