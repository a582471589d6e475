//! The clock check: the device's clock (the system's, plus any configured offset) against
//! the server's `/v1/time`, with the round trip halved, against the signing service's
//! skew limit. A clock off by more is `CLOCK_SKEW`, as the service would refuse it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_personalize::Refusal;
use serde_json::json;

use crate::AgentError;
use crate::doctor::check::Check;
use crate::doctor::net::Net;
use crate::doctor::subject::Subject;

/// Name of the check.
pub const CLOCK: &str = "clock";

/// The skew limit assumed when the service did not say its own.
pub const DEFAULT_LIMIT_SECS: u64 = 60;

/// One reading of both clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The device's clock at the middle of the request.
    pub device_time: DateTime<Utc>,
    /// The server's clock (whole seconds: half a second added).
    pub server_time: DateTime<Utc>,
    /// The request's round trip.
    pub rtt: Duration,
    /// The offset the config or `FERRY_CLOCK_OFFSET` adds to the system clock.
    pub configured_offset_secs: i64,
}

impl Reading {
    /// Device minus server, in whole seconds.
    pub fn skew_secs(&self) -> i64 {
        (self.device_time - self.server_time)
            .num_milliseconds()
            .div_euclid(1000)
    }
}

/// Reads both clocks: twice, keeping the reading with the shorter round trip (the first
/// pays for the connection).
pub async fn read(subject: &Subject, net: &Net) -> Result<Reading, AgentError> {
    let offset = subject
        .config()
        .map_or(0, crate::trust::personalize::clock_offset);
    let take = || async {
        let before = Utc::now();
        let (server, rtt) = net.call("/v1/time", |c| c.server_time()).await?;
        Ok::<_, AgentError>((before, server, rtt))
    };
    let first = take().await?;
    let (before, server, rtt) = match take().await {
        Ok(second) if second.2 < first.2 => second,
        _ => first,
    };
    let mid = before + chrono::Duration::from_std(rtt / 2).unwrap_or_default();
    Ok(Reading {
        device_time: mid + chrono::Duration::seconds(offset),
        server_time: server + chrono::Duration::milliseconds(500),
        rtt,
        configured_offset_secs: offset,
    })
}

/// Judges a reading against `limit_secs` (the service's, when it said).
pub fn judge(reading: &Result<Reading, AgentError>, limit_secs: Option<u64>) -> Check {
    let reading = match reading {
        Ok(r) => r,
        Err(e) => {
            return Check::skipped(CLOCK, format!("the server's time could not be read: {e}"));
        }
    };
    let limit = limit_secs.unwrap_or(DEFAULT_LIMIT_SECS);
    let skew = reading.skew_secs();
    let evidence = json!({
        "device_time": reading.device_time,
        "server_time": reading.server_time,
        "skew_seconds": skew,
        "limit_seconds": limit,
        "limit_from_server": limit_secs.is_some(),
        "round_trip_ms": reading.rtt.as_millis() as u64,
        "configured_offset_seconds": reading.configured_offset_secs,
    });
    if skew.unsigned_abs() > limit {
        let refusal = Refusal::ClockSkew {
            device_time: reading.device_time,
            server_time: reading.server_time,
            skew_seconds: skew,
            limit_seconds: limit,
        };
        return Check::fail(CLOCK, &refusal, evidence);
    }
    Check::ok(
        CLOCK,
        format!(
            "{skew:+} s from the server's clock (limit {limit} s, round trip {} ms)",
            reading.rtt.as_millis()
        ),
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(skew: i64) -> Result<Reading, AgentError> {
        let server = DateTime::from_timestamp(1_774_000_000, 0).unwrap();
        Ok(Reading {
            device_time: server + chrono::Duration::seconds(skew),
            server_time: server,
            rtt: Duration::from_millis(4),
            configured_offset_secs: skew,
        })
    }

    #[test]
    fn a_clock_beyond_the_limit_is_clock_skew_with_both_times() {
        let check = judge(&reading(300), Some(60));
        assert!(check.failed());
        assert_eq!(check.code(), Some("CLOCK_SKEW"));
        assert_eq!(check.evidence["skew_seconds"], 300);
        assert!(!judge(&reading(-59), Some(60)).failed());
        assert!(
            judge(&reading(-61), None).failed(),
            "the default limit is 60 s"
        );
        assert_eq!(
            judge(&Err(AgentError::NotEnrolled { reason: "r".into() }), None).outcome,
            crate::doctor::check::Outcome::Skipped
        );
    }
}
