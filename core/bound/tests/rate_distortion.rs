//! Blahut–Arimoto against closed forms and the Shannon lower bound.

use gradcodec_bound::blahut_arimoto::{
    shannon_lower_bound, BaConfig, BlahutArimoto, SourceDensity,
};
use gradcodec_bound::BoundError;
use std::f64::consts::LN_2;

#[test]
fn gaussian_matches_the_closed_form_within_a_hundredth_of_a_bit() {
    let sigma2 = 9.0;
    let mut ba = BlahutArimoto::new(
        SourceDensity::Gaussian { sigma: 3.0 },
        0.0,
        BaConfig::default(),
    )
    .unwrap();
    assert!((ba.max_distortion() / sigma2 - 1.0).abs() < 1e-9);
    let mut worst: f64 = 0.0;
    for frac in [0.01, 0.03, 0.1, 0.3, 0.6, 0.9] {
        let d = frac * sigma2;
        let exact = 0.5 * (sigma2 / d).log2();
        let point = ba.rate_at(d).unwrap();
        let err = point.rate_bits - exact;
        println!(
            "Gaussian D/σ² = {frac}: BA {:.5} closed form {exact:.5} error {err:+.5} (Blahut gap {:.0e})",
            point.rate_bits, point.gap_bits
        );
        // Achievable, so never below R(D) (up to the stopping tolerance); and close.
        assert!(err > -1e-4, "D/σ²={frac}: {err}");
        assert!(err < 0.01, "D/σ²={frac}: {err}");
        assert!(point.gap_bits <= ba.config().tolerance_bits);
        worst = worst.max(err.abs());
    }
    println!("largest |error|: {worst:.5} bits");
    // Beyond the variance the rate is 0.
    assert_eq!(ba.rate_at(1.5 * sigma2).unwrap().rate_bits, 0.0);
}

#[test]
fn gaussian_point_at_slope_lies_on_the_curve() {
    // R(D) = ½log2(σ²/D) has slope −1/(2 D ln 2): that slope must land near D.
    let mut ba = BlahutArimoto::new(
        SourceDensity::Gaussian { sigma: 1.0 },
        0.0,
        BaConfig::default(),
    )
    .unwrap();
    for d in [0.05, 0.25] {
        let point = ba.at_slope(-1.0 / (2.0 * d * LN_2)).unwrap();
        assert!((point.distortion / d - 1.0).abs() < 0.01, "{point:?}");
        let exact = 0.5 * (1.0 / point.distortion).log2();
        assert!((point.rate_bits - exact).abs() < 0.005, "{point:?}");
    }
    assert!(ba.at_slope(0.0).is_err());
    assert!(ba.at_slope(f64::NAN).is_err());
}

#[test]
fn gen_norm_with_beta_two_is_the_gaussian() {
    let sigma = 0.2f64;
    let gn = SourceDensity::GenNorm {
        beta: 2.0,
        alpha: sigma * 2f64.sqrt(),
    };
    let g = SourceDensity::Gaussian { sigma };
    let d = 0.1 * sigma * sigma;
    let a = BlahutArimoto::new(gn, 0.0, BaConfig::default())
        .unwrap()
        .rate_at(d)
        .unwrap();
    let b = BlahutArimoto::new(g, 0.0, BaConfig::default())
        .unwrap()
        .rate_at(d)
        .unwrap();
    assert!((a.rate_bits - b.rate_bits).abs() < 1e-6);
    assert!(
        (gn.differential_entropy_bits().unwrap() - g.differential_entropy_bits().unwrap()).abs()
            < 1e-12
    );
}

