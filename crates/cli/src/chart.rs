//! The chart of an install's progress log (`ferry log chart`, `bench/progress`): ferry's
//! percent and the fixed-checkpoint percent on the left axis, the time remaining (its
//! estimate, its range, and the real remaining time known once it finished) on the right,
//! over seconds since the install started. SVG or PNG by the file's extension. The drawing
//! is the dashboard's ([`ferry_server::dashboard::charts::progress_chart`]): one chart.

use std::path::Path;

use ferry_agent::progress::log::Sample;
use ferry_server::dashboard::charts::{ProgressPoint, progress_chart};
use plotters::prelude::*;

/// Chart size in pixels.
const SIZE: (u32, u32) = (1200, 700);

/// Draws `samples` to `out` (`.svg` or `.png`) with `title`. Errors are for people.
pub fn draw(samples: &[Sample], title: &str, out: &Path) -> Result<(), String> {
    if samples.is_empty() {
        return Err("the progress log has no samples".into());
    }
    let points: Vec<ProgressPoint> = samples
        .iter()
        .map(|s| ProgressPoint {
            t: s.t,
            percent: s.percent,
            fixed_percent: Some(s.fixed_percent),
            remaining: s.remaining,
            low: s.low,
            high: s.high,
            waiting: s.waiting.is_some(),
        })
        .collect();
    match out.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let root = SVGBackend::new(out, SIZE).into_drawing_area();
            progress_chart(&root, &points, title)?;
            root.present().map_err(|e| e.to_string())
        }
        Some("png") => {
            let root = BitMapBackend::new(out, SIZE).into_drawing_area();
            progress_chart(&root, &points, title)?;
            root.present().map_err(|e| e.to_string())
        }
        _ => Err(format!(
            "{} is neither .svg nor .png",
            out.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        )),
    }
}
