//! The chart of an install's progress log (`ferry log chart`, `bench/progress`): ferry's
//! percent and the fixed-checkpoint percent on the left axis, the time remaining (its
//! estimate, its range, and the real remaining time known once it finished) on the right,
//! over seconds since the install started. SVG or PNG by the file's extension.

use std::path::Path;

use ferry_agent::progress::log::Sample;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Chart size in pixels.
const SIZE: (u32, u32) = (1200, 700);

/// Draws `samples` to `out` (`.svg` or `.png`) with `title`. Errors are for people.
pub fn draw(samples: &[Sample], title: &str, out: &Path) -> Result<(), String> {
    if samples.is_empty() {
        return Err("the progress log has no samples".into());
    }
    match out.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let root = SVGBackend::new(out, SIZE).into_drawing_area();
            plot(&root, samples, title)?;
            root.present().map_err(|e| e.to_string())
        }
        Some("png") => {
            let root = BitMapBackend::new(out, SIZE).into_drawing_area();
            plot(&root, samples, title)?;
            root.present().map_err(|e| e.to_string())
        }
        _ => Err(format!(
            "{} is neither .svg nor .png",
            out.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        )),
    }
}

fn plot<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    title: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let end = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let finished = samples.last().is_some_and(|s| s.percent >= 100.0);
    let max_remaining = samples
        .iter()
        .filter_map(|s| s.high.or(s.remaining))
        .chain(std::iter::once(if finished { end } else { 0.0 }))
        .fold(1.0_f64, f64::max)
        .min(end * 4.0)
        * 1.05;
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .right_y_label_area_size(65)
        .build_cartesian_2d(0.0..end, 0.0..100.0)
        .map_err(err)?
        .set_secondary_coord(0.0..end, 0.0..max_remaining);
    chart
        .configure_mesh()
        .x_desc("seconds since the install started")
        .y_desc("percent shown")
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("seconds remaining")
        .draw()
        .map_err(err)?;

    let ferry = RGBColor(0x1f, 0x77, 0xb4);
    let fixed = RGBColor(0xd6, 0x27, 0x28);
    let estimate = RGBColor(0x2c, 0xa0, 0x2c);
    let real = BLACK;
    // Waits shaded, so a flat stretch reads as what it was.
    let waits: Vec<(f64, f64)> = spans(samples, |s| s.waiting.is_some());
    chart
        .draw_series(waits.iter().map(|(a, b)| {
            Rectangle::new(
                [(*a, 0.0), (*b, 100.0)],
                RGBColor(0xff, 0xbb, 0x33).mix(0.25).filled(),
            )
        }))
        .map_err(err)?;
    // The range of the estimate, as a band between its low and high ends.
    let ranged: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.low.is_some() && s.high.is_some())
        .collect();
    let band: Vec<(f64, f64)> = ranged
        .iter()
        .filter_map(|s| Some((s.t, s.high?.min(max_remaining))))
        .chain(
            ranged
                .iter()
                .rev()
                .filter_map(|s| Some((s.t, s.low?.min(max_remaining)))),
        )
        .collect();
    if band.len() >= 3 {
        chart
            .draw_secondary_series(std::iter::once(Polygon::new(
                band,
                estimate.mix(0.18).filled(),
            )))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t, s.percent)),
            ferry.stroke_width(3),
        ))
        .map_err(err)?
        .label("ferry's bar (percent of the time)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ferry.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t, s.fixed_percent)),
            fixed.stroke_width(2),
        ))
        .map_err(err)?
        .label("fixed-checkpoint bar (macOS's way)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], fixed.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            samples
                .iter()
                .filter_map(|s| Some((s.t, s.remaining?.min(max_remaining)))),
            estimate.stroke_width(2),
        ))
        .map_err(err)?
        .label("time remaining: estimate (band: its range)")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], estimate.stroke_width(2))
        });
    if finished {
        chart
            .draw_secondary_series(DashedLineSeries::new(
                samples.iter().map(|s| (s.t, end - s.t)),
                8,
                5,
                real.stroke_width(1),
            ))
            .map_err(err)?
            .label("time remaining: real")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], real.stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The time spans over which `f` holds, from one sample to the next.
fn spans(samples: &[Sample], f: impl Fn(&Sample) -> bool) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut start = None;
    for w in samples.windows(2) {
        match (start, f(&w[0])) {
            (None, true) => start = Some(w[0].t),
            (Some(a), false) => {
                out.push((a, w[0].t));
                start = None;
            }
            _ => {}
        }
    }
    if let (Some(a), Some(last)) = (start, samples.last()) {
        out.push((a, last.t));
    }
    out
}
