//! Enrollment, devices, signing windows and used nonces in SQL (`migrations/0002`).
//!
//! Nonces go through one writer task ([`NonceWriter`]) that commits many per
//! transaction: the `nonces` primary key is the uniqueness check (an insert that adds
//! no row is a reused nonce), and a ticket is only returned once its nonce is durable.
//! The facts of ticket requests go through one reader task ([`FactsReader`]) that answers
//! the lookups queued meanwhile with one query.

use chrono::{SecondsFormat, Utc};
use ferry_personalize::EnrollmentToken;
use ferry_types::{DeviceClass, DeviceId, Identity, RootHash, Sha256};
use serde::Serialize;
use sqlx::Row;
use tokio::sync::mpsc;

use crate::ServerError;
use crate::db::{Backend, Db, DbRow, Placeholders, get_flag};
use crate::rollouts::cohort::DeviceFacts as CohortFacts;
use crate::rollouts::entitle::{DeviceTags, load_device_tags, store_device_tags};

/// A device as the admin sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    /// Device id.
    pub device_id: String,
    /// Device class.
    pub device_class: String,
    /// Board id, 8 hex digits.
    pub board_id: String,
    /// Chip id, 8 hex digits.
    pub chip_id: String,
    /// Hardware UUID.
    pub hardware_uuid: String,
    /// When it enrolled (RFC 3339).
    pub enrolled_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// Which devices an enrollment token may enroll, fixed when it is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenScope {
    /// Only this device id (any new device when `None`).
    pub device_id: Option<DeviceId>,
    /// Only a device of this class (any class when `None`).
    pub device_class: Option<DeviceClass>,
    /// An operator's re-enrollment of `device_id`: replaces its identity and credential and
    /// lifts its revocation. Without it, enrolling over an existing device is refused.
    pub reenroll: bool,
    /// The operator's tenant, region and tags the enrolled device gets, in the enrollment's
    /// transaction (a field left `None` stays as it was).
    pub tags: DeviceTags,
}

