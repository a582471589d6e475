//! Rollout rows: create, list, show (with the per-wave counters and the changes), the
//! operator's pause/resume/halt, the hold the signing service applies, and `explain`.

use chrono::{DateTime, Utc};
use ferry_personalize::RolloutHold;
use ferry_types::{DeviceClass, DeviceId, Version};
use serde::Serialize;
use sqlx::Row;

use super::cohort::{DeviceFacts, Selector};
use super::entitle::Entitled;
use super::waves::{Waves, place, wilson_lower};
use super::{Action, NewRollout, RolloutError, RolloutState};
use crate::ServerError;
use crate::db::{Backend, Conn, Db, DbRow};
use crate::fleet::time_of;

/// A rollout as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    /// Id (also what places devices).
    pub id: i64,
    /// Device class.
    pub class: String,
    /// The release's version.
    pub version: String,
    /// The audience given at creation (part of `cohort`).
    pub audience: Option<String>,
    /// The cohort (`tenant:acme,region:eu,tag:beta,audience:seed`; none: every device of
    /// the class).
    pub cohort: Option<String>,
    /// The wave spec.
    pub waves: String,
    /// The halt rule's threshold.
    pub threshold: f64,
    /// The halt rule's fewest attempts.
    pub min_attempts: i64,
    /// Running, paused or halted.
    pub state: RolloutState,
    /// When it was created and started (Unix ms).
    pub started_ms: i64,
    /// Time spent paused or halted, not counting the current hold (ms).
    pub held_ms: i64,
    /// Since when it is paused or halted (Unix ms).
    pub held_since_ms: Option<i64>,
    /// Counting epoch: a resume after a halt starts a new one.
    pub epoch: i64,
    /// When its state last changed (Unix ms).
    pub changed_ms: i64,
    /// After it (Unix ms) devices install at their first allowed moment.
    pub deadline_ms: Option<i64>,
    /// How long a device may defer (ms; none: up to the deadline).
    pub max_deferral_ms: Option<i64>,
    /// Every wave open at once, no deferral.
    pub emergency: bool,
}

impl Rollout {
    fn from_row(row: &DbRow) -> Result<Rollout, ServerError> {
        let state: String = row.try_get("state")?;
        Ok(Rollout {
            id: row.try_get("id")?,
            class: row.try_get("class")?,
            version: row.try_get("version")?,
            audience: row.try_get("audience")?,
            cohort: row.try_get("cohort")?,
            waves: row.try_get("waves")?,
            threshold: row.try_get("threshold")?,
            min_attempts: row.try_get("min_attempts")?,
            state: RolloutState::parse(&state).ok_or_else(|| {
                ServerError::Database(sqlx::Error::Protocol(format!(
                    "rollout state {state:?} is not one this server knows"
                )))
            })?,
            started_ms: row.try_get("started_ms")?,
            held_ms: row.try_get("held_ms")?,
            held_since_ms: row.try_get("held_since_ms")?,
            epoch: row.try_get("epoch")?,
            changed_ms: row.try_get("changed_ms")?,
            deadline_ms: row.try_get("deadline_ms")?,
            max_deferral_ms: row.try_get("max_deferral_ms")?,
            emergency: row.try_get::<i64, _>("emergency")? != 0,
        })
    }

    /// The cohort's selector (stored selectors were checked at creation; a rollout made
    /// before cohorts has only its audience).
    pub fn selector(&self) -> Selector {
        match (&self.cohort, &self.audience) {
            (Some(cohort), _) => cohort.parse().unwrap_or_default(),
            (None, Some(audience)) => Selector::audience(audience),
            (None, None) => Selector::all(),
        }
    }

    /// The parsed waves (stored specs were checked at creation).
    pub fn schedule(&self) -> Waves {
        self.waves.parse().unwrap_or_else(|_| Waves::all_at_once())
    }

    /// Time on the rollout's clock at `now_ms`: since the start, minus time held.
    pub fn elapsed_ms(&self, now_ms: i64) -> i64 {
        let holding = self.held_since_ms.map_or(0, |since| now_ms - since);
        (now_ms - self.started_ms - self.held_ms - holding).max(0)
    }

