//! The reads the dashboard's pages make: grouped counts over `device_state` (one row per
//! device, kept as reports arrive) and bounded, indexed reads of `event_reports`, each page
//! [`PAGE`] rows at most. Portable SQL (`$n` placeholders, no SQLite-only functions).

use std::collections::BTreeMap;

use ferry_events::{ErrorReport, EventReport};
use sqlx::Row;

use crate::ServerError;
use crate::db::Db;
use crate::fleet::DeviceState;

/// Rows on one page of a list.
pub const PAGE: i64 = 50;

fn decode(e: serde_json::Error) -> ServerError {
    ServerError::Database(sqlx::Error::Decode(e.into()))
}

/// The fleet at a glance, from grouped counts.
#[derive(Debug, Default)]
pub struct Overview {
    /// Devices that reported.
    pub devices: i64,
    /// Devices by (class, version).
    pub by_class_version: Vec<(String, String, i64)>,
    /// Devices by status.
    pub by_status: BTreeMap<String, i64>,
    /// Devices silent mid-update.
    pub silent: i64,
    /// Outcomes in the last hour, by event.
    pub last_hour: BTreeMap<String, i64>,
    /// Outcomes in the hour before, by event (the trend).
    pub hour_before: BTreeMap<String, i64>,
}

/// A page of a list and whether there is a next one.
#[derive(Debug)]
pub struct Paged<T> {
    /// The rows.
    pub rows: Vec<T>,
    /// Page number, from 0.
    pub page: i64,
    /// Whether another page follows.
    pub more: bool,
}

fn paged<T>(mut rows: Vec<T>, page: i64) -> Paged<T> {
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    Paged { rows, page, more }
}

/// One failure code: devices whose last error it is, and what it means.
#[derive(Debug)]
pub struct FailureCode {
    /// The code.
    pub code: String,
    /// Devices affected.
    pub devices: i64,
    /// Cause and fix, from the latest report with the code.
    pub error: Option<ErrorReport>,
    /// Some of the devices behind it.
    pub sample: Vec<String>,
}

impl Db {
    /// The fleet page's counts at `now_ms`.
    pub async fn dashboard_overview(&self, now_ms: i64) -> Result<Overview, ServerError> {
        let mut o = Overview::default();
        for row in sqlx::query(
            "SELECT device_class, COALESCE(version, 'unknown') AS version, COUNT(*) AS n
             FROM device_state GROUP BY device_class, version ORDER BY device_class, version",
        )
        .fetch_all(self.pool())
        .await?
        {
            let n: i64 = row.try_get("n")?;
            o.devices += n;
            o.by_class_version
                .push((row.try_get("device_class")?, row.try_get("version")?, n));
        }
        for row in sqlx::query("SELECT status, COUNT(*) AS n FROM device_state GROUP BY status")
            .fetch_all(self.pool())
            .await?
        {
            o.by_status
                .insert(row.try_get("status")?, row.try_get("n")?);
        }
        o.silent = sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_state WHERE status = 'updating' AND silent_since_ms IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await?;
        let hour = 3_600_000;
        for (from, into) in [
            (now_ms - hour, &mut o.last_hour),
            (now_ms - 2 * hour, &mut o.hour_before),
        ] {
            let rows = sqlx::query(
                "SELECT event, COUNT(*) AS n FROM event_reports
                 WHERE received_ms >= $1 AND received_ms < $2
                 AND event IN ('installed', 'failed', 'committed', 'rolled_back') GROUP BY event",
            )
            .bind(from)
            .bind(from + hour)
            .fetch_all(self.pool())
            .await?;
            for row in rows {
                into.insert(row.try_get("event")?, row.try_get("n")?);
            }
        }
        Ok(o)
    }

    /// Devices with `status` (or every device when `None`; `silent` for silent ones), by
    /// id, one page (`LIMIT … OFFSET …` on the primary key's order).
    pub async fn dashboard_devices(
        &self,
        status: Option<&str>,
        page: i64,
    ) -> Result<Paged<DeviceState>, ServerError> {
        let mut q = crate::db::Filtered::new("SELECT * FROM device_state");
        match status {
            Some("silent") => {
                q.push(" WHERE silent_since_ms IS NOT NULL");
            }
            Some(status) => {
                q.push(" WHERE status = ").push_bind(status.to_owned());
            }
            None => {}
        }
        q.push(" ORDER BY device_id LIMIT ")
            .push_bind(PAGE + 1)
            .push(" OFFSET ")
            .push_bind(PAGE * page);
        let rows = q.fetch_all(self).await?;
        let rows = rows
            .iter()
            .map(crate::fleet::state_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paged(rows, page))
    }

