//! Charts as SVG, drawn on the server with `plotters`: a device's install progress (the
//! same chart as `ferry log chart`, which calls [`progress_chart`]), outcomes per hour by
//! result, phase durations by class, and a rollout's failure rate against its threshold.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{Dash, Session};
use crate::ServerError;
use crate::rollouts::wilson_lower;

/// One point of an install's progress.
#[derive(Debug, Clone, Default)]
pub struct ProgressPoint {
    /// Seconds since the install started.
    pub t: f64,
    /// ferry's percent.
    pub percent: f64,
    /// The fixed-checkpoint bar's percent, where the log has it (the device's own log).
    pub fixed_percent: Option<f64>,
    /// Estimated seconds remaining.
    pub remaining: Option<f64>,
    /// Low end of the estimate's range.
    pub low: Option<f64>,
    /// High end of the estimate's range.
    pub high: Option<f64>,
    /// Whether nothing moved (a wait).
    pub waiting: bool,
}

/// Size of the dashboard's charts in pixels.
const SMALL: (u32, u32) = (900, 420);

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn chart_error(e: String) -> ServerError {
    ServerError::Io {
        op: "drawing a chart",
        source: std::io::Error::other(e),
    }
}

/// Draws an install's progress: ferry's percent (and the fixed-checkpoint percent when
/// known) on the left axis, the time remaining (estimate, its range, and the real remaining
/// time once finished) on the right, over seconds since the install started.
pub fn progress_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    samples: &[ProgressPoint],
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
    let waits: Vec<(f64, f64)> = spans(samples, |s| s.waiting);
    chart
        .draw_series(waits.iter().map(|(a, b)| {
            Rectangle::new(
                [(*a, 0.0), (*b, 100.0)],
                RGBColor(0xff, 0xbb, 0x33).mix(0.25).filled(),
            )
        }))
        .map_err(err)?;
    // The range of the estimate, as a band between its low and high ends.
    let ranged: Vec<&ProgressPoint> = samples
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
    if samples.iter().any(|s| s.fixed_percent.is_some()) {
        chart
            .draw_series(LineSeries::new(
                samples.iter().filter_map(|s| Some((s.t, s.fixed_percent?))),
                fixed.stroke_width(2),
            ))
            .map_err(err)?
            .label("fixed-checkpoint bar (macOS's way)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], fixed.stroke_width(2))
            });
    }
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
fn spans(samples: &[ProgressPoint], f: impl Fn(&ProgressPoint) -> bool) -> Vec<(f64, f64)> {
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

/// An SVG that only says `message` (a chart with nothing to draw yet).
fn empty_svg(message: &str) -> Response {
    let text = maud::html! { (message) }.into_string();
    svg(format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="60"><text x="10" y="35" font-family="sans-serif" font-size="16">{text}</text></svg>"#,
        w = SMALL.0
    ))
}

fn draw_svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<Response, ServerError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root).map_err(chart_error)?;
        root.present().map_err(|e| chart_error(e.to_string()))?;
    }
    Ok(svg(out))
}

/// A chart's plotting area on the SVG backend, both axes in `f64`.
type Plane<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn drawing(e: DrawingAreaErrorKind<std::io::Error>) -> String {
    e.to_string()
}

/// A white chart captioned `caption` over `x` × `y`, with room for the axes' labels.
fn plane<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Plane<'a, 'b>, String> {
    root.fill(&WHITE).map_err(drawing)?;
    ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(x, y)
        .map_err(drawing)
}

/// One series of bars, each `(left, right, height)`, with its legend entry.
fn bars(
    chart: &mut Plane<'_, '_>,
    label: &str,
    color: RGBColor,
    bars: impl IntoIterator<Item = (f64, f64, f64)>,
) -> Result<(), String> {
    chart
        .draw_series(
            bars.into_iter()
                .map(|(l, r, h)| Rectangle::new([(l, 0.0), (r, h)], color.filled())),
        )
        .map_err(drawing)?
        .label(label)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    Ok(())
}

/// One line through `points` (dashed when `dashed`), with its legend entry.
fn line(
    chart: &mut Plane<'_, '_>,
    label: &str,
    style: ShapeStyle,
    dashed: bool,
    points: Vec<(f64, f64)>,
) -> Result<(), String> {
    let drawn = if dashed {
        chart.draw_series(DashedLineSeries::new(points, 8, 5, style))
    } else {
        chart.draw_series(LineSeries::new(points, style))
    };
    drawn
        .map_err(drawing)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    Ok(())
}

