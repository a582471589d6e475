//! What a refresh found wrong on the device and dealt with, the refresh still succeeding:
//! a damaged file of the trusted metadata (discarded and fetched again) and a device clock
//! that disagrees with the latest time it knew or with the server. The caller reports them
//! ([`crate::Catalog::warnings`]); each has a stable code, a cause and a fix.

use chrono::{DateTime, Utc};
use ferry_types::Diagnose;

/// How far the device clock may run ahead of the server's `Date` before a refresh says so
/// (the personalization service's default clock-skew limit).
pub const CLOCK_AHEAD_LIMIT_SECS: i64 = 60;

/// A refresh that succeeded, but found something to say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogWarning {
    /// A file of the trusted metadata on the device did not verify although it was the
    /// version the repository lists (or could not be read at all): local damage, so it was
    /// discarded and the file fetched again.
    #[error(
        "the device's copy of the catalog file {file} was damaged ({reason}); it was discarded and fetched again"
    )]
    CacheDamaged {
        /// The file in the datastore (`snapshot.json`, `bins-0a.json`, `latest_known_time`, …).
        file: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The device clock is earlier than the latest time it knew: expiry was checked against
    /// that latest known time instead, so stepping the clock back cannot make expired
    /// metadata pass.
    #[error(
        "the device clock reads {clock}, earlier than the latest time it knew ({latest_known}); metadata expiry was checked against {latest_known}"
    )]
    ClockBehind {
        /// The device clock.
        clock: DateTime<Utc>,
        /// The latest known time (kept, never moved back).
        latest_known: DateTime<Utc>,
    },
    /// The device clock is ahead of the server's (`Date` of the timestamp answer) by more
    /// than [`CLOCK_AHEAD_LIMIT_SECS`]: the latest known time was raised only to the
    /// server's time, so the device is not held to its wrong clock once it is set right.
    #[error(
        "the device clock reads {clock}, {lead_secs} s ahead of the server's ({server_time}); the latest known time was raised only to the server's time"
    )]
    ClockAhead {
        /// The device clock.
        clock: DateTime<Utc>,
        /// The server's time, from the `Date` of its timestamp answer.
        server_time: DateTime<Utc>,
        /// Seconds the clock is ahead.
        lead_secs: i64,
    },
}

impl Diagnose for CatalogWarning {
    fn code(&self) -> &'static str {
        match self {
            Self::CacheDamaged { .. } => "CATALOG_CACHE_DAMAGED",
            Self::ClockBehind { .. } => "CATALOG_CLOCK_BEHIND",
            Self::ClockAhead { .. } => "CATALOG_CLOCK_AHEAD",
        }
    }

    fn fix(&self) -> String {
        match self {
            Self::CacheDamaged { .. } => {
                "Nothing to do for this file (it was fetched again); if damage repeats, check the device's storage".into()
            }
            Self::ClockBehind { latest_known, .. } => format!(
                "Set the device clock right (NTP); if it is right now, nothing more is needed (metadata valid at {latest_known} is still accepted)"
            ),
            Self::ClockAhead { .. } => {
                "Set the device clock from the server (NTP, or GET /v1/time): personalization refuses a clock this far off".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_warning_keeps_the_contract() {
        let at = DateTime::from_timestamp(1_774_000_000, 0).unwrap();
        let warnings = [
            CatalogWarning::CacheDamaged {
                file: "snapshot.json".into(),
                reason: "r".into(),
            },
            CatalogWarning::ClockBehind {
                clock: at,
                latest_known: at,
            },
            CatalogWarning::ClockAhead {
                clock: at,
                server_time: at,
                lead_secs: 300,
            },
        ];
        for warning in &warnings {
            let report = warning.report();
            assert!(report.code.starts_with("CATALOG_"), "{report:?}");
            assert!(!report.cause.ends_with('.'), "{report:?}");
            assert!(
                report.fix.starts_with(char::is_uppercase) && !report.fix.ends_with('.'),
                "{report:?}"
            );
            assert!(!report.fix.contains(". "), "{report:?}");
        }
    }
}
