//! The event report, `report_version` 1 (DESIGN §6): one step of one device's update, with
//! the fields of the source articles' list and ferry's own (phase durations, payload,
//! progress, the error with the machine and state it failed in, fallback, rollback).

use chrono::{DateTime, Utc};
use ferry_boot::Slot;
use ferry_types::{DeviceClass, DeviceId, Identity, PayloadKind, Version};
use serde::{Deserialize, Serialize};

use crate::error::ReportInvalid;

/// The report format this crate writes and reads.
pub const REPORT_VERSION: u32 = 1;

/// Longest machine, state, event, phase or error-code name a report may carry.
pub const MAX_NAME_LEN: usize = 64;
/// Longest free text (an error's cause or fix, a model or platform name).
pub const MAX_TEXT_LEN: usize = 2048;
/// Most phase durations one report carries.
pub const MAX_PHASES: usize = 64;

/// What happened. Spelled snake_case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `update[uuid]` began (or resumed) an install.
    InstallStarted,
    /// The ticket was signed and stored before any download.
    Personalized,
    /// A payload attempt began (`payload.kind` says which).
    DownloadStarted,
    /// A tailored delta or chunk reuse failed on its content; the next payload is tried
    /// (`fallback` says why).
    PayloadFallback,
    /// The payload is in the slot.
    Downloaded,
    /// The slot's seal is finished and matches the release.
    Prepared,
    /// A progress sample (`progress`): coalesced, the latest per phase is kept.
    Progress,
    /// The update is staged: the new slot boots next (terminal for the install).
    Installed,
    /// The install failed (`error` with its code, machine and state).
    Failed,
    /// The new slot booted, passed its checks and was committed.
    Committed,
    /// The new slot was abandoned after the reboot and the old one runs again.
    RolledBack,
    /// A doctor run's result (`error` holds the first failing check, if any).
    DoctorResult,
    /// The update is downloaded, verified and sealed, not applied: staged to install later
    /// (`ferry download`, or the agent by policy).
    Prestaged,
    /// The update was cancelled or suspended part-way; what it made durable is kept.
    Parked,
    /// A staged or parked update was dropped: a newer release supersedes it, or its signing
    /// window closed (`error` says which).
    Dropped,
    /// A health check failed within the post-commit watch after the new slot was committed
    /// (`error`: `HEALTH_WATCH_FAILED`); the device keeps running the release.
    HealthFailed,
}

/// How an outbox treats a report when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Coalesced (the latest per update and phase) and dropped first.
    Progress,
    /// A step on the way: dropped only when no progress report is left to drop.
    Step,
    /// Installed, failed, committed, rolled back, a doctor result: never dropped.
    Terminal,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 16] = [
        EventKind::InstallStarted,
        EventKind::Personalized,
        EventKind::DownloadStarted,
        EventKind::PayloadFallback,
        EventKind::Downloaded,
        EventKind::Prepared,
        EventKind::Progress,
        EventKind::Installed,
        EventKind::Failed,
        EventKind::Committed,
        EventKind::RolledBack,
        EventKind::DoctorResult,
        EventKind::Prestaged,
        EventKind::Parked,
        EventKind::Dropped,
        EventKind::HealthFailed,
    ];

    /// How an outbox keeps reports of this kind.
    pub fn retention(self) -> Retention {
        match self {
            EventKind::Progress => Retention::Progress,
            EventKind::Installed
            | EventKind::Failed
            | EventKind::Committed
            | EventKind::RolledBack
            | EventKind::DoctorResult
            | EventKind::Dropped
            | EventKind::HealthFailed => Retention::Terminal,
            _ => Retention::Step,
        }
    }

    /// The wire spelling (`install_started`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::InstallStarted => "install_started",
            EventKind::Personalized => "personalized",
            EventKind::DownloadStarted => "download_started",
            EventKind::PayloadFallback => "payload_fallback",
            EventKind::Downloaded => "downloaded",
            EventKind::Prepared => "prepared",
            EventKind::Progress => "progress",
            EventKind::Installed => "installed",
            EventKind::Failed => "failed",
            EventKind::Committed => "committed",
            EventKind::RolledBack => "rolled_back",
            EventKind::DoctorResult => "doctor_result",
            EventKind::Prestaged => "prestaged",
            EventKind::Parked => "parked",
            EventKind::Dropped => "dropped",
            EventKind::HealthFailed => "health_failed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = ();
    fn from_str(text: &str) -> Result<EventKind, ()> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or(())
    }
}

