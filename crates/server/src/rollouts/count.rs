//! The halt rule's counting, inside the caller's transaction: event reports (a device
//! personalized for a rollout's release is an attempt; a failure whose code blames the
//! release, a rollback after the reboot, or a health check failing in the post-commit
//! watch is a failure) and silent devices (a device that
//! stopped reporting mid-update is a failure). After counting, each touched wave is
//! evaluated once; a halt is one conditional `UPDATE` plus its record, so two servers
//! committing reports on one database halt the rollout once (SQLite serializes writers;
//! PostgreSQL makes the second wait for the first's row lock, then re-check: the second sees
//! `state = 'halted'` and changes nothing).

use std::collections::{BTreeSet, HashMap};

use crate::db::{Conn, placeholder_rows, rows_per_statement};
use ferry_events::{Blame, EventKind, EventReport, blame};

use super::store::{Rollout, load, wave_counts};
use super::waves::halts;
use crate::ServerError;

/// What a report counts as for the rollout of its target release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// The device got a ticket and went on: an attempt.
    Attempt,
    /// An attempt that failed in a way that counts (`failed`, `rolled_back`, `health`).
    Failure(&'static str),
}

/// Whether and how `report` counts. A failure whose code blames the environment (no
/// space, network, a refused ticket) is not an attempt at all, so devices held back by the
/// rollout itself never dilute the failure rate.
pub(super) fn counted(report: &EventReport) -> Option<Counted> {
    match report.event {
        EventKind::Personalized
        | EventKind::DownloadStarted
        | EventKind::PayloadFallback
        | EventKind::Downloaded
        | EventKind::Prepared
        | EventKind::Prestaged
        | EventKind::Installed
        | EventKind::Committed => Some(Counted::Attempt),
        EventKind::Failed => {
            let code = report.error.as_ref().map(|e| e.code.as_str())?;
            (blame(code) == Some(Blame::Release)).then_some(Counted::Failure("failed"))
        }
        EventKind::RolledBack => Some(Counted::Failure("rolled_back")),
        // A health check failing in the post-commit watch: the release runs but is unwell.
        EventKind::HealthFailed => {
            let code = report.error.as_ref().map(|e| e.code.as_str())?;
            (blame(code) == Some(Blame::Release)).then_some(Counted::Failure("health"))
        }
        EventKind::InstallStarted
        | EventKind::Progress
        | EventKind::Parked
        | EventKind::Dropped
        | EventKind::DoctorResult => None,
    }
}

/// The rollout of release `version` of `class`, if any.
async fn rollout_for(
    conn: &mut Conn,
    class: &str,
    version: &str,
) -> Result<Option<Rollout>, ServerError> {
    let id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM rollouts WHERE class = $1 AND version = $2")
            .bind(class)
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
    match id {
        Some(id) => Ok(Some(load(conn, id).await?)),
        None => Ok(None),
    }
}