/// The legend, boxed on a white ground, at `position`.
fn legend<'a, 'b: 'a>(
    chart: &mut Plane<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(drawing)
}

/// `GET /dashboard/charts/devices/{id}`: the device's current update's progress.
pub async fn progress_svg(
    State(dash): State<Dash>,
    _session: Session,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    let id = id.trim_end_matches(".svg").to_owned();
    let state = dash
        .db
        .device_states(&crate::fleet::Filter {
            device: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    let Some(update_id) = state.first().and_then(|s| s.update_id.clone()) else {
        return Ok(empty_svg("no update reported yet"));
    };
    let reports = dash.db.dashboard_progress(&id, &update_id).await?;
    let points = progress_points(&reports);
    if points.is_empty() {
        return Ok(empty_svg("no progress reported for this update yet"));
    }
    draw_svg(SMALL, |root| {
        progress_chart(root, &points, &format!("update {update_id}"))
    })
}

/// Progress reports as chart points, seconds counted from the first.
pub fn progress_points(reports: &[ferry_events::EventReport]) -> Vec<ProgressPoint> {
    let Some(first) = reports.first().map(|r| r.event_time) else {
        return Vec::new();
    };
    reports
        .iter()
        .filter_map(|r| {
            let p = r.progress.as_ref()?;
            Some(ProgressPoint {
                t: (r.event_time - first).num_milliseconds() as f64 / 1000.0,
                percent: p.percent,
                remaining: p.eta_secs,
                ..ProgressPoint::default()
            })
        })
        .collect()
}

const RESULTS: [(&str, RGBColor); 4] = [
    ("installed", RGBColor(0x1f, 0x77, 0xb4)),
    ("committed", RGBColor(0x2c, 0xa0, 0x2c)),
    ("failed", RGBColor(0xd6, 0x27, 0x28)),
    ("rolled_back", RGBColor(0xff, 0x7f, 0x0e)),
];

/// `GET /dashboard/charts/installs.svg`: outcomes per hour over the last 24 hours.
pub async fn installs_svg(
    State(dash): State<Dash>,
    _session: Session,
) -> Result<Response, ServerError> {
    let now = chrono::Utc::now().timestamp_millis();
    let now_hour = now / 3_600_000;
    let rows = dash
        .db
        .dashboard_outcomes_per_hour(now - 24 * 3_600_000)
        .await?;
    let top = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1) as f64 * 1.1;
    draw_svg(SMALL, |root| {
        let mut chart = plane(
            root,
            "updates per hour by result (last 24 h)",
            -24.0..0.5,
            0.0..top,
        )?;
        chart
            .configure_mesh()
            .x_desc("hours ago")
            .y_desc("devices")
            .draw()
            .map_err(drawing)?;
        let w = 0.2;
        for (i, (event, color)) in RESULTS.iter().enumerate() {
            let left = -0.4 + w * i as f64;
            let series = rows.iter().filter(|r| r.1 == *event).map(|(hour, _, n)| {
                let x = (hour - now_hour) as f64 + left;
                (x, x + w, *n as f64)
            });
            bars(&mut chart, event, *color, series)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// `GET /dashboard/charts/phases.svg`: mean seconds per phase by class (last 7 days).
pub async fn phases_svg(
    State(dash): State<Dash>,
    _session: Session,
) -> Result<Response, ServerError> {
    let now = chrono::Utc::now().timestamp_millis();
    let rows = dash.db.dashboard_phase_means(now - 7 * 86_400_000).await?;
    if rows.is_empty() {
        return Ok(empty_svg("no installed updates in the last 7 days"));
    }
    let mut phases: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    phases.sort_unstable();
    phases.dedup();
    let mut classes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    let top = rows.iter().map(|r| r.2).fold(1.0_f64, f64::max) * 1.1;
    let palette = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
    ];
    draw_svg(SMALL, |root| {
        let mut chart = plane(
            root,
            "seconds per phase by class (mean, last 7 days)",
            0.0..phases.len() as f64,
            0.0..top,
        )?;
        chart
            .configure_mesh()
            .x_labels(phases.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 {
                    phases.get(i).map_or_else(String::new, |p| (*p).to_owned())
                } else {
                    String::new()
                }
            })
            .y_desc("seconds")
            .draw()
            .map_err(drawing)?;
        let w = 0.8 / classes.len() as f64;
        for (c, class) in classes.iter().enumerate() {
            let series = rows
                .iter()
                .filter(|r| r.0 == *class)
                .filter_map(|(_, phase, secs)| {
                    let i = phases.iter().position(|p| p == phase)? as f64;
                    let x = i + 0.1 + w * c as f64;
                    Some((x, x + w, *secs))
                });
            bars(&mut chart, class, palette[c % palette.len()], series)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The failure rate of a rollout's attempts over time: (minutes since the first attempt,
/// failures / attempts, the Wilson lower bound the halt rule compares), at each attempt or
/// failure.
pub fn failure_rate_series(attempts: &[(i64, Option<i64>)]) -> Vec<(f64, f64, f64)> {
    let Some(start) = attempts.iter().map(|a| a.0).min() else {
        return Vec::new();
    };
    let mut changes: Vec<(i64, u64, u64)> = Vec::new();
    for (at, failed) in attempts {
        changes.push((*at, 1, 0));
        if let Some(f) = failed {
            changes.push((*f, 0, 1));
        }
    }
    changes.sort_unstable();
    let (mut n, mut k) = (0u64, 0u64);
    changes
        .into_iter()
        .map(|(at, a, f)| {
            n += a;
            k += f;
            let rate = k as f64 / n.max(1) as f64;
            ((at - start) as f64 / 60_000.0, rate, wilson_lower(k, n))
        })
        .collect()
}

/// `GET /dashboard/charts/rollouts/{id}`: the rollout's failure rate against its
/// threshold over time (this epoch).
pub async fn rollout_svg(
    State(dash): State<Dash>,
    _session: Session,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    let id: i64 = id
        .trim_end_matches(".svg")
        .parse()
        .map_err(|_| ServerError::NotFound(format!("rollout {id:?}")))?;
    let rollout = dash.db.rollout(id).await?;
    let attempts = dash.db.dashboard_attempts(id, rollout.epoch).await?;
    let series = failure_rate_series(&attempts);
    if series.is_empty() {
        return Ok(empty_svg(
            "no device has attempted this rollout's release yet",
        ));
    }
    let end = series.last().map_or(1.0, |s| s.0).max(1.0);
    let threshold = rollout.threshold;
    draw_svg(SMALL, |root| {
        let mut chart = plane(
            root,
            &format!("rollout {id}: failure rate against the halt threshold"),
            0.0..end,
            0.0..1.0,
        )?;
        chart
            .configure_mesh()
            .x_desc("minutes since the first attempt")
            .y_desc("share of attempts")
            .draw()
            .map_err(drawing)?;
        let red = RGBColor(0xd6, 0x27, 0x28).stroke_width(2);
        let blue = RGBColor(0x1f, 0x77, 0xb4).stroke_width(2);
        let rates = series.iter().map(|s| (s.0, s.1)).collect();
        line(&mut chart, "failures / attempts", red, false, rates)?;
        let bounds = series.iter().map(|s| (s.0, s.2)).collect();
        let label = "95 % lower bound (halts above the threshold)";
        line(&mut chart, label, blue, false, bounds)?;
        let limit = vec![(0.0, threshold), (end, threshold)];
        let label = format!("threshold {threshold}");
        line(&mut chart, &label, BLACK.stroke_width(1), true, limit)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_counts_attempts_and_failures_in_time_order() {
        // Two attempts, the second fails a minute after the first attempt.
        let s = failure_rate_series(&[(0, None), (30_000, Some(60_000))]);
        let rates: Vec<f64> = s.iter().map(|p| p.1).collect();
        assert_eq!(rates, vec![0.0, 0.0, 0.5]);
        assert_eq!(s[2].0, 1.0);
        assert!(s[2].2 < 0.5 && s[2].2 > 0.0, "{:?}", s[2]);
        assert!(failure_rate_series(&[]).is_empty());
    }

    #[test]
    fn progress_chart_draws_an_svg_with_its_title() {
        let points: Vec<ProgressPoint> = (0..10)
            .map(|i| ProgressPoint {
                t: f64::from(i),
                percent: f64::from(i) * 10.0,
                remaining: Some(f64::from(10 - i)),
                ..ProgressPoint::default()
            })
            .collect();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, SMALL).into_drawing_area();
            progress_chart(&root, &points, "update u-1").expect("draws");
            root.present().expect("presents");
        }
        assert!(out.starts_with("<svg"), "{}", &out[..40]);
        assert!(out.contains("update u-1"));
        assert!(out.contains("<polyline"));
    }
}
