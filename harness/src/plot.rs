//! Plots (plotters), each as PNG and SVG: test accuracy against cumulative
//! uplink volume (log scale) and against rounds, and each round's real uplink
//! bits beside the CEO limit at its achieved distortion (log scale); for a
//! sweep, one figure with both accuracy panels and every pipeline's curve.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (Bitstream Vera
//! licence, see `assets/DejaVuSans-LICENSE`), so plots need no system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::RoundRecord;

static FONT: Once = Once::new();
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    FONT.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is valid"));
    });
}

/// One curve: a label and its records.
pub type Series<'a> = (&'a str, &'a [RoundRecord]);

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e:?}")
}

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

fn acc_range(series: &[Series<'_>], target: f64) -> (f64, f64) {
    let accs = series
        .iter()
        .flat_map(|s| s.1.iter().map(|r| r.test_accuracy));
    let (lo, hi) = accs.fold((target, target), |(lo, hi), a| (lo.min(a), hi.max(a)));
    ((lo - 0.02).max(0.0), (hi + 0.02).min(1.0))
}

/// A chart with a log-scale volume axis and an accuracy axis, its mesh and the
/// target line drawn.
#[allow(clippy::too_many_arguments)]
fn accuracy_vs_volume_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: Option<&str>,
    (xmin, xmax): (f64, f64),
    (ylo, yhi): (f64, f64),
    x_desc: &str,
    y_desc: &str,
    target: f64,
) -> anyhow::Result<ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, RangedCoordf64>>> {
    let mut builder = ChartBuilder::on(area);
    if let Some(caption) = caption {
        builder.caption(caption, ("sans-serif", 20));
    }
    let mut chart = builder
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((xmin..xmax).log_scale(), ylo..yhi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(BLACK.mix(0.04))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [(xmin, target), (xmax, target)],
            BLACK.mix(0.35).stroke_width(1),
        ))
        .map_err(err)?;
    Ok(chart)
}

/// The legend, lower right.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, RangedCoordf64>>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_vs_bits<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series<'_>],
    target: f64,
    title: &str,
) -> anyhow::Result<()> {
    let mb = |r: &RoundRecord| r.cum_uplink_bits / 8e6;
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().filter(|r| r.cum_uplink_bits > 0.0).map(mb))
        .collect();
    let (xmin, xmax) = xs
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let (xmin, xmax) = if xs.is_empty() {
        (0.01, 1.0)
    } else {
        (xmin * 0.8, xmax * 1.25)
    };
    let mut chart = accuracy_vs_volume_chart(
        area,
        Some(title),
        (xmin, xmax),
        acc_range(series, target),
        "cumulative uplink volume, MB (log)",
        "test accuracy",
        target,
    )?;
    for (i, (label, recs)) in series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = recs
            .iter()
            .filter(|r| r.cum_uplink_bits > 0.0)
            .map(|r| (mb(r), r.test_accuracy))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 2, c.filled())))
            .map_err(err)?;
    }
    if series.len() > 1 {
        draw_legend(&mut chart)?;
    }
    Ok(())
}

fn draw_vs_rounds<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series<'_>],
    target: f64,
    title: &str,
) -> anyhow::Result<()> {
    let last = series
        .iter()
        .flat_map(|s| s.1.iter().map(|r| r.round))
        .max()
        .unwrap_or(1)
        .max(1);
    let (ylo, yhi) = acc_range(series, target);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0i64..last as i64, ylo..yhi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("test accuracy")
        .x_labels((last + 1).min(12))
        .light_line_style(BLACK.mix(0.04))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [(0i64, target), (last as i64, target)],
            BLACK.mix(0.35).stroke_width(1),
        ))
        .map_err(err)?;
    for (i, (label, recs)) in series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(i64, f64)> = recs
            .iter()
            .map(|r| (r.round as i64, r.test_accuracy))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Real uplink message bits per round against the CEO and averaging-estimator
