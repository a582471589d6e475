//! Why an offer waits: the device's situation (policy, facts, window, space, stage, the
//! director's decision) gathered and handed to [`schedule::decide`], and the progress
//! sample that says so while nothing moves.

use ferry_agent::device::Device;
use ferry_agent::install;
use ferry_agent::journal::Journal;
use ferry_agent::machines::update;
use ferry_agent::offer::Offer;
use ferry_types::Diagnose;

use crate::schedule::{self, Hold, Next, Stage};
use crate::window;

/// What the agent does next with `offer` on `device`, and why not more (`suspended`:
/// `None` outside a daemon).
pub fn explain(
    device: &Device,
    journal: &Journal,
    offer: &Offer,
    suspended: Option<bool>,
) -> (Next, Option<Hold>) {
    let id = install::update_id(device, &offer.release.build_id).to_string();
    // Installed and still waiting for its restart while a slot is on trial; a trial the
    // bootloader gave up on (all tries spent, no check ran) is not restarted into again.
    let trial_pending = device.boot_state().is_ok_and(|b| b.trial().is_some());
    let stage = match journal.peek::<update::Names>(&id) {
        Ok(Some(update::State::PRESTAGED)) => Stage::Staged,
        Ok(Some(update::State::PRESTAGING)) => Stage::Interrupted { installing: false },
        Ok(Some(update::State::INSTALLING)) => Stage::Interrupted { installing: true },
        Ok(Some(update::State::PARKED)) => Stage::Parked,
        Ok(Some(update::State::STAGED)) if trial_pending => Stage::Installed,
        Ok(Some(update::State::STAGED)) => Stage::RolledBack,
        Ok(Some(update::State::COMMITTED)) => Stage::Committed,
        Ok(Some(update::State::ROLLED_BACK)) => Stage::RolledBack,
        _ => Stage::New,
    };
    let policy = &device.config.policy;
    let facts = device.facts().map_err(|e| e.report());
    let window = match &policy.window {
        None => Ok(None),
        Some(w) => window::state(w, jiff::Timestamp::now())
            .map(Some)
            .map_err(|e| e.report()),
    };
    let version = offer.version.to_string();
    let space = match device.running_slot() {
        Ok(running) => {
            let slot_path = device.slot_path(!running);
            let record = install::update::install_record(device);
            install::sizing::check_fits(
                &device.layout(),
                &install::sizing::Update {
                    slot_path: &slot_path,
                    image_size: offer.image_size,
                    payload_size: offer.download_size,
                    manifest_len: 0,
                },
                install::purge::Keep::for_record(record.as_ref()),
            )
            .map_err(|e| e.report())
        }
        Err(e) => Err(e.report()),
    };
    schedule::decide(&schedule::Situation {
        policy,
        facts: facts.as_ref().map_err(Clone::clone),
        window: window.as_ref().map(Option::as_ref).map_err(Clone::clone),
        version: &version,
        download_size: offer.download_size,
        space,
        stage,
        suspended,
        rollout: rollout_hold(device, &version),
        deadline_passed: deadline_passed(device, &version),
    })
}

/// Whether the director's last verified decision puts `version`'s deadline in the past.
fn deadline_passed(device: &Device, version: &str) -> bool {
    ferry_agent::trust::director::stored(device)
        .and_then(|d| d.release(version).and_then(|r| r.deadline))
        .is_some_and(|deadline| deadline <= chrono::Utc::now())
}

/// Why the director's last verified decision holds `version` back, as a report (a
/// deferral only until its time, and never past the deadline).
fn rollout_hold(device: &Device, version: &str) -> Option<ferry_types::Report> {
    let decision = ferry_agent::trust::director::stored(device)?;
    let decided = decision.release(version)?;
    let code = decided.state.code()?;
    if code == "ROLLOUT_DEFERRED" {
        let until = decided.deferred_until?;
        if until <= chrono::Utc::now() || deadline_passed(device, version) {
            return None;
        }
        return Some(ferry_types::Report {
            code: code.to_owned(),
            cause: format!(
                "{version} was deferred on this device until {}",
                until.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            fix: "Wait, or run `ferry install` to take it now".to_owned(),
        });
    }
    let when = decided
        .opens_at
        .map(|t| format!(", until {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    Some(ferry_types::Report {
        code: code.to_owned(),
        cause: format!(
            "{} holds {version} back from this device ({}{when})",
            decided.holder(),
            code.to_lowercase().replace('_', " ")
        ),
        fix: if code == "NOT_ENTITLED" {
            "Ask the operator to grant this device an entitlement to the release (ferry entitlement grant)"
        } else {
            "Wait: the agent continues on its own once the rollout lets this device in"
        }
        .to_owned(),
    })
}

/// The progress sample of an update held back: nothing moves, and this says why
/// ("waiting for the maintenance window (opens 02:00)").
pub fn waiting_sample(hold: &Hold) -> ferry_agent::progress::Progress {
    let waiting = match (&hold.kind, &hold.until) {
        (schedule::HoldKind::Window, Some(until)) => {
            let opens = chrono::DateTime::parse_from_rfc3339(until)
                .map_or_else(|_| until.clone(), |t| t.format("%H:%M").to_string());
            format!("waiting for the maintenance window (opens {opens})")
        }
        _ => format!("waiting: {} ({})", hold.cause, hold.code),
    };
    ferry_agent::progress::Progress {
        state: "ACCEPTED",
        action: "Update held".into(),
        waiting: Some(waiting),
        ..Default::default()
    }
}
