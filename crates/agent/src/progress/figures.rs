//! Issue 13's figures of one install's progress stream, one definition for the benchmark
//! (`bench/progress`, on the recorded samples) and the estimator's replay tests (on the
//! estimates a replay gives):
//!
//! - longest visible stall while work proceeds: the longest time neither the percent (at
//!   0.1 %) nor the action text changed, waits excluded;
//! - time-remaining error: |estimate − real| / real at each point past 10 % with at least
//!   [`MIN_REAL_SECS`] really left (below that a relative error means nothing): median and
//!   p90, and after a change (a rate drop, the end of a cut) the seconds until the
//!   estimate is back within [`RECOVERED`];
//! - linearity: the largest |percent − elapsed fraction of the total time|, for ferry's
//!   bar and for the fixed-checkpoint bar.

use serde::Serialize;

use crate::progress::log::Sample;

/// Seconds really left below which a point's time-remaining error is not scored.
pub const MIN_REAL_SECS: f64 = 5.0;
/// The relative error an estimate is back within after a change.
pub const RECOVERED: f64 = 0.15;

/// One point of a progress stream, as the figures read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    /// Seconds since the install started.
    pub t: f64,
    /// ferry's percent.
    pub percent: f64,
    /// The fixed-checkpoint bar's percent.
    pub fixed_percent: f64,
    /// The action text shown.
    pub action: &'a str,
    /// A waiting reason was shown (no work proceeded).
    pub waiting: bool,
    /// The time remaining shown, seconds.
    pub remaining: Option<f64>,
}

impl<'a> Point<'a> {
    /// The point a recorded sample shows.
    pub fn recorded(s: &'a Sample) -> Point<'a> {
        Point {
            t: s.t,
            percent: s.percent,
            fixed_percent: s.fixed_percent,
            action: &s.action,
            waiting: s.waiting.is_some(),
            remaining: s.remaining,
        }
    }
}

/// The figures of one install.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Seconds from the first point to the last.
    pub total_secs: f64,
    /// Points read.
    pub samples: usize,
    /// The longest visible stall while work proceeds, seconds.
    pub longest_stall_secs: f64,
    /// Median time-remaining error (a fraction).
    pub error_median: Option<f64>,
    /// 90th percentile of the time-remaining error.
    pub error_p90: Option<f64>,
    /// Seconds after the change until the estimate was back within [`RECOVERED`].
    pub recovery_secs: Option<f64>,
    /// ferry's bar: the largest gap to the elapsed fraction of the time, points.
    pub linearity_ferry: f64,
    /// The fixed-checkpoint bar's.
    pub linearity_fixed: f64,
}

/// The figures of `points` (one run, in time order; the install ends at the last);
/// `change`: when the rate changed or the cut ended, seconds on the points' clock.
pub fn of(points: &[Point], change: Option<f64>) -> Figures {
    let end = points.last().map_or(0.0, |p| p.t);
    let mut longest = 0.0_f64;
    let mut since: Option<f64> = None;
    for w in points.windows(2) {
        let same = (w[0].percent * 10.0).round() == (w[1].percent * 10.0).round()
            && w[0].action == w[1].action;
        let working = !w[0].waiting && !w[1].waiting;
        if same && working {
            let from = *since.get_or_insert(w[0].t);
            longest = longest.max(w[1].t - from);
        } else {
            since = None;
        }
    }
    let error = |p: &Point| {
        let real = end - p.t;
        p.remaining
            .filter(|_| p.percent >= 10.0 && real >= MIN_REAL_SECS)
            .map(|est| (est - real).abs() / real)
    };
    let mut errors: Vec<f64> = points.iter().filter_map(error).collect();
    errors.sort_by(f64::total_cmp);
    let q = |q: f64| {
        (!errors.is_empty()).then(|| errors[((errors.len() - 1) as f64 * q).round() as usize])
    };
    // The first point after the change whose estimate is back within RECOVERED.
    let recovery = change.and_then(|at| {
        points
            .iter()
            .filter(|p| p.t >= at)
            .find(|p| error(p).is_some_and(|e| e <= RECOVERED))
            .map(|p| p.t - at)
    });
    let linearity = |f: fn(&Point) -> f64| {
        points
            .iter()
            .map(|p| (f(p) - 100.0 * p.t / end.max(1e-9)).abs())
            .fold(0.0, f64::max)
    };
    Figures {
        total_secs: end,
        samples: points.len(),
        longest_stall_secs: longest,
        error_median: q(0.5),
        error_p90: q(0.9),
        recovery_secs: recovery,
        linearity_ferry: linearity(|p| p.percent),
        linearity_fixed: linearity(|p| p.fixed_percent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, percent: f64, remaining: f64) -> Point<'static> {
        Point {
            t,
            percent,
            fixed_percent: 50.0,
            action: "Downloading",
            waiting: false,
            remaining: Some(remaining),
        }
    }

    #[test]
    fn stalls_errors_recovery_and_linearity() {
        // 0–20 s: the bar at the elapsed fraction, the estimate 20 % long until t = 8,
        // right after; the percent frozen from t = 12 to t = 15.
        let mut points: Vec<Point> = (0..=20)
            .map(|i| {
                let t = i as f64;
                let real = 20.0 - t;
                let est = if t < 8.0 { real * 1.2 } else { real };
                point(t, 5.0 * t, est)
            })
            .collect();
        for p in points.iter_mut().filter(|p| (12.0..=15.0).contains(&p.t)) {
            p.percent = 60.0;
        }
        let f = of(&points, Some(5.0));
        assert_eq!(f.total_secs, 20.0);
        assert!((f.longest_stall_secs - 3.0).abs() < 1e-9, "{f:?}");
        // Scored: t = 2 … 15 (≥ 10 %, ≥ 5 s left): 6 of 14 points 20 % off.
        assert_eq!(f.error_median, Some(0.0));
        assert!((f.error_p90.unwrap() - 0.2).abs() < 1e-9, "{f:?}");
        assert_eq!(f.recovery_secs, Some(3.0));
        assert!((f.linearity_ferry - 15.0).abs() < 1e-9, "{f:?}");
        // A wait is not a stall.
        for p in points.iter_mut().filter(|p| (12.0..=15.0).contains(&p.t)) {
            p.waiting = true;
        }
        assert_eq!(of(&points, None).longest_stall_secs, 0.0);
    }
}
