//! When the agent scans, and what it does next with the offered update: pure decisions
//! over the policy, the device's facts, the maintenance window and where the update
//! stands, so they are tested on data. The answer to "why is it not installing now?" is
//! [`Hold`]: `ferry status` and `ferry list --json` show it per offer.

use std::time::Duration;

use ferry_agent::facts::Facts;
use ferry_agent::policy::{self, Policy, Step};
use ferry_types::{Diagnose, Report};
use serde::Serialize;

use crate::window::WindowState;

/// The longest a server's `Retry-After` may hold the next scan back.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(6 * 3600);

/// How long after start the first background scan waits at most ("soon after start",
/// spread so that a fleet restarted together does not arrive at once).
pub const FIRST_SCAN_SPREAD: Duration = Duration::from_secs(30);

/// The first background scan: a random delay up to [`FIRST_SCAN_SPREAD`] (a quarter of
/// the interval when that is shorter). `unit` is a uniform random number in [0, 1).
pub fn first_scan_delay(interval: Duration, unit: f64) -> Duration {
    FIRST_SCAN_SPREAD
        .min(interval / 4)
        .mul_f64(unit.clamp(0.0, 1.0))
}

/// The next background scan after one that succeeded: the interval, ±10 % at random
/// (`unit` uniform in [0, 1)).
pub fn after_success(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// The next try after `failures` failures in a row (1 for the first): exponential
/// back-off from a tenth of the interval (at most a minute), doubling, capped at the
/// interval; a server's `Retry-After` is honoured up to [`RETRY_AFTER_CAP`].
pub fn after_failure(interval: Duration, failures: u32, retry_after: Option<Duration>) -> Duration {
    let base = (interval / 10).min(Duration::from_secs(60));
    let exponent = failures.saturating_sub(1).min(20);
    let backoff = base.saturating_mul(1 << exponent).min(interval);
    match retry_after {
        Some(asked) => backoff.max(asked.min(RETRY_AFTER_CAP)),
        None => backoff,
    }
}

/// How often the agent looks at its facts and policy again while nothing runs.
pub fn recheck_every(interval: Duration) -> Duration {
    (interval / 2).clamp(Duration::from_millis(200), Duration::from_secs(30))
}

/// Where the offered update stands on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing done yet (or a run that failed: it is tried again).
    New,
    /// A run was interrupted (shutdown, crash) while installing (`true`) or downloading
    /// only: it resumes as it was, whatever the policy, preconditions permitting.
    Interrupted {
        /// It was an install.
        installing: bool,
    },
    /// Staged: downloaded, verified and sealed, waiting for an install.
    Staged,
    /// Cancelled by a person or client: it waits until asked again.
    Parked,
    /// Installed; the new slot boots at the next restart.
    Installed,
    /// Installed, restarted into and committed: it runs.
    Committed,
    /// It rolled back at boot: not tried again on its own.
    RolledBack,
}

/// What the agent does next with the offered update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Next {
    /// Stage it.
    Download,
    /// Apply it (downloading what is missing).
    Install,
    /// Restart into it (installed, `auto_restart`).
    Restart,
    /// Nothing now: see the [`Hold`].
    Wait,
}

/// What kind of reason holds an update back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldKind {
    /// The policy does not let the agent do it on its own.
    Policy,
    /// Outside the maintenance window.
    Window,
    /// Power, network or space.
    Precondition,
    /// A person deferred it (cancelled), or it rolled back.
    Deferral,
    /// The agent is suspended, or not running.
    Agent,
    /// The release's rollout holds it back (the director's signed decision: its wave is
    /// not open, or the rollout is paused or halted).
    Rollout,
}

/// Why the offered update is not being installed now: its kind, a stable code, the
/// cause and the fix, and for a window when it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// What kind of reason.
    pub kind: HoldKind,
    /// Stable code (`OUTSIDE_WINDOW`, `BATTERY_LOW`, …).
    pub code: String,
    /// One sentence.
    pub cause: String,
    /// One sentence.
    pub fix: String,
    /// When the window opens next (RFC 3339, the device's time zone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl Hold {
    fn new(kind: HoldKind, code: &str, cause: String, fix: &str) -> Hold {
        Hold {
            kind,
            code: code.into(),
            cause,
            fix: fix.into(),
            until: None,
        }
    }

    fn from_report(kind: HoldKind, report: Report) -> Hold {
        Hold {
            kind,
            code: report.code,
            cause: report.cause,
            fix: report.fix,
            until: None,
        }
    }
}