/// What the database says about a device and a build, for the signing rules.
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    /// The identity recorded at enrollment.
    pub identity: Identity,
    /// The id of its current credential.
    pub credential_id: String,
    /// Whether it is revoked.
    pub revoked: bool,
    /// Whether the build's signing window is open for its class.
    pub window_open: bool,
    /// The seal root hashes of the build's releases for the device's class (the system
    /// component of each): the only root hashes a ticket for that build may carry.
    pub published_roots: Vec<RootHash>,
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Db {
    /// Makes a one-time enrollment token limited to `scope`; only its hash is stored.
    pub async fn create_enrollment_token(
        &self,
        scope: &TokenScope,
    ) -> Result<EnrollmentToken, ServerError> {
        if scope.reenroll && scope.device_id.is_none() {
            return Err(ServerError::Invalid {
                what: "enrollment token",
                value: "reenroll".into(),
                why: "a re-enrollment token names the device it re-enrolls (--device ID)".into(),
            });
        }
        // Checked now, so that a bad tag is refused to the operator, not to the device.
        let mut checked = CohortFacts::default();
        scope.tags.apply(&mut checked)?;
        let given = |field: Option<&String>, value: Option<&String>| {
            field.map(|_| value.cloned().unwrap_or_default())
        };
        let tags: Vec<&str> = checked.tags.iter().map(String::as_str).collect();
        let token = EnrollmentToken::random();
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_sha256, created_at, device_id, device_class,
                reenroll, tenant, region, tags)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token.sha256().to_string())
        .bind(now_text())
        .bind(scope.device_id.map(|id| id.to_string()))
        .bind(scope.device_class.as_ref().map(DeviceClass::as_str))
        .bind(i64::from(scope.reenroll))
        .bind(given(scope.tags.tenant.as_ref(), checked.tenant.as_ref()))
        .bind(given(scope.tags.region.as_ref(), checked.region.as_ref()))
        .bind(scope.tags.tags.as_ref().map(|_| tags.join(",")))
        .execute(self.pool())
        .await?;
        Ok(token)
    }

    /// Spends `token` and records `identity` with its new credential, in one transaction.
    ///
    /// Refused, the token unspent: `ENROLLMENT_TOKEN_INVALID` (unknown or spent),
    /// `ENROLLMENT_TOKEN_OTHER_DEVICE` (the token is bound to another device id or class),
    /// `DEVICE_ALREADY_ENROLLED` (the device id is enrolled, revoked or not, and the token is
    /// not an operator's re-enrollment token for it). Device ids, boards, chips and hardware
    /// UUIDs are not secrets, so nothing but an explicit re-enrollment may replace a device's
    /// row (its credential) or lift its revocation.
    pub async fn enroll(
        &self,
        token: &EnrollmentToken,
        identity: &Identity,
        credential_id: &str,
    ) -> Result<(), ServerError> {
        let mut tx = self.begin_write().await?;
        let token_sha256 = token.sha256().to_string();
        let device_id = identity.device_id.to_string();
        let scope = sqlx::query(
            "SELECT device_id, device_class, reenroll, tenant, region, tags FROM enrollment_tokens
             WHERE token_sha256 = $1 AND used_at IS NULL",
        )
        .bind(&token_sha256)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ServerError::EnrollmentTokenInvalid)?;
        let bound_device: Option<String> = scope.try_get("device_id")?;
        let bound_class: Option<String> = scope.try_get("device_class")?;
        let reenroll = get_flag(&scope, "reenroll")?;
        let tags_given: Option<String> = scope.try_get("tags")?;
        let token_tags = DeviceTags {
            tenant: scope.try_get("tenant")?,
            region: scope.try_get("region")?,
            tags: tags_given.map(|t| t.split(',').map(str::to_owned).collect()),
        };
        let other_device = bound_device
            .as_ref()
            .is_some_and(|bound| *bound != device_id);
        let other_class = bound_class
            .as_ref()
            .is_some_and(|bound| bound != identity.device_class.as_str());
        if other_device || other_class {
            return Err(ServerError::EnrollmentTokenOtherDevice {
                device_id: identity.device_id,
                device_class: identity.device_class.to_string(),
                bound_device_id: bound_device,
                bound_class,
            });
        }
        let existing = sqlx::query("SELECT revoked_at FROM devices WHERE device_id = $1")
            .bind(&device_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = &existing
            && !reenroll
        {
            return Err(ServerError::DeviceAlreadyEnrolled {
                device_id: identity.device_id,
                revoked: row.try_get::<Option<String>, _>("revoked_at")?.is_some(),
            });
        }
        let now = now_text();
        let spent = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $1, used_by = $2 WHERE token_sha256 = $3 AND used_at IS NULL",
        )
        .bind(&now)
        .bind(&device_id)
        .bind(&token_sha256)
        .execute(&mut *tx)
        .await?;
        if spent.rows_affected() != 1 {
            return Err(ServerError::EnrollmentTokenInvalid);
        }
        // A new device is an INSERT (the primary key refuses a second enrollment racing this
        // one); only an operator's re-enrollment token replaces a row and lifts a revocation.
        let statement = if existing.is_some() {
            "UPDATE devices SET board_id = $1, chip_id = $2, hardware_uuid = $3, device_class = $4,
                credential_id = $5, enrolled_at = $6, revoked_at = NULL WHERE device_id = $7"
        } else {
            "INSERT INTO devices (board_id, chip_id, hardware_uuid, device_class, credential_id,
                enrolled_at, device_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        };
        let written = sqlx::query(statement)
            .bind(i64::from(identity.board_id))
            .bind(i64::from(identity.chip_id))
            .bind(identity.hardware_uuid.to_string())
            .bind(identity.device_class.as_str())
            .bind(credential_id)
            .bind(&now)
            .bind(&device_id)
            .execute(&mut *tx)
            .await;
        match written {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ServerError::DeviceAlreadyEnrolled {
                    device_id: identity.device_id,
                    revoked: false,
                });
            }
            Err(e) => return Err(e.into()),
        }
        if !token_tags.is_empty() {
            let mut facts = load_device_tags(&mut tx, &identity.device_id).await?;
            token_tags.apply(&mut facts)?;
            store_device_tags(&mut tx, &identity.device_id, &facts).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many nonces were ever signed.
    pub async fn count_nonces(&self) -> Result<i64, ServerError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM nonces")
            .fetch_one(self.pool())
            .await?)
    }

    /// Every enrolled device, oldest enrollment first.
    pub async fn devices(&self) -> Result<Vec<DeviceRow>, ServerError> {
        let rows = sqlx::query("SELECT * FROM devices ORDER BY enrolled_at, device_id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceRow {
                    device_id: row.try_get("device_id")?,
                    device_class: row.try_get("device_class")?,
                    board_id: format!("{:08x}", row.try_get::<i64, _>("board_id")?),
                    chip_id: format!("{:08x}", row.try_get::<i64, _>("chip_id")?),
                    hardware_uuid: row.try_get("hardware_uuid")?,
                    enrolled_at: row.try_get("enrolled_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes a device. `Ok(false)`: no such device.
    pub async fn revoke(&self, device_id: &DeviceId) -> Result<bool, ServerError> {
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, $1) WHERE device_id = $2",
        )
        .bind(now_text())
        .bind(device_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opens or closes the signing window of `build_id` for `class`.
    pub async fn set_signing_window(
        &self,
        class: &str,
        build_id: &str,
        open: bool,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO signing_windows (class, build_id, open, changed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (class, build_id) DO UPDATE SET open = excluded.open, changed_at = excluded.changed_at",
        )
        .bind(class)
        .bind(build_id)
        .bind(i64::from(open))
        .bind(now_text())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The device's enrollment, the build's signing window and the seal roots it published
    /// for the device's class, in one query. `None`: the device never enrolled.
    pub async fn device_facts(
        &self,
        device_id: &DeviceId,
        build_id: &str,
    ) -> Result<Option<DeviceFacts>, ServerError> {
        let mut facts = self.device_facts_batch(&[(*device_id, build_id)]).await?;
        Ok(facts.pop().flatten())
    }

    /// [`Db::device_facts`] for many (device, build) pairs in one query, answered in the
    /// order asked. The statement is padded to the next power of two of lookups, so a few
    /// prepared statements serve every batch size.
    pub async fn device_facts_batch(
        &self,
        lookups: &[(DeviceId, &str)],
    ) -> Result<Vec<Option<DeviceFacts>>, ServerError> {
        let padded = lookups.len().max(1).next_power_of_two();
        let mut numbers = Placeholders::default();
        let values = (0..padded)
            .map(|_| {
                format!(
                    "(CAST({} AS BIGINT), CAST({} AS TEXT), CAST({} AS TEXT))",
                    numbers.next(),
                    numbers.next(),
                    numbers.next()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let concat = match self.backend() {
            Backend::Sqlite => "group_concat(r.seal_root, ',')",
            Backend::Postgres => "string_agg(r.seal_root, ',')",
        };
        let sql = format!(
            "WITH q(idx, device_id, build_id) AS (VALUES {values})
             SELECT q.idx, d.board_id, d.chip_id, d.hardware_uuid, d.device_class, d.credential_id,
                d.revoked_at,
                (SELECT w.open FROM signing_windows w
                  WHERE w.class = d.device_class AND w.build_id = q.build_id) AS window_open,
                CASE WHEN EXISTS (SELECT 1 FROM releases r
                  WHERE r.class = d.device_class AND r.build_id = q.build_id) THEN 1 ELSE 0 END
                  AS published,
                (SELECT {concat} FROM releases r
                  WHERE r.class = d.device_class AND r.build_id = q.build_id
                    AND r.seal_root IS NOT NULL) AS published_roots
             FROM q JOIN devices d ON d.device_id = q.device_id"
        );
        // Only placeholders and fixed text: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for idx in 0..padded {
            // Padding rows name no device (ids are 16 hex digits), so they match nothing.
            let (device_id, build_id) = lookups
                .get(idx)
                .map_or((String::new(), ""), |(d, b)| (d.to_string(), *b));
            query = query
                .bind(idx as i64)
                .bind(device_id)
                .bind(build_id.to_owned());
        }
        let rows = query.fetch_all(self.pool()).await?;
        let mut answers: Vec<Option<DeviceFacts>> = vec![None; lookups.len()];
        for row in &rows {
            let idx = usize::try_from(row.try_get::<i64, _>("idx")?).unwrap_or(usize::MAX);
            if let Some((device_id, _)) = lookups.get(idx) {
                answers[idx] = Some(facts_from_row(row, *device_id)?);
            }
        }
        Ok(answers)
    }
}

fn facts_from_row(row: &DbRow, device_id: DeviceId) -> Result<DeviceFacts, ServerError> {
    let corrupt = |what: &str| {
        ServerError::Database(sqlx::Error::Decode(format!("bad {what} in devices").into()))
    };
    let identity = Identity {
        device_id,
        board_id: u32::try_from(row.try_get::<i64, _>("board_id")?)
            .map_err(|_| corrupt("board_id"))?,
        chip_id: u32::try_from(row.try_get::<i64, _>("chip_id")?)
            .map_err(|_| corrupt("chip_id"))?,
        hardware_uuid: row
            .try_get::<String, _>("hardware_uuid")?
            .parse()
            .map_err(|_| corrupt("hardware_uuid"))?,
        device_class: row
            .try_get::<String, _>("device_class")?
            .parse()
            .map_err(|_| corrupt("device_class"))?,
    };
    let window = row
        .try_get::<Option<i64>, _>("window_open")?
        .map(|open| open != 0);
    let published = get_flag(row, "published")?;
    let published_roots = row
        .try_get::<Option<String>, _>("published_roots")?
        .unwrap_or_default()
        .split(',')
        .filter(|text| !text.is_empty())
        .map(|text| text.parse().map_err(|_| corrupt("seal_root")))
        .collect::<Result<Vec<RootHash>, _>>()?;
    Ok(DeviceFacts {
        identity,
        credential_id: row.try_get("credential_id")?,
        revoked: row.try_get::<Option<String>, _>("revoked_at")?.is_some(),
        window_open: window.unwrap_or(published),
        published_roots,
    })
}

struct FactsLookup {
    device_id: DeviceId,
    build_id: String,
    done: crate::batcher::Done<Option<DeviceFacts>>,
}

/// Most facts lookups answered by one query.
pub const FACTS_BATCH: usize = 128;

/// Reads the facts of ticket requests: each round answers every lookup queued meanwhile
/// with one query ([`Db::device_facts_batch`]), so under load the cost of a round trip to
/// SQLite's worker thread is shared by a batch instead of paid per request. Every request
/// still reads the database after it arrived: a revocation or a closed window applies to
/// the next request, across replicas.
#[derive(Debug, Clone)]
pub struct FactsReader {
    queue: mpsc::Sender<FactsLookup>,
}

impl FactsReader {
    /// Starts the reader task on the current runtime.
    pub fn start(db: Db) -> FactsReader {
        let (queue, mut rx) = mpsc::channel::<FactsLookup>(FACTS_BATCH * 16);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(FACTS_BATCH);
            while rx.recv_many(&mut batch, FACTS_BATCH).await > 0 {
                let lookups: Vec<(DeviceId, &str)> = batch
                    .iter()
                    .map(|lookup| (lookup.device_id, lookup.build_id.as_str()))
                    .collect();
                let result = db.device_facts_batch(&lookups).await;
                drop(lookups);
                crate::batcher::answer_all(&mut batch, result, |lookup| lookup.done);
            }
        });
        FactsReader { queue }
    }

    /// The facts of `device_id` for `build_id` ([`Db::device_facts`]).
    pub async fn facts(
        &self,
        device_id: DeviceId,
        build_id: &str,
    ) -> Result<Option<DeviceFacts>, ServerError> {
        crate::batcher::ask(&self.queue, "facts reader", |done| FactsLookup {
            device_id,
            build_id: build_id.to_owned(),
            done,
        })
        .await
    }
}

struct NonceInsert {
    nonce_sha256: Sha256,
    device_id: DeviceId,
    done: crate::batcher::Done<bool>,
}

/// Most nonces committed in one transaction.
pub const NONCE_BATCH: usize = 256;

/// The one writer of the `nonces` table: requests queue here, and each round commits
/// everything queued in one `INSERT … ON CONFLICT DO NOTHING RETURNING` statement (one transaction,
/// one fsync), then tells each request whether its nonce was new.
#[derive(Debug, Clone)]
pub struct NonceWriter {
    queue: mpsc::Sender<NonceInsert>,
}

impl std::fmt::Debug for NonceInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NonceInsert({})", self.nonce_sha256)
    }
}

impl NonceWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(db: Db) -> NonceWriter {
        let (queue, mut rx) = mpsc::channel::<NonceInsert>(NONCE_BATCH * 16);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(NONCE_BATCH);
            while rx.recv_many(&mut batch, NONCE_BATCH).await > 0 {
                let result = insert_batch(&db, &batch).await;
                let mut seen_in_batch = std::collections::HashSet::new();
                for insert in batch.drain(..) {
                    let answer = match &result {
                        Ok(inserted) => Ok(inserted.contains(&insert.nonce_sha256.0)
                            && seen_in_batch.insert(insert.nonce_sha256.0)),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = insert.done.send(answer);
                }
            }
        });
        NonceWriter { queue }
    }

    /// Records the nonce hash; `Ok(true)` if it was new (and is now durable),
    /// `Ok(false)` if it was used before.
    pub async fn record(
        &self,
        nonce_sha256: Sha256,
        device_id: DeviceId,
    ) -> Result<bool, ServerError> {
        crate::batcher::ask(&self.queue, "nonce writer", |done| NonceInsert {
            nonce_sha256,
            device_id,
            done,
        })
        .await
    }
}

