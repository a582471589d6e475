//! Work done once across replicas: the periodic jobs (the catalog timestamp's re-signing,
//! the silent-device watch and the rollout halts it counts) run only on the replica holding
//! the `leader` lease, a row in `leases` (`migrations/0008`) that works the same on SQLite
//! and PostgreSQL.
//!
//! The holder renews its lease every `ttl / 3`; a replica that dies stops renewing, its
//! lease expires `ttl` after its last renewal, and the next replica to try (every `ttl / 3`)
//! takes it. So the work moves within `ttl + ttl / 3` of the leader's death (plus the
//! job's own period). Expiries are wall-clock Unix milliseconds written by each replica:
//! replicas' clocks must agree to well under `ttl` (NTP does).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_types::Diagnose;

use crate::ServerError;
use crate::db::{Backend, Db};

/// The lease's default lifetime: the work moves within 20 s of the leader's death.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// The one lease the periodic jobs share.
const JOB: &str = "leader";

/// This replica's claim on the leader lease, renewed by [`Leadership::keep`].
#[derive(Debug, Clone)]
pub struct Leadership {
    db: Db,
    holder: String,
    ttl: Duration,
    /// Until when (this process's monotonic clock) the last renewal lets it lead: a sixth of
    /// the lease short of its expiry, a margin for clock skew and the renewal's own time.
    held_until: Arc<Mutex<Option<Instant>>>,
    /// No lease: the only server on its SQLite file leads always.
    sole: bool,
}

impl Leadership {
    /// A claim for this replica (a fresh random holder id per process).
    pub fn new(db: Db, ttl: Duration) -> Leadership {
        Leadership {
            db,
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            ttl,
            held_until: Arc::new(Mutex::new(None)),
            sole: false,
        }
    }

    /// The claim `serve` uses: the lease on PostgreSQL (replicas), none on SQLite (a SQLite
    /// file has one server, which leads from its first moment, as before replicas existed).
    pub fn for_server(db: Db, ttl: Duration) -> Leadership {
        let sole = db.backend() == Backend::Sqlite;
        Leadership {
            sole,
            ..Leadership::new(db, ttl)
        }
    }

    fn set_held_until(&self, until: Option<Instant>) -> Option<Instant> {
        let mut held = self
            .held_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *held, until)
    }

    /// This replica's holder id (what `leases.holder` says while it leads).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether this replica held the lease at its last renewal.
    pub fn is_leader(&self) -> bool {
        if self.sole {
            return true;
        }
        let held = self
            .held_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.is_some_and(|until| Instant::now() < until)
    }

    /// Takes the lease if it is free or expired, renews it if this replica holds it.
    /// `Ok(true)`: this replica leads until `ttl` from now.
    pub async fn try_hold(&self) -> Result<bool, ServerError> {
        if self.sole {
            return Ok(true);
        }
        let asked = Instant::now();
        let now = chrono::Utc::now().timestamp_millis();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        // One statement: of replicas racing for an expired lease, the database's row lock
        // (PostgreSQL) or its single writer (SQLite) lets exactly one update it.
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (job, holder, expires_ms) VALUES ($1, $2, $3)
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
             WHERE leases.holder = excluded.holder OR leases.expires_ms < $4
             RETURNING holder",
        )
        .bind(JOB)
        .bind(&self.holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?;
        let held = won.is_some();
        let until = held.then(|| asked + self.ttl - self.ttl / 6);
        let was = self.set_held_until(until).is_some();
        if held && !was {
            tracing::info!(holder = %self.holder, "this replica now does the periodic work");
        } else if was && !held {
            tracing::warn!(holder = %self.holder, "another replica took the periodic work");
        }
        Ok(held)
    }

    /// Gives the lease up (a clean shutdown), so another replica takes it at once.
    pub async fn release(&self) -> Result<(), ServerError> {
        self.set_held_until(None);
        if self.sole {
            return Ok(());
        }
        sqlx::query("DELETE FROM leases WHERE job = $1 AND holder = $2")
            .bind(JOB)
            .bind(&self.holder)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Tries to take or renew the lease every `ttl / 3`, until aborted. A failed renewal
    /// (database unreachable) counts as not leading: the work is skipped, never doubled.
    pub async fn keep(self) {
        let mut ticker = tokio::time::interval(self.ttl / 3);
        loop {
            ticker.tick().await;
            if let Err(error) = self.try_hold().await {
                self.set_held_until(None);
                tracing::error!(code = error.code(), %error, "could not renew the leader lease");
            }
        }
    }
}

impl Db {
    /// The replica holding the unexpired leader lease (its holder id, `PID-RANDOM`), if any:
    /// which replica does the periodic work now.
    pub async fn leader(&self) -> Result<Option<String>, ServerError> {
        Ok(
            sqlx::query_scalar("SELECT holder FROM leases WHERE job = $1 AND expires_ms >= $2")
                .bind(JOB)
                .bind(chrono::Utc::now().timestamp_millis())
                .fetch_optional(self.pool())
                .await?,
        )
    }
}