    /// The class an enrolled device enrolled with.
    pub async fn dashboard_device_class(
        &self,
        device_id: &str,
    ) -> Result<Option<String>, ServerError> {
        Ok(
            sqlx::query_scalar("SELECT device_class FROM devices WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// One device's reports, newest first, one page.
    pub async fn dashboard_timeline(
        &self,
        device_id: &str,
        page: i64,
    ) -> Result<Paged<(i64, EventReport)>, ServerError> {
        let rows = sqlx::query(
            "SELECT received_ms, body FROM event_reports WHERE device_id = $1
             ORDER BY sequence DESC LIMIT $2 OFFSET $3",
        )
        .bind(device_id)
        .bind(PAGE + 1)
        .bind(PAGE * page)
        .fetch_all(self.pool())
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                Ok((
                    r.try_get("received_ms")?,
                    serde_json::from_str(&body).map_err(decode)?,
                ))
            })
            .collect::<Result<Vec<_>, ServerError>>()?;
        Ok(paged(rows, page))
    }

    /// The device's latest report of `event` (or with an error, for `None`).
    pub async fn dashboard_latest(
        &self,
        device_id: &str,
        event: Option<&str>,
    ) -> Result<Option<EventReport>, ServerError> {
        let sql = match event {
            Some(_) => {
                "SELECT body FROM event_reports WHERE device_id = $1 AND event = $2
                 ORDER BY sequence DESC LIMIT 1"
            }
            None => {
                "SELECT body FROM event_reports WHERE device_id = $1 AND error_code IS NOT NULL
                 AND $2 = '' ORDER BY sequence DESC LIMIT 1"
            }
        };
        let body: Option<String> = sqlx::query_scalar(sql)
            .bind(device_id)
            .bind(event.unwrap_or(""))
            .fetch_optional(self.pool())
            .await?;
        body.map(|b| serde_json::from_str(&b).map_err(decode))
            .transpose()
    }

    /// The progress reports of the device's update `update_id`, oldest first (at most
    /// 2,000: the chart's points).
    pub async fn dashboard_progress(
        &self,
        device_id: &str,
        update_id: &str,
    ) -> Result<Vec<EventReport>, ServerError> {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM event_reports WHERE device_id = $1 AND update_id = $2
             AND event = 'progress' ORDER BY sequence LIMIT 2000",
        )
        .bind(device_id)
        .bind(update_id)
        .fetch_all(self.pool())
        .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(decode))
            .collect()
    }

    /// Failure codes ranked by devices whose last error it is (failed, rolled back,
    /// dropped or unhealthy), one page, each with its cause and fix and up to 20 devices.
    pub async fn dashboard_failures(&self, page: i64) -> Result<Paged<FailureCode>, ServerError> {
        let rows = sqlx::query(
            "SELECT last_error_code AS code, COUNT(*) AS n FROM device_state
             WHERE last_error_code IS NOT NULL AND status IN ('failed', 'rolled_back', 'dropped', 'unhealthy')
             GROUP BY last_error_code ORDER BY n DESC, code LIMIT $1 OFFSET $2",
        )
        .bind(PAGE + 1)
        .bind(PAGE * page)
        .fetch_all(self.pool())
        .await?;
        let mut codes = Vec::with_capacity(rows.len());
        for row in rows.iter().take(PAGE as usize) {
            let code: String = row.try_get("code")?;
            let body: Option<String> = sqlx::query_scalar(
                "SELECT body FROM event_reports WHERE error_code = $1 ORDER BY received_ms DESC LIMIT 1",
            )
            .bind(&code)
            .fetch_optional(self.pool())
            .await?;
            let error = match body {
                Some(b) => {
                    serde_json::from_str::<EventReport>(&b)
                        .map_err(decode)?
                        .error
                }
                None => None,
            };
            let sample = sqlx::query_scalar(
                "SELECT device_id FROM device_state WHERE last_error_code = $1
                 AND status IN ('failed', 'rolled_back', 'dropped', 'unhealthy') ORDER BY device_id LIMIT 20",
            )
            .bind(&code)
            .fetch_all(self.pool())
            .await?;
            codes.push(FailureCode {
                code,
                devices: row.try_get("n")?,
                error,
                sample,
            });
        }
        let more = rows.len() as i64 > PAGE;
        Ok(Paged {
            rows: codes,
            page,
            more,
        })
    }

    /// A rollout's devices of the current epoch in `wave`, by id, up to `limit`.
    pub async fn dashboard_wave_devices(
        &self,
        rollout_id: i64,
        epoch: i64,
        wave: u32,
        limit: i64,
    ) -> Result<Vec<(String, Option<String>)>, ServerError> {
        Ok(sqlx::query_as(
            "SELECT device_id, failure FROM rollout_devices
             WHERE rollout_id = $1 AND epoch = $2 AND wave = $3 ORDER BY device_id LIMIT $4",
        )
        .bind(rollout_id)
        .bind(epoch)
        .bind(i64::from(wave))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Devices of the class whose update targets `version`, by the furthest step reached
    /// (`statuses`: status, update state, whether silent, count).
    pub async fn dashboard_funnel_rows(
        &self,
        class: &str,
        version: &str,
    ) -> Result<Vec<(String, Option<String>, bool, i64)>, ServerError> {
        let rows = sqlx::query(
            "SELECT status, update_state,
                    CASE WHEN silent_since_ms IS NOT NULL THEN 1 ELSE 0 END AS silent, COUNT(*) AS n
             FROM device_state WHERE device_class = $1 AND (target_version = $2 OR version = $2)
             GROUP BY status, update_state, silent",
        )
        .bind(class)
        .bind(version)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("status")?,
                    r.try_get("update_state")?,
                    crate::db::get_flag(r, "silent")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Mean seconds per phase by class over installed updates since `since_ms`.
    pub async fn dashboard_phase_means(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, f64)>, ServerError> {
        Ok(sqlx::query_as(
            "SELECT device_class, phase, AVG(secs) AS secs FROM phase_samples
             WHERE received_ms >= $1 GROUP BY device_class, phase ORDER BY device_class, phase",
        )
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?)
    }

    /// A rollout's attempts of the current epoch: (attempted, failed at), oldest first.
    pub async fn dashboard_attempts(
        &self,
        rollout_id: i64,
        epoch: i64,
    ) -> Result<Vec<(i64, Option<i64>)>, ServerError> {
        Ok(sqlx::query_as(
            "SELECT attempted_ms, failed_ms FROM rollout_devices
             WHERE rollout_id = $1 AND epoch = $2 ORDER BY attempted_ms",
        )
        .bind(rollout_id)
        .bind(epoch)
        .fetch_all(self.pool())
        .await?)
    }
}
