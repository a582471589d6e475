//! Entitlements and device tags (`migrations/0010_entitlements.sql`): the operator's tenant,
//! region and tags of each device, and which devices may get which releases. A release with
//! any grant (revoked or not) is restricted to the devices an unrevoked grant matches; the
//! director says `not_entitled` at the next scan and the signing service refuses the ticket
//! with `NOT_ENTITLED` ([`Db::entitlement_hold`]).

use std::collections::BTreeSet;

use crate::db::DbRow;
use chrono::Utc;
use ferry_types::{DeviceClass, DeviceId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::RolloutError;
use super::cohort::{DeviceFacts, Selector, valid_word};
use crate::ServerError;
use crate::db::Db;

/// One grant.
#[derive(Debug, Clone, Serialize)]
pub struct Entitlement {
    /// Id (what `revoke` names).
    pub id: i64,
    /// Device class.
    pub class: String,
    /// The release's version, or `*` for every release of the class.
    pub version: String,
    /// The devices it covers (cohort syntax).
    pub selector: String,
    /// When it was granted (Unix ms).
    pub granted_ms: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_ms: Option<i64>,
}

impl Entitlement {
    fn from_row(row: &DbRow) -> Result<Entitlement, sqlx::Error> {
        Ok(Entitlement {
            id: row.try_get("id")?,
            class: row.try_get("class")?,
            version: row.try_get("version")?,
            selector: row.try_get("selector")?,
            granted_ms: row.try_get("granted_ms")?,
            revoked_ms: row.try_get("revoked_ms")?,
        })
    }
}

/// What `ferry entitlement grant` and `POST /v1/admin/entitlements` ask for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEntitlement {
    /// Device class.
    pub class: String,
    /// The release's version, or `*` for every release of the class.
    pub version: String,
    /// The devices it covers: `tenant:acme,region:eu,tag:beta`, `device:ID` or `all`.
    pub to: String,
}

/// The operator's facts about a device (`set-tags`, or an enrollment token's); `None` leaves
/// a field as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTags {
    /// Tenant (`""` clears it).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Region (`""` clears it).
    #[serde(default)]
    pub region: Option<String>,
    /// Every tag (replaces the old ones; empty clears them).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl DeviceTags {
    /// Applies the change to `facts`, every value checked.
    pub fn apply(&self, facts: &mut DeviceFacts) -> Result<(), RolloutError> {
        let clear = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        if let Some(tenant) = &self.tenant {
            facts.tenant = clear(tenant).map(|t| word("tenant", &t)).transpose()?;
        }
        if let Some(region) = &self.region {
            facts.region = clear(region).map(|r| word("region", &r)).transpose()?;
        }
        if let Some(tags) = &self.tags {
            facts.tags = tags
                .iter()
                .filter(|t| !t.is_empty())
                .map(|t| word("tag", t))
                .collect::<Result<BTreeSet<_>, _>>()?;
        }
        Ok(())
    }

    /// Whether it leaves every field as it was.
    pub fn is_empty(&self) -> bool {
        self.tenant.is_none() && self.region.is_none() && self.tags.is_none()
    }
}

/// `device_id`'s tenant, region and tags as stored (none when it has no row), read on
/// `conn` (which may be a transaction's).
pub(crate) async fn load_device_tags(
    conn: &mut sqlx::AnyConnection,
    device_id: &DeviceId,
) -> Result<DeviceFacts, sqlx::Error> {
    let row = sqlx::query("SELECT tenant, region, tags FROM device_tags WHERE device_id = $1")
        .bind(device_id.to_string())
        .fetch_optional(conn)
        .await?;
    let mut facts = DeviceFacts {
        device_id: Some(*device_id),
        ..DeviceFacts::default()
    };
    if let Some(row) = row {
        facts.tenant = row.try_get("tenant")?;
        facts.region = row.try_get("region")?;
        let tags: String = row.try_get("tags")?;
        facts.tags = tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
    }
    Ok(facts)
}

