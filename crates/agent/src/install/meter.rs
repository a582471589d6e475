//! The meter of a payload attempt: the bytes it received (for the crash and cancel
//! points and the record) and its `DOWNLOADING_UPDATE` progress phase, with the wait
//! on the slot named when the download is held by decode, write or sync, and the wait to
//! ask again after a lost connection.

use crate::journal;
use crate::machines::controller;
use crate::progress::{Phase, ProgressSink, Retry};
use crate::stop::{StopReason, StopToken};

/// The bytes of the attempt under way and its progress phase.
pub(super) struct Meter<'a> {
    sink: &'a dyn ProgressSink,
    stop: StopToken,
    pub(super) action: &'static str,
    phase: Option<Phase>,
    /// Bytes this attempt received in this run.
    pub(super) received: u64,
    /// Where the phase started: its units done by earlier runs, and `received` then.
    start: (u64, u64),
    /// Units done in the phase, last reported.
    done: u64,
    /// The download waits on the slot (decode, write, sync), not the network.
    busy: bool,
    /// The next report goes out whatever the rate limit.
    force: bool,
    /// Image bytes written of the image's (a full download's second measure).
    pub(super) written: (u64, u64),
    /// The connection was lost: the wait to ask again.
    retry: Option<Retry>,
}

/// The hint a report carries while the download waits on the slot: the tracker names
/// it in its waiting reason.
pub const SLOT_BUSY: &str = "the slot";

impl<'a> Meter<'a> {
    /// A meter whose phase says `action` ("Downloading update…").
    pub(super) fn new(
        sink: &'a dyn ProgressSink,
        action: &'static str,
        stop: StopToken,
    ) -> Meter<'a> {
        Meter {
            sink,
            stop,
            action,
            phase: None,
            received: 0,
            start: (0, 0),
            done: 0,
            busy: false,
            force: false,
            written: (0, 0),
            retry: None,
        }
    }

    /// The phase: `total` units of work (bytes of the payload being fetched), `done` of
    /// them by earlier runs.
    pub(super) fn begin(&mut self, total: u64, done: u64) {
        let mut phase = Phase::new(
            controller::State::DOWNLOADING_UPDATE.name(),
            self.action,
            total,
            done,
        );
        if let Some(p) = phase.at(done, true) {
            self.sink.report(&p);
        }
        self.phase = Some(phase);
        self.start = (done, self.received);
    }

    /// `n` more bytes arrived.
    pub(super) fn add(&mut self, n: u64) {
        self.reach(self.received + n);
    }

    /// `received` bytes have arrived in this run, in all: they are the phase's work.
    pub(super) fn reach(&mut self, received: u64) {
        self.count(received);
        let (done, at) = self.start;
        self.work(done + received.saturating_sub(at));
    }

    /// `received` bytes have arrived in this run, in all. Honours the byte crash and
    /// cancel points.
    pub(super) fn count(&mut self, received: u64) {
        self.received = received;
        journal::bytes_received(received);
        if journal::cancel_point().is_some_and(|at| received >= at) {
            self.stop.stop(StopReason::Cancelled);
        }
    }

    /// `done` units of the phase's work are done (bytes received, or written).
    pub(super) fn work(&mut self, done: u64) {
        self.done = done;
        let force = std::mem::take(&mut self.force);
        if let Some(phase) = self.phase.as_mut()
            && let Some(mut p) = phase.at(done, force)
        {
            p.waiting = (self.busy && self.retry.is_none()).then(|| SLOT_BUSY.to_owned());
            p.retry = self.retry.clone();
            (p.written, p.written_total) = self.written;
            self.sink.report(&p);
        }
    }

    /// The phase's work ends at `done`: reported whatever the rate limit, so the last
    /// sample shows it whole.
    pub(super) fn finish(&mut self, done: u64) {
        self.force = true;
        self.work(done);
    }

    /// Whether the download now waits on the slot rather than the network: said in the
    /// next report (at once when it starts), so a wait is blamed on the right thing.
    pub(super) fn slot_busy(&mut self, busy: bool) {
        if busy && !self.busy {
            self.force = true;
        }
        self.busy = busy;
    }

    /// Whether the download waits to ask again after a lost connection: a change is said
    /// at once.
    pub(super) fn retry(&mut self, retry: Option<Retry>) {
        if retry.as_ref().map(|r| (r.attempt, r.at.is_some()))
            != self.retry.as_ref().map(|r| (r.attempt, r.at.is_some()))
        {
            self.force = true;
        }
        self.retry = retry;
    }
}
