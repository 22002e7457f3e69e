//! Numerics shared by gradcodec's plugins (an ordinary library, not a plugin).
//!
//! - [`gennorm`]: the generalized normal distribution (density, CDF, cell
//!   masses, quantiles, sampling) and its fits — maximum likelihood (reference)
//!   and the fast moment estimator (ALGORITHMS.md §1.2);
//! - [`weibull`]: the double Weibull distribution and its fit;
//! - [`fit`]: per-tensor fits with exact zeros as a point mass and a guard for
//!   tiny tensors, and the Wasserstein-2 fit quality against Normal and Laplace;
//! - [`lloyd_max`]: M-magnitude weighted Lloyd-Max design on the standardized
//!   variable, cached by (shape grid, R, M) (ALGORITHMS.md §2);
//! - [`lloyd_data`]: the same weighted Lloyd-Max conditions on a tensor's own
//!   magnitudes, refining a model design where the model's tail is wrong;
//! - [`special`]: total wrappers over `statrs`' gamma functions.
//!
//! ```
//! use gradcodec_numerics::{fit::{fit_tensor, Estimator, Family}, GenNorm};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let data: Vec<f32> = GenNorm::new(1.0, 0.01)
//!     .sample(&mut rng, 20_000)
//!     .into_iter()
//!     .map(|x| x as f32)
//!     .collect();
//! let fit = fit_tensor(&data, Family::GenNorm(Estimator::Moment));
//! assert!((fit.shape - 1.0).abs() < 0.1 && (fit.scale / 0.01 - 1.0).abs() < 0.1);
//! ```

pub mod fit;
pub mod gennorm;
pub mod lloyd_data;
pub mod lloyd_max;
pub mod special;
pub mod weibull;

pub use gennorm::GenNorm;
pub use weibull::DoubleWeibull;