#[test]
fn laplacian_sits_above_the_shannon_lower_bound_and_meets_it_at_low_distortion() {
    // Variance 2b² = 0.5; the default grid (401 cells).
    let source = SourceDensity::Laplacian { scale: 0.5 };
    let sigma2 = source.variance().unwrap();
    let mut ba = BlahutArimoto::new(source, 0.0, BaConfig::default()).unwrap();
    let (mut gaps, mut net) = (Vec::new(), Vec::new());
    for frac in [0.9, 0.6, 0.3, 0.1, 0.05, 0.03] {
        let d = frac * sigma2;
        let point = ba.rate_at(d).unwrap();
        let slb = shannon_lower_bound(&source, d).unwrap();
        let gap = point.rate_bits - slb.max(0.0);
        // The grid's own excess (the cells' width adds about D_floor to D).
        let excess = 0.5 * (1.0 + ba.grid_floor() / d).log2();
        println!(
            "Laplacian D/σ² = {frac}: BA {:.5} SLB {slb:.5} gap {gap:.5} (grid excess ≈ {excess:.5})",
            point.rate_bits
        );
        assert!(
            gap >= 0.0,
            "D/σ²={frac}: BA {} below SLB {slb}",
            point.rate_bits
        );
        gaps.push(gap);
        net.push(gap - excess);
    }
    // The gap shrinks as D → 0, from 0.045 bit at 0.9σ² to below a thousandth of a bit
    // at 0.05σ² ...
    for w in gaps[..5].windows(2) {
        assert!(w[1] < w[0], "{gaps:?}");
    }
    assert!(gaps[0] > 0.03 && gaps[4] < 1e-3, "{gaps:?}");
    // ... and further, to about 1e-4 bit at 0.03σ², once the grid's excess (which
    // grows as D → 0 and dominates there) is set aside.
    for w in net.windows(2) {
        assert!(w[1] < w[0], "{net:?}");
    }
    assert!(net[5] < 2e-4, "{net:?}");
}

#[test]
fn weighted_distortion_rates_are_non_negative_and_decreasing() {
    for (source, m) in [
        (SourceDensity::Laplacian { scale: 1.0 }, 2.0),
        (
            SourceDensity::GenNorm {
                beta: 0.7,
                alpha: 0.01,
            },
            1.0,
        ),
    ] {
        let mut ba = BlahutArimoto::new(source, m, BaConfig::default()).unwrap();
        // Rate 0 costs E|X|^{M+2}.
        let top = source.absolute_moment(m + 2.0).unwrap();
        assert!(
            (ba.max_distortion() / top - 1.0).abs() < 1e-6,
            "{} vs {top}",
            ba.max_distortion()
        );
        let mut previous = f64::INFINITY;
        for frac in [0.03, 0.2, 0.6, 0.95] {
            let point = ba.rate_at(frac * top).unwrap();
            println!(
                "{source:?} M={m} D/E|X|^(M+2) = {frac}: {:.5} bits",
                point.rate_bits
            );
            assert!(
                point.rate_bits > 0.0 && point.rate_bits < previous,
                "{point:?}"
            );
            previous = point.rate_bits;
        }
        assert_eq!(ba.rate_at(top * 1.01).unwrap().rate_bits, 0.0);
    }
}

#[test]
fn out_of_range_requests_are_errors() {
    let mut ba = BlahutArimoto::new(
        SourceDensity::Gaussian { sigma: 1.0 },
        0.0,
        BaConfig::default(),
    )
    .unwrap();
    let min = ba.min_distortion();
    for d in [0.0, -1.0, min * 0.5, f64::NAN] {
        let err = ba.rate_at(d).unwrap_err();
        assert!(
            matches!(err, BoundError::DistortionOutOfRange { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("valid range ["), "{err}");
    }
    assert!(BlahutArimoto::new(
        SourceDensity::Gaussian { sigma: -1.0 },
        0.0,
        BaConfig::default()
    )
    .is_err());
    assert!(BlahutArimoto::new(
        SourceDensity::Gaussian { sigma: 1.0 },
        -1.0,
        BaConfig::default()
    )
    .is_err());
    assert!(shannon_lower_bound(&SourceDensity::Laplacian { scale: 1.0 }, 0.0).is_err());
}

#[test]
fn gen_norm_entropy_matches_numerical_integration() {
    for (beta, alpha) in [(0.7, 0.3), (1.5, 2.0), (0.35, 1e-3)] {
        let source = SourceDensity::GenNorm { beta, alpha };
        // h = −∫ f log2 f, on x = α u^{2/β} (so f = C e^{−u²}), u ∈ (0, 8), midpoint rule.
        let steps = 200_000;
        let (p, du) = (2.0 / beta, 8.0 / steps as f64);
        let mut h = 0.0;
        for k in 0..steps {
            let u = (k as f64 + 0.5) * du;
            let x = alpha * u.powf(p);
            let dx = alpha * p * u.powf(p - 1.0);
            let f = source.pdf(x).unwrap();
            if f > 0.0 {
                h -= 2.0 * f * f.log2() * dx * du;
            }
        }
        let closed = source.differential_entropy_bits().unwrap();
        assert!((h - closed).abs() < 1e-6, "β={beta}: {h} vs {closed}");
    }
}
