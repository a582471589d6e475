//! Why the personalization service refused to sign, and its JSON shape on the wire.

use chrono::{DateTime, Utc};
use ferry_types::{DeviceClass, DeviceId, Diagnose, RootHash, Sha256};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;

use crate::types::{BuildId, ComponentName};

/// The service refused to sign a ticket; each variant is one cause with its own code
/// ([`Diagnose::code`], also the `code` member on the wire).
///
/// On the wire (the body of a refused `POST /v1/personalize`) a refusal is
/// `{"code":…,"cause":…,"fix":…,"data":{…}}`: `Serialize` writes that shape and
/// [`Refusal::from_wire`] reads it back into the same variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Deserialize)]
#[serde(tag = "code", content = "data", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Refusal {
    /// The request itself is unusable (no components, a component named twice).
    #[error("the ticket request is unusable: {reason}")]
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// The identity has all-zero ids: a hardware fault, the ids could not be read.
    #[error("device {device_id} sent an identity whose {} read as all zero, a hardware fault: the ids could not be read", .zero_fields.join(", "))]
    BadIdentity {
        /// The device id as sent (may itself be zero).
        #[serde(deserialize_with = "DeviceId::deserialize_allowing_zero")]
        device_id: DeviceId,
        /// The fields that read as zero (`device_id`, `board_id`, `chip_id`, `hardware_uuid`).
        zero_fields: Vec<String>,
    },
    /// The device never enrolled.
    #[error("device {device_id} is not enrolled with this service")]
    UnknownDevice {
        /// The device.
        device_id: DeviceId,
    },
    /// The device's enrollment was revoked.
    #[error("device {device_id} has been revoked")]
    RevokedDevice {
        /// The device.
        device_id: DeviceId,
    },
    /// The device asked too often.
    #[error("device {device_id} asked for tickets too often")]
    RateLimited {
        /// The device.
        device_id: DeviceId,
    },
    /// The device's clock differs from the server's by more than the limit.
    #[error(
        "the device clock ({device_time}) is {skew_seconds} s from the server clock ({server_time}), beyond the {limit_seconds} s limit"
    )]
    ClockSkew {
        /// The device's clock, as sent.
        device_time: DateTime<Utc>,
        /// The server's clock.
        server_time: DateTime<Utc>,
        /// Device time minus server time, in whole seconds.
        skew_seconds: i64,
        /// The limit, in seconds.
        limit_seconds: u64,
    },
    /// The build is not being signed for this device class (its signing window is closed or
    /// never opened).
    #[error("build {build_id} is not being signed for device class {device_class}")]
    NotSigned {
        /// The build asked for.
        build_id: BuildId,
        /// The device's class.
        device_class: DeviceClass,
    },
    /// A component's root hash is not one the build published for the class: the device
    /// asked for an image that build does not carry (an older or withdrawn image under an
    /// open build's name, or a made-up one).
    #[error(
        "component {component} with root hash {root_hash} is not an image of build {build_id} for device class {device_class}"
    )]
    ImageNotPublished {
        /// The build asked for.
        build_id: BuildId,
        /// The device's class.
        device_class: DeviceClass,
        /// The first component whose root hash the build does not carry.
        component: ComponentName,
        /// The root hash asked for.
        root_hash: RootHash,
    },
    /// The device is not entitled to the release (no unrevoked entitlement of the release
    /// covers its tenant, region or tags).
    #[error("device {device_id} is not entitled to build {build_id} of class {device_class}")]
    NotEntitled {
        /// The build asked for.
        build_id: BuildId,
        /// The device's class.
        device_class: DeviceClass,
        /// The device.
        device_id: DeviceId,
    },
    /// The build is under a rollout whose wave for this device has not opened yet.
    #[error(
        "build {build_id} is under rollout {rollout_id}, whose wave {wave} for this device opens at {opens_at}"
    )]
    RolloutNotYet {
        /// The build asked for.
        build_id: BuildId,
        /// The rollout.
        rollout_id: i64,
        /// The device's wave (0-based).
        wave: u32,
        /// When it opens.
        opens_at: DateTime<Utc>,
    },
    /// The build is under a rollout an operator paused.
    #[error("build {build_id} is under rollout {rollout_id}, which is paused")]
    RolloutPaused {
        /// The build asked for.
        build_id: BuildId,
        /// The rollout.
        rollout_id: i64,
    },
    /// The build is under a halted rollout (an operator's halt or the automatic one).
    #[error("build {build_id} is under rollout {rollout_id}, which is halted")]
    RolloutHalted {
        /// The build asked for.
        build_id: BuildId,
        /// The rollout.
        rollout_id: i64,
    },
    /// The build is under a rollout whose cohort does not include this device.
    #[error(
        "build {build_id} is under rollout {rollout_id}, whose cohort {cohort} does not include this device"
    )]
    RolloutNotInCohort {
        /// The build asked for.
        build_id: BuildId,
        /// The rollout.
        rollout_id: i64,
        /// The cohort (`tenant:acme,region:eu,tag:beta,audience:seed`, …).
        cohort: String,
    },
    /// The nonce was used in an earlier request.
    #[error("the nonce (sha256 {nonce_sha256}) was already used in an earlier request")]
    NonceReused {
        /// SHA-256 of the reused nonce.
        nonce_sha256: Sha256,
    },
}

