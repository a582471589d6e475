//! The progress log of an update: `progress/<uuid>.jsonl` in the device directory, one
//! sample about every second (four a second in a run's first minute; and at each phase
//! change, wait or note), bounded to
//! [`MAX_LINES`], for `ferry log chart` and `bench/progress`. Appended line by line (a
//! torn last line after a crash is skipped when read); not the journal: samples are
//! observations, not state. Beside it, `<uuid>.plan.json` holds the work and rates the
//! estimate was planned from ([`Plan`]), so a log replays through the estimator offline
//! ([`crate::progress::replay`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::progress::Progress;

/// Most samples one log keeps (about ten hours at one a second).
pub const MAX_LINES: usize = 36_000;
/// Logs the progress directory keeps (the oldest go when a new one starts).
pub const MAX_LOGS: usize = 10;
/// Seconds between two samples of the same phase with nothing new to say.
pub const EVERY_SECS: f64 = 1.0;
/// The same in the first [`FAST_FOR_SECS`] of a run: a short install gets enough samples
/// for its chart and its figures (one a second gives an 8 s install only eight).
pub const FAST_EVERY_SECS: f64 = 0.25;
/// Seconds from the start of a run during which samples come every [`FAST_EVERY_SECS`].
pub const FAST_FOR_SECS: f64 = 60.0;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Wall time.
    pub at: DateTime<Utc>,
    /// Seconds since the install started.
    pub t: f64,
    /// ferry's percent (time-proportional).
    pub percent: f64,
    /// The fixed-checkpoint bar's percent.
    pub fixed_percent: f64,
    /// The phase (checkpoint name).
    pub state: String,
    /// The action text, with units.
    pub action: String,
    /// Units done in the phase.
    pub done: u64,
    /// Units in the phase.
    pub total: u64,
    /// Estimated seconds remaining (best, low, high).
    pub remaining: Option<f64>,
    /// Low end of the range.
    pub low: Option<f64>,
    /// High end of the range.
    pub high: Option<f64>,
    /// Image bytes written of `written_total` (a full download's second measure).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written: u64,
    /// Image bytes the phase writes in all (0: no second measure).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written_total: u64,
    /// The waiting reason, if nothing moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Why the bar did not follow the estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Sample {
    /// The line for `p`.
    pub fn of(p: &Progress) -> Sample {
        Sample {
            at: Utc::now(),
            t: p.elapsed_secs,
            percent: p.percent,
            fixed_percent: p.fixed_percent,
            state: p.state.to_owned(),
            action: p.action.clone(),
            done: p.done,
            total: p.total,
            written: p.written,
            written_total: p.written_total,
            remaining: p.eta_secs,
            low: p.eta_low,
            high: p.eta_high,
            waiting: p.waiting.clone(),
            note: p.note.clone(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the estimate of a run was planned from: the work and the device's rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// What the update asks of the device.
    pub work: crate::progress::phases::Work,
    /// The rates the device knew at the start.
    pub rates: crate::progress::phases::Rates,
}

/// Where the plan of the log at `log` is kept (`<uuid>.plan.json`).
pub fn plan_path(log: &Path) -> PathBuf {
    log.with_extension("plan.json")
}

/// Records the plan of the run that writes the log at `log` (best effort, like the log).
pub fn write_plan(log: &Path, plan: &Plan) {
    let path = plan_path(log);
    if let Err(e) = ferry_durable::write_json(&path, plan) {
        tracing::warn!(path = %path.display(), error = %e, "the progress plan was not recorded");
    }
}

/// The plan recorded beside the log at `log`, if any.
pub fn read_plan(log: &Path) -> Option<Plan> {
    serde_json::from_slice(&std::fs::read(plan_path(log)).ok()?).ok()
}

/// Appends samples to one update's log.
#[derive(Debug)]
pub struct Writer {
    file: Option<File>,
    lines: usize,
    last: Option<(f64, String, bool)>,
}

impl Writer {
    /// Starts (or continues: a resumed install) the log at `path`, removing the oldest
    /// logs beyond [`MAX_LOGS`]. A log that cannot be opened is skipped, with a warning:
    /// the install does not depend on it.
    pub fn open(path: &Path) -> Writer {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
            prune(dir, path);
        }
        let lines = read(path).len();
        // A line torn by a crash is ended, so the next one stands on its own.
        let torn = std::fs::read(path).is_ok_and(|b| b.last().is_some_and(|c| *c != b'\n'));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                if torn {
                    f.write_all(b"\n")?;
                }
                Ok(f)
            })
            .inspect_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "no progress log for this install");
            })
            .ok();
        Writer {
            file,
            lines,
            last: None,
        }
    }

    /// Records `p` when a second has passed since the last line, or its phase, wait or
    /// note is new.
    pub fn record(&mut self, p: &Progress) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if self.lines >= MAX_LINES {
            return;
        }
        let due = match &self.last {
            None => true,
            Some((t, state, waiting)) => {
                let every = if p.elapsed_secs < FAST_FOR_SECS {
                    FAST_EVERY_SECS
                } else {
                    EVERY_SECS
                };
                p.elapsed_secs - t >= every
                    || state != p.state
                    || *waiting != p.waiting.is_some()
                    || p.note.is_some()
                    || p.state == "COMPLETED"
                    || p.percent >= 100.0
            }
        };
        if !due {
            return;
        }
        let Ok(mut line) = serde_json::to_string(&Sample::of(p)) else {
            return;
        };
        line.push('\n');
        if file.write_all(line.as_bytes()).is_ok() {
            self.lines += 1;
            self.last = Some((p.elapsed_secs, p.state.to_owned(), p.waiting.is_some()));
        }
    }

    /// Makes what was written durable (at the end of a run).
    pub fn sync(&mut self) {
        if let Some(file) = self.file.as_mut() {
            let _ = file.sync_data();
        }
    }
}