/// The outcome the report states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventResult {
    /// The step or update succeeded.
    Success,
    /// It failed.
    Failure,
    /// Work goes on.
    InProgress,
}

/// Major, minor or the same version again, from the running and the target version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateType {
    /// The first version number changes upwards.
    Major,
    /// A later version with the same first number.
    Minor,
    /// The same version again.
    Reinstall,
    /// An earlier version.
    Downgrade,
}

impl UpdateType {
    /// The type of an update from `current` to `target`.
    pub fn between(current: &Version, target: &Version) -> UpdateType {
        use std::cmp::Ordering;
        match target.cmp(current) {
            Ordering::Equal => UpdateType::Reinstall,
            Ordering::Less => UpdateType::Downgrade,
            Ordering::Greater if target.parts().first() > current.parts().first() => {
                UpdateType::Major
            }
            Ordering::Greater => UpdateType::Minor,
        }
    }
}

/// The machine transition a report was made from (none for progress samples).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The machine (`update`, `controller`, `downloader`, …).
    pub machine: String,
    /// The state left.
    pub from: String,
    /// The event fired.
    pub event: String,
    /// The state entered.
    pub to: String,
}

/// Wall time spent in one controller phase so far (a state of DESIGN §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseDuration {
    /// The phase (`DOWNLOADING_UPDATE`, …).
    pub phase: String,
    /// Seconds spent in it, across resumed runs.
    pub secs: f64,
}

/// The payload that wrote (or is writing) the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadReport {
    /// Full, delta or chunks.
    pub kind: PayloadKind,
    /// Bytes fetched over the network for this install (resumes count once).
    pub bytes_downloaded: u64,
    /// Bytes of the running slot reused (a delta's copies, chunk reuse's extents).
    pub bytes_reused: u64,
    /// The image's size: what the slot holds once written.
    pub image_size: Option<u64>,
}

/// A progress sample (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// The phase (a controller state).
    pub phase: String,
    /// Overall percent, 0 to 100.
    pub percent: f64,
    /// Work done in the phase (bytes).
    pub done: u64,
    /// Work in the phase (bytes).
    pub total: u64,
    /// The rate observed now, bytes per second.
    pub rate_bytes_per_sec: f64,
    /// Estimated seconds left in the phase, when known.
    pub eta_secs: Option<f64>,
}

/// A failure: its code, cause and fix, and where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReport {
    /// Stable code (`DIGEST_MISMATCH`, …).
    pub code: String,
    /// One-sentence cause.
    pub cause: String,
    /// One-sentence fix.
    pub fix: String,
    /// The machine that failed (`controller`, `downloader`, `update`).
    pub machine: Option<String>,
    /// The state it failed in (`DOWNLOADING_UPDATE`, `STREAMING`, `STAGED`, …).
    pub state: Option<String>,
}

/// Why a tailored delta or chunk reuse was abandoned for the next payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackReport {
    /// The payload abandoned.
    pub from: PayloadKind,
    /// The code of its failure.
    pub code: String,
    /// Its cause.
    pub cause: String,
}

