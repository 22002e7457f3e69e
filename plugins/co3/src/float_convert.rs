//! `float-convert`: quantization by conversion to a tiny float format, with a
//! per-tensor pre-scale chosen from a GenNorm fit (CO3's "convert" step).
//!
//! `Q(a) = fp(s·a) / s`, where `fp` rounds to the nearest level of the format
//! (sign, E exponent bits, M mantissa bits; see [`crate::format`]): decision
//! edges at the midpoints, a tie goes to the smaller magnitude, values beyond
//! the largest level saturate. Presets: `fp4` = E2M1 (11 levels
//! {0, ±0.5, ±1, ±1.5, ±2, ±3}), `fp8` = E5M2 (247 levels, 2^-16 .. 57344),
//! `fp8-e4m3` = E4M3; or `exponent_bits`/`mantissa_bits` with `1 + E + M <= 16`.
//!
//! The tensor's non-zero entries are fitted (`fit: gennorm`, β and α by the
//! moment estimator or `estimator: mle`; `fit: normal`, β = 2) and exact zeros
//! are a point mass (ALGORITHMS.md §1.2). Pre-scale (`prescale`):
//! - `gennorm`: for fp4 with β in [0.4, 2], `s = max(p(β), 0.0009)/α` with
//!   `p(β) = 0.52β⁴ - 2.85β³ + 5.37β² - 2.85β + 0.46` (MSE-optimal for unit
//!   GenNorm(β)); otherwise (other β, other formats) as `search`;
//! - `search`: the MSE-optimal `s`, measured on the 4096 largest magnitudes
//!   plus an even, re-weighted subsample of the rest (28672 entries; all entries
//!   of smaller tensors): a grid (quarter-octave steps, whole octaves for
//!   formats spanning more than 8 octaves, whose error repeats every binade)
//!   from the scale where the median magnitude saturates fourfold down to the
//!   one where the largest rounds to zero, then golden-section refinement;
//! - `none`: `s = 1`.
//!
//! Side info (16 bytes, little endian f32): `s`, β, α, zero fraction. From them
//! both ends rebuild the stream's model: the probability of every level's cell,
//! `(1-z)·[F(edge_{k+1}/s) - F(edge_k/s)]` under GenNorm(β, α), plus `z` on the
//! zero level, floored at 1e-9 and normalized, so `huffman` with
//! `model: parametric` needs nothing else. Symbols are level indices in
//! ascending signed order (zero is the middle symbol), so the sign is part of
//! the alphabet. Chen, Hernandez, Huang, Rini, "CO3: convert, compress, correct",
//! 2022-2023; "GenNorm lossless coding of fp8 gradients", ICC 2022.
//!
//! ```yaml
//! - quantizer: { use: float-convert, params: { format: fp4, prescale: gennorm } }
//! ```

use crate::format::{EdgeRounder, FloatFormat, SMALL_EDGE_COUNT};
use crate::threshold_count::ThresholdCounter;
use gradcodec_numerics::{
    fit::{fit_tensor, Estimator, Family},
    gennorm::{golden_section_max, BETA_MAX, BETA_MIN},
    GenNorm,
};
use gradcodec_sdk::prelude::*;
use serde::{Deserialize, Serialize, Serializer};

/// A named float format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Format {
    /// E2M1: 11 levels, {0, ±0.5, ±1, ±1.5, ±2, ±3}.
    #[serde(rename = "fp4")]
    Fp4,
    /// E5M2: 247 levels from 2^-16 to 57344.
    #[serde(rename = "fp8")]
    Fp8,
    /// E4M3: 239 levels from 2^-9 to 240.
    #[serde(rename = "fp8-e4m3")]
    Fp8E4m3,
    /// `exponent_bits` and `mantissa_bits` given explicitly.
    #[serde(rename = "custom")]
    Custom,
}

impl Format {
    fn bits(self) -> Option<(u32, u32)> {
        match self {
            Self::Fp4 => Some((2, 1)),
            Self::Fp8 => Some((5, 2)),
            Self::Fp8E4m3 => Some((4, 3)),
            Self::Custom => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Fp4 => "fp4",
            Self::Fp8 => "fp8",
            Self::Fp8E4m3 => "fp8-e4m3",
            Self::Custom => "custom",
        }
    }

    fn of_bits(bits: (u32, u32)) -> Self {
        [Self::Fp4, Self::Fp8, Self::Fp8E4m3]
            .into_iter()
            .find(|preset| preset.bits() == Some(bits))
            .unwrap_or(Self::Custom)
    }
}

/// How the pre-scale is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Prescale {
    /// CO3's polynomial for fp4 with β in [0.4, 2], else `search`.
    #[default]
    Gennorm,
    /// MSE-optimal scale found numerically.
    Search,
    /// No scaling (`s = 1`).
    None,
}

/// The model fitted to the tensor (it defines the stream's pmf).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FitModel {
    /// Generalized normal, shape and scale fitted.
    #[default]
    Gennorm,
    /// Normal (GenNorm with β = 2), scale fitted.
    Normal,
}

/// The GenNorm estimator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FitEstimator {
    /// `E|x| / sqrt(E x²)` solved for β (fast).
    #[default]
    Moment,
    /// Maximum likelihood (reference, slower).
    Mle,
}

/// Parameters of `float-convert`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatConvertConfig {
    /// `fp4` (E2M1, default), `fp8` (E5M2), `fp8-e4m3` or `custom`. May be
    /// omitted when `exponent_bits` and `mantissa_bits` are given.
    #[serde(default)]
    pub format: Option<Format>,
    /// Exponent bits E >= 1 (with a preset: must match it).
    #[serde(default)]
    pub exponent_bits: Option<u32>,
    /// Mantissa bits M >= 0, `1 + E + M <= 16` (with a preset: must match it).
    #[serde(default)]
    pub mantissa_bits: Option<u32>,
    /// `gennorm` (default), `search` or `none`.
    #[serde(default)]
    pub prescale: Prescale,
    /// `gennorm` (default) or `normal`: the model behind the stream's pmf.
    #[serde(default)]
    pub fit: FitModel,
    /// `moment` (default) or `mle`: how GenNorm is fitted.
    #[serde(default)]
    pub estimator: FitEstimator,
}

impl FloatConvertConfig {
    /// The (E, M) these parameters select.
    pub fn resolve(&self) -> Result<(u32, u32), String> {
        let bits = match (self.format, self.exponent_bits, self.mantissa_bits) {
            (None, None, None) => (2, 1),
            (None | Some(Format::Custom), Some(e), Some(m)) => (e, m),
            (None | Some(Format::Custom), None, _) => {
                return Err(
                    "field `exponent_bits`: required unless a preset format is given".into(),
                )
            }
            (None | Some(Format::Custom), Some(_), None) => {
                return Err(
                    "field `mantissa_bits`: required unless a preset format is given".into(),
                )
            }
            (Some(preset), e, m) => {
                let (pe, pm) = preset.bits().expect("presets have bits");
                if let Some(e) = e.filter(|e| *e != pe) {
                    return Err(format!(
                        "field `exponent_bits`: {e} contradicts format {} (E = {pe})",
                        preset.name()
                    ));
                }
                if let Some(m) = m.filter(|m| *m != pm) {
                    return Err(format!(
                        "field `mantissa_bits`: {m} contradicts format {} (M = {pm})",
                        preset.name()
                    ));
                }
                (pe, pm)
            }
        };
        FloatFormat::new(bits.0, bits.1)?;
        Ok(bits)
    }
}

