//! Outcomes per hour, kept as reports arrive (`migrations/0011_dashboard_hourly.sql`):
//! [`count_outcomes`] runs in the transaction that stores new reports, so the per-hour
//! chart reads a day's 100 rows at most instead of counting reports.

use std::collections::BTreeMap;

use crate::ServerError;
use crate::db::{Conn, Db};
use ferry_events::EventReport;

/// The events the chart counts.
pub const OUTCOMES: [&str; 4] = ["installed", "committed", "failed", "rolled_back"];

/// One hour in milliseconds.
const HOUR_MS: i64 = 3_600_000;

/// Adds the outcome reports among `reports` (newly stored at `received_ms`) to their
/// hour's counts. Rows are touched in (hour, event) order, so two ingests at once never
/// wait on each other in a cycle.
pub async fn count_outcomes(
    conn: &mut Conn,
    reports: &[EventReport],
    received_ms: i64,
) -> Result<(), ServerError> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for report in reports {
        let event = report.event.as_str();
        if let Some(outcome) = OUTCOMES.iter().find(|o| **o == event) {
            *counts.entry(outcome).or_default() += 1;
        }
    }
    for (event, n) in counts {
        sqlx::query(
            "INSERT INTO dashboard_hourly (hour, event, n) VALUES ($1, $2, $3)
             ON CONFLICT (hour, event) DO UPDATE SET n = dashboard_hourly.n + excluded.n",
        )
        .bind(received_ms / HOUR_MS)
        .bind(event)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Db {
    /// Outcomes per hour (hour number since the epoch, event, count) since `since_ms`'s
    /// hour, oldest first.
    pub async fn dashboard_outcomes_per_hour(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, ServerError> {
        Ok(sqlx::query_as(
            "SELECT hour, event, n FROM dashboard_hourly WHERE hour >= $1 ORDER BY hour, event",
        )
        .bind(since_ms / HOUR_MS)
        .fetch_all(self.pool())
        .await?)
    }
}