/// One event report. Field names follow the source articles' list where it has one
/// (uuid, audience_type, battery_level, …); ferry's additions follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventReport {
    /// Always [`REPORT_VERSION`] for this format.
    pub report_version: u32,
    /// The device's sequence number for this report (from 1, never reused; the outbox
    /// assigns it). The server stores each (device, sequence) once.
    pub sequence: u64,
    /// The reporting device.
    pub device_id: DeviceId,
    /// The update's UUID (v5 of device and build), when the report is about one.
    pub uuid: Option<uuid::Uuid>,
    /// What happened.
    pub event: EventKind,
    /// When it happened, on the device's clock.
    pub event_time: DateTime<Utc>,
    /// Its outcome.
    pub result: EventResult,
    /// The transition it was made from.
    pub transition: Option<Transition>,
    /// The device's audience (`customer`, `beta`, a programme).
    pub audience_type: String,
    /// The device class.
    pub device_class: DeviceClass,
    /// The board and chip, `<board_id>-<chip_id>` in hex.
    pub device_model: String,
    /// Operating system and architecture of the agent, e.g. `linux-x86_64`.
    pub platform: String,
    /// The agent's version (`ferry-agent`).
    pub core_version: String,
    /// What the slots hold: `system` (ferry's one component).
    pub current_os_type: String,
    /// The version running now.
    pub current_os_version: Option<Version>,
    /// The running version without security responses (ferry has none: the same).
    pub current_base_os_version: Option<Version>,
    /// The slot running now.
    pub current_slot: Option<Slot>,
    /// The version being installed.
    pub target_os_version: Option<Version>,
    /// Major, minor, reinstall or downgrade.
    pub update_type: Option<UpdateType>,
    /// The payload the device tries first for this update (delta, chunks or full).
    pub preferred_type: Option<PayloadKind>,
    /// Battery charge in percent; none without a battery.
    pub battery_level: Option<u8>,
    /// Whether the battery charges.
    pub battery_is_charging: bool,
    /// Whether mains power is connected.
    pub on_ac_power: bool,
    /// Whether a low-power mode is on.
    pub low_power_mode: bool,
    /// Whether the network is metered, when known.
    pub metered_network: Option<bool>,
    /// Bytes of the filesystem holding the device directory.
    pub data_fs_capacity: u64,
    /// Bytes free there.
    pub data_fs_free: u64,
    /// Bytes of the filesystem holding the slots.
    pub system_fs_capacity: u64,
    /// Bytes free there.
    pub system_fs_free: u64,
    /// Bytes of storage over both filesystems (counted once when they are one).
    pub storage_capacity: u64,
    /// Bytes the install needs free (download + image × 1.2 + hash tree + slack).
    pub total_required_free_space: Option<u64>,
    /// Whether the update is mandatory for this device (ferry has no mandatory updates yet).
    pub mandatory_update_eligible: bool,
    /// Whether a mandatory update may still be deferred.
    pub mandatory_update_optional: bool,
    /// Whether updates are downloaded ahead of installing (`ferry download`).
    pub pre_staging_enabled: bool,
    /// Largest pre-staged download allowed, bytes.
    pub pre_staging_max_size: Option<u64>,
    /// Optional pre-staged bytes.
    pub pre_staging_optional_size: Option<u64>,
    /// Required pre-staged bytes.
    pub pre_staging_required_size: Option<u64>,
    /// Whether the update reaches the device through a staged rollout.
    pub ramp_enabled: bool,
    /// Whether a rapid security response is installed (ferry has none).
    pub rapid_security_response_installed: bool,
    /// Whether a rapid security response's "semi-splat" is applied (ferry has none).
    pub rapid_security_response_semi_splat: bool,
    /// The code of the failure that kept power or storage facts out of this report.
    pub facts_error: Option<String>,
    /// Seconds in each controller phase so far, in the order first entered.
    pub phases: Vec<PhaseDuration>,
    /// The payload and its bytes.
    pub payload: Option<PayloadReport>,
    /// The progress sample (progress reports only).
    pub progress: Option<ProgressReport>,
    /// The failure (failed, rolled back).
    pub error: Option<ErrorReport>,
    /// Why a payload was abandoned for the next.
    pub fallback: Option<FallbackReport>,
    /// After a reboot: whether the boot counter ran out and the bootloader rolled the slot
    /// back (false: the booted system's checks refused it, or it committed).
    pub boot_counter_rolled_back: Option<bool>,
}