impl StageConfig for FloatConvertConfig {
    fn validate(&self) -> Result<(), String> {
        self.resolve().map(|_| ())
    }
}

/// The canonical form: the format's name and both bit counts always present.
impl Serialize for FloatConvertConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Canonical {
            format: Format,
            exponent_bits: u32,
            mantissa_bits: u32,
            prescale: Prescale,
            fit: FitModel,
            estimator: FitEstimator,
        }
        let (e, m) = self.resolve().map_err(serde::ser::Error::custom)?;
        Canonical {
            format: Format::of_bits((e, m)),
            exponent_bits: e,
            mantissa_bits: m,
            prescale: self.prescale,
            fit: self.fit,
            estimator: self.estimator,
        }
        .serialize(serializer)
    }
}

/// Side info of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SideInfo {
    /// Pre-scale s.
    pub scale: f32,
    /// Fitted shape β.
    pub beta: f32,
    /// Fitted scale α (0: no non-zero entry).
    pub alpha: f32,
    /// Fraction of exact zeros.
    pub zero_fraction: f32,
}

/// Side-info size in bytes.
pub const SIDE_INFO_BYTES: usize = 16;

impl SideInfo {
    pub(crate) fn write(&self, out: &mut RVec<u8>) {
        SideInfoWriter::new(out).f32s(&[self.scale, self.beta, self.alpha, self.zero_fraction]);
    }

    /// Parses and checks side info.
    pub fn read(bytes: &[u8]) -> SdkResult<Self> {
        let mut reader = SideInfoReader::new(bytes);
        reader.expect_len("float-convert", SIDE_INFO_BYTES)?;
        let side = Self {
            scale: reader.raw_f32("pre-scale")?,
            beta: reader.f32_in("shape β", BETA_MIN as f32..=BETA_MAX as f32)?,
            alpha: reader.non_negative_f32("scale α")?,
            zero_fraction: reader.f32_in("zero fraction", 0.0..=1.0)?,
        };
        reader.finish()?;
        ensure_data(side.scale.is_finite() && side.scale > 0.0, || {
            format!("float-convert: invalid pre-scale {}", side.scale)
        })?;
        Ok(side)
    }
}

/// Smallest model probability before normalization.
pub const MODEL_FLOOR: f64 = 1e-9;

/// The pmf of every symbol of `format` under the side info's model: GenNorm
/// cell masses of the non-zero part plus the zero point mass, floored and
/// normalized. Deterministic in its inputs, so both ends agree bit for bit.
pub fn level_model(format: &FloatFormat, side: &SideInfo) -> RVec<f32> {
    let top = format.max_index() as usize;
    let mut pmf = vec![0.0f64; 2 * top + 1];
    let zeros = f64::from(side.zero_fraction);
    let unit = f64::from(side.scale) * f64::from(side.alpha);
    if unit > 0.0 && unit.is_finite() && zeros < 1.0 {
        let model = GenNorm::new(f64::from(side.beta), 1.0);
        // One-sided tail beyond each positive decision edge, in units of α.
        let tails: Vec<f64> = (0..=top as u32)
            .map(|k| model.sf(format.upper_edge(k) / unit))
            .collect();
        let continuous = 1.0 - zeros;
        pmf[top] = continuous * (1.0 - 2.0 * tails[0]).max(0.0);
        for k in 1..=top {
            let mass = continuous * (tails[k - 1] - tails[k]).max(0.0);
            pmf[top + k] = mass;
            pmf[top - k] = mass;
        }
        pmf[top] += zeros;
    } else {
        pmf[top] = 1.0;
    }
    for p in pmf.iter_mut() {
        *p = p.max(MODEL_FLOOR);
    }
    let total: f64 = pmf.iter().sum();
    pmf.iter()
        .map(|p| ((p / total) as f32).max(f32::MIN_POSITIVE))
        .collect()
}

/// `p(β)`: CO3's MSE-optimal fp4 pre-scale for unit-scale GenNorm(β).
pub fn fp4_prescale_polynomial(beta: f64) -> f64 {
    (((0.52 * beta - 2.85) * beta + 5.37) * beta - 2.85) * beta + 0.46
}

/// Largest magnitudes the pre-scale search always includes.
pub const SEARCH_TOP: usize = 4_096;
/// Entries sampled (with a stride) from the rest for the pre-scale search.
pub const SEARCH_SAMPLE: usize = 28_672;

/// The magnitudes the pre-scale search measures the MSE on: all of the
/// [`SEARCH_TOP`] largest (heavy tails dominate the error), plus an even
/// subsample of the rest weighted by its sampling ratio. Exact (every entry,
/// weight 1) for tensors with at most `SEARCH_TOP + SEARCH_SAMPLE` non-zeros.
struct SearchSample {
    top: Vec<f64>,
    rest: Vec<f64>,
    rest_weight: f64,
}

impl SearchSample {
    fn new(input: &[f32]) -> Self {
        let mut magnitudes: Vec<f32> = input
            .iter()
            .filter(|v| **v != 0.0)
            .map(|v| v.abs())
            .collect();
        if magnitudes.len() <= SEARCH_TOP + SEARCH_SAMPLE {
            return Self {
                top: magnitudes.into_iter().map(f64::from).collect(),
                rest: Vec::new(),
                rest_weight: 0.0,
            };
        }
        // Largest first: the first SEARCH_TOP entries after the selection.
        magnitudes.select_nth_unstable_by(SEARCH_TOP, |a, b| b.total_cmp(a));
        let (top, rest) = magnitudes.split_at(SEARCH_TOP);
        let stride = rest.len().div_ceil(SEARCH_SAMPLE);
        let sampled: Vec<f64> = rest.iter().step_by(stride).map(|v| f64::from(*v)).collect();
        Self {
            top: top.iter().map(|v| f64::from(*v)).collect(),
            rest_weight: rest.len() as f64 / sampled.len() as f64,
            rest: sampled,
        }
    }

    fn largest(&self) -> f64 {
        self.top
            .iter()
            .chain(&self.rest)
            .fold(0.0f64, |m, v| m.max(*v))
    }

