//! The tracker: the progress sink an install reports its measured work to. It keeps the
//! fixed-checkpoint percent the controller computed, and adds what the bar shows: the
//! percent of the total time elapsed and the time remaining with its range (from
//! [`estimate`] over the plan of [`phases`]), the action text with its units, the
//! waiting reason when nothing moves, and a note when the bar does not follow the
//! estimate; it writes each sample to the update's progress [`log`], and when the install
//! finishes, the rates it measured to the device's [`history`].
//!
//! [`Tracker::tick`] re-estimates between reports (the caller calls it about twice a
//! second), so a stall shows as a wait within [`estimate::STALL_SECS`] and the bar moves
//! with time while work proceeds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::Utc;

use crate::device::{Device, PayloadKind};
use crate::progress::estimate::Estimator;
use crate::progress::history::{self, History, Measured};
use crate::progress::phases::{self, Rates, Work};
use crate::progress::{DOWNLOAD_BACKOFF, Progress, ProgressSink, log, of_text};

/// How long each phase took and how much of its work this run did.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: f64,
    to: f64,
    /// When its units last moved, and its second measure then.
    moved: f64,
    written_then: u64,
    /// Its second measure (image bytes written), last reported.
    written: u64,
    first_done: u64,
    done: u64,
    total: u64,
}

#[derive(Debug)]
struct State {
    estimator: Estimator,
    last: Option<Progress>,
    log: log::Writer,
    spans: HashMap<&'static str, Span>,
    current: Option<&'static str>,
}

/// What the device's config says about a download that gets no bytes, for the waiting
/// text: how long a connection may stay silent, and how many times in a row it is asked
/// for again in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Seconds without a byte before the connection is given up.
    pub read_timeout_secs: u64,
    /// Retries in a row in the same run (0: the next run resumes).
    pub retries: u32,
}

/// The sink that makes the honest bar out of measured work (see the module docs).
pub struct Tracker<'a> {
    inner: &'a dyn ProgressSink,
    started: Instant,
    limits: Limits,
    rates: Rates,
    state: Mutex<State>,
}