async fn insert_batch(
    db: &Db,
    batch: &[NonceInsert],
) -> Result<std::collections::HashSet<[u8; 32]>, String> {
    let now = Utc::now().timestamp();
    // Padded to the next power of two by repeating the last nonce (its copies insert
    // nothing), so a few prepared statements serve every batch size.
    let padded = batch.len().max(1).next_power_of_two();
    let mut numbers = Placeholders::default();
    let values = (0..padded)
        .map(|_| {
            format!(
                "({}, {}, {})",
                numbers.next(),
                numbers.next(),
                numbers.next()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO nonces (nonce_sha256, device_id, used_at) VALUES {values}
         ON CONFLICT DO NOTHING RETURNING nonce_sha256"
    );
    // Only placeholders and fixed text: every value is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    // In nonce order: two replicas' batches that share nonces then wait on each other's
    // rows in the same order, never in a cycle (PostgreSQL would abort one as a deadlock).
    let mut sorted: Vec<&NonceInsert> = batch.iter().collect();
    sorted.sort_by_key(|insert| insert.nonce_sha256.0);
    for insert in (0..padded).filter_map(|idx| sorted.get(idx).or(sorted.last()).copied()) {
        query = query
            .bind(insert.nonce_sha256.0.to_vec())
            .bind(insert.device_id.to_string())
            .bind(now);
    }
    let rows = query
        .fetch_all(db.pool())
        .await
        .map_err(|e| e.to_string())?;
    rows.iter()
        .map(|row| {
            let bytes: Vec<u8> = row.try_get(0).map_err(|e| e.to_string())?;
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "bad nonce hash".to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: u64, class: &str) -> Identity {
        serde_json::from_value(serde_json::json!({
            "device_id": format!("{id:016x}"),
            "board_id": "000000a1",
            "chip_id": "00008103",
            "hardware_uuid": format!("00000000-0000-4000-8000-{id:012x}"),
            "device_class": class,
        }))
        .unwrap()
    }

    /// A batch answers each lookup in order with what the single query says; a failure
    /// means facts went to the wrong request.
    #[tokio::test]
    async fn a_batch_of_facts_answers_each_lookup_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(&tmp.path().join("ferry.db")).await.unwrap();
        for (id, class) in [(0x11, "vm"), (0x22, "gw")] {
            let token = db
                .create_enrollment_token(&TokenScope::default())
                .await
                .unwrap();
            db.enroll(&token, &identity(id, class), "cred")
                .await
                .unwrap();
        }
        db.revoke(&DeviceId::new(0x22).unwrap()).await.unwrap();
        db.set_signing_window("vm", "b1", true).await.unwrap();
        let lookups = [
            (DeviceId::new(0x22).unwrap(), "b1"),
            (DeviceId::new(0x33).unwrap(), "b1"),
            (DeviceId::new(0x11).unwrap(), "b1"),
            (DeviceId::new(0x11).unwrap(), "b2"),
            (DeviceId::new(0x11).unwrap(), "b1"),
        ];
        let batch = db.device_facts_batch(&lookups).await.unwrap();
        assert_eq!(batch.len(), lookups.len());
        for ((device_id, build_id), answer) in lookups.iter().zip(&batch) {
            let single = db.device_facts(device_id, build_id).await.unwrap();
            assert_eq!(
                answer
                    .as_ref()
                    .map(|f| (f.identity.clone(), f.revoked, f.window_open)),
                single.map(|f| (f.identity, f.revoked, f.window_open)),
                "{device_id} {build_id}"
            );
        }
        assert!(batch[0].as_ref().unwrap().revoked);
        assert!(batch[1].is_none(), "never enrolled");
        assert!(batch[2].as_ref().unwrap().window_open);
        assert!(
            !batch[3].as_ref().unwrap().window_open,
            "b2 is not published"
        );
    }
}