    /// Median magnitude of the bulk (the subsample of the rest, or everything).
    fn median(&self) -> f64 {
        let mut bulk = if self.rest.is_empty() {
            self.top.clone()
        } else {
            self.rest.clone()
        };
        if bulk.is_empty() {
            return 0.0;
        }
        let middle = bulk.len() / 2;
        *bulk.select_nth_unstable_by(middle, f64::total_cmp).1
    }

    /// Estimated total squared error of `format` (rounded by `rounder`) at
    /// pre-scale `2^log_scale`.
    fn error(&self, format: &FloatFormat, rounder: &EdgeRounder, log_scale: f64) -> f64 {
        let scale = log_scale.exp2();
        // `level / scale` once per level, not once per sample (the same quotients).
        let quotients = level_quotients(format, scale);
        let sum = |values: &[f64]| {
            values
                .iter()
                .map(|m| {
                    let q = quotients[rounder.index(scale * m) as usize];
                    (q - m) * (q - m)
                })
                .sum::<f64>()
        };
        sum(&self.top) + self.rest_weight * sum(&self.rest)
    }

    /// [`SearchSample::error`] at `LANES` pre-scales `2^log_scales[j]` in one
    /// pass over the sample: each sum is still taken in sample order (so every
    /// value is `error`'s bit for bit), but the independent sums overlap in
    /// the CPU instead of waiting on one chain of additions.
    fn errors<const LANES: usize>(
        &self,
        format: &FloatFormat,
        rounder: &EdgeRounder,
        log_scales: [f64; LANES],
    ) -> [f64; LANES] {
        let scales = log_scales.map(f64::exp2);
        let quotients = scales.map(|scale| level_quotients(format, scale));
        let sums = |values: &[f64]| {
            // `Iterator::sum` of f64 starts from -0.0: so do these.
            let mut sums = [-0.0f64; LANES];
            for m in values {
                for ((sum, scale), quotients) in sums.iter_mut().zip(&scales).zip(&quotients) {
                    let q = quotients[rounder.index(scale * m) as usize];
                    *sum += (q - m) * (q - m);
                }
            }
            sums
        };
        let (top, rest) = (sums(&self.top), sums(&self.rest));
        let mut out = [0.0f64; LANES];
        for j in 0..LANES {
            out[j] = top[j] + self.rest_weight * rest[j];
        }
        out
    }

    /// [`SearchSample::error`] for formats with many levels, the same value
    /// bit for bit: [`SearchSample::errors_merged`] at one pre-scale.
    fn error_merged(
        &self,
        format: &FloatFormat,
        rounder: &EdgeRounder,
        orders: &SortedSample,
        log_scale: f64,
    ) -> f64 {
        self.errors_merged(format, rounder, orders, [log_scale])[0]
    }

    /// [`SearchSample::error`] at `LANES` pre-scales `2^log_scales[j]` for
    /// formats with many levels, each value bit for bit. Along the samples in
    /// ascending order (`orders`) the level index only moves forward over the
    /// edges, so one merge gives every sample's level (a table by rank); then
    /// one pass in sample order reads each sample's levels through its rank and
    /// sums the squared errors in sample order, as `error` does, with no search
    /// per sample and `LANES` independent sums.
    fn errors_merged<const LANES: usize>(
        &self,
        format: &FloatFormat,
        rounder: &EdgeRounder,
        orders: &SortedSample,
        log_scales: [f64; LANES],
    ) -> [f64; LANES] {
        let scales = log_scales.map(f64::exp2);
        let quotients = scales.map(|scale| level_quotients(format, scale));
        let edges = rounder.edges();
        let mut levels = vec![[0u16; LANES]; self.top.len().max(self.rest.len())];
        let mut sums = |values: &[f64], part: &SortedPart| {
            let levels = &mut levels[..values.len()];
            for (lane, scale) in scales.iter().enumerate() {
                // `error` rounds `m` to level `k` = the number of edges below
                // `scale * m`: along the ascending samples `k` only moves forward.
                let mut k = 0usize;
                for (entry, m) in levels.iter_mut().zip(&part.sorted) {
                    let x = scale * m;
                    while k < edges.len() && edges[k] < x {
                        k += 1;
                    }
                    entry[lane] = k as u16;
                }
            }
            // `Iterator::sum` of f64 starts from -0.0: so do these.
            let mut sums = [-0.0f64; LANES];
            for (m, rank) in values.iter().zip(&part.rank) {
                let entry = &levels[*rank as usize];
                for lane in 0..LANES {
                    let q = quotients[lane][usize::from(entry[lane])];
                    sums[lane] += (q - m) * (q - m);
                }
            }
            sums
        };
        let (top, rest) = (sums(&self.top, &orders.top), sums(&self.rest, &orders.rest));
        let mut out = [0.0f64; LANES];
        for j in 0..LANES {
            out[j] = top[j] + self.rest_weight * rest[j];
        }
        out
    }
}

/// `level(k) / scale` for every non-negative level index `k` of `format`.
fn level_quotients(format: &FloatFormat, scale: f64) -> Vec<f64> {
    (0..=format.max_index())
        .map(|k| format.level(k) / scale)
        .collect()
}

/// One part of a [`SearchSample`] in ascending order: the values sorted, and
/// the rank of every value (its position in `sorted`), in sample order.
struct SortedPart {
    sorted: Vec<f64>,
    rank: Vec<u32>,
}

impl SortedPart {
    /// `values`: magnitudes of `f32`s (non-negative, each exactly an `f32`).
    fn new(values: &[f64]) -> Self {
        // One u64 key per value: its f32 pattern (which orders like the
        // magnitude) above its index, so the sort compares plain integers.
        let mut keys: Vec<u64> = values
            .iter()
            .zip(0u64..)
            .map(|(value, index)| u64::from((*value as f32).to_bits()) << 32 | index)
            .collect();
        keys.sort_unstable();
        let mut rank = vec![0u32; values.len()];
        for (position, key) in keys.iter().enumerate() {
            rank[(*key as u32) as usize] = position as u32;
        }
        Self {
            sorted: keys
                .iter()
                .map(|key| values[(*key as u32) as usize])
                .collect(),
            rank,
        }
    }
}

/// Both parts of a [`SearchSample`] in ascending order (level indices by
/// rank are `u16`: formats of up to 16 bits).
struct SortedSample {
    top: SortedPart,
    rest: SortedPart,
}

impl SortedSample {
    fn new(sample: &SearchSample) -> Self {
        Self {
            top: SortedPart::new(&sample.top),
            rest: SortedPart::new(&sample.rest),
        }
    }
}

