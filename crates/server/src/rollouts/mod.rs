//! Rollouts (DESIGN §10, `migrations/0007_rollouts.sql`): a release of a class reaches its
//! cohort in waves; the signing service refuses a ticket to a device whose wave is not open
//! or whose rollout is paused or halted ([`Db::rollout_hold`]); the halt rule counts, per
//! wave, devices that failed with a code blaming the release, rolled back or went silent,
//! inside the transaction that stores the reports that change the counts
//! ([`count::count_reports`], [`count::count_silent`]), so concurrent servers halt once.
//!
//! `waves`: the spec, places and the Wilson rule (pure); `store`: the rows; `count`: the
//! halt rule's counting; `http`: the admin endpoints; `replay` (tests only): the halt rule
//! against hawkBit's on seeded streams of a bad release's reports.

pub mod cohort;
pub mod count;
pub mod defer;
pub mod entitle;
pub mod http;
#[cfg(test)]
mod replay;
pub mod stats;
pub mod store;
pub mod waves;

use ferry_types::Diagnose;
use serde::{Deserialize, Serialize};

pub use store::{Explanation, HaltRecord, Rollout, RolloutView, WaveCount};
pub use waves::{Wave, Waves, halts, place, wilson_lower};

/// Default threshold of the halt rule: the failure rate a wave may not exceed with 95 %
/// confidence.
pub const DEFAULT_THRESHOLD: f64 = 0.2;
/// Default fewest attempts in a wave before the halt rule may halt.
pub const DEFAULT_MIN_ATTEMPTS: u64 = 3;

/// `value` read as a `T` (a device class, a version): `ROLLOUT_INVALID` naming `what` and
/// why when it is not one.
pub(crate) fn parse_field<T>(what: &'static str, value: &str) -> Result<T, RolloutError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| RolloutError::Invalid {
        what,
        value: value.to_owned(),
        why: e.to_string(),
    })
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Waves open on schedule.
    Running,
    /// Held by an operator; the schedule's clock stops.
    Paused,
    /// Stopped by an operator or the halt rule; the schedule's clock stops.
    Halted,
}

impl RolloutState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Halted => "halted",
        }
    }

    /// The stored spelling read back.
    pub fn parse(s: &str) -> Option<RolloutState> {
        match s {
            "running" => Some(RolloutState::Running),
            "paused" => Some(RolloutState::Paused),
            "halted" => Some(RolloutState::Halted),
            _ => None,
        }
    }
}

/// What `ferry rollout create` and `POST /v1/admin/rollouts` ask for (`Default`: every
/// optional field left to its default; `class` and `version` must be set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewRollout {
    /// Device class.
    pub class: String,
    /// The release's version.
    pub version: String,
    /// Only devices that last reported this audience (none: every device of the class).
    #[serde(default)]
    pub audience: Option<String>,
    /// Only devices this selector matches (`tenant:acme,region:eu,tag:beta,audience:seed`),
    /// together with `audience` if both are given.
    #[serde(default)]
    pub cohort: Option<String>,
    /// The wave spec (default `100%@0`).
    #[serde(default)]
    pub waves: Option<String>,
    /// After it (RFC 3339, or a time from now like `3d`), devices install at their first
    /// allowed moment, the maintenance window overridden.
    #[serde(default)]
    pub deadline: Option<String>,
    /// How long a device may defer the release (`2d`; none: up to the deadline).
    #[serde(default)]
    pub max_deferral: Option<String>,
    /// Every wave opens at once and deferrals are refused (still signed, still halted by
    /// the halt rule).
    #[serde(default)]
    pub emergency: bool,
    /// The halt rule's threshold (default [`DEFAULT_THRESHOLD`]).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// The halt rule's fewest attempts (default [`DEFAULT_MIN_ATTEMPTS`]).
    #[serde(default)]
    pub min_attempts: Option<u64>,
}

