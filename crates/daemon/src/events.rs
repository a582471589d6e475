//! The live event stream: every journal record as it is appended (numbered: `seq`), and
//! progress samples (live only). A client that reconnects with `since=N` first gets the
//! records after N from the journal, then the live ones, each exactly once: the stream
//! subscribes before it reads the journal and skips what it already sent.
//!
//! Wire format: newline-delimited JSON, one [`Event`] per line. Chosen over server-sent
//! events because every client of a Unix socket (a shell with `curl --unix-socket … |
//! jq`, a settings UI, a kiosk app) reads lines without an SSE parser, and the one thing
//! SSE adds, `Last-Event-ID` on reconnect, is `since=N` here.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_agent::progress::{self, Progress, ProgressSink};
use ferry_fsm::Record;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

/// One line of the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A machine transition, durable in the journal.
    Transition {
        /// Its sequence number.
        seq: u64,
        /// The journal record.
        record: Record,
    },
    /// A progress sample (not in the journal: a client that connects, or falls behind,
    /// gets the latest one after the transitions it missed).
    Progress {
        /// The sequence number of the last transition before it.
        after: u64,
        /// The sample.
        progress: Sample,
    },
}

/// A progress sample as the stream carries it ([`Progress`] with an owned state name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Overall percent.
    pub percent: f64,
    /// Controller state (a checkpoint).
    pub state: String,
    /// What is being done.
    pub action: String,
    /// Work done in this phase.
    pub done: u64,
    /// Work in this phase.
    pub total: u64,
    /// Rate, bytes/s.
    pub rate: f64,
    /// Seconds left in the install (best estimate).
    pub eta_secs: Option<f64>,
    /// The percent the fixed-checkpoint bar would show.
    #[serde(default)]
    pub fixed_percent: f64,
    /// Low end of the time-remaining range, seconds.
    #[serde(default)]
    pub eta_low: Option<f64>,
    /// High end of the time-remaining range, seconds.
    #[serde(default)]
    pub eta_high: Option<f64>,
    /// Why no work is progressing.
    #[serde(default)]
    pub waiting: Option<String>,
    /// Why the bar did not follow the estimate.
    #[serde(default)]
    pub note: Option<String>,
    /// Seconds since the install started.
    #[serde(default)]
    pub elapsed_secs: f64,
    /// Image bytes written (a full download's second measure).
    #[serde(default)]
    pub written: u64,
    /// Image bytes the phase writes in all.
    #[serde(default)]
    pub written_total: u64,
}

impl Sample {
    /// The sample of `p`.
    pub fn of(p: &Progress) -> Sample {
        Sample {
            percent: p.percent,
            state: p.state.to_owned(),
            action: p.action.clone(),
            done: p.done,
            total: p.total,
            rate: p.rate,
            eta_secs: p.eta_secs,
            fixed_percent: p.fixed_percent,
            eta_low: p.eta_low,
            eta_high: p.eta_high,
            waiting: p.waiting.clone(),
            note: p.note.clone(),
            elapsed_secs: p.elapsed_secs,
            written: p.written,
            written_total: p.written_total,
        }
    }

    /// Back to the agent's [`Progress`] (for the same rendering as a local install).
    pub fn to_progress(&self) -> Progress {
        let state = progress::CHECKPOINTS
            .iter()
            .map(|(_, s)| *s)
            .chain([ferry_agent::scan::SCANNING])
            .find(|s| *s == self.state)
            .unwrap_or("READY");
        Progress {
            percent: self.percent,
            state,
            action: self.action.clone(),
            done: self.done,
            total: self.total,
            rate: self.rate,
            eta_secs: self.eta_secs,
            fixed_percent: self.fixed_percent,
            eta_low: self.eta_low,
            eta_high: self.eta_high,
            waiting: self.waiting.clone(),
            // The waiting text already says the retry, its reason and countdown.
            retry: None,
            note: self.note.clone(),
            elapsed_secs: self.elapsed_secs,
            written: self.written,
            written_total: self.written_total,
        }
    }
}

/// Where events are published: the journal's observer and the install's progress sink.
#[derive(Debug)]
pub struct Hub {
    live: broadcast::Sender<Arc<Event>>,
    last_seq: AtomicU64,
    last_progress: Mutex<Option<Sample>>,
    journal_dir: PathBuf,
}