/// The MSE-optimal pre-scale for `input` (see the module doc); `fallback` when
/// the format's range is so wide that any scale near `1/α` is as good.
pub fn search_prescale(format: &FloatFormat, input: &[f32], fallback: f64) -> f64 {
    let sample = SearchSample::new(input);
    let rounder = EdgeRounder::new(format);
    // Formats with many levels: sort the sample once, then merge per scale.
    let sorted = (rounder.edges().len() > SMALL_EDGE_COUNT).then(|| SortedSample::new(&sample));
    let error = |u: f64| match &sorted {
        Some(orders) => sample.error_merged(format, &rounder, orders, u),
        None => sample.error(format, &rounder, u),
    };
    let (largest, median) = (sample.largest(), sample.median());
    let range_octaves = (format.max_level() / format.min_level()).log2();
    if largest <= 0.0 || !range_octaves.is_finite() || range_octaves > 64.0 {
        return fallback;
    }
    // From "the median saturates 4x over" down to "the largest rounds to zero":
    // heavy tails may be best served by saturating their few largest entries.
    let high = (format.max_level() / median).log2() + 2.0;
    let low = (format.min_level() / largest).log2() - 2.0;
    // Inside a wide format's range the error repeats every octave (relative
    // precision is the same in every binade), so a coarser grid suffices.
    let step = if range_octaves > 8.0 { 1.0 } else { 0.25 };
    let points = ((high - low) / step).ceil() as usize + 1;
    let mut best = (high, f64::INFINITY);
    let grid = |i: usize| high - step * i as f64;
    let mut i = 0;
    // Four grid points per pass over the sample (the same errors as one at a
    // time, in the same order of comparison).
    while i + 4 <= points {
        let us = [grid(i), grid(i + 1), grid(i + 2), grid(i + 3)];
        let errors = match &sorted {
            Some(orders) => sample.errors_merged(format, &rounder, orders, us),
            None => sample.errors(format, &rounder, us),
        };
        for (u, error) in us.into_iter().zip(errors) {
            if error < best.1 {
                best = (u, error);
            }
        }
        i += 4;
    }
    for i in i..points {
        let u = grid(i);
        let error = error(u);
        if error < best.1 {
            best = (u, error);
        }
    }
    let refined = golden_section_max(|u| -error(u), best.0 - step, best.0 + step, 1e-3);
    if error(refined) <= best.1 {
        refined.exp2()
    } else {
        best.0.exp2()
    }
}

/// For each decision edge `e`, the largest `f32` magnitude `t` with
/// `scale·t <= e` in exact arithmetic (`scale·t` of two `f32`s is exact in
/// `f64`), so that `|a| > t` exactly when `scale·|a| > e`: the rounding then
/// runs on `f32` compares alone. `f32::MAX` when no finite input crosses `e`.
fn f32_thresholds(edges: &[f64], scale: f64) -> Vec<f32> {
    edges
        .iter()
        .map(|&edge| {
            let above = |t: f32| scale * f64::from(t) > edge;
            let mut t = ((edge / scale) as f32).clamp(0.0, f32::MAX);
            while t > 0.0 && above(t) {
                t = t.next_down();
            }
            while t < f32::MAX && !above(t.next_up()) {
                t = t.next_up();
            }
            t
        })
        .collect()
}

/// The rounding of one tensor at pre-scale `scale`: the symbol of `a` is the
/// level nearest to `scale·a` (ties to the smaller magnitude, saturating),
/// exactly [`FloatFormat::symbol`], as the count of `f32` thresholds below `|a|`.
pub(crate) struct Rounder {
    thresholds: Vec<f32>,
    zero: u32,
    /// The constant-time count for formats with more than 16 thresholds (fp8).
    counter: Option<ThresholdCounter>,
}

impl Rounder {
    /// The thresholds of `format` at pre-scale `scale`.
    pub(crate) fn new(format: &FloatFormat, scale: f64) -> Self {
        let rounder = EdgeRounder::new(format);
        let thresholds = f32_thresholds(rounder.edges(), scale);
        // At most 2^m thresholds per octave: buckets of m + 1 mantissa bits.
        let counter = (thresholds.len() > 16)
            .then(|| ThresholdCounter::new(&thresholds, format.mantissa_bits() + 1))
            .flatten();
        Self {
            thresholds,
            zero: format.max_index(),
            counter,
        }
    }

    /// Writes the symbol of every `input[i]` into `out[i]` (as long as the shorter).
    pub(crate) fn fill(&self, input: &[f32], out: &mut [u32]) {
        let zero = self.zero;
        match self.thresholds.len() {
            0..=8 => fill_counting::<8>(&self.thresholds, zero, input, out),
            9..=16 => fill_counting::<16>(&self.thresholds, zero, input, out),
            _ => match &self.counter {
                Some(counter) => fill_by(zero, input, out, |m| counter.count(m)),
                None => fill_by(zero, input, out, |m| {
                    self.thresholds.partition_point(|t| *t < m) as u32
                }),
            },
        }
    }
}

impl Rounder {
    /// [`Rounder::fill`], and the level of every symbol from `levels` (the
    /// reconstruction table of an alphabet of at most 16 symbols) into
    /// `values`, in one pass. With AVX2 and at most 8 thresholds (fp4), eight
    /// entries at a time: the threshold counts as vector compares, the table
    /// lookup as two 8-lane permutes; the same symbols and values bit for bit.
    pub(crate) fn fill_with_levels(
        &self,
        input: &[f32],
        levels: &[f32; 16],
        symbols: &mut [u32],
        values: &mut [f32],
    ) {
        // SAFETY: `Kernel::detect` picks a build this CPU runs.
        unsafe { self.fill_with_levels_using(Kernel::detect(), input, levels, symbols, values) };
    }

    /// [`Rounder::fill_with_levels`] with the symbols written as packed pairs,
    /// `pairs[i] = 16 * symbol[2i] + symbol[2i + 1]` (what
    /// `BitWriter::put_pair_indices` takes), in one pass with AVX-512F when the
    /// CPU has it, the alphabet is at most 16 symbols (fp4) and `input`'s
    /// length is a multiple of 16; `false` (nothing written) otherwise, and
    /// the caller takes the symbol path.
    pub(crate) fn fill_pairs_with_levels(
        &self,
        input: &[f32],
        levels: &[f32; 16],
        pairs: &mut [u8],
        values: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.thresholds.len() <= 8
            && input.len().is_multiple_of(16)
            && pairs.len() == input.len() / 2
            && values.len() == input.len()
            && Kernel::detect() == Kernel::Avx512
        {
            let mut padded = [f32::INFINITY; 8];
            padded[..self.thresholds.len()].copy_from_slice(&self.thresholds);
            // SAFETY: the CPU has AVX-512F (detected just above); the kernel
            // reads 16 entries and writes 8 pairs and 16 values per step, within
            // the slices (lengths checked above).
            unsafe { fill_level_pairs_avx512(&padded, self.zero, levels, input, pairs, values) };
            return true;
        }
        let _ = (input, levels, pairs, values);
        false
    }

