//! The enrollment and signing checks, from one preflight request: whether the device has a
//! credential, whether the server accepts it (not enrolled, revoked, superseded by a
//! re-enrollment), and whether the signing window of the offered build is open — the
//! refusals a ticket request would get, asked without spending a nonce.

use ferry_payload::Manifest;
use ferry_personalize::{Nonce, Preflight, Standing, TicketRequest};
use ferry_types::{Diagnose, Report, RootHash};
use serde_json::json;

use crate::AgentError;
use crate::device::SlotInfo;
use crate::doctor::catalog::unreachable_code;
use crate::doctor::check::{Check, Finding};
use crate::doctor::net::Net;
use crate::doctor::subject::Subject;
use crate::offer::Offer;

/// Name of the enrollment check.
pub const ENROLLMENT: &str = "enrollment";
/// Name of the signing-window check.
pub const SIGNING: &str = "signing";

/// Asks the service whether it would sign now: for the offered build (its seal root from
/// `manifest`) or, with nothing offered, the running one.
pub async fn preflight(
    subject: &Subject,
    net: &Net,
    offer: Option<(&Offer, &Manifest)>,
    running: Option<&SlotInfo>,
) -> Result<Preflight, AgentError> {
    let credential = crate::trust::personalize::read_credential(&subject.layout())?;
    let identity = subject
        .identity
        .clone()
        .map_err(|unreadable| unreadable.error())?;
    let offered = offer.and_then(|(offer, manifest)| {
        Some((offer.build_id.as_str(), manifest.seal.as_ref()?.root_hash))
    });
    let ran =
        running.and_then(|info| Some((info.build_id.as_str(), info.seal.as_ref()?.root_hash)));
    let (build_id, root): (&str, RootHash) = match offered.or(ran) {
        Some(found) => found,
        None => {
            return Err(AgentError::ServerInvalid {
                url: net.server().to_owned(),
                reason: "neither the offer nor the running slot has a seal to ask about".into(),
            });
        }
    };
    let request = TicketRequest {
        identity,
        nonce: Nonce::random(),
        build_id: build_id
            .parse()
            .map_err(
                |e: ferry_personalize::ParseError| AgentError::ServerInvalid {
                    url: net.server().to_owned(),
                    reason: e.to_string(),
                },
            )?,
        components: crate::trust::personalize::components(&root),
        device_time: chrono::Utc::now()
            + chrono::Duration::seconds(
                subject
                    .config()
                    .map_or(0, crate::trust::personalize::clock_offset),
            ),
    };
    net.call("/v1/personalize/preflight", |c| {
        c.preflight(&credential, &request)
    })
    .await
}

/// Whether the credential is there and the server accepts it.
pub fn enrollment(preflight: &Result<Preflight, AgentError>) -> Check {
    let answer = match preflight {
        Ok(answer) => answer,
        Err(e @ AgentError::NotEnrolled { .. }) => return Check::fail(ENROLLMENT, e, json!(null)),
        Err(e) if unreachable_code(e.code()) => {
            return Check::skipped(
                ENROLLMENT,
                format!("the server was not reached ({})", e.code()),
            );
        }
        Err(e) => return Check::fail(ENROLLMENT, e, json!(null)),
    };
    let evidence = json!({ "standing": answer.standing, "refusal": answer.refusal });
    let refusal_report = || {
        answer.refusal.as_ref().map(|r| Report {
            code: r.code.clone(),
            cause: r.cause.clone(),
            fix: r.fix.clone(),
        })
    };
    match answer.standing {
        Standing::Enrolled => Check::ok(
            ENROLLMENT,
            "enrolled; the server accepts the credential",
            evidence,
        ),
        // The identity check names it.
        Standing::IdentityDiffers => Check::ok(
            ENROLLMENT,
            "enrolled, with another identity (see the identity check)",
            evidence,
        ),
        Standing::Superseded => Check::fail(ENROLLMENT, &Finding::CredentialSuperseded, evidence),
        Standing::Revoked | Standing::NotEnrolled | Standing::OtherDevice => match refusal_report()
        {
            Some(report) => Check::fail_report(ENROLLMENT, report, evidence),
            None => Check::fail(
                ENROLLMENT,
                &AgentError::NotEnrolled {
                    reason: format!("the server says {:?}", answer.standing),
                },
                evidence,
            ),
        },
    }
}

/// Whether the offered build's signing window is open.
pub fn signing(offer: Option<&Offer>, preflight: &Result<Preflight, AgentError>) -> Check {
    let Some(offer) = offer else {
        return Check::skipped(SIGNING, "no update is offered, so no build to be signed");
    };
    let answer = match preflight {
        Ok(answer) => answer,
        Err(e) => {
            return Check::skipped(
                SIGNING,
                format!("the service did not answer ({})", e.code()),
            );
        }
    };
    let evidence = json!({ "build_id": offer.build_id, "window_open": answer.window_open });
    match &answer.refusal {
        // A closed signing window, or a rollout that holds the release from this device
        // (not yet in its wave, paused, halted, not in the cohort).
        Some(r) if r.code == "NOT_SIGNED" || r.code.starts_with("ROLLOUT_") => Check::fail_report(
            SIGNING,
            Report {
                code: r.code.clone(),
                cause: r.cause.clone(),
                fix: r.fix.clone(),
            },
            evidence,
        ),
        _ if answer.window_open => Check::ok(
            SIGNING,
            format!("the signing window of {} is open", offer.build_id),
            evidence,
        ),
        _ => Check::skipped(
            SIGNING,
            "the service refused for another reason first (see the other checks)",
        ),
    }
}