/// An operator's action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop opening waves and signing for the release.
    Pause,
    /// Continue (after a halt, counting starts afresh).
    Resume,
    /// Stop, as the halt rule would.
    Halt,
}

impl Action {
    /// The word the CLI and the routes use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Halt => "halt",
        }
    }
}

/// What went wrong with a rollout request.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The wave spec does not parse or is inconsistent.
    #[error("the wave spec {spec:?} is not valid: {why}")]
    WavesInvalid {
        /// The spec given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// The cohort (or an entitlement's selector) does not parse.
    #[error("the cohort {spec:?} is not valid: {why}")]
    CohortInvalid {
        /// The selector given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// A threshold or minimum outside its range, a bad class or version.
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why.
        why: String,
    },
    /// No rollout has this id.
    #[error("there is no rollout {id}")]
    NotFound {
        /// The id asked for.
        id: i64,
    },
    /// The release already has a rollout.
    #[error("release {version} of class {class} already has rollout {id}")]
    Exists {
        /// Class.
        class: String,
        /// Version.
        version: String,
        /// The existing rollout.
        id: i64,
    },
    /// No entitlement has this id.
    #[error("there is no entitlement {id}")]
    EntitlementNotFound {
        /// The id asked for.
        id: i64,
    },
    /// The entitlement was revoked already.
    #[error("entitlement {id} is already revoked")]
    EntitlementRevoked {
        /// The id asked for.
        id: i64,
    },
    /// The action does not apply in the rollout's state.
    #[error("rollout {id} is {state}, so it cannot be {action}d")]
    WrongState {
        /// The rollout.
        id: i64,
        /// Its state.
        state: &'static str,
        /// The action asked for.
        action: &'static str,
    },
}

impl Diagnose for RolloutError {
    fn code(&self) -> &'static str {
        match self {
            RolloutError::WavesInvalid { .. } => "ROLLOUT_WAVES_INVALID",
            RolloutError::CohortInvalid { .. } => "ROLLOUT_COHORT_INVALID",
            RolloutError::Invalid { .. } => "ROLLOUT_INVALID",
            RolloutError::NotFound { .. } => "ROLLOUT_NOT_FOUND",
            RolloutError::Exists { .. } => "ROLLOUT_EXISTS",
            RolloutError::WrongState { .. } => "ROLLOUT_WRONG_STATE",
            RolloutError::EntitlementNotFound { .. } => "ROLLOUT_ENTITLEMENT_NOT_FOUND",
            RolloutError::EntitlementRevoked { .. } => "ROLLOUT_ENTITLEMENT_REVOKED",
        }
    }

    fn fix(&self) -> String {
        match self {
            RolloutError::WavesInvalid { .. } => {
                "Write the waves as cumulative PERCENT%@TIME pairs ending at 100%, e.g. 1%@0,5%@4h,100%@1d".into()
            }
            RolloutError::CohortInvalid { .. } => {
                "Write the cohort as comma-separated KEY:VALUE terms (tenant, region, tag, programme, audience, device), e.g. tenant:acme,region:eu, or all".into()
            }
            RolloutError::Invalid { .. } => {
                "Give a threshold between 0 and 1, at least 1 attempt, a valid class and version".into()
            }
            RolloutError::NotFound { .. } => "Pick an id that `ferry rollout list` shows".into(),
            RolloutError::Exists { id, .. } => {
                format!("Manage the existing rollout with `ferry rollout show|pause|resume|halt {id}`")
            }
            RolloutError::EntitlementNotFound { .. } => {
                "Pick an id that `ferry entitlement list` shows".into()
            }
            RolloutError::EntitlementRevoked { .. } => {
                "Grant a new entitlement with `ferry entitlement grant` if the devices should get the release again".into()
            }
            RolloutError::WrongState { .. } => {
                "Check the rollout's state with `ferry rollout show ID` and pick an action that applies".into()
            }
        }
    }
}
