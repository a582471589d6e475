//! The estimator: from the plan of phases (each with its expected duration) and the work
//! observed so far, the time remaining with a low–high range, and the percent of the total
//! *time* elapsed. Pure: time is passed in (seconds since the install started), so recorded
//! streams replay exactly in tests.
//!
//! The current phase's remaining time blends the rate observed over the last
//! [`WINDOW_SECS`] with the phase's expected duration (the observed rate takes over within
//! [`TRUST_SECS`] of steady work); phases not yet begun count their expected durations.
//! The percent never moves backwards: when the estimate grows, it creeps on at half speed
//! and a `note` says why.

use std::collections::VecDeque;

/// Seconds of work samples the observed rate is taken over.
pub const WINDOW_SECS: f64 = 4.0;
/// Seconds of observed work after which the observed rate is trusted (almost) fully.
pub const TRUST_SECS: f64 = 2.0;
/// Seconds without a unit of work in a measured phase before it counts as waiting.
pub const STALL_SECS: f64 = 1.0;

/// A phase's expected duration and how sure it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    /// Seconds.
    pub secs: f64,
    /// Relative uncertainty: the duration is within `secs × (1 ± spread)`.
    pub spread: f64,
}

/// One phase of the plan, named by its DESIGN §5 checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPhase {
    /// The checkpoint (controller state) name.
    pub name: &'static str,
    /// Units of measured work (bytes), 0 for a phase measured by time only.
    pub total: u64,
    /// Its expected duration for this update on this device.
    pub expected: Expected,
    /// Seconds it goes on after its last unit of work (the slot's final sync, say).
    pub tail: f64,
    /// Units per second of its second measure the device can do at most (a full
    /// download's slot writes), 0 for none: the phase lasts at least what is left of that
    /// measure at this rate.
    pub secondary_rate: f64,
    /// An earlier phase on the same resource (a delta's apply before its verification,
    /// both on the slot's disk): this one's expected duration scales by how much slower
    /// or faster than planned that one went.
    pub calibrated_by: Option<&'static str>,
}

/// The estimate at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Percent of the total time elapsed, as shown (monotone).
    pub percent: f64,
    /// Seconds remaining, best estimate.
    pub remaining: f64,
    /// Seconds remaining, low end of the range.
    pub low: f64,
    /// Seconds remaining, high end of the range.
    pub high: f64,
    /// Seconds since the last unit of work in a measured phase that is not finished.
    pub stalled_for: Option<f64>,
    /// Why the bar did not follow the estimate (it would have moved backwards).
    pub note: Option<String>,
    /// The observed rate in the current phase, units per second.
    pub rate: Option<f64>,
}

/// The estimator of one install.
#[derive(Debug, Clone)]
pub struct Estimator {
    plan: Vec<PlannedPhase>,
    current: Option<usize>,
    phase_started: f64,
    total: u64,
    window: VecDeque<(f64, u64)>,
    last_work: f64,
    last_done: u64,
    shown: f64,
    last_t: f64,
    last_remaining: Option<f64>,
    growing: bool,
    finished: bool,
    /// The second measure: (done, total) and its recent samples.
    secondary: (u64, u64),
    window2: VecDeque<(f64, u64)>,
    /// Per measured phase: observed duration over planned (from its observed rate).
    calibration: Vec<(&'static str, f64)>,
    /// The work announced it waits until then before it can move again (a download
    /// backing off before it asks again).
    wait_until: Option<f64>,
}

impl Estimator {
    /// An estimator for `plan`, the install starting at t = 0.
    pub fn new(plan: Vec<PlannedPhase>) -> Estimator {
        Estimator {
            plan,
            current: None,
            phase_started: 0.0,
            total: 0,
            window: VecDeque::new(),
            last_work: 0.0,
            last_done: 0,
            shown: 0.0,
            last_t: 0.0,
            last_remaining: None,
            growing: false,
            finished: false,
            secondary: (0, 0),
            window2: VecDeque::new(),
            calibration: Vec::new(),
            wait_until: None,
        }
    }

    /// The phase under way announced it cannot move before `until` (a download backing
    /// off before it asks again), or no longer waits (`None`): the wait counts in the
    /// time remaining instead of the bar running on as if work went on.
    pub fn wait_until(&mut self, until: Option<f64>) {
        self.wait_until = until;
    }

