//! The identity check: `identity.json` with no id read as all zero (a hardware fault,
//! `BAD_IDENTITY` as the signing service would say), and the same identity the server
//! enrolled (another board answering for the device id is `IDENTITY_MISMATCH`).

use ferry_personalize::{Preflight, Refusal, Standing};
use serde_json::json;

use crate::AgentError;
use crate::doctor::check::{Check, Finding};
use crate::doctor::subject::Subject;

/// Name of the check.
pub const IDENTITY: &str = "identity";

/// Runs the check; `preflight` is the server's view of the enrollment, when it answered.
pub fn check(subject: &Subject, preflight: Option<&Result<Preflight, AgentError>>) -> Check {
    let identity = match &subject.identity {
        Ok(identity) => identity,
        Err(_) => {
            return Check::skipped(
                IDENTITY,
                "identity.json cannot be read (see the config check)",
            );
        }
    };
    let evidence = json!({
        "device_id": identity.device_id.to_string(),
        "board_id": format!("{:08x}", identity.board_id),
        "chip_id": format!("{:08x}", identity.chip_id),
        "hardware_uuid": identity.hardware_uuid,
        "device_class": identity.device_class.as_str(),
    });
    let zero_fields = identity.zero_fields();
    if !zero_fields.is_empty() {
        let refusal = Refusal::BadIdentity {
            device_id: identity.device_id,
            zero_fields: zero_fields.into_iter().map(str::to_owned).collect(),
        };
        return Check::fail(IDENTITY, &refusal, evidence);
    }
    match preflight {
        Some(Ok(answer)) if answer.standing == Standing::IdentityDiffers => {
            let finding = Finding::IdentityMismatch {
                device_id: identity.device_id.to_string(),
                fields: answer.identity_differs.clone(),
            };
            Check::fail(IDENTITY, &finding, evidence)
        }
        Some(Ok(answer)) if answer.standing == Standing::Enrolled => Check::ok(
            IDENTITY,
            format!(
                "device {}: no id reads as zero, and it is the identity enrolled",
                identity.device_id
            ),
            evidence,
        ),
        _ => Check::ok(
            IDENTITY,
            format!(
                "device {}: no id reads as zero (not compared with the enrollment: the server did not say)",
                identity.device_id
            ),
            evidence,
        ),
    }
}