/// The codes [`Refusal::from_wire`] knows, in the order [`crate::Policy::decide`] checks them.
pub const REFUSAL_CODES: [&str; 14] = [
    "BAD_REQUEST",
    "BAD_IDENTITY",
    "UNKNOWN_DEVICE",
    "REVOKED_DEVICE",
    "RATE_LIMITED",
    "CLOCK_SKEW",
    "NOT_SIGNED",
    "IMAGE_NOT_PUBLISHED",
    "NOT_ENTITLED",
    "ROLLOUT_NOT_IN_COHORT",
    "ROLLOUT_HALTED",
    "ROLLOUT_PAUSED",
    "ROLLOUT_NOT_YET",
    "NONCE_REUSED",
];

impl Diagnose for Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::BadRequest { .. } => "BAD_REQUEST",
            Refusal::BadIdentity { .. } => "BAD_IDENTITY",
            Refusal::UnknownDevice { .. } => "UNKNOWN_DEVICE",
            Refusal::RevokedDevice { .. } => "REVOKED_DEVICE",
            Refusal::RateLimited { .. } => "RATE_LIMITED",
            Refusal::ClockSkew { .. } => "CLOCK_SKEW",
            Refusal::NotSigned { .. } => "NOT_SIGNED",
            Refusal::ImageNotPublished { .. } => "IMAGE_NOT_PUBLISHED",
            Refusal::NotEntitled { .. } => "NOT_ENTITLED",
            Refusal::RolloutNotYet { .. } => "ROLLOUT_NOT_YET",
            Refusal::RolloutPaused { .. } => "ROLLOUT_PAUSED",
            Refusal::RolloutHalted { .. } => "ROLLOUT_HALTED",
            Refusal::RolloutNotInCohort { .. } => "ROLLOUT_NOT_IN_COHORT",
            Refusal::NonceReused { .. } => "NONCE_REUSED",
        }
    }

    fn fix(&self) -> String {
        let fix = match self {
            Refusal::BadRequest { .. } => {
                "Update ferry on the device: it sent a request this service cannot use"
            }
            Refusal::BadIdentity { .. } => {
                "Have the device's hardware checked: its identity registers could not be read"
            }
            Refusal::UnknownDevice { .. } => {
                "Enroll the device with an enrollment token from the server's administrator"
            }
            Refusal::RevokedDevice { .. } => {
                "Ask the fleet administrator to re-enroll the device if its revocation was a mistake"
            }
            Refusal::RateLimited { .. } => "Wait a few minutes and try again",
            Refusal::ClockSkew { .. } => {
                "Set the device clock (enable NTP, or set it from the server's GET /v1/time) and try again"
            }
            Refusal::NotSigned { .. } => {
                "Choose a build the catalog currently offers for this device class, or ask the administrator to open its signing window"
            }
            Refusal::ImageNotPublished { .. } => {
                "Scan again and install a release the catalog offers now: only the images a build published are signed"
            }
            Refusal::NotEntitled { .. } => {
                "Ask the operator to grant the device an entitlement to the release (ferry entitlement grant), or install a release it is entitled to"
            }
            Refusal::RolloutNotYet { .. } => {
                "Wait until the device's wave opens (the device scans again by itself), or ask the operator to widen the rollout's waves"
            }
            Refusal::RolloutPaused { .. } | Refusal::RolloutHalted { .. } => {
                "Wait for the operator to resume the rollout (ferry rollout resume), or install another release"
            }
            Refusal::RolloutNotInCohort { .. } => {
                "Give the device the cohort's tenant, region or tags (ferry entitlement set-tags) or audience (ferry audience set), or wait for a rollout that includes it"
            }
            Refusal::NonceReused { .. } => {
                "Try again: the device makes a fresh nonce for each request"
            }
        };
        fix.into()
    }
}

