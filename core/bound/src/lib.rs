//! Rate-distortion limits for gradcodec (pure math, no I/O).
//!
//! - [`ceo`]: the quadratic Gaussian CEO sum rate of model aggregation, the
//!   unbiased averaging variant and independent coding (ALGORITHMS.md §4);
//! - [`allocation`]: per-layer distortion allocation — reverse water-filling and its
//!   Lagrangian generalization to CEO layers;
//! - [`estimate`]: `σ_X²` and `σ_N²` per layer from `K` workers' updates;
//! - [`blahut_arimoto`]: the rate-distortion function of a GenNorm source under MSE or
//!   the M-weighted distortion of ALGORITHMS.md §2, with the Shannon lower bound;
//! - [`tensor_limit`]: the single-source limit of a tensor (and of an update, tensor
//!   by tensor) at the distortion a codec achieved on it;
//! - [`report`]: serializable reports and curves;
//! - [`error`]: the error type.
//!
//! ```
//! use gradcodec_bound::ceo::GaussianCeo;
//!
//! let m = GaussianCeo::new(1.0, 0.1, 16)?;
//! let gain = m.independent_sum_rate(0.05)? / m.sum_rate(0.05)?;
//! assert!((gain - 2.9).abs() < 0.01); // ALGORITHMS.md §4
//! # Ok::<(), gradcodec_bound::BoundError>(())
//! ```

#![warn(missing_docs)]

pub mod allocation;
pub mod blahut_arimoto;
pub mod ceo;
pub mod error;
pub mod estimate;
pub mod report;
pub mod tensor_limit;

pub use error::BoundError;