/// Writes `facts`' tenant, region and tags as `device_id`'s (on `conn`, which may be a
/// transaction's).
pub(crate) async fn store_device_tags(
    conn: &mut sqlx::AnyConnection,
    device_id: &DeviceId,
    facts: &DeviceFacts,
) -> Result<(), sqlx::Error> {
    let tags: Vec<&str> = facts.tags.iter().map(String::as_str).collect();
    sqlx::query(
        "INSERT INTO device_tags (device_id, tenant, region, tags, changed_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (device_id) DO UPDATE SET tenant = $2, region = $3, tags = $4,
            changed_ms = $5",
    )
    .bind(device_id.to_string())
    .bind(&facts.tenant)
    .bind(&facts.region)
    .bind(tags.join(","))
    .bind(Utc::now().timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a device may get a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "entitled", rename_all = "snake_case")]
pub enum Entitled {
    /// The release has no grant: every device of the class may get it.
    Unrestricted,
    /// Grant `id` covers the device.
    Granted {
        /// The grant.
        id: i64,
    },
    /// The release is restricted and no unrevoked grant covers the device.
    No {
        /// A revoked grant that covered it, if one did.
        revoked: Option<i64>,
    },
}

fn word(what: &'static str, value: &str) -> Result<String, RolloutError> {
    if valid_word(value) {
        Ok(value.to_owned())
    } else {
        Err(RolloutError::Invalid {
            what,
            value: value.to_owned(),
            why: "it must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
        })
    }
}

impl Db {
    /// Grants release `version` (or `*`) of `class` to the devices `to` selects.
    pub async fn grant_entitlement(
        &self,
        new: &NewEntitlement,
    ) -> Result<Entitlement, ServerError> {
        let class: DeviceClass = super::parse_field("device class", &new.class)?;
        let version = if new.version == "*" {
            "*".to_owned()
        } else {
            super::parse_field::<ferry_types::Version>("version", &new.version)?.to_string()
        };
        let selector: Selector = new.to.parse()?;
        let row = sqlx::query(
            "INSERT INTO entitlements (class, version, selector, granted_ms)
             VALUES ($1, $2, $3, $4) RETURNING *",
        )
        .bind(class.as_str())
        .bind(version)
        .bind(selector.to_string())
        .bind(Utc::now().timestamp_millis())
        .fetch_one(self.pool())
        .await?;
        Ok(Entitlement::from_row(&row)?)
    }