impl Refusal {
    /// The variant's fields as the wire's `data` member.
    pub fn data(&self) -> serde_json::Value {
        match self {
            Refusal::BadRequest { reason } => json!({ "reason": reason }),
            Refusal::BadIdentity {
                device_id,
                zero_fields,
            } => json!({ "device_id": device_id, "zero_fields": zero_fields }),
            Refusal::UnknownDevice { device_id }
            | Refusal::RevokedDevice { device_id }
            | Refusal::RateLimited { device_id } => json!({ "device_id": device_id }),
            Refusal::ClockSkew {
                device_time,
                server_time,
                skew_seconds,
                limit_seconds,
            } => json!({
                "device_time": device_time,
                "server_time": server_time,
                "skew_seconds": skew_seconds,
                "limit_seconds": limit_seconds,
            }),
            Refusal::NotSigned {
                build_id,
                device_class,
            } => json!({ "build_id": build_id, "device_class": device_class }),
            Refusal::ImageNotPublished {
                build_id,
                device_class,
                component,
                root_hash,
            } => json!({
                "build_id": build_id,
                "device_class": device_class,
                "component": component,
                "root_hash": root_hash,
            }),
            Refusal::RolloutNotYet {
                build_id,
                rollout_id,
                wave,
                opens_at,
            } => json!({
                "build_id": build_id,
                "rollout_id": rollout_id,
                "wave": wave,
                "opens_at": opens_at,
            }),
            Refusal::RolloutPaused {
                build_id,
                rollout_id,
            }
            | Refusal::RolloutHalted {
                build_id,
                rollout_id,
            } => json!({ "build_id": build_id, "rollout_id": rollout_id }),
            Refusal::RolloutNotInCohort {
                build_id,
                rollout_id,
                cohort,
            } => json!({
                "build_id": build_id,
                "rollout_id": rollout_id,
                "cohort": cohort,
            }),
            Refusal::NotEntitled {
                build_id,
                device_class,
                device_id,
            } => json!({
                "build_id": build_id,
                "device_class": device_class,
                "device_id": device_id,
            }),
            Refusal::NonceReused { nonce_sha256 } => json!({ "nonce_sha256": nonce_sha256 }),
        }
    }

    /// The wire shape `{code, cause, fix, data}`.
    pub fn to_wire(&self) -> RefusalWire {
        RefusalWire {
            code: self.code().to_owned(),
            cause: self.to_string(),
            fix: self.fix().to_owned(),
            data: self.data(),
        }
    }

    /// Reads a refusal body back into its variant.
    ///
    /// A body with a code this version does not know (a newer server) is
    /// [`RefusalWireError::UnknownCode`], which still carries the server's cause and fix.
    pub fn from_wire(body: &[u8]) -> Result<Refusal, RefusalWireError> {
        let wire: RefusalWire =
            serde_json::from_slice(body).map_err(|error| RefusalWireError::Malformed {
                reason: error.to_string(),
            })?;
        if !REFUSAL_CODES.contains(&wire.code.as_str()) {
            return Err(RefusalWireError::UnknownCode {
                code: wire.code,
                cause: wire.cause,
                fix: wire.fix,
            });
        }
        serde_json::from_value(json!({ "code": wire.code, "data": wire.data })).map_err(|error| {
            RefusalWireError::Malformed {
                reason: format!("{} data: {error}", wire.code),
            }
        })
    }
}

impl Serialize for Refusal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_wire().serialize(serializer)
    }
}

/// A refusal as JSON: what the server returns and what a device or operator reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalWire {
    /// Stable code, one of [`REFUSAL_CODES`].
    pub code: String,
    /// The cause, one sentence.
    pub cause: String,
    /// The fix, one sentence.
    pub fix: String,
    /// The variant's fields.
    pub data: serde_json::Value,
}

/// A refusal body could not be read back into a [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalWireError {
    /// The body is not a refusal.
    #[error("the service's refusal could not be read: {reason}")]
    Malformed {
        /// What the parser said.
        reason: String,
    },
    /// The server used a code this version does not know.
    #[error("the service refused with code {code} unknown to this version: {cause}")]
    UnknownCode {
        /// The code sent.
        code: String,
        /// The server's cause.
        cause: String,
        /// The server's fix.
        fix: String,
    },
}

impl Diagnose for RefusalWireError {
    fn code(&self) -> &'static str {
        match self {
            RefusalWireError::Malformed { .. } => "REFUSAL_MALFORMED",
            RefusalWireError::UnknownCode { .. } => "REFUSAL_UNKNOWN_CODE",
        }
    }

    fn fix(&self) -> String {
        let fix = match self {
            RefusalWireError::Malformed { .. } => {
                "Check that the server URL points at a ferry server and that no proxy rewrites its answers"
            }
            RefusalWireError::UnknownCode { .. } => {
                "Update ferry on the device to read this server's answer, and follow the server's fix meanwhile"
            }
        };
        fix.into()
    }
}