    /// [`Rounder::fill_with_levels`] with `kernel`.
    ///
    /// # Safety
    ///
    /// The CPU must have `kernel`'s features (as [`Kernel::detect`] reports).
    unsafe fn fill_with_levels_using(
        &self,
        kernel: Kernel,
        input: &[f32],
        levels: &[f32; 16],
        symbols: &mut [u32],
        values: &mut [f32],
    ) {
        let len = input.len().min(symbols.len()).min(values.len());
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if self.thresholds.len() <= 8 && kernel != Kernel::Portable {
            let mut padded = [f32::INFINITY; 8];
            padded[..self.thresholds.len()].copy_from_slice(&self.thresholds);
            let (input, symbols, values) = (&input[..len], &mut symbols[..len], &mut values[..len]);
            // SAFETY: the CPU has the kernel's features (the caller's
            // contract); each kernel reads and writes only within the first
            // `len` entries of each slice.
            done = unsafe {
                if kernel == Kernel::Avx512 {
                    fill_levels_avx512(&padded, self.zero, levels, input, symbols, values)
                } else {
                    fill_levels_avx2(&padded, self.zero, levels, input, symbols, values)
                }
            };
        }
        self.fill(&input[done..len], &mut symbols[done..len]);
        for (value, symbol) in values[done..len].iter_mut().zip(&symbols[done..len]) {
            *value = levels[(*symbol & 15) as usize];
        }
    }
}

/// The builds of [`Rounder::fill_with_levels`]'s loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    Avx2,
    Avx512,
}

impl Kernel {
    /// The widest build this CPU runs (detected at run time).
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if gradcodec_sdk::simd::has_avx2() {
                return Self::Avx2;
            }
        }
        Self::Portable
    }
}

/// [`Rounder::fill_with_levels`] with AVX-512F, sixteen entries at a time
/// ([`Fp4Step512`]: the same compares as the AVX2 build, so the same symbols
/// and values bit for bit); returns how many entries it did (a multiple of
/// 16; the caller does the rest).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_levels_avx512(
    thresholds: &[f32; 8],
    zero: u32,
    levels: &[f32; 16],
    input: &[f32],
    symbols: &mut [u32],
    values: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let step = Fp4Step512::new(thresholds, zero, levels);
    let chunks = input.len() / 16;
    for chunk in 0..chunks {
        let at = chunk * 16;
        // SAFETY: `at + 16 <= input.len()`, and `symbols` / `values` are as long.
        let a = unsafe { _mm512_loadu_ps(input.as_ptr().add(at)) };
        let (symbol, value) = step.round(a);
        // SAFETY: as for the load above.
        unsafe {
            _mm512_storeu_si512(symbols.as_mut_ptr().add(at).cast(), symbol);
            _mm512_storeu_ps(values.as_mut_ptr().add(at), value);
        }
    }
    chunks * 16
}

/// The constants and the step both AVX-512F fp4 fills share: the symbols of
/// 16 entries as threshold counts (masked adds, the AVX2 build's compares),
/// and their levels by one 16-lane permute (the low four bits of the symbol,
/// as the AVX2 build's two permutes and blend select).
#[cfg(target_arch = "x86_64")]
struct Fp4Step512 {
    thresholds: [std::arch::x86_64::__m512; 8],
    zero_symbol: std::arch::x86_64::__m512i,
    one: std::arch::x86_64::__m512i,
    table: std::arch::x86_64::__m512,
}

#[cfg(target_arch = "x86_64")]
impl Fp4Step512 {
    #[target_feature(enable = "avx512f")]
    fn new(thresholds: &[f32; 8], zero: u32, levels: &[f32; 16]) -> Self {
        use std::arch::x86_64::*;
        Self {
            thresholds: thresholds.map(|t| _mm512_set1_ps(t)),
            zero_symbol: _mm512_set1_epi32(zero as i32),
            one: _mm512_set1_epi32(1),
            // SAFETY: `levels` holds sixteen f32 (unaligned loads are allowed).
            table: unsafe { _mm512_loadu_ps(levels.as_ptr()) },
        }
    }

    /// (symbols, levels) of the 16 entries of `a`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round(
        &self,
        a: std::arch::x86_64::__m512,
    ) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512) {
        use std::arch::x86_64::*;
        let magnitude = _mm512_abs_ps(a);
        let mut k = _mm512_setzero_si512();
        for threshold in &self.thresholds {
            let crossed = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(magnitude, *threshold);
            k = _mm512_mask_add_epi32(k, crossed, k, self.one);
        }
        // a < 0: zero - k, else zero + k.
        let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_setzero_ps());
        let symbol = _mm512_mask_sub_epi32(
            _mm512_add_epi32(self.zero_symbol, k),
            negative,
            self.zero_symbol,
            k,
        );
        (symbol, _mm512_permutexvar_ps(symbol, self.table))
    }
}

/// [`fill_levels_avx512`] with the symbols packed as pairs: per 16 entries,
/// 8 bytes `16 * s[2i] + s[2i + 1]` (low four bits of each symbol) instead of
/// 16 u32 symbols. `input.len()` is a multiple of 16, `pairs` half as long,
/// `values` as long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_level_pairs_avx512(
    thresholds: &[f32; 8],
    zero: u32,
    levels: &[f32; 16],
    input: &[f32],
    pairs: &mut [u8],
    values: &mut [f32],
) {
    use std::arch::x86_64::*;
    let step = Fp4Step512::new(thresholds, zero, levels);
    let nibble = _mm512_set1_epi64(15);
    for chunk in 0..input.len() / 16 {
        let at = chunk * 16;
        // SAFETY: `at + 16 <= input.len()` (a multiple of 16), `values` is as long.
        let a = unsafe { _mm512_loadu_ps(input.as_ptr().add(at)) };
        let (symbol, value) = step.round(a);
        // 64-bit lane j holds symbols 2j (low half) and 2j + 1 (high half).
        let first = _mm512_slli_epi64(_mm512_and_si512(symbol, nibble), 4);
        let second = _mm512_and_si512(_mm512_srli_epi64(symbol, 32), nibble);
        let packed = _mm512_cvtepi64_epi8(_mm512_or_si512(first, second));
        // SAFETY: `at / 2 + 8 <= pairs.len()` and `at + 16 <= values.len()`
        // (unaligned stores are allowed).
        unsafe {
            _mm_storel_epi64(pairs.as_mut_ptr().add(at / 2).cast(), packed);
            _mm512_storeu_ps(values.as_mut_ptr().add(at), value);
        }
    }
}