    /// Revokes grant `id` (the release stays restricted); revoking twice is refused.
    pub async fn revoke_entitlement(&self, id: i64) -> Result<Entitlement, ServerError> {
        let row = sqlx::query(
            "UPDATE entitlements SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL
             RETURNING *",
        )
        .bind(Utc::now().timestamp_millis())
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => Ok(Entitlement::from_row(&row)?),
            None => {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM entitlements WHERE id = $1")
                        .bind(id)
                        .fetch_optional(self.pool())
                        .await?;
                Err(match exists {
                    Some(_) => RolloutError::EntitlementRevoked { id },
                    None => RolloutError::EntitlementNotFound { id },
                }
                .into())
            }
        }
    }

    /// Every grant, newest first.
    pub async fn entitlements(&self) -> Result<Vec<Entitlement>, ServerError> {
        let rows = sqlx::query("SELECT * FROM entitlements ORDER BY id DESC")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(Entitlement::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Sets the operator's tenant, region and tags of an enrolled device.
    pub async fn set_device_tags(
        &self,
        device_id: &DeviceId,
        change: &DeviceTags,
    ) -> Result<DeviceFacts, ServerError> {
        let id = device_id.to_string();
        let enrolled: Option<String> =
            sqlx::query_scalar("SELECT device_id FROM devices WHERE device_id = $1")
                .bind(&id)
                .fetch_optional(self.pool())
                .await?;
        if enrolled.is_none() {
            return Err(ServerError::NotFound(format!("enrolled device {id}")));
        }
        let mut facts = self.cohort_facts(device_id, false).await?;
        change.apply(&mut facts)?;
        let mut conn = self.pool().acquire().await?;
        store_device_tags(&mut conn, device_id, &facts).await?;
        Ok(facts)
    }

    /// What cohorts and entitlements match `device_id` against: the operator's tenant,
    /// region and tags, and (when `audience`) the audience it last reported.
    pub async fn cohort_facts(
        &self,
        device_id: &DeviceId,
        audience: bool,
    ) -> Result<DeviceFacts, ServerError> {
        let mut conn = self.pool().acquire().await?;
        let mut facts = load_device_tags(&mut conn, device_id).await?;
        drop(conn);
        if audience {
            facts.audience = self.reported_audience(device_id).await?;
        }
        Ok(facts)
    }

    /// Whether the device `facts` describe may get release `version` of `class`.
    pub async fn entitled(
        &self,
        class: &str,
        version: &str,
        facts: &DeviceFacts,
    ) -> Result<Entitled, ServerError> {
        let rows = sqlx::query(
            "SELECT * FROM entitlements WHERE class = $1 AND (version = $2 OR version = '*')
             ORDER BY id",
        )
        .bind(class)
        .bind(version)
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Ok(Entitled::Unrestricted);
        }
        let mut revoked = None;
        for row in &rows {
            let grant = Entitlement::from_row(row)?;
            // Stored selectors were checked when granted.
            let Ok(selector) = grant.selector.parse::<Selector>() else {
                continue;
            };
            if !selector.matches(facts) {
                continue;
            }
            if grant.revoked_ms.is_none() {
                return Ok(Entitled::Granted { id: grant.id });
            }
            revoked = Some(grant.id);
        }
        Ok(Entitled::No { revoked })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("ferry.db")).await.unwrap();
        (dir, db)
    }

    fn facts(tenant: &str, region: &str, tags: &[&str]) -> DeviceFacts {
        DeviceFacts {
            device_id: Some(DeviceId::new(0x51).unwrap()),
            tenant: Some(tenant.into()),
            region: Some(region.into()),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            audience: None,
        }
    }

    #[tokio::test]
    async fn grants_restrict_a_release_and_revoking_keeps_it_restricted() {
        let (_dir, db) = db().await;
        let acme_eu = facts("acme", "eu", &[]);
        let acme_us = facts("acme", "us", &["beta"]);
        assert_eq!(
            db.entitled("vm", "2.0", &acme_eu).await.unwrap(),
            Entitled::Unrestricted
        );
        let grant = |to: &str, version: &str| NewEntitlement {
            class: "vm".into(),
            version: version.into(),
            to: to.into(),
        };
        let eu = db
            .grant_entitlement(&grant("region:eu,tenant:acme", "2.0"))
            .await
            .unwrap();
        assert_eq!(eu.selector, "tenant:acme,region:eu");
        assert_eq!(
            db.entitled("vm", "2.0", &acme_eu).await.unwrap(),
            Entitled::Granted { id: eu.id }
        );
        assert_eq!(
            db.entitled("vm", "2.0", &acme_us).await.unwrap(),
            Entitled::No { revoked: None }
        );
        // Another release of the class is untouched; a `*` grant covers them all.
        assert_eq!(
            db.entitled("vm", "3.0", &acme_us).await.unwrap(),
            Entitled::Unrestricted
        );
        let beta = db.grant_entitlement(&grant("tag:beta", "*")).await.unwrap();
        assert_eq!(
            db.entitled("vm", "2.0", &acme_us).await.unwrap(),
            Entitled::Granted { id: beta.id }
        );
        assert_eq!(
            db.entitled("vm", "3.0", &acme_eu).await.unwrap(),
            Entitled::No { revoked: None }
        );
        db.revoke_entitlement(eu.id).await.unwrap();
        assert_eq!(
            db.entitled("vm", "2.0", &acme_eu).await.unwrap(),
            Entitled::No {
                revoked: Some(eu.id)
            }
        );
        let e = db.revoke_entitlement(eu.id).await.unwrap_err();
        assert_eq!(
            ferry_types::Diagnose::code(&e),
            "ROLLOUT_ENTITLEMENT_REVOKED"
        );
        let e = db.revoke_entitlement(999).await.unwrap_err();
        assert_eq!(
            ferry_types::Diagnose::code(&e),
            "ROLLOUT_ENTITLEMENT_NOT_FOUND"
        );
        let e = db
            .grant_entitlement(&grant("colour:red", "2.0"))
            .await
            .unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&e), "ROLLOUT_COHORT_INVALID");
        let e = db
            .grant_entitlement(&grant("all", "not a version"))
            .await
            .unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&e), "ROLLOUT_INVALID");
        assert_eq!(db.entitlements().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn tags_need_an_enrolled_device_and_valid_words() {
        let (_dir, db) = db().await;
        let device = DeviceId::new(0x51).unwrap();
        let e = db
            .set_device_tags(&device, &DeviceTags::default())
            .await
            .unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&e), "NOT_FOUND");
        let facts = db.cohort_facts(&device, false).await.unwrap();
        assert!(facts.tenant.is_none() && facts.tags.is_empty());
    }
}
