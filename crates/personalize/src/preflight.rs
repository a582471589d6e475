//! The preflight answer (`POST /v1/personalize/preflight`): whether the service would sign
//! a ticket request now, and if not, why, with what a refusal alone cannot say. The
//! request is a [`crate::TicketRequest`] whose nonce the service does not record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::refusal::RefusalWire;

/// How a device's credential and identity stand against its enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Enrolled with this credential and this identity.
    Enrolled,
    /// The credential belongs to another device.
    OtherDevice,
    /// No enrollment for the device id.
    NotEnrolled,
    /// Enrolled, then revoked.
    Revoked,
    /// Re-enrolled since this credential was issued: this credential no longer counts.
    Superseded,
    /// Enrolled with another identity ([`Preflight::identity_differs`] names the fields):
    /// the hardware changed, e.g. a replaced logic board.
    IdentityDiffers,
}

/// The answer to a preflight request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preflight {
    /// The service's clock when it decided.
    pub server_time: DateTime<Utc>,
    /// Largest accepted difference between the device's clock and the service's.
    pub clock_skew_limit_seconds: u64,
    /// How the credential and identity stand.
    pub standing: Standing,
    /// The fields of the enrolled identity that differ from the device's (`board_id`,
    /// `chip_id`, `hardware_uuid`, `device_class`).
    pub identity_differs: Vec<String>,
    /// Whether the build's signing window is open for the device's class.
    pub window_open: bool,
    /// The refusal a ticket request would get now; `None`: it would be signed.
    pub refusal: Option<RefusalWire>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_round_trips_with_snake_case_standing() {
        let answer = Preflight {
            server_time: DateTime::from_timestamp(1_774_000_000, 0).unwrap(),
            clock_skew_limit_seconds: 60,
            standing: Standing::IdentityDiffers,
            identity_differs: vec!["board_id".into()],
            window_open: true,
            refusal: None,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["standing"], "identity_differs");
        let back: Preflight = serde_json::from_value(json).unwrap();
        assert_eq!(back, answer);
    }
}