/// [`Rounder::fill_with_levels`] with AVX2, eight entries at a time; returns
/// how many entries it did (a multiple of 8; the caller does the rest).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_levels_avx2(
    thresholds: &[f32; 8],
    zero: u32,
    levels: &[f32; 16],
    input: &[f32],
    symbols: &mut [u32],
    values: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let zero_symbol = _mm256_set1_epi32(zero as i32);
    let seven = _mm256_set1_epi32(7);
    let t: [__m256; 8] = thresholds.map(|t| _mm256_set1_ps(t));
    // SAFETY: `levels` holds sixteen f32 (unaligned loads are allowed).
    let (low, high) = unsafe {
        (
            _mm256_loadu_ps(levels.as_ptr()),
            _mm256_loadu_ps(levels.as_ptr().add(8)),
        )
    };
    let chunks = input.len() / 8;
    for chunk in 0..chunks {
        let at = chunk * 8;
        // SAFETY: `at + 8 <= input.len()`, and `symbols` / `values` are as long.
        let a = unsafe { _mm256_loadu_ps(input.as_ptr().add(at)) };
        let magnitude = _mm256_and_ps(a, abs_mask);
        // -k: each crossed threshold adds a lane of all ones (-1).
        let mut minus_k = _mm256_setzero_si256();
        for threshold in &t {
            let crossed = _mm256_castps_si256(_mm256_cmp_ps(magnitude, *threshold, _CMP_GT_OQ));
            minus_k = _mm256_add_epi32(minus_k, crossed);
        }
        // a < 0: zero - k, else zero + k.
        let negative = _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LT_OQ));
        let k = _mm256_sub_epi32(_mm256_setzero_si256(), minus_k);
        let signed = _mm256_blendv_epi8(k, minus_k, negative);
        let symbol = _mm256_add_epi32(zero_symbol, signed);
        let index = _mm256_and_si256(symbol, seven);
        let from_low = _mm256_permutevar8x32_ps(low, index);
        let from_high = _mm256_permutevar8x32_ps(high, index);
        // Symbols 8..15 take the high half: bit 3 moved to the sign bit selects it.
        let pick_high = _mm256_castsi256_ps(_mm256_slli_epi32(symbol, 28));
        let value = _mm256_blendv_ps(from_low, from_high, pick_high);
        // SAFETY: as for the load above.
        unsafe {
            _mm256_storeu_si256(symbols.as_mut_ptr().add(at).cast(), symbol);
            _mm256_storeu_ps(values.as_mut_ptr().add(at), value);
        }
    }
    chunks * 8
}

/// [`Rounder::fill`] for at most `N` thresholds, padded with `+∞` (never
/// crossed) to a fixed count the compiler unrolls and vectorizes.
fn fill_counting<const N: usize>(thresholds: &[f32], zero: u32, input: &[f32], out: &mut [u32]) {
    let mut padded = [f32::INFINITY; N];
    padded[..thresholds.len()].copy_from_slice(thresholds);
    for (o, &a) in out.iter_mut().zip(input) {
        let magnitude = a.abs();
        let k: u32 = padded.iter().map(|t| u32::from(magnitude > *t)).sum();
        *o = if a < 0.0 { zero - k } else { zero + k };
    }
}

/// The symbol of every `input[i]` into `out[i]`, `count(|a|)` thresholds
/// away from the zero symbol on `a`'s side.
#[inline(always)]
fn fill_by(zero: u32, input: &[f32], out: &mut [u32], count: impl Fn(f32) -> u32) {
    for (o, &a) in out.iter_mut().zip(input) {
        let k = count(a.abs());
        *o = if a < 0.0 { zero - k } else { zero + k };
    }
}

/// The reconstruction of every symbol at pre-scale `scale`: `level / s`,
/// clamped to the f32 range.
pub(crate) fn level_values(format: &FloatFormat, scale: f32) -> Vec<f32> {
    let scale = f64::from(scale);
    let limit = f64::from(f32::MAX);
    format
        .signed_levels()
        .iter()
        .map(|level| (level / scale).clamp(-limit, limit) as f32)
        .collect()
}

/// The float-convert quantizer.
pub struct FloatConvert {
    config: FloatConvertConfig,
    format: FloatFormat,
    len: u64,
}

impl FloatConvert {
    /// The format in use.
    pub fn format(&self) -> &FloatFormat {
        &self.format
    }

    fn family(&self) -> Family {
        match (self.config.fit, self.config.estimator) {
            (FitModel::Normal, _) => Family::FixedShape(2.0),
            (FitModel::Gennorm, FitEstimator::Moment) => Family::GenNorm(Estimator::Moment),
            (FitModel::Gennorm, FitEstimator::Mle) => Family::GenNorm(Estimator::Mle),
        }
    }

    fn choose_prescale(&self, input: &[f32], beta: f64, alpha: f64) -> f64 {
        if !(alpha > 0.0 && alpha.is_finite()) {
            return 1.0;
        }
        let is_fp4 = (self.format.exponent_bits(), self.format.mantissa_bits()) == (2, 1);
        let scale = match self.config.prescale {
            Prescale::None => 1.0,
            Prescale::Gennorm if is_fp4 && (0.4..=2.0).contains(&beta) => {
                fp4_prescale_polynomial(beta).max(0.0009) / alpha
            }
            Prescale::Gennorm | Prescale::Search => {
                search_prescale(&self.format, input, 1.0 / alpha)
            }
        };
        scale.clamp(f64::from(f32::MIN_POSITIVE), f64::from(f32::MAX))
    }

    /// The side info of `input`: GenNorm fit of its non-zero entries and the
    /// pre-scale chosen from it.
    pub(crate) fn side_info(&self, input: &[f32]) -> SideInfo {
        let fit = fit_tensor(input, self.family());
        let beta = fit.shape.clamp(BETA_MIN, BETA_MAX) as f32;
        let alpha = if fit.scale.is_finite() {
            fit.scale.min(f64::from(f32::MAX)) as f32
        } else {
            0.0
        };
        let scale = self.choose_prescale(input, f64::from(beta), f64::from(alpha)) as f32;
        SideInfo {
            scale,
            beta,
            alpha,
            zero_fraction: fit.zero_fraction as f32,
        }
    }

    /// The tensor's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn stream(&self, side: &SideInfo) -> SymbolStream {
        let mut stream = SymbolStream::new(StreamRole::VALUES, self.format.alphabet_size());
        stream.model = level_model(&self.format, side);
        stream
    }
}

impl Stage for FloatConvert {
    type Config = FloatConvertConfig;
    const INFO: StageInfo = StageInfo::new("float-convert", "CO3 convert step (Chen, Hernandez, Huang, Rini 2022-2023): Q(a) = fp(s*a)/s, rounding to \
              the nearest level of a tiny float format (fp4 E2M1, fp8 E5M2, E4M3 or any 1+E+M <= 16; \
              ties to the smaller magnitude, saturating). The pre-scale s comes from a GenNorm fit of \
              the non-zero entries (fp4 polynomial p(beta)/alpha, else an MSE search). Side info: s, \
              beta, alpha, zero fraction; the stream model is the fitted cell pmf for parametric coders.")
        .with_example(r#"{"format": "fp4", "prescale": "gennorm"}"#);

    fn new(config: FloatConvertConfig, tensor: &TensorSpec) -> SdkResult<Self> {
        let (e, m) = config.resolve().map_err(gradcodec_sdk::invalid_config)?;
        let format = FloatFormat::new(e, m).map_err(gradcodec_sdk::invalid_config)?;
        Ok(Self {
            config,
            format,
            len: tensor.len(),
        })
    }
}

impl Quantizer for FloatConvert {
    fn quantize(
        &mut self,
        _ctx: &CallContext,
        input: &[f32],
        out: &mut Quantized,
    ) -> SdkResult<()> {
        ensure_len("input", input.len(), self.len)?;
        out.clear();
        let side = self.side_info(input);
        side.write(&mut out.side_info);
        let mut stream = self.stream(&side);
        let rounder = Rounder::new(&self.format, f64::from(side.scale));
        stream
            .symbols
            .extend_filled(input.len(), |slots| rounder.fill(input, slots));
        out.streams.push(stream);
        Ok(())
    }