    /// At `t`, the phase under way has done `done` of `total` units of its second measure
    /// (after [`Estimator::work`] for the same sample). Its movement counts as work.
    pub fn secondary(&mut self, t: f64, done: u64, total: u64) {
        if total != self.secondary.1 || done < self.secondary.0 {
            self.window2.clear();
        }
        if done != self.secondary.0 {
            self.last_work = t;
        }
        self.secondary = (done, total);
        self.window2.push_back((t, done));
        while self
            .window2
            .front()
            .is_some_and(|(at, _)| t - at > WINDOW_SECS)
            && self.window2.len() > 2
        {
            self.window2.pop_front();
        }
    }

    /// The plan.
    pub fn plan(&self) -> &[PlannedPhase] {
        &self.plan
    }

    /// The phase under way, if it is in the plan.
    pub fn phase(&self) -> Option<&PlannedPhase> {
        self.current.and_then(|i| self.plan.get(i))
    }

    /// At `t`, work is reported in phase `name` with `done` of `total` units. A phase not
    /// in the plan keeps the current one; a new phase (or a new total: another payload
    /// attempt) starts the observed rate afresh.
    pub fn work(&mut self, t: f64, name: &str, done: u64, total: u64) {
        if matches!(name, "COMPLETED") {
            self.finished = true;
        }
        let idx = self.plan.iter().position(|p| p.name == name);
        if idx.is_none() {
            return; // a state outside the plan (COMPLETED, a failure) measures nothing
        }
        let entering = idx != self.current;
        if entering {
            self.current = idx;
            self.phase_started = t;
        }
        if entering {
            self.secondary = (0, 0);
            self.window2.clear();
        }
        if entering || total != self.total {
            if let Some(p) = self.current.and_then(|i| self.plan.get_mut(i))
                && total > 0
            {
                p.total = total;
            }
            self.total = total;
            self.window.clear();
            self.last_work = t;
            self.last_done = done;
            self.window.push_back((t, done));
            return;
        }
        if done != self.last_done {
            // Work resumed after a stall: the stall is not the rate of the work.
            if t - self.last_work > STALL_SECS * 2.0 {
                self.window.clear();
                self.window
                    .push_back((self.last_work.max(t - STALL_SECS), self.last_done));
            }
            self.last_work = t;
            self.last_done = done;
        }
        self.window.push_back((t, done));
        while self
            .window
            .front()
            .is_some_and(|(at, _)| t - at > WINDOW_SECS)
            && self.window.len() > 2
        {
            self.window.pop_front();
        }
    }

    /// The install finished (applied, or staged by a download-only run): 100 %.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The observed rate in the current phase (units/s) and the seconds it spans.
    fn observed(&self) -> Option<(f64, f64)> {
        let (t0, d0) = *self.window.front()?;
        let (t1, d1) = *self.window.back()?;
        let span = t1 - t0;
        (span > 0.2 && d1 > d0).then(|| ((d1 - d0) as f64 / span, span))
    }

