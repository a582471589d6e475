//! The device's outbox (`DEVICE/events/`): every report written durably before the step
//! it reports counts as done, with the device's next sequence number, and removed only
//! once the server acknowledged that sequence.
//!
//! # On disk
//!
//! - `<sequence, 20 digits>.<p|s|t>.json`: one queued report (progress, step or
//!   terminal, see [`Retention`]), written through `ferry-durable`. Names sort by
//!   sequence; names starting with `.` are temporary files of a write and are ignored.
//! - `outbox.json`: [`OutboxState`]: the highest sequence ever assigned, what was dropped
//!   when full, and the delivery's back-off. It is written before any report file is
//!   removed, so a sequence is never assigned twice: the next one is one more than the
//!   highest of the state and the files. Should it ever be unreadable, sequences go on
//!   from the current time in milliseconds, above any counter a device could have reached.
//!
//! # Bounds
//!
//! A new progress report replaces the queued one of the same update and phase (a new
//! sequence; the old file goes). Past [`OutboxLimits`], the oldest progress reports are
//! dropped, then the oldest step reports; terminal reports never are, so the outbox may
//! exceed its limits by them. What was dropped is counted in the state and sent with the
//! next batch ([`OutboxHealth`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ferry_types::Report;
use serde::{Deserialize, Serialize};

use crate::error::OutboxError;
use crate::report::{EventReport, Retention};
use crate::wire::OutboxHealth;

/// The state file inside the outbox directory.
pub const STATE_FILE: &str = "outbox.json";

/// How much an outbox holds before it drops progress, then step reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Reports queued at most (default 512).
    pub max_reports: usize,
    /// Bytes of reports queued at most (default 1 MiB).
    pub max_bytes: u64,
}

impl Default for OutboxLimits {
    fn default() -> OutboxLimits {
        OutboxLimits {
            max_reports: 512,
            max_bytes: 1 << 20,
        }
    }
}

/// How delivery has gone: the back-off between failed attempts lives here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// When delivery was last tried.
    pub last_attempt: Option<DateTime<Utc>>,
    /// When a batch was last acknowledged.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// Not before this time may the next attempt run (back-off with jitter).
    pub next_attempt: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<Report>,
    /// Reports acknowledged, ever.
    pub delivered: u64,
}

/// `outbox.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxState {
    /// The highest sequence ever assigned.
    pub last_sequence: u64,
    /// Progress reports dropped when full, ever.
    pub dropped_progress: u64,
    /// Step reports dropped when full, ever.
    pub dropped_steps: u64,
    /// Since when the outbox has been full (it dropped a report and has not drained below
    /// its limits since).
    pub full_since: Option<DateTime<Utc>>,
    /// Delivery.
    #[serde(default)]
    pub delivery: DeliveryState,
}

/// What `ferry status` shows of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// Reports queued.
    pub queued: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of which terminal.
    pub terminal: u64,
    /// Sequence of the oldest queued report.
    pub oldest_sequence: Option<u64>,
    /// The state: drops, fullness, delivery.
    #[serde(flatten)]
    pub state: OutboxState,
}

#[derive(Debug, Clone)]
struct Entry {
    retention: Retention,
    bytes: u64,
    /// Progress reports: the update and phase they are about (coalescing key).
    key: Option<(Option<uuid::Uuid>, String)>,
}