    fn describe_streams(&self, _ctx: &CallContext, out: &mut Quantized) -> SdkResult<()> {
        let side = SideInfo::read(&out.side_info)?;
        out.streams.clear();
        out.streams.push(self.stream(&side));
        Ok(())
    }

    fn dequantize(
        &mut self,
        _ctx: &CallContext,
        coded: &Quantized,
        out: &mut RVec<f32>,
    ) -> SdkResult<()> {
        let side = SideInfo::read(&coded.side_info)?;
        ensure_data(coded.streams.len() == 1, || {
            format!(
                "float-convert expects one stream, got {}",
                coded.streams.len()
            )
        })?;
        let symbols = &coded.streams[0].symbols;
        ensure_data(symbols.len() as u64 == self.len, || {
            format!(
                "float-convert stream has {} symbols, the tensor has {}",
                symbols.len(),
                self.len
            )
        })?;
        let values = level_values(&self.format, side.scale);
        let largest = symbols.iter().copied().max().unwrap_or(0);
        if largest as usize >= values.len() {
            return Err(corrupt(format!(
                "float-convert: symbol {largest} outside 0..{}",
                values.len()
            )));
        }
        out.clear();
        if values.len() <= 16 {
            // Every symbol is below 16 here: a masked index needs no bounds check.
            let mut table = [0.0f32; 16];
            table[..values.len()].copy_from_slice(&values);
            out.extend_mapped(symbols, |symbol| table[(symbol & 15) as usize]);
        } else {
            out.extend_mapped(symbols, |symbol| values[symbol as usize]);
        }
        Ok(())
    }

    fn summarize_side_info(&self, side_info: &[u8]) -> SdkResult<String> {
        let side = SideInfo::read(side_info)?;
        Ok(serde_json::json!({
            "scale": side.scale,
            "beta": side.beta,
            "alpha": side.alpha,
            "zero_fraction": side.zero_fraction,
        })
        .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradcodec_sdk::parse_config;

    fn tensor(len: u64) -> TensorSpec {
        TensorSpec::new("t", &[len])
    }

    #[test]
    fn batched_search_errors_are_the_direct_errors_bit_for_bit() {
        let format = FloatFormat::new(2, 1).unwrap();
        let rounder = EdgeRounder::new(&format);
        for len in [0usize, 5, 1000, 100_000] {
            let input: Vec<f32> = (0..len)
                .map(|i| (i as f32 * 0.37).sin() * 10f32.powi(i as i32 % 7 - 5))
                .collect();
            let sample = SearchSample::new(&input);
            let us = [3.5, -1.25, 0.0, 12.75];
            let batched = sample.errors(&format, &rounder, us);
            for (u, e) in us.into_iter().zip(batched) {
                assert_eq!(
                    e.to_bits(),
                    sample.error(&format, &rounder, u).to_bits(),
                    "{len} {u}"
                );
            }
        }
    }

    #[test]
    fn merged_search_error_is_the_direct_error_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (e, m, n) in [(5, 2, 50_000), (4, 3, 3_000), (3, 4, 40_000)] {
            let format = FloatFormat::new(e, m).unwrap();
            let rounder = EdgeRounder::new(&format);
            let input: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 17 == 0 {
                        0.0
                    } else {
                        rng.random_range(-1.0f32..1.0) * rng.random_range(-20.0f32..4.0).exp2()
                    }
                })
                .collect();
            let sample = SearchSample::new(&input);
            let sorted = SortedSample::new(&sample);
            for step in 0..200 {
                let u = -10.0 + 0.173 * f64::from(step);
                let direct = sample.error(&format, &rounder, u);
                let merged = sample.error_merged(&format, &rounder, &sorted, u);
                assert_eq!(direct.to_bits(), merged.to_bits(), "E{e}M{m} at 2^{u}");
            }
            // Four pre-scales in one pass: each the direct error.
            let us = [-9.5, 0.0, 3.25, 17.0];
            let batched = sample.errors_merged(&format, &rounder, &sorted, us);
            for (u, merged) in us.into_iter().zip(batched) {
                let direct = sample.error(&format, &rounder, u);
                assert_eq!(
                    direct.to_bits(),
                    merged.to_bits(),
                    "E{e}M{m} at 2^{u}, batched"
                );
            }
        }
    }