impl<'a> Tracker<'a> {
    /// A tracker for an install of `work` on `device` (update `update`), passing samples
    /// on to `inner`. Takes the device's rates: its history, the fleet's stored per-class
    /// rates, and a self-measurement it runs now (~16 MiB hashed and written).
    pub fn start(
        device: &Device,
        update: uuid::Uuid,
        work: &Work,
        inner: &'a dyn ProgressSink,
    ) -> Tracker<'a> {
        let history = History::load(device);
        let fleet = crate::report::rates::stored(device);
        let test = history::self_test(&device.layout().cache_dir())
            .inspect_err(|e| tracing::warn!(error = %e, "the progress self-measurement failed"))
            .ok();
        let rates = history::rates(&history, fleet.as_ref(), test);
        let log_path = device.layout().progress_log(update);
        let writer = log::Writer::open(&log_path);
        log::write_plan(
            &log_path,
            &log::Plan {
                work: work.clone(),
                rates: rates.clone(),
            },
        );
        Tracker::with_rates(
            rates,
            work,
            writer,
            Limits {
                read_timeout_secs: device.config.read_timeout_secs,
                retries: device.config.download_retries,
            },
            inner,
        )
    }

    /// A tracker with known `rates`, writing samples to `log`.
    pub fn with_rates(
        rates: Rates,
        work: &Work,
        log: log::Writer,
        limits: Limits,
        inner: &'a dyn ProgressSink,
    ) -> Tracker<'a> {
        let plan = phases::plan(work, &rates);
        tracing::debug!(?plan, ?rates, "progress plan");
        Tracker {
            inner,
            started: Instant::now(),
            limits,
            rates,
            state: Mutex::new(State {
                estimator: Estimator::new(plan),
                last: None,
                log,
                spans: HashMap::new(),
                current: None,
            }),
        }
    }

    /// The rates the plan was made from.
    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Re-estimates at the current time and passes a sample on (between reports of work:
    /// the bar moves with time, and a stall becomes a wait with its reason).
    pub fn tick(&self) {
        let t = self.now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some(last) = state.last.clone() else {
            return;
        };
        if last.state == "COMPLETED" {
            return;
        }
        let out = self.sample(&mut state, &last, t);
        drop(state);
        self.inner.report(&out);
    }

    /// The sample for the last work report `raw` at `t`, logged.
    fn sample(&self, state: &mut State, raw: &Progress, t: f64) -> Progress {
        let est = state.estimator.at(t);
        let mut out = raw.clone();
        out.percent = est.percent;
        out.elapsed_secs = t;
        if raw.state == "COMPLETED" {
            out.eta_secs = Some(0.0);
            out.eta_low = Some(0.0);
            out.eta_high = Some(0.0);
        } else {
            out.eta_secs = Some(est.remaining);
            out.eta_low = Some(est.low);
            out.eta_high = Some(est.high);
        }
        if let Some(rate) = est.rate {
            out.rate = rate;
        }
        if raw.total > 0 {
            out.action = format!("{} {}", raw.action, of_text(raw.done, raw.total));
            if raw.written_total > 0 {
                out.action = format!(
                    "{}, {} written",
                    out.action,
                    of_text(raw.written, raw.written_total)
                );
            }
        }
        out.waiting = if raw.retry.is_some() || est.stalled_for.is_some() {
            Some(self.waiting(raw, est.stalled_for.unwrap_or(0.0)))
        } else {
            None
        };
        out.note = est.note;
        state.log.record(&out);
        out
    }

    /// What the phase of `raw`, with no work for `quiet` seconds, is waiting for: the
    /// download's own retry (its reason and countdown), the slot, or the network.
    fn waiting(&self, raw: &Progress, quiet: f64) -> String {
        let limit = self.limits.read_timeout_secs as f64;
        match raw.state {
            "DOWNLOADING_UPDATE" if raw.retry.is_some() => {
                let r = raw.retry.as_ref().expect("matched");
                let when = match r.at {
                    Some(at) => format!(
                        "retrying in {:.0} s",
                        at.saturating_duration_since(Instant::now())
                            .as_secs_f64()
                            .ceil()
                    ),
                    None => "asking again now".into(),
                };
                let quiet = if quiet >= 1.0 {
                    format!("no bytes for {quiet:.0} s, ")
                } else {
                    String::new()
                };
                format!(
                    "waiting for the network: {quiet}{when} (retry {} of {}: {})",
                    r.attempt, r.of, r.reason
                )
            }
            "DOWNLOADING_UPDATE" if raw.waiting.is_some() => format!(
                "waiting for the slot: decoding, writing and syncing what arrived ({quiet:.0} s without new bytes)"
            ),
            "DOWNLOADING_UPDATE" if self.limits.retries > 0 => format!(
                "waiting for the network: no bytes for {quiet:.0} s, retrying in {:.0} s (the connection is given up after {limit:.0} s without a byte)",
                (limit - quiet).max(0.0) + DOWNLOAD_BACKOFF.ceiling(1).as_secs_f64()
            ),
            "DOWNLOADING_UPDATE" => format!(
                "waiting for the network: no bytes for {quiet:.0} s; {}",
                if quiet < limit {
                    format!(
                        "the connection is given up in {:.0} s and the download resumes from here on the next run",
                        limit - quiet
                    )
                } else {
                    "the connection is being given up; the download resumes from here on the next run".into()
                }
            ),
            "PREPARING_UPDATE" => {
                format!("waiting for the disk: nothing read back for {quiet:.0} s")
            }
            _ => format!("waiting: no work done for {quiet:.0} s"),
        }
    }

    fn measure(state: &mut State, p: &Progress, t: f64) {
        if state.current != Some(p.state) {
            if let Some(prev) = state.current.and_then(|c| state.spans.get_mut(c)) {
                prev.to = t;
            }
            state.current = Some(p.state);
            state.spans.entry(p.state).or_insert(Span {
                from: t,
                to: t,
                moved: t,
                written_then: p.written,
                written: p.written,
                first_done: p.done,
                done: p.done,
                total: p.total,
            });
        }
        if let Some(span) = state.spans.get_mut(p.state) {
            if p.total != span.total {
                // Another attempt (a fallback): its own units from here.
                span.total = p.total;
                span.first_done = p.done;
            }
            if p.done != span.done {
                span.moved = t;
                span.written_then = p.written;
            }
            span.written = p.written;
            span.done = p.done;
            span.to = t;
        }
    }

    /// The install finished (`kind`: the payload that wrote the slot): a last sample at
    /// 100 %, the log made durable, and the rates it measured recorded in the device's
    /// history.
    pub fn finish(&self, device: &Device, kind: PayloadKind) {
        let t = self.now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.estimator.finish();
        let out = state.last.clone().map(|last| {
            let mut out = self.sample(&mut state, &last, t);
            out.eta_secs = Some(0.0);
            out.eta_low = Some(0.0);
            out.eta_high = Some(0.0);
            out.waiting = None;
            out
        });
        state.log.sync();
        let span = |name: &str| state.spans.get(name).copied();
        let per_sec = |s: Span| {
            let secs = s.to - s.from;
            let units = s.done.saturating_sub(s.first_done);
            (secs > 0.5 && units > 0).then(|| units as f64 / secs)
        };
        let download = span("DOWNLOADING_UPDATE");
        let mut steps: Vec<f64> = ["LOADING_PERSISTED", "PURGING", "PREFLIGHT_PREREQUISITE"]
            .iter()
            .filter_map(|n| span(n))
            .map(|s| s.to - s.from)
            .collect();
        steps.sort_by(f64::total_cmp);
        let measured = Measured {
            at: Utc::now(),
            kind,
            download: download
                .filter(|_| matches!(kind, PayloadKind::Full))
                .and_then(per_sec),
            assemble: download
                .filter(|_| matches!(kind, PayloadKind::Delta | PayloadKind::Chunks))
                .and_then(per_sec),
            // Only a prepare that read the slot back measures the read-back rate: after a
            // full download the leaves were hashed as it wrote, and preparing only
            // finishes the tree (its image bytes per second say nothing of the disk).
            verify: span("PREPARING_UPDATE")
                .filter(|_| !matches!(kind, PayloadKind::Full))
                .filter(|s| s.done.saturating_sub(s.first_done) >= 64 << 20)
                .and_then(per_sec),
            personalize: span("PREFLIGHT_PERSONALIZE").map(|s| s.to - s.from),
            step: steps.get(steps.len() / 2).copied(),
            // The slot's sustained write rate: what a full download wrote after its last
            // byte (the zeros at the end of an image), when it was enough to tell.
            write: download
                .filter(|_| matches!(kind, PayloadKind::Full))
                .filter(|s| s.written.saturating_sub(s.written_then) >= 64 << 20)
                .filter(|s| s.to - s.moved > 0.5)
                .map(|s| (s.written - s.written_then) as f64 / (s.to - s.moved)),
            download_tail: download
                .filter(|s| s.total > 0 && s.done > s.first_done)
                .map(|s| s.to - s.moved),
        };
        drop(state);
        if let Some(out) = out {
            self.inner.report(&out);
        }
        if let Err(e) = History::record(device, measured) {
            tracing::warn!(error = %e, "the measured rates were not recorded");
        }
    }
}