/// Why an installed update waits while the restart command runs and the machine goes
/// down (the agent runs it once per start).
pub fn restarting(version: &str) -> Hold {
    Hold::new(
        HoldKind::Agent,
        "RESTARTING",
        format!("the restart into {version} was asked for and the device is going down"),
        "Wait for the device to restart; if it does not, check restart_command in config.toml [policy]",
    )
}

/// Why the maintenance window holds `what` back now, if it does.
fn window_hold(s: &Situation, what: &str) -> Option<Hold> {
    match &s.window {
        Err(report) => Some(Hold::from_report(HoldKind::Window, report.clone())),
        Ok(Some(window)) if !window.open => {
            let until = window.next_open.as_ref().map(|z| z.to_string());
            let mut hold = Hold::new(
                HoldKind::Window,
                "OUTSIDE_WINDOW",
                format!(
                    "{what} and the maintenance window is closed{}",
                    until
                        .as_ref()
                        .map(|u| format!(" until {u}"))
                        .unwrap_or_else(|| " (it never opens)".into())
                ),
                "Wait for the window, run `ferry install` to apply it now, or change [policy.window] in config.toml",
            );
            hold.until = until;
            Some(hold)
        }
        Ok(_) => None,
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// `[policy]`.
    pub policy: &'a Policy,
    /// The facts now, or why they could not be read.
    pub facts: Result<&'a Facts, Report>,
    /// The window now (`None`: no window, always open), or why it cannot be evaluated.
    pub window: Result<Option<&'a WindowState>, Report>,
    /// The offered version, for messages.
    pub version: &'a str,
    /// Bytes to download and the image size, for the download's preconditions.
    pub download_size: u64,
    /// Whether the download would fit once the cache is purged (the sizing of DESIGN §3
    /// step 2, `install::sizing::check_fits`), or the refusal with its numbers.
    pub space: Result<(), Report>,
    /// Where the update stands.
    pub stage: Stage,
    /// Whether a daemon runs (`None` outside one: nothing happens on its own).
    pub suspended: Option<bool>,
    /// Why the director's last verified decision holds this release back, if it does.
    pub rollout: Option<Report>,
    /// The rollout's deadline has passed: the update is taken at the first moment the
    /// preconditions allow, whatever `auto_download`, `auto_install` and the window say.
    pub deadline_passed: bool,
}

/// What the agent does next with the offered update, and why not more.
pub fn decide(s: &Situation) -> (Next, Option<Hold>) {
    let wait = |hold: Hold| (Next::Wait, Some(hold));
    let version = s.version;
    match s.stage {
        Stage::Installed if !(s.policy.auto_restart && s.suspended.is_some()) => {
            return wait(Hold::new(
                HoldKind::Policy,
                "RESTART_PENDING",
                format!("{version} is installed and runs after the next restart"),
                "Restart the device (ferry reboot on a simulated one), or set auto_restart = true in config.toml [policy]",
            ));
        }
        Stage::Committed => {
            return wait(Hold::new(
                HoldKind::Policy,
                "ALREADY_RUNNING",
                format!("{version} is installed and committed: the device runs it"),
                "Nothing to do; the next scan no longer offers it",
            ));
        }
        Stage::RolledBack => {
            return wait(Hold::new(
                HoldKind::Deferral,
                "ROLLED_BACK",
                format!(
                    "{version} failed at boot and the device rolled back, so the agent does not retry it on its own"
                ),
                "Run `ferry doctor` for the cause, then `ferry install` to try it again",
            ));
        }
        _ => {}
    }
    // A halted (or paused, or not yet open) rollout: nothing more is done on its own, a
    // staged update included.
    if let Some(report) = &s.rollout {
        return wait(Hold::from_report(HoldKind::Rollout, report.clone()));
    }
    match s.suspended {
        None => {
            return wait(Hold::new(
                HoldKind::Agent,
                "AGENT_NOT_RUNNING",
                "no ferry agent runs for this device, so nothing is downloaded or installed on its own".into(),
                "Start the agent (systemctl start ferry-agent, or ferry agent --device DIR)",
            ));
        }
        Some(true) => {
            return wait(Hold::new(
                HoldKind::Agent,
                "AGENT_SUSPENDED",
                "the agent is suspended".into(),
                "Run `ferry agent resume`",
            ));
        }
        Some(false) => {}
    }
    let next = match s.stage {
        Stage::Parked => {
            return wait(Hold::new(
                HoldKind::Deferral,
                "DEFERRED",
                format!(
                    "the update to {version} was cancelled, so the agent waits until it is asked again"
                ),
                "Run `ferry install` or `ferry download` to continue it",
            ));
        }
        Stage::Interrupted { installing: true } => Next::Install,
        Stage::Interrupted { installing: false } => Next::Download,
        Stage::New if !s.policy.auto_download && !s.deadline_passed => {
            return wait(Hold::new(
                HoldKind::Policy,
                "AUTO_DOWNLOAD_OFF",
                format!("the policy does not download updates on its own, so {version} waits"),
                "Run `ferry download` or `ferry install`, or set auto_download = true in config.toml [policy]",
            ));
        }
        Stage::New => Next::Download,
        Stage::Staged if !s.policy.auto_install && !s.deadline_passed => {
            return wait(Hold::new(
                HoldKind::Policy,
                "AUTO_INSTALL_OFF",
                format!("{version} is staged, and the policy does not install on its own"),
                "Run `ferry install` to apply it now, or set auto_install = true in config.toml [policy]",
            ));
        }
        Stage::Staged if s.deadline_passed => Next::Install,
        Stage::Staged => match window_hold(s, &format!("{version} is staged")) {
            Some(hold) => return wait(hold),
            None => Next::Install,
        },
        Stage::Installed => {
            let what = format!("{version} is installed and waits for its restart");
            match window_hold(s, &what) {
                Some(hold) => return wait(hold),
                None => Next::Restart,
            }
        }
        Stage::Committed | Stage::RolledBack => Next::Wait,
    };
    let facts = match &s.facts {
        Ok(facts) => *facts,
        Err(report) => return wait(Hold::from_report(HoldKind::Precondition, report.clone())),
    };
    let step = match next {
        Next::Install if s.stage == Stage::Staged => Step::Install,
        Next::Restart => Step::Install,
        _ => {
            if let Err(short) = &s.space {
                return wait(Hold::from_report(HoldKind::Precondition, short.clone()));
            }
            // Sized above, purge included: nothing for the statvfs rule to add.
            Step::Download {
                bytes: s.download_size,
            }
        }
    };
    match policy::check(step, facts, s.policy) {
        Ok(()) => (next, None),
        Err(refusal) => wait(Hold::from_report(HoldKind::Precondition, refusal.report())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(battery: Option<u8>) -> Facts {
        Facts::simulated(battery, battery.is_none(), None, 1 << 40)
    }

    fn situation<'a>(
        policy: &'a Policy,
        facts: &'a Facts,
        window: Option<&'a WindowState>,
        stage: Stage,
    ) -> Situation<'a> {
        Situation {
            policy,
            facts: Ok(facts),
            window: Ok(window),
            version: "2.0",
            download_size: 1000,
            space: Ok(()),
            stage,
            suspended: Some(false),
            rollout: None,
            deadline_passed: false,
        }
    }

    #[test]
    fn past_the_deadline_a_staged_update_installs_outside_the_window_but_not_on_a_low_battery() {
        let policy = Policy::default();
        let ac = facts(None);
        let closed = WindowState {
            open: false,
            next_open: Some("2026-03-21T02:00:00+01:00[Europe/Berlin]".parse().unwrap()),
        };
        // Before the deadline: the policy (no auto install) and the window hold it.
        let s = situation(&policy, &ac, Some(&closed), Stage::Staged);
        assert_eq!(code(decide(&s)), "AUTO_INSTALL_OFF");
        let mut s = situation(&policy, &ac, Some(&closed), Stage::Staged);
        s.deadline_passed = true;
        assert_eq!(decide(&s), (Next::Install, None));
        let mut s = situation(&policy, &ac, Some(&closed), Stage::New);
        s.deadline_passed = true;
        assert_eq!(decide(&s), (Next::Download, None));
        // Preconditions still apply.
        let low = facts(Some(5));
        let mut s = situation(&policy, &low, Some(&closed), Stage::Staged);
        s.deadline_passed = true;
        let (next, hold) = decide(&s);
        assert_eq!(
            (next, hold.map(|h| h.kind)),
            (Next::Wait, Some(HoldKind::Precondition))
        );
    }

    #[test]
    fn a_halted_rollout_keeps_a_staged_update_from_installing_on_its_own() {
        let policy = Policy {
            auto_install: true,
            ..Policy::default()
        };
        let ac = facts(None);
        let halted = Report {
            code: "ROLLOUT_HALTED".into(),
            cause: "rollout 1 of 2.0 holds this device back (rollout halted)".into(),
            fix: "Wait".into(),
        };
        for stage in [Stage::Staged, Stage::New, Stage::Parked] {
            let mut s = situation(&policy, &ac, None, stage);
            s.rollout = Some(halted.clone());
            let (next, hold) = decide(&s);
            let hold = hold.unwrap();
            assert_eq!(
                (next, hold.kind, hold.code.as_str()),
                (Next::Wait, HoldKind::Rollout, "ROLLOUT_HALTED")
            );
        }
        // Without the hold the same staged update installs.
        let s = situation(&policy, &ac, None, Stage::Staged);
        assert_eq!(decide(&s), (Next::Install, None));
    }

    fn code(d: (Next, Option<Hold>)) -> String {
        d.1.map(|h| h.code).unwrap_or_default()
    }

    #[test]
    fn downloads_then_installs_inside_the_window_only() {
        let policy = Policy {
            auto_install: true,
            ..Policy::default()
        };
        let ac = facts(None);
        let closed = WindowState {
            open: false,
            next_open: Some("2026-03-21T02:00:00+01:00[Europe/Berlin]".parse().unwrap()),
        };
        let open = WindowState {
            open: true,
            next_open: None,
        };
        // Downloading ignores the window; installing waits for it.
        let d = decide(&situation(&policy, &ac, Some(&closed), Stage::New));
        assert_eq!(d, (Next::Download, None));
        let d = decide(&situation(&policy, &ac, Some(&closed), Stage::Staged));
        assert_eq!(d.0, Next::Wait);
        let hold = d.1.unwrap();
        assert_eq!(
            (hold.kind, hold.code.as_str()),
            (HoldKind::Window, "OUTSIDE_WINDOW")
        );
        assert!(hold.until.unwrap().starts_with("2026-03-21T02:00:00+01:00"));
        let d = decide(&situation(&policy, &ac, Some(&open), Stage::Staged));
        assert_eq!(d, (Next::Install, None));
        assert_eq!(
            decide(&situation(&policy, &ac, None, Stage::Staged)),
            (Next::Install, None)
        );
    }

    #[test]
    fn an_installed_update_restarts_on_its_own_only_by_policy_and_inside_the_window() {
        let ac = facts(None);
        let closed = WindowState {
            open: false,
            next_open: None,
        };
        let off = Policy::default();
        let on = Policy {
            auto_restart: true,
            ..Policy::default()
        };
        assert_eq!(
            code(decide(&situation(&off, &ac, None, Stage::Installed))),
            "RESTART_PENDING"
        );
        assert_eq!(
            decide(&situation(&on, &ac, None, Stage::Installed)),
            (Next::Restart, None)
        );
        assert_eq!(
            code(decide(&situation(
                &on,
                &ac,
                Some(&closed),
                Stage::Installed
            ))),
            "OUTSIDE_WINDOW"
        );
        let mut suspended = situation(&on, &ac, None, Stage::Installed);
        suspended.suspended = Some(true);
        assert_eq!(code(decide(&suspended)), "AGENT_SUSPENDED");
        // Committed: it runs, nothing is restarted again.
        assert_eq!(
            code(decide(&situation(&on, &ac, None, Stage::Committed))),
            "ALREADY_RUNNING"
        );
    }

    #[test]
    fn every_reason_not_to_install_has_its_own_code() {
        let default = Policy::default();
        let ac = facts(None);
        let low = facts(Some(5));
        let cases = [
            (
                situation(&default, &ac, None, Stage::Staged),
                "AUTO_INSTALL_OFF",
            ),
            (situation(&default, &ac, None, Stage::Parked), "DEFERRED"),
            (
                situation(&default, &ac, None, Stage::Installed),
                "RESTART_PENDING",
            ),
            (
                situation(&default, &ac, None, Stage::RolledBack),
                "ROLLED_BACK",
            ),
            (situation(&default, &low, None, Stage::New), "BATTERY_LOW"),
        ];
        for (s, expected) in cases {
            assert_eq!(code(decide(&s)), expected, "{:?}", s.stage);
        }
        let off = Policy {
            auto_download: false,
            ..Policy::default()
        };
        assert_eq!(
            code(decide(&situation(&off, &ac, None, Stage::New))),
            "AUTO_DOWNLOAD_OFF"
        );
        // An interrupted run resumes whatever the policy, the facts permitting.
        assert_eq!(
            decide(&situation(
                &off,
                &ac,
                None,
                Stage::Interrupted { installing: true }
            )),
            (Next::Install, None)
        );
        let mut short = situation(&default, &ac, None, Stage::New);
        short.space = Err(Report {
            code: "INSUFFICIENT_SPACE".into(),
            cause: "the update needs 40 MiB on /data, which has 12 MiB free".into(),
            fix: "Free at least 28 MiB on the filesystem of /data".into(),
        });
        let (next, hold) = decide(&short);
        assert_eq!(next, Next::Wait);
        let hold = hold.unwrap();
        assert_eq!(
            (hold.code.as_str(), hold.kind),
            ("INSUFFICIENT_SPACE", HoldKind::Precondition)
        );
        // A staged update needs no more space to be applied.
        let auto = Policy {
            auto_install: true,
            ..Policy::default()
        };
        short.stage = Stage::Staged;
        short.policy = &auto;
        assert_eq!(decide(&short), (Next::Install, None));
        let mut suspended = situation(&default, &ac, None, Stage::New);
        suspended.suspended = Some(true);
        assert_eq!(code(decide(&suspended)), "AGENT_SUSPENDED");
        suspended.suspended = None;
        assert_eq!(code(decide(&suspended)), "AGENT_NOT_RUNNING");
    }

    #[test]
    fn scans_back_off_and_honour_retry_after_within_its_cap() {
        let six_hours = Duration::from_secs(6 * 3600);
        assert!(first_scan_delay(six_hours, 0.999) <= FIRST_SCAN_SPREAD);
        assert_eq!(
            first_scan_delay(Duration::from_secs(4), 0.5),
            Duration::from_millis(500)
        );
        let next = after_success(six_hours, 0.0);
        assert_eq!(next, six_hours.mul_f64(0.9));
        assert!(after_success(six_hours, 0.999) <= six_hours.mul_f64(1.1));
        let first = after_failure(six_hours, 1, None);
        assert_eq!(first, Duration::from_secs(60));
        assert_eq!(after_failure(six_hours, 2, None), Duration::from_secs(120));
        assert_eq!(
            after_failure(six_hours, 30, None),
            six_hours,
            "capped at the interval"
        );
        let asked = Duration::from_secs(900);
        assert_eq!(after_failure(six_hours, 1, Some(asked)), asked);
        let greedy = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(after_failure(six_hours, 1, Some(greedy)), RETRY_AFTER_CAP);
        assert_eq!(recheck_every(six_hours), Duration::from_secs(30));
        assert_eq!(
            recheck_every(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }
}