    #[test]
    fn threshold_rounding_is_exactly_the_format_rounding() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (e, m) in [(2, 1), (3, 2), (4, 3), (5, 2), (2, 4)] {
            let format = FloatFormat::new(e, m).unwrap();
            let rounder = EdgeRounder::new(&format);
            for _ in 0..20 {
                let scale = f64::from(rng.random_range(-30.0f32..30.0).exp2());
                let mut input: Vec<f32> = (0..2_000)
                    .map(|_| {
                        rng.random_range(-1.0f32..1.0) * (rng.random_range(-12.0f32..12.0)).exp2()
                            / scale as f32
                    })
                    .collect();
                // The f32 neighbours of every edge (as an input magnitude).
                for edge in rounder.edges() {
                    let t = (edge / scale) as f32;
                    for v in [
                        t,
                        t.next_up(),
                        t.next_down(),
                        t.next_up().next_up(),
                        t.next_down().next_down(),
                    ] {
                        input.extend([v, -v]);
                    }
                }
                input.extend([0.0, -0.0, f32::MAX, -f32::MAX, f32::MIN_POSITIVE, 1e-45]);
                let mut symbols = vec![0u32; input.len()];
                let rounding = Rounder::new(&format, scale);
                // Formats past 16 thresholds round through the constant-time count.
                assert_eq!(rounding.counter.is_some(), rounding.thresholds.len() > 16);
                rounding.fill(&input, &mut symbols);
                for (a, symbol) in input.iter().zip(symbols.iter()) {
                    assert_eq!(
                        *symbol,
                        format.symbol(scale * f64::from(*a)),
                        "E{e}M{m}, scale {scale}, a = {a:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_build_of_the_level_fill_gives_the_portable_symbols_and_values() {
        let format = FloatFormat::new(2, 1).unwrap();
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if gradcodec_sdk::simd::has_avx2() {
                kernels.push(Kernel::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        for scale in [0.37, 1.0, 4096.0] {
            let rounder = Rounder::new(&format, scale);
            // Every threshold's f32 neighbours, both signs, zeros, extremes
            // and a spread of magnitudes: 16-entry vectors and scalar tails.
            let mut input: Vec<f32> = Vec::new();
            for t in &rounder.thresholds {
                for v in [*t, t.next_up(), t.next_down()] {
                    input.extend([v, -v]);
                }
            }
            input.extend([0.0, -0.0, f32::MAX, -f32::MAX, f32::MIN_POSITIVE, 1e-45]);
            let mut state = 7u32;
            input.extend((0..1000).map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 8) as f32 / (1 << 24) as f32 - 0.5) * (12.0 / scale as f32)
            }));
            let levels: [f32; 16] = std::array::from_fn(|i| i as f32 * 0.5 - 3.75);
            let mut expected = (vec![0u32; input.len()], vec![0f32; input.len()]);
            // SAFETY: the portable build runs everywhere.
            unsafe {
                rounder.fill_with_levels_using(
                    Kernel::Portable,
                    &input,
                    &levels,
                    &mut expected.0,
                    &mut expected.1,
                )
            };
            for (a, symbol) in input.iter().zip(&expected.0) {
                assert_eq!(*symbol, format.symbol(scale * f64::from(*a)), "a = {a:e}");
            }
            for kernel in &kernels {
                for start in [0, 1, 5] {
                    let part = &input[start..];
                    let mut got = (vec![0u32; part.len()], vec![0f32; part.len()]);
                    // SAFETY: `kernels` holds only the builds this CPU runs.
                    unsafe {
                        rounder
                            .fill_with_levels_using(*kernel, part, &levels, &mut got.0, &mut got.1)
                    };
                    assert_eq!(got.0, expected.0[start..], "{kernel:?}, scale {scale}");
                    let same = got
                        .1
                        .iter()
                        .zip(&expected.1[start..])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{kernel:?}, scale {scale}: values differ");
                }
            }
            // Packed pairs, where the CPU runs them, on a multiple of 16 entries.
            let whole = &input[..input.len() & !15];
            let mut pairs = vec![0u8; whole.len() / 2];
            let mut values = vec![0f32; whole.len()];
            if rounder.fill_pairs_with_levels(whole, &levels, &mut pairs, &mut values) {
                let expected_pairs: Vec<u8> = expected.0[..whole.len()]
                    .chunks(2)
                    .map(|p| (16 * (p[0] & 15) + (p[1] & 15)) as u8)
                    .collect();
                assert_eq!(pairs, expected_pairs, "scale {scale}");
                let same = values
                    .iter()
                    .zip(&expected.1)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "scale {scale}: paired values differ");
            }
            assert!(!rounder.fill_pairs_with_levels(
                &input[..17],
                &levels,
                &mut [0; 8],
                &mut [0.0; 17]
            ));
        }
    }

    fn canonical(params: &str) -> Result<String, String> {
        parse_config::<FloatConvertConfig>(params)
            .map(|c| serde_json::to_string(&c).unwrap())
            .map_err(|e| e.message.to_string())
    }

    #[test]
    fn configs_resolve_presets_and_explicit_bits() {
        assert_eq!(
            canonical("{}").unwrap(),
            r#"{"format":"fp4","exponent_bits":2,"mantissa_bits":1,"prescale":"gennorm","fit":"gennorm","estimator":"moment"}"#
        );
        assert!(canonical(r#"{"exponent_bits": 5, "mantissa_bits": 2}"#)
            .unwrap()
            .starts_with(r#"{"format":"fp8","exponent_bits":5,"mantissa_bits":2"#));
        assert!(
            canonical(r#"{"format": "custom", "exponent_bits": 3, "mantissa_bits": 4}"#)
                .unwrap()
                .starts_with(r#"{"format":"custom","#)
        );
        let error = canonical(r#"{"exponent_bits": 9, "mantissa_bits": 7}"#).unwrap_err();
        assert!(
            error.contains("exponent_bits") && error.contains("exceeds 16"),
            "{error}"
        );
        let error = canonical(r#"{"format": "fp4", "mantissa_bits": 2}"#).unwrap_err();
        assert!(error.contains("mantissa_bits"), "{error}");
        let error = canonical(r#"{"format": "custom", "exponent_bits": 3}"#).unwrap_err();
        assert!(error.contains("mantissa_bits"), "{error}");
        let error = canonical(r#"{"prescale": "sometimes"}"#).unwrap_err();
        assert!(error.contains("prescale"), "{error}");
    }

    #[test]
    fn the_fp4_polynomial_matches_its_reference_values() {
        assert!((fp4_prescale_polynomial(1.0) - 0.65).abs() < 1e-12);
        assert!((fp4_prescale_polynomial(2.0) - 1.76).abs() < 1e-12);
    }

    #[test]
    fn zero_and_tiny_tensors_round_trip() {
        let config = parse_config::<FloatConvertConfig>(r#"{"format": "fp8"}"#).unwrap();
        for input in [
            vec![0.0f32; 64],
            vec![1e-3, -2e-3, 0.0, 5e-4],
            vec![3.0e38, -3.0e38, 1e-44],
        ] {
            let mut stage = FloatConvert::new(config.clone(), &tensor(input.len() as u64)).unwrap();
            let ctx = CallContext::new(0, 0);
            let mut coded = Quantized::default();
            stage.quantize(&ctx, &input, &mut coded).unwrap();
            let mut back = RVec::new();
            stage.dequantize(&ctx, &coded, &mut back).unwrap();
            assert!(back.iter().all(|v| v.is_finite()));
            for (a, b) in input.iter().zip(back.iter()) {
                assert!((a - b).abs() <= 0.13 * a.abs() + 1e-30, "{a} -> {b}");
            }
            let model = &coded.streams[0].model;
            assert!(model.iter().all(|p| *p > 0.0));
        }
    }

    #[test]
    fn the_model_is_the_gennorm_cell_mass_with_the_zero_point_mass() {
        let format = FloatFormat::new(2, 1).unwrap();
        let side = SideInfo {
            scale: 0.65,
            beta: 1.0,
            alpha: 1.0,
            zero_fraction: 0.2,
        };
        let model = level_model(&format, &side);
        // Zero cell of Laplace(1) at s = 0.65: 1 - e^(-0.25/0.65), plus the zeros.
        let zero_cell = 1.0 - (-0.25f64 / 0.65).exp();
        assert!((f64::from(model[5]) - (0.2 + 0.8 * zero_cell)).abs() < 1e-6);
        // Largest level: the tail beyond the edge 2.5.
        let tail = 0.5 * (-2.5f64 / 0.65).exp();
        assert!((f64::from(model[10]) - 0.8 * tail).abs() < 1e-6);
        assert_eq!(model[0], model[10]);
        let total: f32 = model.iter().sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}