/// Records `device_id`'s attempt (and `failure`, the first one counts) in `rollout`'s
/// current epoch; the device's wave.
async fn record(
    conn: &mut Conn,
    rollout: &Rollout,
    device_id: &ferry_types::DeviceId,
    failure: Option<(&str, Option<&str>)>,
    at_ms: i64,
) -> Result<u32, ServerError> {
    let wave = rollout.wave_of(device_id);
    sqlx::query(
        "INSERT INTO rollout_devices (rollout_id, epoch, device_id, wave, attempted_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(rollout.id)
    .bind(rollout.epoch)
    .bind(device_id.to_string())
    .bind(i64::from(wave))
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    if let Some((kind, code)) = failure {
        sqlx::query(
            "UPDATE rollout_devices SET failure = $1, failure_code = $2, failed_ms = $3
             WHERE rollout_id = $4 AND epoch = $5 AND device_id = $6 AND failure IS NULL",
        )
        .bind(kind)
        .bind(code)
        .bind(at_ms)
        .bind(rollout.id)
        .bind(rollout.epoch)
        .bind(device_id.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(wave)
}

/// Counts freshly stored `reports` against their rollouts and evaluates every wave they
/// touched; returns the ids of rollouts this call halted. Each (class, version)'s rollout is
/// read once and the attempts are recorded in one statement, however many reports there are.
pub async fn count_reports(
    conn: &mut Conn,
    reports: &[EventReport],
    received_ms: i64,
) -> Result<Vec<i64>, ServerError> {
    let mut rollouts: HashMap<(String, String), Option<Rollout>> = HashMap::new();
    let mut attempts = BTreeSet::new();
    let mut failures = Vec::new();
    for report in reports {
        let (Some(kind), Some(target)) = (counted(report), &report.target_os_version) else {
            continue;
        };
        let key = (report.device_class.to_string(), target.to_string());
        let rollout = match rollouts.get(&key) {
            Some(known) => known.clone(),
            None => {
                let found = rollout_for(conn, &key.0, &key.1).await?;
                rollouts.insert(key, found.clone());
                found
            }
        };
        let Some(rollout) = rollout else {
            continue;
        };
        let wave = rollout.wave_of(&report.device_id);
        attempts.insert((
            rollout.id,
            rollout.epoch,
            report.device_id.to_string(),
            wave,
        ));
        if let Counted::Failure(kind) = kind {
            let code = report.error.as_ref().map(|e| e.code.as_str());
            failures.push((rollout, report.device_id, kind, code, wave));
        }
    }
    record_attempts(conn, &attempts, received_ms).await?;
    let mut touched = BTreeSet::new();
    for (rollout, device_id, kind, code, wave) in failures {
        record(conn, &rollout, &device_id, Some((kind, code)), received_ms).await?;
        touched.insert((rollout.id, wave));
    }
    evaluate(conn, &touched, received_ms).await
}

/// Records attempts `(rollout, epoch, device, wave)` not recorded yet, in one statement per
/// [`rows_per_statement`].
async fn record_attempts(
    conn: &mut Conn,
    attempts: &BTreeSet<(i64, i64, String, u32)>,
    at_ms: i64,
) -> Result<(), ServerError> {
    let attempts: Vec<_> = attempts.iter().collect();
    for chunk in attempts.chunks(rows_per_statement(conn)) {
        let sql = format!(
            "INSERT INTO rollout_devices (rollout_id, epoch, device_id, wave, attempted_ms)
             VALUES {} ON CONFLICT DO NOTHING",
            placeholder_rows(conn, chunk.len(), 5)
        );
        // Only placeholders and fixed column names: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (rollout_id, epoch, device_id, wave) in chunk {
            query = query
                .bind(*rollout_id)
                .bind(*epoch)
                .bind(device_id.clone())
                .bind(i64::from(*wave))
                .bind(at_ms);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Counts devices just marked silent mid-update (`(device_id, class, target version)`)
/// as failures of their rollouts and evaluates; returns the rollouts halted.
pub async fn count_silent(
    conn: &mut Conn,
    silent: &[(String, String, Option<String>)],
    now_ms: i64,
) -> Result<Vec<i64>, ServerError> {
    let mut touched = BTreeSet::new();
    for (device_id, class, target) in silent {
        let (Some(target), Ok(device_id)) = (target, device_id.parse::<ferry_types::DeviceId>())
        else {
            continue;
        };
        let Some(rollout) = rollout_for(conn, class, target).await? else {
            continue;
        };
        let wave = record(conn, &rollout, &device_id, Some(("silent", None)), now_ms).await?;
        touched.insert((rollout.id, wave));
    }
    evaluate(conn, &touched, now_ms).await
}

/// Applies the halt rule to each `(rollout, wave)`: a running or paused rollout whose wave
/// crosses it is halted, and the numbers recorded, once.
async fn evaluate(
    conn: &mut Conn,
    touched: &BTreeSet<(i64, u32)>,
    now_ms: i64,
) -> Result<Vec<i64>, ServerError> {
    let mut halted = Vec::new();
    for &(id, wave) in touched {
        if halted.contains(&id) {
            continue;
        }
        let rollout = load(conn, id).await?;
        if rollout.state == super::RolloutState::Halted {
            continue;
        }
        let counts = wave_counts(conn, &rollout, now_ms).await?;
        let Some(count) = counts.get(wave as usize) else {
            continue;
        };
        let Some(lower) = halts(
            count.failures,
            count.attempts,
            rollout.threshold,
            rollout.min_attempts as u64,
        ) else {
            continue;
        };
        let changed = sqlx::query(
            "UPDATE rollouts SET state = 'halted', held_since_ms = COALESCE(held_since_ms, $1),
                changed_ms = $1
             WHERE id = $2 AND state IN ('running', 'paused')",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed != 1 {
            continue;
        }
        let reason = format!(
            "wave {wave}: {} of {} attempts failed ({}), the 95 % Wilson lower bound {:.3} is above the threshold {}",
            count.failures,
            count.attempts,
            count
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            lower,
            rollout.threshold
        );
        sqlx::query(
            "INSERT INTO rollout_changes (rollout_id, at_ms, action, \"by\", wave, attempts, failures,
                lower_bound, threshold, reason)
             VALUES ($1, $2, 'halt', 'halt-rule', $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(now_ms)
        .bind(i64::from(wave))
        .bind(count.attempts as i64)
        .bind(count.failures as i64)
        .bind(lower)
        .bind(rollout.threshold)
        .bind(&reason)
        .execute(&mut *conn)
        .await?;
        tracing::warn!(rollout = id, wave, %reason, "rollout halted by the halt rule");
        halted.push(id);
    }
    Ok(halted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(event: EventKind, code: Option<&str>) -> EventReport {
        let text = r#"{"report_version": 1, "sequence": 1, "device_id": "00000000000004d2",
            "uuid": null, "event": "EVENT", "event_time": "2026-03-20T18:51:32Z",
            "result": "failure", "transition": null, "audience_type": "customer",
            "device_class": "vm", "device_model": "m", "platform": "p", "core_version": "0.1.0",
            "current_os_type": "system", "current_os_version": "2.0",
            "current_base_os_version": "2.0", "current_slot": "b", "target_os_version": "2.0",
            "update_type": null, "preferred_type": null, "battery_level": null,
            "battery_is_charging": false, "on_ac_power": true, "low_power_mode": false,
            "metered_network": null, "data_fs_capacity": 1, "data_fs_free": 1,
            "system_fs_capacity": 1, "system_fs_free": 1, "storage_capacity": 1,
            "total_required_free_space": null, "mandatory_update_eligible": false,
            "mandatory_update_optional": true, "pre_staging_enabled": false,
            "pre_staging_max_size": null, "pre_staging_optional_size": null,
            "pre_staging_required_size": null, "ramp_enabled": false,
            "rapid_security_response_installed": false,
            "rapid_security_response_semi_splat": false, "facts_error": null, "phases": [],
            "payload": null, "progress": null, "error": null, "fallback": null,
            "boot_counter_rolled_back": null}"#
            .replace("EVENT", event.as_str());
        let mut r: EventReport = serde_json::from_str(&text).unwrap();
        r.error = code.map(|code| ferry_events::ErrorReport {
            code: code.into(),
            cause: "c".into(),
            fix: "f".into(),
            machine: Some("health_watch".into()),
            state: Some("WATCHING".into()),
        });
        r
    }

    #[test]
    fn what_each_report_counts_as() {
        use EventKind::*;
        let table = [
            (Personalized, None, Some(Counted::Attempt)),
            (Committed, None, Some(Counted::Attempt)),
            (
                HealthFailed,
                Some("HEALTH_WATCH_FAILED"),
                Some(Counted::Failure("health")),
            ),
            (HealthFailed, Some("DISK_FULL"), None),
            (HealthFailed, None, None),
            (
                Failed,
                Some("SEAL_MISMATCH"),
                Some(Counted::Failure("failed")),
            ),
            (Failed, Some("NETWORK_TIMEOUT"), None),
            (
                RolledBack,
                Some("HEALTH_CHECK_FAILED"),
                Some(Counted::Failure("rolled_back")),
            ),
            (Progress, None, None),
            (DoctorResult, Some("HEALTH_CHECK_FAILED"), None),
        ];
        for (event, code, expected) in table {
            assert_eq!(counted(&report(event, code)), expected, "{event} {code:?}");
        }
    }
}