/// The samples of the log at `path` (none if it is missing; a torn line is skipped).
pub fn read(path: &Path) -> Vec<Sample> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect()
}

/// The samples of a log's text (a recorded fixture; a torn line is skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The most recent log in `dir` (by modification time), if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    logs(dir).into_iter().last()
}

/// The logs in `dir`, oldest first.
fn logs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, p)| p).collect()
}

fn prune(dir: &Path, keep: &Path) {
    let logs: Vec<PathBuf> = logs(dir).into_iter().filter(|p| p != keep).collect();
    let extra = (logs.len() + 1).saturating_sub(MAX_LOGS);
    for old in logs.iter().take(extra) {
        let _ = std::fs::remove_file(old);
        let _ = std::fs::remove_file(plan_path(old));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(t: f64, state: &'static str) -> Progress {
        Progress {
            percent: t,
            fixed_percent: 16.0,
            state,
            action: "Downloading update… 1.0 of 2.0 GB".into(),
            elapsed_secs: t,
            eta_secs: Some(10.0),
            ..Progress::default()
        }
    }

    #[test]
    fn about_one_line_a_second_and_every_phase_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.jsonl");
        let mut w = Writer::open(&path);
        // After the first minute: one a second.
        for i in 0..40 {
            w.record(&progress(60.0 + i as f64 * 0.25, "DOWNLOADING_UPDATE"));
        }
        w.record(&progress(70.1, "PREPARING_UPDATE"));
        let waiting = Progress {
            waiting: Some("waiting for the network".into()),
            ..progress(70.2, "PREPARING_UPDATE")
        };
        w.record(&waiting);
        w.sync();
        let samples = read(&path);
        assert_eq!(samples.len(), 10 + 2, "{samples:?}");
        assert_eq!(samples[10].state, "PREPARING_UPDATE");
        assert!(samples[11].waiting.is_some());
        // A torn last line is skipped; a resumed install appends.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"at\":")
            .unwrap();
        assert_eq!(read(&path).len(), 12);
        let mut w = Writer::open(&path);
        w.record(&progress(80.0, "PREPARED"));
        assert_eq!(read(&path).len(), 13);
    }

    #[test]
    fn four_lines_a_second_in_the_first_minute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.jsonl");
        let mut w = Writer::open(&path);
        for i in 0..40 {
            w.record(&progress(i as f64 * 0.1, "DOWNLOADING_UPDATE"));
        }
        // t = 0, 0.3, 0.6 … 3.9 (float steps of 0.1 reach 0.25 at the third).
        let samples = read(&path);
        assert!((13..=16).contains(&samples.len()), "{}", samples.len());
    }

    #[test]
    fn old_logs_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..MAX_LOGS + 3 {
            std::fs::write(dir.path().join(format!("{i:02}.jsonl")), "").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _w = Writer::open(&dir.path().join("new.jsonl"));
        assert_eq!(logs(dir.path()).len(), MAX_LOGS);
        assert_eq!(latest(dir.path()).unwrap(), dir.path().join("new.jsonl"));
    }
}