impl EventReport {
    /// A report of `event` from the device `identity` names, with nothing else known yet:
    /// sequence 0 (the outbox assigns it), the time now, the default audience `customer`,
    /// this build's platform and version, no update, no transition and every fact unknown
    /// (zero storage, no battery, off mains). Builders set what they know; one place
    /// spells the whole shape.
    pub fn new(identity: &Identity, event: EventKind, result: EventResult) -> EventReport {
        EventReport {
            report_version: REPORT_VERSION,
            sequence: 0,
            device_id: identity.device_id,
            uuid: None,
            event,
            event_time: Utc::now(),
            result,
            transition: None,
            audience_type: "customer".into(),
            device_class: identity.device_class.clone(),
            device_model: format!("{:08x}-{:08x}", identity.board_id, identity.chip_id),
            platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            core_version: env!("CARGO_PKG_VERSION").to_owned(),
            current_os_type: "system".into(),
            current_os_version: None,
            current_base_os_version: None,
            current_slot: None,
            target_os_version: None,
            update_type: None,
            preferred_type: None,
            battery_level: None,
            battery_is_charging: false,
            on_ac_power: false,
            low_power_mode: false,
            metered_network: None,
            data_fs_capacity: 0,
            data_fs_free: 0,
            system_fs_capacity: 0,
            system_fs_free: 0,
            storage_capacity: 0,
            total_required_free_space: None,
            mandatory_update_eligible: false,
            mandatory_update_optional: true,
            pre_staging_enabled: false,
            pre_staging_max_size: None,
            pre_staging_optional_size: None,
            pre_staging_required_size: None,
            ramp_enabled: false,
            rapid_security_response_installed: false,
            rapid_security_response_semi_splat: false,
            facts_error: None,
            phases: Vec::new(),
            payload: None,
            progress: None,
            error: None,
            fallback: None,
            boot_counter_rolled_back: None,
        }
    }

    /// Checks what serde cannot: the format version, the sequence, text lengths and
    /// numbers in range. The server refuses a batch holding a report that fails.
    pub fn validate(&self) -> Result<(), ReportInvalid> {
        let invalid = |field: &'static str, why: String| ReportInvalid::Field {
            sequence: self.sequence,
            field,
            why,
        };
        if self.report_version != REPORT_VERSION {
            return Err(ReportInvalid::Version {
                sequence: self.sequence,
                version: self.report_version,
            });
        }
        if self.sequence == 0 {
            return Err(invalid("sequence", "sequences start at 1".into()));
        }
        let name = |field: &'static str, text: &str| {
            if text.is_empty() || text.len() > MAX_NAME_LEN {
                Err(invalid(
                    field,
                    format!("it must be 1 to {MAX_NAME_LEN} bytes"),
                ))
            } else {
                Ok(())
            }
        };
        let text = |field: &'static str, text: &str| {
            if text.len() > MAX_TEXT_LEN {
                Err(invalid(field, format!("it is over {MAX_TEXT_LEN} bytes")))
            } else {
                Ok(())
            }
        };
        name("audience_type", &self.audience_type)?;
        text("device_model", &self.device_model)?;
        text("platform", &self.platform)?;
        name("core_version", &self.core_version)?;
        name("current_os_type", &self.current_os_type)?;
        if let Some(code) = &self.facts_error {
            name("facts_error", code)?;
        }
        if let Some(t) = &self.transition {
            for (field, value) in [
                ("transition.machine", &t.machine),
                ("transition.from", &t.from),
                ("transition.event", &t.event),
                ("transition.to", &t.to),
            ] {
                name(field, value)?;
            }
        }
        if self.phases.len() > MAX_PHASES {
            return Err(invalid("phases", format!("more than {MAX_PHASES}")));
        }
        for phase in &self.phases {
            name("phases.phase", &phase.phase)?;
            if !(phase.secs.is_finite() && phase.secs >= 0.0) {
                return Err(invalid("phases.secs", "not a duration".into()));
            }
        }
        if let Some(p) = &self.progress {
            name("progress.phase", &p.phase)?;
            if !(0.0..=100.0).contains(&p.percent) {
                return Err(invalid("progress.percent", "not 0 to 100".into()));
            }
            let finite = p.rate_bytes_per_sec.is_finite()
                && p.eta_secs.is_none_or(|eta| eta.is_finite() && eta >= 0.0);
            if !finite {
                return Err(invalid(
                    "progress",
                    "a rate or estimate is not finite".into(),
                ));
            }
        }
        if let Some(e) = &self.error {
            name("error.code", &e.code)?;
            text("error.cause", &e.cause)?;
            text("error.fix", &e.fix)?;
            for value in [&e.machine, &e.state].into_iter().flatten() {
                name("error.machine/state", value)?;
            }
        }
        if let Some(f) = &self.fallback {
            name("fallback.code", &f.code)?;
            text("fallback.cause", &f.cause)?;
        }
        if self.battery_level.is_some_and(|level| level > 100) {
            return Err(invalid("battery_level", "not a percentage".into()));
        }
        Ok(())
    }

    /// Seconds spent in `phase`, if the report carries it.
    pub fn phase_secs(&self, phase: &str) -> Option<f64> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.secs)
    }
}
