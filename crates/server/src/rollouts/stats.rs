//! Per-rollout numbers for `GET /metrics`: its open waves, whether it is halted, and its
//! devices by kind — `offered` (enrolled devices of the class in the cohort, entitled, whose
//! wave is open: the ones the director lets take it), `attempted` (personalized for the
//! release in the current epoch), `installed` (running the release), `failed`,
//! `rolled_back`, `health` (a check failing in the post-commit watch) and `silent` (the
//! halt rule's failures). Read from the database at each
//! scrape, so every replica shows the same numbers; `offered` places every enrolled device
//! of the class (one SHA-256 each per rollout).

use std::collections::BTreeMap;

use chrono::Utc;
use ferry_types::DeviceId;
use sqlx::Row;

use super::entitle::Entitled;
use super::store::Rollout;
use crate::ServerError;
use crate::db::Db;

/// One rollout's numbers.
#[derive(Debug, Clone)]
pub struct RolloutStats {
    /// The rollout.
    pub rollout: Rollout,
    /// Waves open now (0 while held before the first opens).
    pub open_waves: u32,
    /// Devices by kind: offered, attempted, installed, failed, rolled_back, health, silent.
    pub devices: BTreeMap<&'static str, u64>,
}

/// The device kinds every rollout reports (zero included, so series do not vanish).
pub const KINDS: [&str; 7] = [
    "offered",
    "attempted",
    "installed",
    "failed",
    "rolled_back",
    "health",
    "silent",
];

impl Db {
    /// The numbers of every rollout.
    pub async fn rollout_stats(&self) -> Result<Vec<RolloutStats>, ServerError> {
        let now = Utc::now().timestamp_millis();
        let mut out = Vec::new();
        for rollout in self.rollouts().await? {
            let mut devices: BTreeMap<&'static str, u64> = KINDS.iter().map(|k| (*k, 0)).collect();
            let rows = sqlx::query(
                "SELECT COALESCE(failure, '') AS failure, COUNT(*) AS n FROM rollout_devices
                 WHERE rollout_id = $1 AND epoch = $2 GROUP BY failure",
            )
            .bind(rollout.id)
            .bind(rollout.epoch)
            .fetch_all(self.pool())
            .await?;
            for row in rows {
                let failure: String = row.try_get("failure")?;
                let n = row.try_get::<i64, _>("n")?.max(0) as u64;
                *devices.entry("attempted").or_default() += n;
                if let Some(kind) = KINDS.iter().find(|k| **k == failure) {
                    *devices.entry(kind).or_default() += n;
                }
            }
            let installed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM device_state WHERE device_class = $1 AND version = $2",
            )
            .bind(&rollout.class)
            .bind(&rollout.version)
            .fetch_one(self.pool())
            .await?;
            devices.insert("installed", installed.max(0) as u64);
            let open_waves = rollout.schedule().open_waves(rollout.elapsed_ms(now));
            devices.insert("offered", self.offered(&rollout, now).await?);
            out.push(RolloutStats {
                rollout,
                open_waves,
                devices,
            });
        }
        Ok(out)
    }

    /// Enrolled, unrevoked devices of the class the director lets take the release now.
    async fn offered(&self, rollout: &Rollout, now: i64) -> Result<u64, ServerError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT device_id FROM devices WHERE device_class = $1 AND revoked_at IS NULL",
        )
        .bind(&rollout.class)
        .fetch_all(self.pool())
        .await?;
        let audience = rollout.selector().needs_audience();
        let mut n = 0;
        for id in ids {
            let Ok(device_id) = id.parse::<DeviceId>() else {
                continue;
            };
            let facts = self.cohort_facts(&device_id, audience).await?;
            if rollout.hold(&device_id, &facts, now).is_some() {
                continue;
            }
            if let Entitled::No { .. } = self
                .entitled(&rollout.class, &rollout.version, &facts)
                .await?
            {
                continue;
            }
            n += 1;
        }
        Ok(n)
    }
}