impl Hub {
    /// A hub for the journal in `journal_dir`.
    pub fn new(journal_dir: PathBuf) -> Arc<Hub> {
        let (live, _) = broadcast::channel(1024);
        Arc::new(Hub {
            live,
            last_seq: AtomicU64::new(0),
            last_progress: Mutex::new(None),
            journal_dir,
        })
    }

    /// The journal observer that publishes every appended record.
    pub fn observer(self: &Arc<Hub>) -> ferry_fsm::Observer {
        let hub = self.clone();
        Arc::new(move |record: &Record| {
            if let Some(seq) = record.seq {
                hub.last_seq.fetch_max(seq, Ordering::SeqCst);
                let _ = hub.live.send(Arc::new(Event::Transition {
                    seq,
                    record: record.clone(),
                }));
            }
        })
    }

    /// The last progress sample, if any.
    pub fn last_progress(&self) -> Option<Sample> {
        self.last_progress.lock().ok().and_then(|p| p.clone())
    }

    /// Forgets the last sample (a job ended).
    pub fn clear_progress(&self) {
        if let Ok(mut p) = self.last_progress.lock() {
            *p = None;
        }
    }

    /// The stream for a client that has seen everything up to `since`: lines of JSON,
    /// ending when the client goes.
    pub fn stream(
        self: &Arc<Hub>,
        since: u64,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, Infallible>> + use<> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
        let mut live = self.live.subscribe();
        let dir = self.journal_dir.clone();
        let hub = self.clone();
        tokio::spawn(async move {
            let mut last = since;
            'replay: loop {
                let dir = dir.clone();
                let missed = tokio::task::spawn_blocking(move || replay(&dir, last))
                    .await
                    .unwrap_or_default();
                for event in missed {
                    if let Event::Transition { seq, .. } = &event {
                        last = *seq;
                    }
                    if tx.send(line(&event)).await.is_err() {
                        return;
                    }
                }
                // Where a running job stands now: a client that connects or fell behind
                // mid-install sees the bar at once, not at the next sample.
                if let Some(progress) = hub.last_progress() {
                    let now = Event::Progress {
                        after: last,
                        progress,
                    };
                    if tx.send(line(&now)).await.is_err() {
                        return;
                    }
                }
                loop {
                    let received = tokio::select! {
                        received = live.recv() => received,
                        () = tx.closed() => return,
                    };
                    let event = match received {
                        Ok(event) => event,
                        // Too slow a reader: what it missed is in the journal.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'replay,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if let Event::Transition { seq, .. } = event.as_ref() {
                        if *seq <= last {
                            continue;
                        }
                        last = *seq;
                    }
                    if tx.send(line(&event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|bytes| (Ok(bytes), rx))
        })
    }
}

impl ProgressSink for Hub {
    fn report(&self, p: &Progress) {
        let sample = Sample::of(p);
        if let Ok(mut last) = self.last_progress.lock() {
            *last = Some(sample.clone());
        }
        let _ = self.live.send(Arc::new(Event::Progress {
            after: self.last_seq.load(Ordering::SeqCst),
            progress: sample,
        }));
    }
}

/// The journal's numbered records after `since`, as events.
pub fn replay(journal_dir: &std::path::Path, since: u64) -> Vec<Event> {
    match ferry_fsm::read_journal(journal_dir) {
        Ok(read) => read
            .records
            .into_iter()
            .filter_map(|record| match record.seq {
                Some(seq) if seq > since => Some(Event::Transition { seq, record }),
                _ => None,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "the event stream could not read the journal");
            Vec::new()
        }
    }
}

fn line(event: &Event) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_sample_keeps_its_state_and_units_through_the_stream() {
        let scan = Progress {
            state: ferry_agent::scan::SCANNING,
            action:
                "Checking for updates… timestamp.json verified; 1 metadata file (1.5 KB) fetched"
                    .into(),
            done: 1500,
            ..Progress::default()
        };
        let wire = serde_json::to_string(&Sample::of(&scan)).unwrap();
        let back: Sample = serde_json::from_str(&wire).unwrap();
        let p = back.to_progress();
        assert_eq!(p.state, "SCANNING");
        assert_eq!(p.done, 1500);
        assert_eq!(p.action, scan.action);
        // A state the client does not know is shown as READY, not dropped.
        let odd = Sample {
            state: "SOMETHING_NEW".into(),
            ..back
        };
        assert_eq!(odd.to_progress().state, "READY");
    }
}
