//! Enrollment, devices, signing windows and used nonces in SQL (`migrations/0002`).
//!
//! Nonces go through one writer task ([`NonceWriter`]) that commits many per
//! transaction: the `nonces` primary key is the uniqueness check (an insert that adds
//! no row is a reused nonce), and a ticket is only returned once its nonce is durable.

use chrono::{SecondsFormat, Utc};
use ferry_personalize::{DeviceId, EnrollmentToken, Identity, Sha256Hash};
use serde::Serialize;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::ServerError;
use crate::db::Db;

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
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Db {
    /// Makes a one-time enrollment token; only its hash is stored.
    pub async fn create_enrollment_token(&self) -> Result<EnrollmentToken, ServerError> {
        let token = EnrollmentToken::random();
        sqlx::query("INSERT INTO enrollment_tokens (token_sha256, created_at) VALUES (?, ?)")
            .bind(token.sha256().to_string())
            .bind(now_text())
            .execute(self.pool())
            .await?;
        Ok(token)
    }

    /// Spends `token` and records `identity` with its new credential, in one
    /// transaction. `Ok(false)`: the token is unknown or already used.
    pub async fn enroll(
        &self,
        token: &EnrollmentToken,
        identity: &Identity,
        credential_id: &str,
    ) -> Result<bool, ServerError> {
        let mut tx = self.pool().begin().await?;
        let now = now_text();
        let spent = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE token_sha256 = ? AND used_at IS NULL",
        )
        .bind(&now)
        .bind(identity.device_id.to_string())
        .bind(token.sha256().to_string())
        .execute(&mut *tx)
        .await?;
        if spent.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT OR REPLACE INTO devices (device_id, board_id, chip_id, hardware_uuid, device_class,
                credential_id, enrolled_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(identity.device_id.to_string())
        .bind(i64::from(identity.board_id))
        .bind(i64::from(identity.chip_id))
        .bind(identity.hardware_uuid.to_string())
        .bind(identity.device_class.as_str())
        .bind(credential_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
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
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE device_id = ?",
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
            "INSERT INTO signing_windows (class, build_id, open, changed_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (class, build_id) DO UPDATE SET open = excluded.open, changed_at = excluded.changed_at",
        )
        .bind(class)
        .bind(build_id)
        .bind(open)
        .bind(now_text())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The device's enrollment and the build's signing window, in one query. `None`:
    /// the device never enrolled.
    pub async fn device_facts(
        &self,
        device_id: &DeviceId,
        build_id: &str,
    ) -> Result<Option<DeviceFacts>, ServerError> {
        let row = sqlx::query(
            "SELECT d.board_id, d.chip_id, d.hardware_uuid, d.device_class, d.credential_id, d.revoked_at,
                (SELECT w.open FROM signing_windows w WHERE w.class = d.device_class AND w.build_id = ?2) AS window_open,
                EXISTS (SELECT 1 FROM releases r WHERE r.class = d.device_class AND r.build_id = ?2) AS published
             FROM devices d WHERE d.device_id = ?1",
        )
        .bind(device_id.to_string())
        .bind(build_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let corrupt = |what: &str| {
            ServerError::Database(sqlx::Error::Decode(format!("bad {what} in devices").into()))
        };
        let identity = Identity {
            device_id: *device_id,
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
        let window: Option<bool> = row.try_get("window_open")?;
        let published: bool = row.try_get("published")?;
        Ok(Some(DeviceFacts {
            identity,
            credential_id: row.try_get("credential_id")?,
            revoked: row.try_get::<Option<String>, _>("revoked_at")?.is_some(),
            window_open: window.unwrap_or(published),
        }))
    }
}

struct NonceInsert {
    nonce_sha256: Sha256Hash,
    device_id: DeviceId,
    done: oneshot::Sender<Result<bool, String>>,
}

/// Most nonces committed in one transaction.
pub const NONCE_BATCH: usize = 256;

/// The one writer of the `nonces` table: requests queue here, and each round commits
/// everything queued in one `INSERT OR IGNORE … RETURNING` statement (one transaction,
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
        nonce_sha256: Sha256Hash,
        device_id: DeviceId,
    ) -> Result<bool, ServerError> {
        let (done, answer) = oneshot::channel();
        let gone = || ServerError::Overloaded {
            cause: "the nonce writer stopped".into(),
        };
        self.queue
            .send(NonceInsert {
                nonce_sha256,
                device_id,
                done,
            })
            .await
            .map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|reason| ServerError::Database(sqlx::Error::Protocol(reason)))
    }
}

async fn insert_batch(
    db: &Db,
    batch: &[NonceInsert],
) -> Result<std::collections::HashSet<[u8; 32]>, String> {
    let now = Utc::now().timestamp();
    let mut builder =
        sqlx::QueryBuilder::new("INSERT OR IGNORE INTO nonces (nonce_sha256, device_id, used_at) ");
    builder.push_values(batch, |mut row, insert| {
        row.push_bind(insert.nonce_sha256.0.to_vec())
            .push_bind(insert.device_id.to_string())
            .push_bind(now);
    });
    builder.push(" RETURNING nonce_sha256");
    let rows = builder
        .build()
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