    /// When `wave` opens if the rollout keeps running from `now_ms` (now if it is open).
    pub fn opens_at(&self, wave: u32, now_ms: i64) -> DateTime<Utc> {
        let wait = (self.schedule().offset_of(wave) - self.elapsed_ms(now_ms)).max(0);
        time_of(now_ms.saturating_add(wait)).unwrap_or_else(Utc::now)
    }

    /// A device's wave.
    pub fn wave_of(&self, device_id: &DeviceId) -> u32 {
        self.schedule().wave_of(place(self.id, device_id))
    }

    /// Why this rollout holds the device `facts` describe back at `now_ms`, or `None` when
    /// its wave is open.
    pub fn hold(
        &self,
        device_id: &DeviceId,
        facts: &DeviceFacts,
        now_ms: i64,
    ) -> Option<RolloutHold> {
        let rollout_id = self.id;
        let selector = self.selector();
        if !selector.matches(facts) {
            return Some(RolloutHold::NotInCohort {
                rollout_id,
                cohort: selector.to_string(),
            });
        }
        match self.state {
            RolloutState::Halted => return Some(RolloutHold::Halted { rollout_id }),
            RolloutState::Paused => return Some(RolloutHold::Paused { rollout_id }),
            RolloutState::Running => {}
        }
        if self.emergency {
            return None;
        }
        let wave = self.wave_of(device_id);
        (wave >= self.schedule().open_waves(self.elapsed_ms(now_ms))).then(|| RolloutHold::NotYet {
            rollout_id,
            wave,
            opens_at: self.opens_at(wave, now_ms),
        })
    }
}

/// One wave's counters as `rollout show` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct WaveCount {
    /// 0-based.
    pub wave: u32,
    /// Cumulative share of the cohort, percent.
    pub percent: f64,
    /// Offset of its opening on the rollout's clock (ms).
    pub offset_ms: i64,
    /// Whether it is open now.
    pub open: bool,
    /// When it opened (replayed from the pauses, halts and resumes), or when it opens if
    /// the rollout keeps running.
    pub opens_at: DateTime<Utc>,
    /// Devices that got a ticket and started (this epoch).
    pub attempts: u64,
    /// Of those, failed with a code blaming the release, rolled back, failed a health check
    /// in the post-commit watch, or silent.
    pub failures: u64,
    /// Failures by kind (`failed`, `rolled_back`, `health`, `silent`).
    pub by_kind: std::collections::BTreeMap<String, u64>,
    /// The lower bound of the 95 % Wilson interval of the failure rate.
    pub lower_bound: f64,
}

/// A pause, resume or halt, with the numbers that triggered an automatic halt.
#[derive(Debug, Clone, Serialize)]
pub struct HaltRecord {
    /// When (Unix ms).
    pub at_ms: i64,
    /// `pause`, `resume` or `halt`.
    pub action: String,
    /// `operator` or `halt-rule`.
    pub by: String,
    /// The wave that crossed the threshold.
    pub wave: Option<i64>,
    /// Its attempts then.
    pub attempts: Option<i64>,
    /// Its failures then.
    pub failures: Option<i64>,
    /// The Wilson lower bound then.
    pub lower_bound: Option<f64>,
    /// The threshold it crossed.
    pub threshold: Option<f64>,
    /// Why, in words.
    pub reason: Option<String>,
}

/// `rollout show`: the rollout, its waves with counters, its changes.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    /// The rollout.
    #[serde(flatten)]
    pub rollout: Rollout,
    /// Per wave.
    pub wave_counts: Vec<WaveCount>,
    /// Pauses, resumes and halts, oldest first.
    pub changes: Vec<HaltRecord>,
}

