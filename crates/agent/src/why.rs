//! `ferry list --why`: for every release in the verified catalog the device does not run,
//! the one reason it is or is not offered — another class or audience, not newer, held
//! back by the director's signed decision (not in a wave yet and when it opens, halted,
//! paused, not in the cohort, not entitled, deferred and until when), a newer one offered
//! instead, or offered. Read from a fresh scan: the catalog and the decision it verified.

use chrono::{DateTime, Utc};
use ferry_personalize::DecisionState;
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::device::Device;
use crate::offer::CUSTOMER_AUDIENCE;

/// One release and why it is or is not offered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhyNot {
    /// The release's version.
    pub version: String,
    /// `OFFERED`, `SUPERSEDED`, `NOT_NEWER`, `OTHER_CLASS`, `OTHER_AUDIENCE`, or the code of
    /// the decision's hold (`ROLLOUT_NOT_YET`, `ROLLOUT_HALTED`, `NOT_ENTITLED`, …).
    pub code: String,
    /// In words.
    pub reason: String,
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Scans (catalog, decision), then explains every release the device does not run.
pub async fn why(device: &Device) -> Result<Vec<WhyNot>, AgentError> {
    let offers = crate::install::list(device).await?;
    why_for(device, &offers).await
}

/// [`why`] with the `offers` of a scan just made (the daemon scans through its own journal).
pub async fn why_for(
    device: &Device,
    offers: &[crate::offer::Offer],
) -> Result<Vec<WhyNot>, AgentError> {
    let crate::trust::catalog::Refreshed { catalog, .. } =
        crate::trust::catalog::refresh(device).await?;
    let decision = crate::trust::director::stored(device);
    let running = device.running_version()?;
    let class = device.identity.device_class.as_str();
    let audience = device.config.audience.as_str();
    let mut out = Vec::new();
    for release in catalog.releases() {
        let info = &release.info;
        if info.version == running && info.device_class == class {
            continue;
        }
        let version = info.version.to_string();
        let decided = decision.as_ref().and_then(|d| d.release(&version));
        let (code, reason) = if info.device_class != class {
            (
                "OTHER_CLASS".to_owned(),
                format!(
                    "it is for class {}, the device is {class}",
                    info.device_class
                ),
            )
        } else if !info.is_open_to(audience) && !info.is_open_to(CUSTOMER_AUDIENCE) {
            (
                "OTHER_AUDIENCE".to_owned(),
                format!(
                    "it is open to {}, the device is in {audience}",
                    info.audiences.join(", ")
                ),
            )
        } else if info.version <= running {
            (
                "NOT_NEWER".to_owned(),
                format!("the device runs {running}, which is not older"),
            )
        } else if let Some(d) = decided.filter(|d| d.state != DecisionState::Open) {
            let code = d.state.code().unwrap_or("HELD").to_owned();
            let reason = match d.state {
                DecisionState::NotYet => format!(
                    "not in a wave yet: {}'s wave for this device opens at {}",
                    d.holder(),
                    d.opens_at
                        .map(at)
                        .unwrap_or_else(|| "an unknown time".into())
                ),
                DecisionState::Halted => format!("{} is halted", d.holder()),
                DecisionState::Paused => format!("{} is paused", d.holder()),
                DecisionState::NotInCohort => {
                    format!("the device is not in {}'s cohort", d.holder())
                }
                DecisionState::NotEntitled => "the device is not entitled to it".into(),
                DecisionState::Deferred => format!(
                    "deferred on this device until {}",
                    d.deferred_until.map(at).unwrap_or_else(|| "later".into())
                ),
                DecisionState::Open => String::new(),
            };
            (code, reason)
        } else if offers.iter().any(|o| o.version == info.version) {
            ("OFFERED".to_owned(), "it is offered now".into())
        } else {
            (
                "SUPERSEDED".to_owned(),
                "a newer release is offered instead".into(),
            )
        };
        out.push(WhyNot {
            version,
            code,
            reason,
        });
    }
    Ok(out)
}
