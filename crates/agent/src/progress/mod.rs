//! Honest progress (DESIGN §5). The controller reports measured work — a phase named
//! by its checkpoint, units done of a total, the action text — as [`Progress`] samples
//! carrying the fixed-checkpoint percent ([`CHECKPOINTS`], interpolated by [`Phase`]);
//! the [`tracker`] turns them into the percent of the total *time* ([`estimate`], over
//! the expected-duration model of [`phases`] fed by [`history`]), a time remaining with
//! a range, the waiting reason when nothing moves, and a progress [`log`] per update;
//! [`replay`] re-runs the estimator on a recorded log and [`figures`] scores a stream.

pub mod estimate;
pub mod figures;
pub mod history;
pub mod log;
pub mod phases;
pub mod replay;
pub mod tracker;

use std::time::{Duration, Instant};

use serde::Serialize;

/// A checkpoint of the overall bar: (percent, state).
pub type Checkpoint = (f64, &'static str);

/// The checkpoints, as the source articles list them for macOS 26.3.
pub const CHECKPOINTS: &[Checkpoint] = &[
    (0.1, "ACCEPTED"),
    (0.2, "STARTUP"),
    (0.3, "LOADING_PERSISTED"),
    (0.5, "PURGING"),
    (0.9, "READY"),
    (1.0, "RELOADING"),
    (4.0, "DOWNLOADING_UPDATE_BRAIN"),
    (7.0, "PREFLIGHT_WAKEUP"),
    (9.0, "PREFLIGHT_PREREQUISITE"),
    (10.0, "PREFLIGHT_PERSONALIZE"),
    (15.0, "DOWNLOADING_RUNTIME"),
    (16.0, "DOWNLOADING_UPDATE"),
    (54.0, "DOWNLOADED_UPDATE"),
    (55.0, "PREFLIGHT_RECOVERY"),
    (60.0, "PREPARING_UPDATE"),
    (99.0, "PREPARED"),
    (100.0, "COMPLETED"),
];

/// Percent of the bar at `state`'s checkpoint.
pub fn checkpoint(state: &str) -> f64 {
    CHECKPOINTS
        .iter()
        .find(|(_, s)| *s == state)
        .map_or(0.0, |(p, _)| *p)
}

/// The percent after `state`'s checkpoint (where its measured work ends).
pub fn next_checkpoint(state: &str) -> f64 {
    let idx = CHECKPOINTS
        .iter()
        .position(|(_, s)| *s == state)
        .unwrap_or(0);
    CHECKPOINTS.get(idx + 1).map_or(100.0, |(p, _)| *p)
}

/// One progress report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// Overall percent, 0–100: the estimated fraction of the total time elapsed once the
    /// [`tracker`] made it (the fixed-checkpoint percent before).
    pub percent: f64,
    /// The percent the fixed-checkpoint bar (macOS's way) shows at the same point.
    pub fixed_percent: f64,
    /// Controller state (a checkpoint name).
    pub state: &'static str,
    /// What is being done, for people, with its units once tracked ("Verifying system
    /// image… 3.1 of 8.0 GB").
    pub action: String,
    /// Work done in this phase (bytes).
    pub done: u64,
    /// Work in this phase (bytes).
    pub total: u64,
    /// A second measure of the same phase: image bytes written of `written_total` (a full
    /// download is network-bound or slot-bound, and the two differ: zeros compress well).
    pub written: u64,
    /// Image bytes the phase writes in all (0: no second measure).
    pub written_total: u64,
    /// Observed rate, bytes/s.
    pub rate: f64,
    /// Estimated seconds left in the whole install (this phase's only, untracked).
    pub eta_secs: Option<f64>,
    /// Low end of the time-remaining range, seconds.
    pub eta_low: Option<f64>,
    /// High end of the time-remaining range, seconds.
    pub eta_high: Option<f64>,
    /// Why no work is progressing ("waiting for the network: no bytes for 12 s…").
    pub waiting: Option<String>,
    /// The work itself is waiting to ask again (a cut download backing off): why, which
    /// retry, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Why the bar did not follow the estimate (it never moves backwards silently).
    pub note: Option<String>,
    /// Seconds since the install started.
    pub elapsed_secs: f64,
}

/// A wait the work announces itself: a cut download backing off before it asks for the
/// rest of the payload again, in the same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// What ended the last connection ("the connection timed out").
    pub reason: String,
    /// This retry's number in a row (from 1).
    pub attempt: u32,
    /// The most retries in a row the run makes.
    pub of: u32,
    /// When the request goes again; `None` while it is being made.
    #[serde(skip)]
    pub at: Option<Instant>,
}

/// The ceilings of a cut download's waits before retry 1, 2, 3…: 1, 2, 4, 8, 16 s, then 30.
pub const DOWNLOAD_BACKOFF: ferry_types::Backoff = ferry_types::Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(30),
};

impl Retry {
    /// How long a cut download waits before retry `n` (from 1): between half and all of
    /// [`DOWNLOAD_BACKOFF`]'s ceiling, at random, so that the devices an outage cut at the
    /// same moment do not all come back in the same second.
    pub fn backoff(n: u32) -> Duration {
        DOWNLOAD_BACKOFF.wait_with(n, 0.5 + rand::random::<f64>() / 2.0)
    }
}

