//! Distortion and rate measures.
//!
//! - relative MSE: `Σ (x - x̂)² / Σ x²`;
//! - relative M-weighted distortion (Liu, Rini, Salehkalaibar, Chen 2023):
//!   `Σ |x|^M (x - x̂)² / Σ |x|^M x²` (M = 0 gives the relative MSE);
//! - bits per entry: `8 × message bytes / entries`, the real encoded size.

use crate::update::Update;

fn pairs<'a>(
    original: &'a Update,
    reconstructed: &'a Update,
) -> impl Iterator<Item = (f64, f64)> + 'a {
    original
        .tensors
        .iter()
        .zip(&reconstructed.tensors)
        .flat_map(|(a, b)| {
            a.data
                .iter()
                .zip(b.data.iter())
                .map(|(x, y)| (f64::from(*x), f64::from(*y)))
        })
}

/// `Σ (x - x̂)² / Σ x²` over the whole update (0 when both are zero).
pub fn relative_mse(original: &Update, reconstructed: &Update) -> f64 {
    relative_weighted_distortion(original, reconstructed, 0.0)
}

/// `Σ |x|^M (x - x̂)² / Σ |x|^M x²` over the whole update.
pub fn relative_weighted_distortion(original: &Update, reconstructed: &Update, m: f64) -> f64 {
    let (mut error, mut energy) = (0.0f64, 0.0f64);
    for (x, y) in pairs(original, reconstructed) {
        let weight = if m == 0.0 { 1.0 } else { x.abs().powf(m) };
        error += weight * (x - y) * (x - y);
        energy += weight * x * x;
    }
    if energy == 0.0 {
        if error == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        error / energy
    }
}

/// `8 × bytes / entries`.
pub fn bits_per_entry(bytes: u64, entries: u64) -> f64 {
    if entries == 0 {
        0.0
    } else {
        8.0 * bytes as f64 / entries as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::NamedTensor;

    #[test]
    fn weighted_distortion_matches_hand_computation() {
        let a = Update::new(vec![
            NamedTensor::from_vec("t", &[3], vec![1.0, -2.0, 0.0]).unwrap()
        ]);
        let b = Update::new(vec![
            NamedTensor::from_vec("t", &[3], vec![0.5, -2.0, 1.0]).unwrap()
        ]);
        // MSE: (0.25 + 0 + 1) / (1 + 4) = 0.25
        assert!((relative_mse(&a, &b) - 0.25).abs() < 1e-12);
        // M = 2: weights 1, 4, 0 -> (0.25) / (1 + 16)
        assert!((relative_weighted_distortion(&a, &b, 2.0) - 0.25 / 17.0).abs() < 1e-12);
        assert_eq!(bits_per_entry(4, 8), 4.0);
    }
}