/// sum rates at the round's achieved distortion (log scale; rounds without a
/// positive value leave a gap).
fn draw_bits_vs_ceo<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    records: &[RoundRecord],
    title: &str,
) -> anyhow::Result<()> {
    let trained: Vec<&RoundRecord> = records.iter().filter(|r| r.round > 0).collect();
    type Value = fn(&RoundRecord) -> Option<f64>;
    let lines: [(&str, Value); 3] = [
        ("real uplink message bits", |r| {
            Some(8.0 * r.uplink_bytes as f64)
        }),
        ("CEO sum rate at achieved D", |r| r.ceo.ceo_bits),
        ("averaging-estimator sum rate at achieved D", |r| {
            r.ceo.averaging_bits
        }),
    ];
    let points: Vec<Vec<(i64, f64)>> = lines
        .iter()
        .map(|(_, f)| {
            trained
                .iter()
                .filter_map(|r| {
                    f(r).filter(|v| v.is_finite() && *v > 0.0)
                        .map(|v| (r.round as i64, v))
                })
                .collect()
        })
        .collect();
    let (lo, hi) = points
        .iter()
        .flatten()
        .fold((f64::INFINITY, 0f64), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (lo, hi) = if hi > 0.0 {
        (lo * 0.5, hi * 2.0)
    } else {
        (1.0, 10.0)
    };
    let last = trained.last().map_or(1, |r| r.round).max(1) as i64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0i64..last + 1, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("uplink bits per round, all learners (log)")
        .x_labels((last as usize + 2).min(12))
        .y_label_formatter(&|v| format!("{v:.1e}"))
        .light_line_style(BLACK.mix(0.04))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    for (i, ((label, _), pts)) in lines.iter().zip(points).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    Ok(())
}

type Panel<'a> = &'a dyn Fn(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>;

/// Renders `draw` into `<stem>.png` and `<stem>.svg` of `size`.
fn render(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    draw_png: Panel<'_>,
    draw_svg: &dyn Fn(&DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    register_font();
    let png = dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw_png(&root)?;
        root.present().map_err(err)?;
    }
    let svg = dir.join(format!("{stem}.svg"));
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw_svg(&root)?;
        root.present().map_err(err)?;
    }
    Ok(())
}

/// Writes `accuracy_vs_bits.{png,svg}`, `accuracy_vs_rounds.{png,svg}` and
/// `bits_vs_ceo.{png,svg}` of one run.
pub fn run_plots(
    dir: &Path,
    name: &str,
    records: &[RoundRecord],
    target: f64,
) -> anyhow::Result<()> {
    let series = [(name, records)];
    let t1 = format!("{name}: accuracy vs uplink volume");
    let t2 = format!("{name}: accuracy vs rounds");
    render(
        dir,
        "accuracy_vs_bits",
        (800, 560),
        &|a| draw_vs_bits(a, &series, target, &t1),
        &|a| draw_vs_bits(a, &series, target, &t1),
    )?;
    render(
        dir,
        "accuracy_vs_rounds",
        (800, 560),
        &|a| draw_vs_rounds(a, &series, target, &t2),
        &|a| draw_vs_rounds(a, &series, target, &t2),
    )?;
    let evaluated = records.iter().any(|r| r.ceo.ceo_bits.is_some());
    let t3 = format!(
        "{name}: uplink bits vs the CEO limit{}",
        if evaluated { "" } else { " (not evaluated)" }
    );
    render(
        dir,
        "bits_vs_ceo",
        (800, 560),
        &|a| draw_bits_vs_ceo(a, records, &t3),
        &|a| draw_bits_vs_ceo(a, records, &t3),
    )
}

/// Writes `<stem>.{png,svg}`: both panels, every series.
pub fn comparison_plot(
    dir: &Path,
    stem: &str,
    title: &str,
    series: &[Series<'_>],
    target: f64,
) -> anyhow::Result<()> {
    fn both<DB: DrawingBackend>(
        a: &DrawingArea<DB, Shift>,
        title: &str,
        series: &[Series<'_>],
        target: f64,
    ) -> anyhow::Result<()> {
        let a = a.titled(title, ("sans-serif", 24)).map_err(err)?;
        let (l, r) = a.split_horizontally(a.dim_in_pixel().0 / 2);
        draw_vs_bits(&l, series, target, "accuracy vs cumulative uplink volume")?;
        draw_vs_rounds(&r, series, target, "accuracy vs rounds")
    }
    render(
        dir,
        stem,
        (1500, 620),
        &|a| both(a, title, series, target),
        &|a| both(a, title, series, target),
    )
}

/// One point of a multi-seed curve: mean cumulative uplink MB, and the mean,
/// smallest and largest accuracy over the seeds at that round.
#[derive(Debug, Clone, Copy)]
pub struct BandPoint {
    /// Mean cumulative uplink volume, MB.
    pub x: f64,
    /// Mean accuracy.
    pub mean: f64,
    /// Smallest accuracy.
    pub low: f64,
    /// Largest accuracy.
    pub high: f64,
}

/// A pipeline's mean curve with its band over seeds.
#[derive(Debug, Clone)]
pub struct Band {
    /// Pipeline label.
    pub label: String,
    /// Points in round order.
    pub points: Vec<BandPoint>,
}

fn draw_bands<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    bands: &[Band],
    target: f64,
) -> anyhow::Result<()> {
    let area = area.titled(title, ("sans-serif", 22)).map_err(err)?;
    let xs = bands.iter().flat_map(|b| b.points.iter().map(|p| p.x));
    let (xmin, xmax) = xs.fold((f64::INFINITY, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (xmin, xmax) = if xmin.is_finite() && xmax > 0.0 {
        (xmin * 0.8, xmax * 1.25)
    } else {
        (0.01, 1.0)
    };
    let ys = bands
        .iter()
        .flat_map(|b| b.points.iter().flat_map(|p| [p.low, p.high]));
    let (ylo, yhi) = ys.fold((target, target), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let mut chart = accuracy_vs_volume_chart(
        &area,
        None,
        (xmin, xmax),
        ((ylo - 0.02).max(0.0), (yhi + 0.02).min(1.0)),
        "cumulative uplink volume, MB (log), mean over seeds",
        "test accuracy: mean, band = min..max over seeds",
        target,
    )?;
    for (i, band) in bands.iter().enumerate() {
        let c = color(i);
        let outline: Vec<(f64, f64)> = band
            .points
            .iter()
            .map(|p| (p.x, p.high))
            .chain(band.points.iter().rev().map(|p| (p.x, p.low)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(outline, c.mix(0.15).filled())))
            .map_err(err)?;
        let mean: Vec<(f64, f64)> = band.points.iter().map(|p| (p.x, p.mean)).collect();
        chart
            .draw_series(LineSeries::new(mean, c.stroke_width(2)))
            .map_err(err)?
            .label(band.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    draw_legend(&mut chart)
}

/// Writes `<stem>.{png,svg}`: every pipeline's mean accuracy against mean
/// cumulative uplink volume, with its min..max band over seeds.
pub fn band_plot(
    dir: &Path,
    stem: &str,
    title: &str,
    bands: &[Band],
    target: f64,
) -> anyhow::Result<()> {
    render(
        dir,
        stem,
        (1000, 650),
        &|a| draw_bands(a, title, bands, target),
        &|a| draw_bands(a, title, bands, target),
    )
}
