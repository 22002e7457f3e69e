//! The crate's error type.
//!
//! Every error names what was wrong and, where a range applies, the valid range, so
//! a command-line front end can print it as is.

use std::fmt;

/// Everything that can go wrong when computing a bound.
#[derive(Debug, Clone, PartialEq)]
pub enum BoundError {
    /// A model parameter is outside its domain.
    InvalidParameter {
        /// The parameter's name, as in the formulas (`sigma_x2`, `k`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the value must satisfy, in words.
        requirement: &'static str,
    },
    /// A target distortion is outside the range where a rate function is defined.
    DistortionOutOfRange {
        /// Which rate function was asked (for the message).
        function: &'static str,
        /// The distortion asked for.
        distortion: f64,
        /// Lower end of the valid range.
        min: f64,
        /// Whether `min` itself is valid.
        min_inclusive: bool,
        /// Upper end of the valid range (`f64::INFINITY` when unbounded).
        max: f64,
    },
    /// Fewer than two workers' updates: the observation noise cannot be estimated.
    TooFewWorkers {
        /// The layer being estimated.
        layer: String,
        /// How many updates were given.
        workers: usize,
    },
    /// Workers' tensors for one layer have different lengths.
    ShapeMismatch {
        /// The layer.
        layer: String,
        /// The index of the first worker whose length differs from worker 0's.
        worker: usize,
        /// Worker 0's length.
        expected: usize,
        /// That worker's length.
        found: usize,
    },
    /// A layer has no entries.
    EmptyLayer {
        /// The layer.
        layer: String,
    },
    /// A worker's tensor holds NaN or an infinity.
    NonFinite {
        /// The layer.
        layer: String,
        /// The worker's index.
        worker: usize,
        /// The entry's index.
        index: usize,
    },
    /// The per-entry distortion budget is below what the layers can reach at any
    /// finite rate (the sum of their lower distortion limits).
    Infeasible {
        /// The per-entry distortion asked for.
        distortion: f64,
        /// The entry-weighted mean of the layers' lower limits (exclusive).
        min: f64,
    },
    /// An allocation was asked for no layers, or for layers with no entries.
    NoLayers,
}

impl fmt::Display for BoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundError::InvalidParameter {
                name,
                value,
                requirement,
            } => write!(f, "{name} = {value} is invalid: it must be {requirement}"),
            BoundError::DistortionOutOfRange {
                function,
                distortion,
                min,
                min_inclusive,
                max,
            } => {
                let open = if *min_inclusive { '[' } else { '(' };
                let close = if max.is_finite() { ']' } else { ')' };
                write!(
                    f,
                    "distortion D = {distortion:e} is outside the valid range \
                     {open}{min:e}, {max:e}{close} of the {function}"
                )
            }
            BoundError::TooFewWorkers { layer, workers } => write!(
                f,
                "layer {layer:?}: need the updates of at least 2 workers to estimate the \
                 observation noise, got {workers}"
            ),
            BoundError::ShapeMismatch {
                layer,
                worker,
                expected,
                found,
            } => write!(
                f,
                "layer {layer:?}: worker {worker} has {found} entries but worker 0 has {expected}"
            ),
            BoundError::EmptyLayer { layer } => write!(f, "layer {layer:?} has no entries"),
            BoundError::NonFinite {
                layer,
                worker,
                index,
            } => write!(
                f,
                "layer {layer:?}: worker {worker} holds a non-finite value at entry {index}"
            ),
            BoundError::Infeasible { distortion, min } => write!(
                f,
                "per-entry distortion D = {distortion:e} is not reachable: the layers need \
                 D > {min:e} (entry-weighted mean of their lower limits)"
            ),
            BoundError::NoLayers => write!(f, "no layers (or only empty layers) to allocate over"),
        }
    }
}

impl std::error::Error for BoundError {}

/// Checks that `value` is finite and strictly positive.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64, BoundError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(BoundError::InvalidParameter {
            name,
            value,
            requirement: "finite and > 0",
        })
    }
}

/// Checks that `value` is finite and non-negative.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<f64, BoundError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(BoundError::InvalidParameter {
            name,
            value,
            requirement: "finite and >= 0",
        })
    }
}