impl ProgressSink for Tracker<'_> {
    fn report(&self, p: &Progress) {
        let t = self.now();
        let out = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            state.estimator.work(t, p.state, p.done, p.total);
            state.estimator.wait_until(
                p.retry
                    .as_ref()
                    .and_then(|r| r.at)
                    .map(|at| at.saturating_duration_since(self.started).as_secs_f64()),
            );
            if p.written_total > 0 {
                state.estimator.secondary(t, p.written, p.written_total);
            }
            Tracker::measure(&mut state, p, t);
            state.last = Some(p.clone());
            self.sample(&mut state, p, t)
        };
        self.inner.report(&out);
    }
}

/// What `offer` asks of the device, for the plan: the payload tried first (a delta, then
/// chunk reuse, then the full payload) and its bytes.
pub fn work_of(offer: &crate::offer::Offer) -> Work {
    let release = &offer.release;
    let (kind, download_bytes) = if let Some(delta) = &offer.delta {
        (PayloadKind::Delta, delta.size)
    } else if offer.chunks.is_some() {
        (PayloadKind::Chunks, offer.download_size)
    } else {
        (PayloadKind::Full, release.payload.size)
    };
    Work {
        kind,
        download_bytes,
        image_size: release.image_size,
        leaves_while_writing: true,
        staged: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::phases::{Rate, Source};
    use crate::progress::{Phase, mark};

    #[derive(Default)]
    struct Collect(Mutex<Vec<Progress>>);

    impl ProgressSink for Collect {
        fn report(&self, p: &Progress) {
            self.0.lock().unwrap().push(p.clone());
        }
    }

    #[test]
    fn a_stalled_download_says_it_waits_for_the_network_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Collect::default();
        let rates = Rates {
            network: Rate::new(1e6, Source::History),
            ..Rates::default()
        };
        let work = Work {
            kind: PayloadKind::Full,
            download_bytes: 10_000_000,
            image_size: 20_000_000,
            leaves_while_writing: true,
            staged: false,
        };
        let tracker = Tracker::with_rates(
            rates,
            &work,
            log::Writer::open(&dir.path().join("u.jsonl")),
            Limits {
                read_timeout_secs: 30,
                retries: 0,
            },
            &sink,
        );
        tracker.report(&mark("PREFLIGHT_PERSONALIZE", "Personalizing update…"));
        let mut phase = Phase::new("DOWNLOADING_UPDATE", "Downloading update…", 10_000_000, 0);
        tracker.report(&phase.at(1_000_000, true).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1300));
        tracker.tick();
        let all = sink.0.lock().unwrap().clone();
        let last = all.last().unwrap();
        let waiting = last.waiting.as_deref().unwrap();
        assert!(
            waiting.starts_with("waiting for the network: no bytes for 1 s;"),
            "{waiting}"
        );
        assert!(
            waiting.contains("given up in 29 s and the download resumes from here on the next run"),
            "{waiting}"
        );
        assert_eq!(last.action, "Downloading update… 1.0 of 10.0 MB");
        assert!(
            (last.fixed_percent - 19.8).abs() < 1e-9,
            "{}",
            last.fixed_percent
        );
        assert!(last.eta_low.unwrap() < last.eta_secs.unwrap());
        assert!(all.windows(2).all(|w| w[1].percent >= w[0].percent));
        let logged = log::read(&dir.path().join("u.jsonl"));
        assert!(logged.iter().any(|s| s.waiting.is_some()), "{logged:?}");
    }
}