/// `rollout explain DEVICE`: for one rollout of the device's class (or a release it is not
/// entitled to), the one reason.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The rollout (`None`: a release without one the device is not entitled to).
    pub rollout_id: Option<i64>,
    /// Its release.
    pub version: String,
    /// `ALREADY_INSTALLED`, `OPEN`, or the refusal code the signing service would give.
    pub code: String,
    /// The device's place in the rollout.
    pub place: Option<u32>,
    /// Its wave.
    pub wave: Option<u32>,
    /// When its wave opens (or opened) if the rollout keeps running.
    pub opens_at: Option<DateTime<Utc>>,
    /// In words.
    pub reason: String,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Db {
    /// Creates a rollout (running from now).
    pub async fn create_rollout(&self, new: &NewRollout) -> Result<Rollout, ServerError> {
        let class: DeviceClass = super::parse_field("device class", &new.class)?;
        let version: Version = super::parse_field("version", &new.version)?;
        let waves: Waves = new.waves.as_deref().unwrap_or("100%@0").parse()?;
        let audience = new.audience.as_deref().filter(|a| !a.is_empty());
        let cohort = match (new.cohort.as_deref().filter(|c| !c.is_empty()), audience) {
            (Some(c), Some(a)) => Some(format!("{c},audience:{a}")),
            (Some(c), None) => Some(c.to_owned()),
            (None, Some(a)) => Some(format!("audience:{a}")),
            (None, None) => None,
        };
        let cohort = cohort
            .map(|c| c.parse::<Selector>())
            .transpose()?
            .filter(|s| !s.is_all())
            .map(|s| s.to_string());
        let now = now_ms();
        let deadline_ms = new
            .deadline
            .as_deref()
            .map(|d| parse_deadline(d, now))
            .transpose()?;
        let max_deferral_ms = new
            .max_deferral
            .as_deref()
            .map(|d| {
                super::waves::parse_offset(d).ok_or_else(|| RolloutError::Invalid {
                    what: "max-deferral",
                    value: d.to_owned(),
                    why: "it must be a time like 0, 30m, 4h or 1d".into(),
                })
            })
            .transpose()?;
        let threshold = new.threshold.unwrap_or(super::DEFAULT_THRESHOLD);
        if !(0.0..1.0).contains(&threshold) {
            return Err(RolloutError::Invalid {
                what: "threshold",
                value: threshold.to_string(),
                why: "it must be at least 0 and below 1".into(),
            }
            .into());
        }
        let min_attempts = new.min_attempts.unwrap_or(super::DEFAULT_MIN_ATTEMPTS);
        if min_attempts == 0 || min_attempts > 1_000_000 {
            return Err(RolloutError::Invalid {
                what: "min-attempts",
                value: min_attempts.to_string(),
                why: "it must be between 1 and 1000000".into(),
            }
            .into());
        }
        let mut tx = self.begin_write().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM rollouts WHERE class = $1 AND version = $2")
                .bind(class.as_str())
                .bind(version.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = existing {
            return Err(RolloutError::Exists {
                class: class.to_string(),
                version: version.to_string(),
                id,
            }
            .into());
        }
        let row = sqlx::query(
            "INSERT INTO rollouts (class, version, audience, waves, threshold, min_attempts, state,
                created_ms, started_ms, changed_ms, cohort, deadline_ms, max_deferral_ms,
                emergency)
             VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $9, $10, $11, $12, $13)
             RETURNING *",
        )
        .bind(class.as_str())
        .bind(version.to_string())
        .bind(audience)
        .bind(waves.to_string())
        .bind(threshold)
        .bind(min_attempts as i64)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(cohort)
        .bind(deadline_ms)
        .bind(max_deferral_ms)
        .bind(i64::from(new.emergency))
        .fetch_one(&mut *tx)
        .await?;
        let rollout = Rollout::from_row(&row)?;
        tx.commit().await?;
        Ok(rollout)
    }

    /// Every rollout, newest first.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>, ServerError> {
        let rows = sqlx::query("SELECT * FROM rollouts ORDER BY id DESC")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(Rollout::from_row).collect()
    }

    /// One rollout.
    pub async fn rollout(&self, id: i64) -> Result<Rollout, ServerError> {
        let mut conn = self.pool().acquire().await?;
        load(&mut conn, id).await
    }

    /// One rollout with its per-wave counters and changes.
    pub async fn rollout_view(&self, id: i64) -> Result<RolloutView, ServerError> {
        let mut conn = self.pool().acquire().await?;
        let rollout = load(&mut conn, id).await?;
        let wave_counts = wave_counts(&mut conn, &rollout, now_ms()).await?;
        let rows = sqlx::query(
            "SELECT * FROM rollout_changes WHERE rollout_id = $1 ORDER BY at_ms, rowid",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let changes = rows
            .iter()
            .map(|r| {
                Ok(HaltRecord {
                    at_ms: r.try_get("at_ms")?,
                    action: r.try_get("action")?,
                    by: r.try_get("by")?,
                    wave: r.try_get("wave")?,
                    attempts: r.try_get("attempts")?,
                    failures: r.try_get("failures")?,
                    lower_bound: r.try_get("lower_bound")?,
                    threshold: r.try_get("threshold")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(RolloutView {
            rollout,
            wave_counts,
            changes,
        })
    }

    /// An operator's pause, resume or halt. Pause: running → paused; halt: running or
    /// paused → halted; resume: paused or halted → running (after a halt, counting starts a
    /// new epoch). The clock stops while held. One conditional statement: two operators (or
    /// an operator and the halt rule) racing change the state once.
    pub async fn act_on_rollout(&self, id: i64, action: Action) -> Result<Rollout, ServerError> {
        self.act_on_rollout_by(id, action, "operator").await
    }

    /// [`Db::act_on_rollout`], recording `by` (the dashboard's signed-in user) as who acted.
    pub async fn act_on_rollout_by(
        &self,
        id: i64,
        action: Action,
        by: &str,
    ) -> Result<Rollout, ServerError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let sql = match action {
            Action::Pause => {
                "UPDATE rollouts SET state = 'paused', held_since_ms = $1, changed_ms = $1
                 WHERE id = $2 AND state = 'running' RETURNING *"
            }
            Action::Halt => {
                "UPDATE rollouts SET state = 'halted', held_since_ms = COALESCE(held_since_ms, $1),
                    changed_ms = $1
                 WHERE id = $2 AND state IN ('running', 'paused') RETURNING *"
            }
            Action::Resume => {
                "UPDATE rollouts SET state = 'running',
                    held_ms = held_ms + ($1 - COALESCE(held_since_ms, $1)), held_since_ms = NULL,
                    epoch = epoch + CASE WHEN state = 'halted' THEN 1 ELSE 0 END, changed_ms = $1
                 WHERE id = $2 AND state IN ('paused', 'halted') RETURNING *"
            }
        };
        let row = sqlx::query(sql)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            let rollout = load(&mut tx, id).await?;
            return Err(RolloutError::WrongState {
                id,
                state: rollout.state.as_str(),
                action: action.as_str(),
            }
            .into());
        };
        sqlx::query("INSERT INTO rollout_changes (rollout_id, at_ms, action, \"by\") VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(now)
            .bind(action.as_str())
            .bind(by)
            .execute(&mut *tx)
            .await?;
        let rollout = Rollout::from_row(&row)?;
        tx.commit().await?;
        Ok(rollout)
    }

    /// The rollout of the release `build_id` of `class`, if it has one.
    pub async fn rollout_of_build(
        &self,
        class: &str,
        build_id: &str,
    ) -> Result<Option<Rollout>, ServerError> {
        let row = sqlx::query(
            "SELECT r.* FROM rollouts r
             JOIN releases rel ON rel.class = r.class AND rel.version = r.version
             WHERE rel.class = $1 AND rel.build_id = $2 LIMIT 1",
        )
        .bind(class)
        .bind(build_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(Rollout::from_row).transpose()
    }

    /// The audience `device_id` last reported, if it reported.
    pub async fn reported_audience(
        &self,
        device_id: &DeviceId,
    ) -> Result<Option<String>, ServerError> {
        // The report body is JSON text on both backends; each reads a field its own way.
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT json_extract(body, '$.audience_type') FROM event_reports
                 WHERE device_id = $1 ORDER BY sequence DESC LIMIT 1"
            }
            Backend::Postgres => {
                "SELECT CAST(body AS JSONB) ->> 'audience_type' FROM event_reports
                 WHERE device_id = $1 ORDER BY sequence DESC LIMIT 1"
            }
        };
        Ok(sqlx::query_scalar(sql)
            .bind(device_id.to_string())
            .fetch_optional(self.pool())
            .await?
            .flatten())
    }

    /// Why the server holds `device_id` back from build `build_id` of `class` now (what
    /// the signing service refuses with): not entitled to the release, or a rollout of it
    /// holds the device back; `None` when it may have it.
    pub async fn rollout_hold(
        &self,
        device_id: &DeviceId,
        class: &str,
        build_id: &str,
    ) -> Result<Option<RolloutHold>, ServerError> {
        let version: Option<String> = sqlx::query_scalar(
            "SELECT version FROM releases WHERE class = $1 AND build_id = $2 LIMIT 1",
        )
        .bind(class)
        .bind(build_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(version) = version else {
            // Not a release: the signing rules refuse it (NOT_SIGNED) before any hold.
            return Ok(None);
        };
        let rollout = self.rollout_of_build(class, build_id).await?;
        let audience = rollout
            .as_ref()
            .is_some_and(|r| r.selector().needs_audience());
        let facts = self.cohort_facts(device_id, audience).await?;
        if let Entitled::No { .. } = self.entitled(class, &version, &facts).await? {
            return Ok(Some(RolloutHold::NotEntitled));
        }
        Ok(rollout.and_then(|r| r.hold(device_id, &facts, now_ms())))
    }

    /// `explain DEVICE`: for each rollout of the device's class, the one reason it has or
    /// has not got the release.
    pub async fn explain(&self, device_id: &DeviceId) -> Result<Vec<Explanation>, ServerError> {
        let id = device_id.to_string();
        let class: Option<String> =
            sqlx::query_scalar("SELECT device_class FROM devices WHERE device_id = $1")
                .bind(&id)
                .fetch_optional(self.pool())
                .await?;
        let Some(class) = class else {
            return Err(ServerError::NotFound(format!("enrolled device {id}")));
        };
        let running: Option<String> =
            sqlx::query_scalar("SELECT version FROM device_state WHERE device_id = $1")
                .bind(&id)
                .fetch_optional(self.pool())
                .await?
                .flatten();
        let facts = self.cohort_facts(device_id, true).await?;
        let now = now_ms();
        let mut out = Vec::new();
        let rollouts: Vec<Rollout> = self
            .rollouts()
            .await?
            .into_iter()
            .filter(|r| r.class == class)
            .collect();
        // Releases without a rollout that the device is not entitled to.
        for release in self.releases(&class).await? {
            let version = release.version.to_string();
            if rollouts.iter().any(|r| r.version == version)
                || running.as_deref() == Some(version.as_str())
            {
                continue;
            }
            if let Entitled::No { revoked } = self.entitled(&class, &version, &facts).await? {
                out.push(Explanation {
                    rollout_id: None,
                    version,
                    code: "NOT_ENTITLED".into(),
                    place: None,
                    wave: None,
                    opens_at: None,
                    reason: not_entitled_reason(revoked),
                });
            }
        }
        for rollout in rollouts {
            let wave = rollout.wave_of(device_id);
            let opens_at = rollout.opens_at(wave, now);
            let entitled = self.entitled(&class, &rollout.version, &facts).await?;
            let (code, reason) = if running.as_deref() == Some(rollout.version.as_str()) {
                (
                    "ALREADY_INSTALLED".to_owned(),
                    format!("the device runs {}", rollout.version),
                )
            } else if let Entitled::No { revoked } = entitled {
                ("NOT_ENTITLED".to_owned(), not_entitled_reason(revoked))
            } else {
                match rollout.hold(device_id, &facts, now) {
                    None => (
                        "OPEN".to_owned(),
                        format!(
                            "wave {wave} is open: the device may install {}",
                            rollout.version
                        ),
                    ),
                    Some(hold) => {
                        let refusal = hold_refusal(&hold);
                        (refusal.0.to_owned(), refusal.1)
                    }
                }
            };
            out.push(Explanation {
                rollout_id: Some(rollout.id),
                version: rollout.version.clone(),
                code,
                place: Some(place(rollout.id, device_id)),
                wave: Some(wave),
                opens_at: Some(opens_at),
                reason,
            });
        }
        Ok(out)
    }
}

/// A deadline: RFC 3339, or a time from `now_ms` like `3d`; it must be in the future.
fn parse_deadline(text: &str, now_ms: i64) -> Result<i64, RolloutError> {
    let invalid = |why: &str| RolloutError::Invalid {
        what: "deadline",
        value: text.to_owned(),
        why: why.to_owned(),
    };
    let at = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.timestamp_millis(),
        Err(_) => {
            now_ms
                + super::waves::parse_offset(text).ok_or_else(|| {
                    invalid("it must be an RFC 3339 time or a time from now like 4h or 3d")
                })?
        }
    };
    if at <= now_ms {
        return Err(invalid("it is not in the future"));
    }
    Ok(at)
}

fn not_entitled_reason(revoked: Option<i64>) -> String {
    match revoked {
        Some(id) => format!("entitlement {id}, which covered the device, was revoked"),
        None => "no entitlement of the release covers the device's tenant, region or tags".into(),
    }
}

/// A hold's code and sentence, as the signing service would refuse.
fn hold_refusal(hold: &RolloutHold) -> (&'static str, String) {
    match hold {
        RolloutHold::NotYet { wave, opens_at, .. } => (
            "ROLLOUT_NOT_YET",
            format!(
                "its wave {wave} opens at {}",
                opens_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        ),
        RolloutHold::Paused { .. } => ("ROLLOUT_PAUSED", "the rollout is paused".into()),
        RolloutHold::Halted { .. } => ("ROLLOUT_HALTED", "the rollout is halted".into()),
        RolloutHold::NotInCohort { cohort, .. } => (
            "ROLLOUT_NOT_IN_COHORT",
            format!("the cohort {cohort} does not include the device"),
        ),
        RolloutHold::NotEntitled => ("NOT_ENTITLED", not_entitled_reason(None)),
    }
}

pub(super) async fn load(conn: &mut Conn, id: i64) -> Result<Rollout, ServerError> {
    let row = sqlx::query("SELECT * FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Rollout::from_row(&row),
        None => Err(RolloutError::NotFound { id }.into()),
    }
}

/// Per-wave counters of the rollout's current epoch.
pub(super) async fn wave_counts(
    conn: &mut Conn,
    rollout: &Rollout,
    now_ms: i64,
) -> Result<Vec<WaveCount>, ServerError> {
    let rows = sqlx::query(
        "SELECT wave, COALESCE(failure, '') AS failure, COUNT(*) AS n FROM rollout_devices
         WHERE rollout_id = $1 AND epoch = $2 GROUP BY wave, failure",
    )
    .bind(rollout.id)
    .bind(rollout.epoch)
    .fetch_all(&mut *conn)
    .await?;
    let changes: Vec<(i64, String)> = sqlx::query_as(
        "SELECT at_ms, action FROM rollout_changes WHERE rollout_id = $1 ORDER BY at_ms",
    )
    .bind(rollout.id)
    .fetch_all(&mut *conn)
    .await?;
    let schedule = rollout.schedule();
    let open = schedule.open_waves(rollout.elapsed_ms(now_ms));
    let opened = |w: &super::waves::Wave| {
        super::waves::opened_at(rollout.started_ms, &changes, w.offset_ms).and_then(time_of)
    };
    let mut counts: Vec<WaveCount> = schedule
        .waves()
        .iter()
        .enumerate()
        .map(|(i, w)| WaveCount {
            wave: i as u32,
            percent: f64::from(w.share) / 100.0,
            offset_ms: w.offset_ms,
            open: (i as u32) < open,
            opens_at: ((i as u32) < open)
                .then(|| opened(w))
                .flatten()
                .unwrap_or_else(|| rollout.opens_at(i as u32, now_ms)),
            attempts: 0,
            failures: 0,
            by_kind: Default::default(),
            lower_bound: 0.0,
        })
        .collect();
    for row in rows {
        let wave: i64 = row.try_get("wave")?;
        let failure: String = row.try_get("failure")?;
        let n: i64 = row.try_get("n")?;
        let Some(count) = counts.get_mut(wave as usize) else {
            continue;
        };
        count.attempts += n as u64;
        if !failure.is_empty() {
            count.failures += n as u64;
            *count.by_kind.entry(failure).or_default() += n as u64;
        }
    }
    for count in &mut counts {
        count.lower_bound = wilson_lower(count.failures, count.attempts);
    }
    Ok(counts)
}