/// An open outbox directory. One per device per process: share it.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    limits: OutboxLimits,
    state: OutboxState,
    entries: BTreeMap<u64, Entry>,
    /// Whether `outbox.json` could not be read at open (see the module docs).
    state_recovered: bool,
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`.
    pub fn open(dir: &Path, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        ferry_durable::create_dir(dir).map_err(OutboxError::io("creating the outbox", dir))?;
        let state_path = dir.join(STATE_FILE);
        let (mut state, state_recovered) = match std::fs::read(&state_path) {
            Ok(bytes) => match serde_json::from_slice::<OutboxState>(&bytes) {
                Ok(state) => (state, false),
                Err(_) => (OutboxState::default(), true),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (OutboxState::default(), false),
            Err(e) => return Err(OutboxError::io("reading the outbox state", &state_path)(e)),
        };
        if state_recovered {
            state.last_sequence = Utc::now().timestamp_millis().max(0) as u64;
        }
        let mut entries = BTreeMap::new();
        let listing = std::fs::read_dir(dir).map_err(OutboxError::io("listing the outbox", dir))?;
        for item in listing {
            let item = item.map_err(OutboxError::io("listing the outbox", dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let Some((sequence, retention)) = parse_name(&name) else {
                continue;
            };
            let path = item.path();
            let bytes = item
                .metadata()
                .map_err(OutboxError::io("reading a queued report", &path))?
                .len();
            let key = match retention {
                Retention::Progress => {
                    let report = read_report(&path)?;
                    Some(progress_key(&report))
                }
                _ => None,
            };
            entries.insert(
                sequence,
                Entry {
                    retention,
                    bytes,
                    key,
                },
            );
        }
        Ok(Outbox {
            dir: dir.to_owned(),
            limits,
            state,
            entries,
            state_recovered,
        })
    }

    /// Whether `outbox.json` was unreadable at open, so sequences jumped ahead.
    pub fn state_recovered(&self) -> bool {
        self.state_recovered
    }

    /// The sequence the next report gets.
    pub fn next_sequence(&self) -> u64 {
        let highest_file = self.entries.keys().next_back().copied().unwrap_or(0);
        self.state.last_sequence.max(highest_file) + 1
    }

    /// Queues `report` durably with the next sequence number (set in it) and returns that
    /// number. A progress report replaces the queued one of its update and phase; past
    /// the limits, older progress, then step reports are dropped and counted.
    pub fn append(&mut self, mut report: EventReport) -> Result<u64, OutboxError> {
        let sequence = self.next_sequence();
        report.sequence = sequence;
        let retention = report.event.retention();
        let bytes = serde_json::to_vec(&report).map_err(|e| OutboxError::Corrupt {
            path: self.dir.join(file_name(sequence, retention)),
            reason: e.to_string(),
        })?;
        let path = self.dir.join(file_name(sequence, retention));
        ferry_durable::write_atomic(&path, &bytes)
            .map_err(OutboxError::io("queueing an event report", &path))?;
        let key = (retention == Retention::Progress).then(|| progress_key(&report));
        self.state.last_sequence = sequence;
        let superseded: Vec<u64> = match &key {
            Some(key) => self
                .entries
                .iter()
                .filter(|(_, e)| e.key.as_ref() == Some(key))
                .map(|(seq, _)| *seq)
                .collect(),
            None => Vec::new(),
        };
        self.entries.insert(
            sequence,
            Entry {
                retention,
                bytes: bytes.len() as u64,
                key,
            },
        );
        // Superseded progress files have lower numbers than the new file, which holds
        // the highest sequence: removing them cannot lower the next one.
        for old in superseded {
            self.remove_entry(old)?;
        }
        self.enforce_limits()?;
        Ok(sequence)
    }

    /// Drops the oldest progress, then step reports while over the limits.
    fn enforce_limits(&mut self) -> Result<(), OutboxError> {
        let mut victims = Vec::new();
        let (mut count, mut bytes) = (self.entries.len(), self.bytes());
        for wanted in [Retention::Progress, Retention::Step] {
            for (seq, entry) in &self.entries {
                if count <= self.limits.max_reports && bytes <= self.limits.max_bytes {
                    break;
                }
                if entry.retention == wanted {
                    victims.push((*seq, wanted));
                    count -= 1;
                    bytes -= entry.bytes;
                }
            }
        }
        if victims.is_empty() {
            return Ok(());
        }
        for (_, retention) in &victims {
            match retention {
                Retention::Progress => self.state.dropped_progress += 1,
                _ => self.state.dropped_steps += 1,
            }
        }
        self.state.full_since.get_or_insert_with(Utc::now);
        self.save_state()?;
        for (seq, _) in victims {
            self.remove_entry(seq)?;
        }
        Ok(())
    }

    /// The oldest queued reports, at most `max_reports` of them and about `max_bytes`
    /// (always at least one when any is queued), in sequence order.
    pub fn batch(
        &self,
        max_reports: usize,
        max_bytes: usize,
    ) -> Result<Vec<EventReport>, OutboxError> {
        let mut reports = Vec::new();
        let mut bytes = 0u64;
        for (seq, entry) in self.entries.iter().take(max_reports.max(1)) {
            if !reports.is_empty() && bytes + entry.bytes > max_bytes as u64 {
                break;
            }
            bytes += entry.bytes;
            reports.push(read_report(
                &self.dir.join(file_name(*seq, entry.retention)),
            )?);
        }
        Ok(reports)
    }

    /// Forgets the reports the server acknowledged (sequences not queued are ignored:
    /// a progress report superseded while its batch was on the way).
    pub fn acknowledge(&mut self, acked: &[u64]) -> Result<usize, OutboxError> {
        let present: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|seq| self.entries.contains_key(seq))
            .collect();
        self.state.delivery.delivered += present.len() as u64;
        let remaining = self.entries.len() - present.len();
        let remaining_bytes = self.bytes()
            - present
                .iter()
                .filter_map(|seq| self.entries.get(seq))
                .map(|e| e.bytes)
                .sum::<u64>();
        if remaining < self.limits.max_reports && remaining_bytes < self.limits.max_bytes {
            self.state.full_since = None;
        }
        self.save_state()?;
        for seq in &present {
            self.remove_entry(*seq)?;
        }
        Ok(present.len())
    }

    /// Records a delivery attempt: a success resets the back-off; a failure sets the next
    /// attempt after [`backoff_secs`] scaled by `jitter` (0 to 1: `0.5 + jitter / 2` of it).
    pub fn record_attempt(
        &mut self,
        now: DateTime<Utc>,
        result: Result<(), Report>,
        jitter: f64,
    ) -> Result<(), OutboxError> {
        let delivery = &mut self.state.delivery;
        delivery.last_attempt = Some(now);
        match result {
            Ok(()) => {
                delivery.last_success = Some(now);
                delivery.failures = 0;
                delivery.next_attempt = None;
                delivery.last_error = None;
            }
            Err(report) => {
                delivery.failures = delivery.failures.saturating_add(1);
                let secs = backoff_secs(delivery.failures) * (0.5 + jitter.clamp(0.0, 1.0) / 2.0);
                delivery.next_attempt =
                    Some(now + chrono::Duration::milliseconds((secs * 1000.0) as i64));
                delivery.last_error = Some(report);
            }
        }
        self.save_state()
    }

    /// Whether delivery may be tried at `now` (the back-off has run out).
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        self.state
            .delivery
            .next_attempt
            .is_none_or(|next| next <= now)
    }

    /// Reports queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> u64 {
        self.entries.values().map(|e| e.bytes).sum()
    }

    /// The state (`outbox.json`).
    pub fn state(&self) -> &OutboxState {
        &self.state
    }

    /// What a batch says about the outbox.
    pub fn health(&self) -> OutboxHealth {
        OutboxHealth {
            queued: self.entries.len() as u64,
            dropped_progress: self.state.dropped_progress,
            dropped_steps: self.state.dropped_steps,
            full: self.state.full_since.is_some(),
        }
    }

    /// What `ferry status` shows.
    pub fn status(&self) -> OutboxStatus {
        OutboxStatus {
            queued: self.entries.len() as u64,
            bytes: self.bytes(),
            terminal: self
                .entries
                .values()
                .filter(|e| e.retention == Retention::Terminal)
                .count() as u64,
            oldest_sequence: self.entries.keys().next().copied(),
            state: self.state.clone(),
        }
    }

    fn remove_entry(&mut self, sequence: u64) -> Result<(), OutboxError> {
        if let Some(entry) = self.entries.remove(&sequence) {
            let path = self.dir.join(file_name(sequence, entry.retention));
            ferry_durable::remove(&path)
                .map_err(OutboxError::io("removing a delivered report", &path))?;
        }
        Ok(())
    }

    /// Writes `outbox.json`, with the highest sequence of the state and the files: it
    /// must be on disk before a file holding that sequence may go.
    fn save_state(&mut self) -> Result<(), OutboxError> {
        self.state.last_sequence = self.next_sequence() - 1;
        let path = self.dir.join(STATE_FILE);
        ferry_durable::write_json(&path, &self.state)
            .map_err(OutboxError::io("writing the outbox state", &path))
    }
}

/// Seconds before the next attempt after `failures` failed ones: 1, 2, 4, … up to 300.
pub fn backoff_secs(failures: u32) -> f64 {
    let exponent = failures.saturating_sub(1).min(16);
    f64::from(1u32 << exponent).min(300.0)
}

/// `<sequence>.<p|s|t>.json`.
fn file_name(sequence: u64, retention: Retention) -> String {
    let tag = match retention {
        Retention::Progress => 'p',
        Retention::Step => 's',
        Retention::Terminal => 't',
    };
    format!("{sequence:020}.{tag}.json")
}

fn parse_name(name: &str) -> Option<(u64, Retention)> {
    let stem = name.strip_suffix(".json")?;
    let (digits, tag) = stem.split_once('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let retention = match tag {
        "p" => Retention::Progress,
        "s" => Retention::Step,
        "t" => Retention::Terminal,
        _ => return None,
    };
    Some((digits.parse().ok()?, retention))
}

fn progress_key(report: &EventReport) -> (Option<uuid::Uuid>, String) {
    (
        report.uuid,
        report
            .progress
            .as_ref()
            .map(|p| p.phase.clone())
            .unwrap_or_default(),
    )
}

fn read_report(path: &Path) -> Result<EventReport, OutboxError> {
    let bytes = std::fs::read(path).map_err(OutboxError::io("reading a queued report", path))?;
    serde_json::from_slice(&bytes).map_err(|e| OutboxError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_temp_files_are_not_reports() {
        let name = file_name(42, Retention::Terminal);
        assert_eq!(name, "00000000000000000042.t.json");
        assert_eq!(parse_name(&name), Some((42, Retention::Terminal)));
        assert_eq!(parse_name(".00000000000000000042.t.json.tmp-1-2"), None);
        assert_eq!(parse_name(STATE_FILE), None);
        assert_eq!(parse_name("00000000000000000042.x.json"), None);
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let secs: Vec<f64> = (1..=11).map(backoff_secs).collect();
        assert_eq!(secs[..4], [1.0, 2.0, 4.0, 8.0]);
        assert_eq!(secs[10], 300.0);
        assert_eq!(backoff_secs(u32::MAX), 300.0);
    }
}