impl Progress {
    /// The time remaining for people ("about 4–6 min left"), if estimated.
    pub fn remaining_text(&self) -> Option<String> {
        let eta = self.eta_secs?;
        Some(estimate::remaining_text(
            eta,
            self.eta_low.unwrap_or(eta),
            self.eta_high.unwrap_or(eta),
        ))
    }
}

/// Bytes for people, in decimal units ("3.1 GB").
pub fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// "3.1 of 8.0 GB": `done` in `total`'s unit, so the numbers compare at a glance.
pub fn of_text(done: u64, total: u64) -> String {
    let total_text = bytes_text(total);
    let (unit, scale) = match total_text.rsplit_once(' ') {
        Some((_, "KB")) => ("KB", 1e3),
        Some((_, "MB")) => ("MB", 1e6),
        Some((_, "GB")) => ("GB", 1e9),
        Some((_, "TB")) => ("TB", 1e12),
        _ => return format!("{done} of {total} B"),
    };
    format!(
        "{:.1} of {:.1} {unit}",
        done as f64 / scale,
        total as f64 / scale
    )
}

/// Where progress goes: a terminal bar, log lines, an agent socket, a test.
pub trait ProgressSink: Send + Sync {
    /// Called at each checkpoint and at least once a second while work goes on.
    fn report(&self, progress: &Progress);
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl ProgressSink for Quiet {
    fn report(&self, _: &Progress) {}
}

/// Tracks one measured phase between two checkpoints.
#[derive(Debug)]
pub struct Phase {
    state: &'static str,
    action: String,
    from: f64,
    to: f64,
    total: u64,
    start: Instant,
    start_done: u64,
    last_report: Option<Instant>,
}

impl Phase {
    /// A phase starting at `state`'s checkpoint and ending at the next one, with
    /// `total` units of work of which `already` are done (a resume).
    pub fn new(state: &'static str, action: impl Into<String>, total: u64, already: u64) -> Phase {
        Phase {
            state,
            action: action.into(),
            from: checkpoint(state),
            to: next_checkpoint(state),
            total,
            start: Instant::now(),
            start_done: already,
            last_report: None,
        }
    }

    /// The report for `done` units, and whether it is due (at most ~4 per second).
    pub fn at(&mut self, done: u64, force: bool) -> Option<Progress> {
        let now = Instant::now();
        if !force
            && self
                .last_report
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
        {
            return None;
        }
        self.last_report = Some(now);
        let frac = if self.total == 0 {
            1.0
        } else {
            (done as f64 / self.total as f64).min(1.0)
        };
        let elapsed = now.duration_since(self.start).as_secs_f64();
        let rate = if elapsed > 0.0 {
            done.saturating_sub(self.start_done) as f64 / elapsed
        } else {
            0.0
        };
        let eta_secs = (rate > 0.0).then(|| self.total.saturating_sub(done) as f64 / rate);
        let percent = self.from + (self.to - self.from) * frac;
        Some(Progress {
            percent,
            fixed_percent: percent,
            state: self.state,
            action: self.action.clone(),
            done,
            total: self.total,
            rate,
            eta_secs,
            ..Progress::default()
        })
    }
}

/// A checkpoint report with no measured work.
pub fn mark(state: &'static str, action: impl Into<String>) -> Progress {
    Progress {
        percent: checkpoint(state),
        fixed_percent: checkpoint(state),
        state,
        action: action.into(),
        ..Progress::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_increase_and_phases_interpolate() {
        assert!(CHECKPOINTS.windows(2).all(|w| w[0].0 < w[1].0));
        let mut phase = Phase::new("DOWNLOADING_UPDATE", "Downloading", 100, 0);
        let p = phase.at(50, true).unwrap();
        assert!((p.percent - 35.0).abs() < 1e-9, "{}", p.percent);
        assert_eq!(phase.at(100, true).unwrap().percent, 54.0);
    }

    #[test]
    fn download_retries_wait_between_half_and_all_of_the_ceiling() {
        for n in 1..=8 {
            let ceiling = DOWNLOAD_BACKOFF.ceiling(n);
            let waits: Vec<Duration> = (0..200).map(|_| Retry::backoff(n)).collect();
            assert!(
                waits.iter().all(|w| *w >= ceiling / 2 && *w <= ceiling),
                "retry {n}: {waits:?}"
            );
            assert!(waits.iter().any(|w| *w != waits[0]), "retry {n}: no jitter");
        }
        assert_eq!(DOWNLOAD_BACKOFF.ceiling(1), Duration::from_secs(1));
        assert_eq!(DOWNLOAD_BACKOFF.ceiling(5), Duration::from_secs(16));
        assert_eq!(DOWNLOAD_BACKOFF.ceiling(9), Duration::from_secs(30));
    }

    #[test]
    fn units_read_at_a_glance() {
        assert_eq!(of_text(3_100_000_000, 8_000_000_000), "3.1 of 8.0 GB");
        assert_eq!(of_text(0, 1_073_741_824), "0.0 of 1.1 GB");
        assert_eq!(of_text(5, 900), "5 of 900 B");
    }
}
