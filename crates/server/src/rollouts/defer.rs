//! Deferrals (`rollout_deferrals`): a device defers a rollout's release (`ferry defer`,
//! `POST /v1/deferrals` with its credential) up to the rollout's maximum after its first
//! deferral and never past the deadline; an emergency rollout refuses deferrals. The
//! director's decision then says `deferred` until then, and the daemon waits.

use chrono::{DateTime, Utc};
use ferry_types::{DeviceId, Diagnose};
use serde::{Deserialize, Serialize};

use super::store::Rollout;
use crate::ServerError;
use crate::db::Db;
use crate::fleet::time_of;

/// What a device asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeferRequest {
    /// The release's version.
    pub version: String,
    /// For how long: `30m`, `4h`, `1d`.
    #[serde(rename = "for")]
    pub for_: String,
}

/// A recorded deferral.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deferral {
    /// The rollout.
    pub rollout_id: i64,
    /// The release.
    pub version: String,
    /// Deferred until.
    pub until: DateTime<Utc>,
    /// The latest a deferral may reach (the maximum after the first, or the deadline).
    pub latest: Option<DateTime<Utc>>,
}

/// A deferral the server refuses.
#[derive(Debug, thiserror::Error)]
pub enum DeferralError {
    /// The release has no rollout of the device's class.
    #[error("release {version} of class {class} has no rollout to defer")]
    NoRollout {
        /// Class.
        class: String,
        /// Version.
        version: String,
    },
    /// An emergency rollout.
    #[error("rollout {rollout_id} is an emergency rollout, which cannot be deferred")]
    Emergency {
        /// The rollout.
        rollout_id: i64,
    },
    /// Beyond the maximum or the deadline.
    #[error("rollout {rollout_id} can be deferred until {latest} at the latest, not {asked}")]
    TooLong {
        /// The rollout.
        rollout_id: i64,
        /// The latest allowed.
        latest: DateTime<Utc>,
        /// What was asked.
        asked: DateTime<Utc>,
    },
    /// The duration does not parse.
    #[error("the deferral {value:?} is not a time like 30m, 4h or 1d")]
    Invalid {
        /// What was given.
        value: String,
    },
}

impl Diagnose for DeferralError {
    fn code(&self) -> &'static str {
        match self {
            DeferralError::NoRollout { .. } => "DEFERRAL_NO_ROLLOUT",
            DeferralError::Emergency { .. } => "DEFERRAL_EMERGENCY",
            DeferralError::TooLong { .. } => "DEFERRAL_TOO_LONG",
            DeferralError::Invalid { .. } => "DEFERRAL_INVALID",
        }
    }

    fn fix(&self) -> String {
        match self {
            DeferralError::NoRollout { .. } => {
                "Nothing to defer: without a rollout the agent follows its own policy and window"
                    .into()
            }
            DeferralError::Emergency { .. } => {
                "Let the update install: the operator marked it an emergency".into()
            }
            DeferralError::TooLong { latest, .. } => format!(
                "Defer for less, until {} at the latest",
                latest.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            DeferralError::Invalid { .. } => "Give the time as 30m, 4h or 1d".into(),
        }
    }
}

/// The latest a deferral first made at `first` may reach: the maximum after it, or the
/// deadline, whichever is sooner (`None`: no limit).
fn latest(rollout: &Rollout, first: i64) -> Option<i64> {
    [
        rollout.max_deferral_ms.map(|max| first.saturating_add(max)),
        rollout.deadline_ms,
    ]
    .into_iter()
    .flatten()
    .min()
}

impl Db {
    /// Records `device_id`'s deferral of release `version` of `class` for `request.for_`.
    pub async fn defer(
        &self,
        device_id: &DeviceId,
        class: &str,
        request: &DeferRequest,
    ) -> Result<Deferral, ServerError> {
        let span =
            super::waves::parse_offset(&request.for_).ok_or_else(|| DeferralError::Invalid {
                value: request.for_.clone(),
            })?;
        let rollout: Option<Rollout> = self
            .rollouts()
            .await?
            .into_iter()
            .find(|r| r.class == class && r.version == request.version);
        let Some(rollout) = rollout else {
            return Err(DeferralError::NoRollout {
                class: class.to_owned(),
                version: request.version.clone(),
            }
            .into());
        };
        if rollout.emergency {
            return Err(DeferralError::Emergency {
                rollout_id: rollout.id,
            }
            .into());
        }
        let now = Utc::now().timestamp_millis();
        let first = self
            .first_deferral(&rollout, device_id)
            .await?
            .unwrap_or(now);
        let latest = latest(&rollout, first);
        let until = now.saturating_add(span);
        if let Some(latest) = latest
            && until > latest
        {
            return Err(DeferralError::TooLong {
                rollout_id: rollout.id,
                latest: time_of(latest).unwrap_or_else(Utc::now),
                asked: time_of(until).unwrap_or_else(Utc::now),
            }
            .into());
        }
        sqlx::query(
            "INSERT INTO rollout_deferrals (rollout_id, device_id, first_ms, until_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (rollout_id, device_id) DO UPDATE SET until_ms = $4",
        )
        .bind(rollout.id)
        .bind(device_id.to_string())
        .bind(first)
        .bind(until)
        .execute(self.pool())
        .await?;
        Ok(Deferral {
            rollout_id: rollout.id,
            version: rollout.version,
            until: time_of(until).unwrap_or_else(Utc::now),
            latest: latest.and_then(time_of),
        })
    }

    /// The latest `device_id` may defer `rollout`'s release to (its maximum after its first
    /// deferral, or the deadline); `None`: no limit.
    pub async fn defer_latest(
        &self,
        rollout: &Rollout,
        device_id: &DeviceId,
    ) -> Result<Option<DateTime<Utc>>, ServerError> {
        let first = self.first_deferral(rollout, device_id).await?;
        let first = first.unwrap_or_else(|| Utc::now().timestamp_millis());
        Ok(latest(rollout, first).and_then(time_of))
    }

    /// When `device_id` first deferred `rollout`'s release, if it did.
    async fn first_deferral(
        &self,
        rollout: &Rollout,
        device_id: &DeviceId,
    ) -> Result<Option<i64>, ServerError> {
        Ok(sqlx::query_scalar(
            "SELECT first_ms FROM rollout_deferrals WHERE rollout_id = $1 AND device_id = $2",
        )
        .bind(rollout.id)
        .bind(device_id.to_string())
        .fetch_optional(self.pool())
        .await?)
    }

    /// Until when `device_id` deferred rollout `rollout_id`'s release, if it still does.
    pub async fn deferred_until(
        &self,
        rollout: &Rollout,
        device_id: &DeviceId,
        now_ms: i64,
    ) -> Result<Option<i64>, ServerError> {
        if rollout.emergency {
            return Ok(None);
        }
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT until_ms FROM rollout_deferrals WHERE rollout_id = $1 AND device_id = $2",
        )
        .bind(rollout.id)
        .bind(device_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        let until = until.filter(|u| *u > now_ms);
        Ok(match rollout.deadline_ms {
            Some(deadline) if deadline <= now_ms => None,
            _ => until,
        })
    }
}