    /// The estimate at `t`.
    pub fn at(&mut self, t: f64) -> Estimate {
        let dt = (t - self.last_t).max(0.0);
        self.last_t = t;
        let (mut remaining, mut low, mut high) = (0.0, 0.0, 0.0);
        let mut rate = None;
        let mut stalled_for = None;
        let start = self.current.map_or(0, |i| i + 1);
        if let Some(p) = self.phase().cloned().filter(|_| !self.finished) {
            let in_phase = (t - self.phase_started).max(0.0);
            let (left, spread) = if p.total > 0 {
                let frac = (self.last_done as f64 / p.total as f64).min(1.0);
                let expected_left = p.expected.secs * (1.0 - frac);
                let units_left = p.total.saturating_sub(self.last_done) as f64;
                // After the last unit: what is left of the tail.
                let tail = if self.last_done >= p.total {
                    (p.tail - (t - self.last_work)).max(p.tail * 0.1)
                } else {
                    p.tail
                };
                let (left, spread) = match self.observed() {
                    Some((r, span)) => {
                        rate = Some(r);
                        if span >= TRUST_SECS && p.expected.secs > 0.0 {
                            let planned = p.total as f64 / p.expected.secs;
                            // Only ever slower: a write faster than planned is the page
                            // cache taking it, which says nothing of the read-back's hashing
                            // (a tailored delta applied at 1 GB/s still verified at 370 MB/s);
                            // a slower one is the disk itself, and the read-back shares it.
                            let k = (planned / r).clamp(1.0, 4.0);
                            self.calibration.retain(|(n, _)| *n != p.name);
                            self.calibration.push((p.name, k));
                        }
                        let w = 0.95 * (span / TRUST_SECS).min(1.0);
                        let observed_left = units_left / r;
                        let left = w * observed_left + (1.0 - w) * expected_left;
                        (left, 0.08 + (1.0 - w) * p.expected.spread)
                    }
                    None => (expected_left, p.expected.spread),
                };
                // The second measure's floor: what is left of it at the most the device
                // does (a slot-bound download: the last payload bytes are zeros that take
                // long to write).
                let (done2, total2) = self.secondary;
                let observed2 = match (self.window2.front(), self.window2.back()) {
                    (Some((t0, d0)), Some((t1, d1))) if t1 - t0 > 0.2 && d1 > d0 => {
                        (d1 - d0) as f64 / (t1 - t0)
                    }
                    _ => 0.0,
                };
                let write_rate = p.secondary_rate.max(observed2);
                let floor = if total2 > 0 && p.secondary_rate > 0.0 {
                    total2.saturating_sub(done2) as f64 / write_rate
                } else {
                    0.0
                };
                // What the last payload bytes leave to write: the image bytes beyond what the
                // rest of the payload decodes to at the ratio seen so far (an image's free
                // space is zeros a few bytes of payload stand for, written at the slot's
                // rate after they arrive). The tail is at least that.
                let lump = if total2 > 0 && p.secondary_rate > 0.0 && self.last_done > 0 {
                    let ratio = done2 as f64 / self.last_done as f64;
                    let after = (total2.saturating_sub(done2) as f64 - units_left * ratio).max(0.0);
                    after / write_rate
                } else {
                    0.0
                };
                let tail = tail.max(lump);
                // The tail is the writes and the sync after the last byte: when the writes
                // are the bound, the floor already counts them (adding both overestimates
                // a slot-bound download by the whole tail).
                ((left + tail).max(floor), spread)
            } else {
                // Measured by time: what is left of its expected duration, at least a
                // tenth of it while it lasts.
                let left = (p.expected.secs - in_phase).max(p.expected.secs * 0.1);
                (left, p.expected.spread)
            };
            let mut left = left;
            if p.total > 0 && self.last_done < p.total {
                let quiet = t - self.last_work;
                if quiet >= STALL_SECS {
                    stalled_for = Some(quiet);
                }
                if let Some(until) = self.wait_until {
                    left += (until - t).max(0.0);
                }
            }
            remaining += left;
            low += left * (1.0 - spread).max(0.0);
            high += left * (1.0 + spread);
        }
        if !self.finished {
            for p in self.plan.iter().skip(start) {
                let k = p
                    .calibrated_by
                    .and_then(|by| self.calibration.iter().find(|(n, _)| *n == by))
                    .map_or(1.0, |(_, k)| *k);
                let secs = p.expected.secs * k + p.tail;
                remaining += secs;
                low += secs * (1.0 - p.expected.spread).max(0.0);
                high += secs * (1.0 + p.expected.spread);
            }
        }
        let mut note = None;
        let target = if self.finished {
            100.0
        } else if t + remaining > 0.0 {
            (100.0 * t / (t + remaining)).min(99.9)
        } else {
            0.0
        };
        if target >= self.shown {
            self.shown = target;
            self.growing = false;
        } else {
            // The estimate grew: the bar does not go back, it moves on at half the speed
            // the new estimate gives, and says why once.
            let creep = (100.0 - self.shown) * dt / (2.0 * (remaining + dt).max(1e-3));
            self.shown = (self.shown + creep).min(99.9);
            if !self.growing && self.shown - target > 1.0 && remaining >= 5.0 {
                self.growing = true;
                note = Some(match (self.last_remaining, stalled_for) {
                    _ if self.wait_until.is_some() => {
                        "the work waits before it asks again: the time remaining grew, so the bar slows instead of going back".into()
                    }
                    (_, Some(q)) => format!(
                        "no progress for {q:.0} s: the time remaining grew, so the bar slows instead of going back"
                    ),
                    (Some(before), None) if human(before) != human(remaining) => format!(
                        "the work slowed: the time remaining grew from {} to {}, so the bar slows instead of going back",
                        human(before),
                        human(remaining)
                    ),
                    (_, None) => {
                        "the time remaining grew, so the bar slows instead of going back".into()
                    }
                });
            }
        }
        self.last_remaining = Some(remaining);
        Estimate {
            percent: self.shown,
            remaining,
            low,
            high,
            stalled_for,
            note,
            rate,
        }
    }
}

/// Seconds for people: "45 s", "4 min", "1 h 05 min".
pub fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", (s + 30) / 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// A remaining time for people: "about 5 min", or a range "about 4–6 min" when the range
/// is wider than a quarter of the estimate.
pub fn remaining_text(remaining: f64, low: f64, high: f64) -> String {
    if remaining < 1.0 {
        return "less than a second left".into();
    }
    if high - low > remaining * 0.25 && high - low >= 2.0 {
        let (l, h) = (low.max(0.0), high);
        if h < 60.0 {
            format!("about {:.0}–{:.0} s left", l.floor(), h.ceil())
        } else if h < 3600.0 {
            format!(
                "about {}–{} min left",
                (l / 60.0).floor() as u64,
                (h / 60.0).ceil() as u64
            )
        } else {
            format!("about {}–{} left", human(l), human(h))
        }
    } else {
        format!("about {} left", human(remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(download_secs: f64, prepare_secs: f64, spread: f64) -> Vec<PlannedPhase> {
        vec![
            PlannedPhase {
                name: "PREFLIGHT_PERSONALIZE",
                total: 0,
                expected: Expected { secs: 0.5, spread },
                tail: 0.0,
                secondary_rate: 0.0,
                calibrated_by: None,
            },
            PlannedPhase {
                name: "DOWNLOADING_UPDATE",
                total: 1000,
                expected: Expected {
                    secs: download_secs,
                    spread,
                },
                tail: 0.0,
                secondary_rate: 0.0,
                calibrated_by: None,
            },
            PlannedPhase {
                name: "PREPARING_UPDATE",
                total: 1000,
                expected: Expected {
                    secs: prepare_secs,
                    spread,
                },
                tail: 0.0,
                secondary_rate: 0.0,
                calibrated_by: None,
            },
        ]
    }

    /// A recorded stream: (t, phase, done, total) samples every 0.25 s from a download
    /// whose rate (units/s) at time t is `rate(t)`, then a prepare at 100 units/s.
    fn replay(est: &mut Estimator, rate: impl Fn(f64) -> f64) -> (Vec<(f64, Estimate)>, f64) {
        let mut out = Vec::new();
        let mut t = 0.0;
        est.work(t, "PREFLIGHT_PERSONALIZE", 0, 0);
        t += 0.5;
        let mut done = 0.0_f64;
        est.work(t, "DOWNLOADING_UPDATE", 0, 1000);
        while done < 1000.0 {
            t += 0.25;
            done = (done + rate(t) * 0.25).min(1000.0);
            est.work(t, "DOWNLOADING_UPDATE", done as u64, 1000);
            out.push((t, est.at(t)));
        }
        est.work(t, "PREPARING_UPDATE", 0, 1000);
        let mut verified = 0.0_f64;
        while verified < 1000.0 {
            t += 0.25;
            verified = (verified + 25.0).min(1000.0);
            est.work(t, "PREPARING_UPDATE", verified as u64, 1000);
            out.push((t, est.at(t)));
        }
        (out, t)
    }

    fn errors_after(out: &[(f64, Estimate)], end: f64, from: f64) -> Vec<f64> {
        out.iter()
            .filter(|(t, e)| *t >= from && e.percent >= 10.0 && end - t > 1.0)
            .map(|(t, e)| (e.remaining - (end - t)).abs() / (end - t))
            .collect()
    }

    fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    #[test]
    fn steady_stream_is_linear_and_its_time_remaining_right() {
        // The download expected twice as fast as it goes (the network was not known):
        // the observed rate corrects it; the prepare expected from the self-measurement
        // (10 % fast).
        let mut est = Estimator::new(plan(5.0, 9.0, 0.5));
        let (out, end) = replay(&mut est, |_| 100.0);
        let errors = errors_after(&out, end, 0.0);
        assert!(quantile(errors.clone(), 0.5) <= 0.10, "{errors:?}");
        assert!(quantile(errors, 0.9) <= 0.15);
        let worst = out
            .iter()
            .map(|(t, e)| (e.percent - 100.0 * t / end).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 10.0, "linearity {worst}");
        assert!(out.windows(2).all(|w| w[1].1.percent >= w[0].1.percent));
    }

    #[test]
    fn a_fourfold_rate_drop_is_caught_within_ten_seconds() {
        let mut est = Estimator::new(plan(10.0, 10.0, 0.2));
        // 200 units/s until 40 % (t = 2.5), then 50 units/s.
        let (out, end) = replay(&mut est, |t| if t < 2.5 { 200.0 } else { 50.0 });
        let errors = errors_after(&out, end, 2.5 + 10.0);
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|e| *e <= 0.15), "{errors:?}");
        assert!(out.windows(2).all(|w| w[1].1.percent >= w[0].1.percent));
        assert!(
            out.iter().any(|(_, e)| e.note.is_some()),
            "the bar says why it slows"
        );
    }

    #[test]
    fn a_cut_shows_the_stall_and_recovers() {
        let mut est = Estimator::new(plan(10.0, 10.0, 0.2));
        // 100 units/s, nothing from t = 4 to t = 14, then 100 units/s again.
        let (out, end) = replay(
            &mut est,
            |t| {
                if (4.0..14.0).contains(&t) { 0.0 } else { 100.0 }
            },
        );
        let stalled: Vec<f64> = out
            .iter()
            .filter(|(t, _)| (4.0..14.0).contains(t))
            .filter_map(|(_, e)| e.stalled_for)
            .collect();
        assert!(!stalled.is_empty(), "the cut is shown as a stall");
        let first = out
            .iter()
            .find(|(t, e)| *t >= 4.0 && e.stalled_for.is_some())
            .map(|(t, _)| *t)
            .unwrap();
        assert!(first - 4.0 <= 2.0, "the stall shows within 2 s ({first})");
        assert!(
            out.iter()
                .filter(|(t, _)| *t > 15.0)
                .all(|(_, e)| e.stalled_for.is_none())
        );
        let errors = errors_after(&out, end, 14.0 + 10.0);
        assert!(errors.iter().all(|e| *e <= 0.15), "{errors:?}");
        assert!(out.windows(2).all(|w| w[1].1.percent >= w[0].1.percent));
    }

    /// 1000 payload bytes whose last tenth decodes to most of the image: the writes (100
    /// units/s, 5000 units) take 50 s while the bytes would say 10 s; `tail` seconds of
    /// download tail learned from earlier installs. The estimates, and their errors after
    /// the first 5 s (the install ends 1.5 s after the writes).
    fn slot_bound_download(tail: f64) -> (Vec<(f64, Estimate)>, Vec<f64>) {
        let mut p = plan(10.0, 1.0, 0.2);
        p[1].secondary_rate = 100.0;
        p[1].tail = tail;
        let mut est = Estimator::new(p);
        est.work(0.0, "DOWNLOADING_UPDATE", 0, 1000);
        let mut t = 0.0;
        let mut out = Vec::new();
        while t < 50.0 {
            t += 0.25;
            let written = (t * 100.0) as u64;
            let done = (written * 900 / 1000).min(990);
            est.work(t, "DOWNLOADING_UPDATE", done, 1000);
            est.secondary(t, written, 5000);
            out.push((t, est.at(t)));
        }
        let errors = errors_after(&out, 50.0 + 1.0 + 0.5, 5.0);
        (out, errors)
    }

    #[test]
    fn a_slot_bound_download_is_timed_by_its_writes_not_its_bytes() {
        let (out, errors) = slot_bound_download(0.0);
        assert!(quantile(errors.clone(), 0.5) <= 0.10, "{errors:?}");
        // The bytes stop at 990 while the writes go on: work proceeds, no stall.
        assert!(out.iter().all(|(_, e)| e.stalled_for.is_none()));
    }

    #[test]
    fn a_slot_bound_download_does_not_count_its_tail_twice() {
        // With a 4 s tail: once the writes are the bound, the time left is the writes', not
        // the writes' plus the tail.
        let (_, errors) = slot_bound_download(4.0);
        assert!(quantile(errors.clone(), 0.5) <= 0.10, "{errors:?}");
        assert!(quantile(errors.clone(), 0.9) <= 0.15, "{errors:?}");
    }

    #[test]
    fn a_slow_apply_warns_that_the_verification_will_be_slow_too() {
        // Both planned at 200 units/s; the disk does 50: the verification after the apply
        // is expected 4× longer once the apply's rate is seen.
        let mut p = plan(5.0, 5.0, 0.2);
        p[2].calibrated_by = Some("DOWNLOADING_UPDATE");
        let mut est = Estimator::new(p);
        est.work(0.0, "DOWNLOADING_UPDATE", 0, 1000);
        let mut t = 0.0;
        let mut last = None;
        while t < 10.0 {
            t += 0.25;
            est.work(t, "DOWNLOADING_UPDATE", (t * 50.0) as u64, 1000);
            last = Some(est.at(t));
        }
        let e = last.unwrap();
        // 10 s of apply left, then 20 s of verification.
        assert!((e.remaining - 30.0).abs() < 3.0, "{e:?}");
    }

    #[test]
    fn a_fast_apply_does_not_shorten_the_verification() {
        // Planned at 200 units/s each; the apply goes at 1000 (the page cache took the
        // writes): the verification still counts its planned 5 s.
        let mut p = plan(5.0, 5.0, 0.2);
        p[2].calibrated_by = Some("DOWNLOADING_UPDATE");
        let mut est = Estimator::new(p);
        est.work(0.0, "DOWNLOADING_UPDATE", 0, 1000);
        let mut last = None;
        for i in 1..=4 {
            let t = i as f64 * 0.25;
            est.work(t, "DOWNLOADING_UPDATE", (t * 1000.0) as u64 / 2, 1000);
            last = Some(est.at(t));
        }
        let e = last.unwrap();
        assert!(e.remaining >= 5.0 + 0.5, "{e:?}");
    }

    #[test]
    fn the_writes_the_last_payload_bytes_leave_count_in_the_time_remaining() {
        // 1000 payload bytes at 100/s write 4 image units each, until the last 10 bytes,
        // which stand for 6000 units of zeros: written at 1000 units/s after they arrive
        // (10 s of bytes, then 6 s of writes).
        let mut p = plan(10.0, 0.0, 0.2);
        p[1].secondary_rate = 1000.0;
        let mut est = Estimator::new(p);
        est.work(0.0, "DOWNLOADING_UPDATE", 0, 1000);
        let mut e = None;
        for i in 1..=20 {
            let t = i as f64 * 0.25;
            let done = (t * 100.0) as u64;
            est.work(t, "DOWNLOADING_UPDATE", done, 1000);
            est.secondary(t, done * 4, 10_000);
            e = Some(est.at(t));
        }
        // At t = 5: 5 s of bytes, then the zeros (10 000 − 2000 written − 500 bytes × 4 =
        // 6000 units beyond what the bytes decode to at the ratio seen: 6 s). The bytes
        // alone would say 5 s.
        let e = e.unwrap();
        assert!((e.remaining - 11.0).abs() < 0.5, "{e:?}");
    }

    #[test]
    fn ranges_and_text() {
        assert_eq!(remaining_text(300.0, 240.0, 360.0), "about 4–6 min left");
        assert_eq!(remaining_text(300.0, 290.0, 310.0), "about 5 min left");
        assert_eq!(remaining_text(12.0, 11.0, 13.0), "about 12 s left");
        let mut est = Estimator::new(plan(10.0, 10.0, 0.5));
        let e = est.at(0.0);
        assert!(e.low < e.remaining && e.remaining < e.high);
        assert!((e.remaining - 20.5).abs() < 1e-9);
    }
}
