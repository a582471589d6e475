//! Server state in SQL: SQLite (a file in the data directory, the default) or PostgreSQL
//! (`--database postgres://…`, shared by replicas), schema by versioned migrations embedded
//! in the binary (`migrations/`, written once and translated for PostgreSQL by
//! [`migrations`]).
//!
//! Queries are written once, through sqlx's `Any` driver, in the SQL both accept: `$N`
//! placeholders, `ON CONFLICT`, integers for booleans. The few statements the two dialects
//! spell differently ask [`Db::backend`].

use std::path::Path;
use std::time::Duration;

use ferry_types::{RootHash, Sha256, Version};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::ServerError;
use crate::api::{Artifact, Release};

mod migrations;

/// A connection of either backend (what a transaction derefs to).
pub type Conn = sqlx::AnyConnection;

/// A row of either backend.
pub type DbRow = AnyRow;

/// Which SQL database a [`Db`] is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file: one server.
    Sqlite,
    /// A PostgreSQL database: any number of replicas.
    Postgres,
}

/// A handle on the server database (cheap to clone).
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// Numbered placeholders (`$1`, `$2`, …) for statements assembled at run time: sqlx's
/// `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL refuses.
#[derive(Debug, Default)]
pub(crate) struct Placeholders(usize);

impl Placeholders {
    /// The next placeholder.
    pub(crate) fn next(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }
}

/// Rows a multi-row statement carries at most on `conn`. PostgreSQL: 1,000 (`rows ×
/// columns` placeholders stay under its 65,535 for up to 32 columns), a round trip saved a
/// row. SQLite: one (it runs in the process, so a statement costs no round trip, and one
/// shape is prepared once; statements of a new row count each round measured 2 to 3 times
/// slower in `ferry bench events`).
pub(crate) fn rows_per_statement(conn: &Conn) -> usize {
    if conn.backend_name() == "SQLite" {
        1
    } else {
        1000
    }
}

/// `($1, $2), ($3, $4), …`: `rows` rows of `columns` numbered placeholders, for one
/// multi-row `INSERT … VALUES` or `IN (…)` on `conn` (one round trip instead of one a row).
/// SQLite gets `?1, ?2, …`, its numbered form (a `$N` is a name, looked up among the names
/// seen so far as the statement is parsed).
pub(crate) fn placeholder_rows(conn: &Conn, rows: usize, columns: usize) -> String {
    let sign = if conn.backend_name() == "SQLite" {
        '?'
    } else {
        '$'
    };
    let mut sql = String::with_capacity(rows * columns * 7);
    let mut number = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            number += 1;
            sql.push(sign);
            sql.push_str(&number.to_string());
        }
        sql.push(')');
    }
    sql
}

/// A statement whose conditions depend on its caller (the fleet's filtered reads): SQL text
/// with numbered placeholders and the values bound to them.
pub(crate) struct Filtered {
    sql: String,
    numbers: Placeholders,
    values: Vec<Bound>,
}

/// A value bound to a [`Filtered`] read.
pub(crate) enum Bound {
    Text(String),
    Int(i64),
}

impl From<String> for Bound {
    fn from(text: String) -> Bound {
        Bound::Text(text)
    }
}

impl From<i64> for Bound {
    fn from(n: i64) -> Bound {
        Bound::Int(n)
    }
}

impl Filtered {
    pub(crate) fn new(sql: &str) -> Filtered {
        Filtered {
            sql: sql.to_owned(),
            numbers: Placeholders::default(),
            values: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Filtered {
        self.sql.push_str(sql);
        self
    }

    pub(crate) fn push_bind(&mut self, value: impl Into<Bound>) -> &mut Filtered {
        let placeholder = self.numbers.next();
        self.sql.push_str(&placeholder);
        self.values.push(value.into());
        self
    }

    pub(crate) async fn fetch_all(self, db: &Db) -> Result<Vec<DbRow>, sqlx::Error> {
        // Only placeholders and fixed text: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for value in self.values {
            query = match value {
                Bound::Text(text) => query.bind(text),
                Bound::Int(n) => query.bind(n),
            };
        }
        query.fetch_all(db.pool()).await
    }
}

/// Binding an optional float that reaches PostgreSQL as DOUBLE PRECISION either way.
///
/// sqlx 0.9's `Any` driver sends an `f64` NULL as a 4-byte float (and an `f32` NULL as an
/// 8-byte one): a statement first prepared with that NULL then refuses an 8-byte value
/// ("incorrect binary data format"). So a missing value is bound as the `f32` NULL.
pub(crate) trait BindFloat {
    /// Binds `value`, NULL when `None`.
    fn bind_float(self, value: Option<f64>) -> Self;
}

impl BindFloat for sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_float(self, value: Option<f64>) -> Self {
        match value {
            Some(value) => self.bind(value),
            None => self.bind(None::<f32>),
        }
    }
}

/// Reads a boolean stored as an integer (0 or 1) on both backends.
pub(crate) fn get_flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// A stored delta.
#[derive(Debug, Clone)]
pub struct DeltaRow {
    /// Device class.
    pub class: String,
    /// Version it applies to.
    pub from: Version,
    /// Version it produces.
    pub to: Version,
    /// Object-store key.
    pub key: String,
    /// Size.
    pub size: u64,
    /// Digest.
    pub sha256: Sha256,
}

/// A stored chunked payload and its index (one per release).
#[derive(Debug, Clone)]
pub struct ChunkRow {
    /// Device class.
    pub class: String,
    /// Version of the release it is the chunked form of.
    pub version: Version,
    /// Object-store key of the chunk payload.
    pub payload_key: String,
    /// Chunk payload size.
    pub payload_size: u64,
    /// Chunk payload digest.
    pub payload_sha256: Sha256,
    /// Object-store key of the index.
    pub index_key: String,
    /// Index size.
    pub index_size: u64,
    /// Index digest.
    pub index_sha256: Sha256,
    /// Versions whose images were the hints (comma-separated).
    pub hints: String,
}

/// A release row as the server stores it.
#[derive(Debug, Clone)]
pub struct ReleaseRow {
    /// Device class.
    pub class: String,
    /// Version.
    pub version: Version,
    /// Build id.
    pub build_id: String,
    /// Audience.
    pub audience: String,
    /// `full`.
    pub kind: String,
    /// Image size.
    pub image_size: u64,
    /// Image digest.
    pub image_sha256: Sha256,
    /// Object-store key of the payload.
    pub payload_key: String,
    /// Payload size.
    pub payload_size: u64,
    /// Payload digest.
    pub payload_sha256: Sha256,
    /// Object-store key of the manifest.
    pub manifest_key: String,
    /// Manifest size.
    pub manifest_size: u64,
    /// Manifest digest.
    pub manifest_sha256: Sha256,
    /// The seal root hash of the image (the one the catalog signs): the only root hash the
    /// signing service signs for this release's build. `None` for an unsealed image.
    pub seal_root: Option<RootHash>,
    /// RFC 3339.
    pub created_at: String,
}

impl ReleaseRow {
    /// The device-facing view.
    pub fn to_api(&self) -> Release {
        Release {
            class: self.class.clone(),
            version: self.version.clone(),
            build_id: self.build_id.clone(),
            audience: self.audience.clone(),
            kind: self.kind.clone(),
            image_size: self.image_size,
            image_sha256: self.image_sha256,
            payload: Artifact {
                url: format!("/artifacts/{}", self.payload_key),
                size: self.payload_size,
                sha256: self.payload_sha256,
            },
            manifest: Artifact {
                url: format!("/artifacts/{}", self.manifest_key),
                size: self.manifest_size,
                sha256: self.manifest_sha256,
            },
            published_at: self.created_at.clone(),
            deltas: Vec::new(),
        }
    }
}

impl Db {
    /// Opens the database file (creating it, mode 0600) and applies pending migrations.
    ///
    /// The database holds device identities, credential ids and token hashes: it and its
    /// `-wal` and `-shm` files are made readable by their owner only. SQLite gives the WAL and
    /// shared-memory files the database file's mode, so the file is created 0600 before
    /// SQLite opens it, and files left more open by older versions are narrowed.
    pub async fn open(path: &Path) -> Result<Db, ServerError> {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        // The path goes through a URL (the `Any` driver connects by URL): everything but
        // letters, digits and `/._-` is escaped so any file name survives.
        const PATH: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'.')
            .remove(b'_')
            .remove(b'-');
        private_database_files(path)?;
        let text = path.to_str().ok_or_else(|| ServerError::Invalid {
            what: "database path",
            value: path.display().to_string(),
            why: "it is not UTF-8".into(),
        })?;
        let url = format!("sqlite://{}?mode=rwc", utf8_percent_encode(text, PATH));
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        migrations::SQLITE.run(&pool).await?;
        Ok(Db {
            pool,
            backend: Backend::Sqlite,
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`) and
    /// applies pending migrations (sqlx holds an advisory lock meanwhile, so replicas
    /// starting together migrate once).
    pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<Db, ServerError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ServerError::Invalid {
                what: "database URL",
                value: redact_url(url),
                why: "it must start with postgres:// or postgresql://".into(),
            });
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        migrations::POSTGRES.run(&pool).await?;
        Ok(Db {
            pool,
            backend: Backend::Postgres,
        })
    }

    /// Opens the database a `--database` value names: `postgres://…` or
    /// `postgresql://…`, `sqlite://PATH`, or (`None`) `ferry.db` in `data_dir`.
    pub async fn open_url(url: Option<&str>, data_dir: &Path) -> Result<Db, ServerError> {
        match url {
            None => Db::open(&data_dir.join("ferry.db")).await,
            Some(url) if url.starts_with("sqlite://") => {
                Db::open(Path::new(url.trim_start_matches("sqlite://"))).await
            }
            Some(url) => Db::connect_postgres(url, 16).await,
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for the other modules' queries.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that reads, then writes. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so a concurrent writer makes it wait out `busy_timeout`
    /// instead of failing with "database is locked" when a deferred read lock cannot be
    /// upgraded; PostgreSQL's row locks and constraints need no more than `BEGIN`.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Inserts a release; a second one with the same class and version is refused.
    pub async fn insert_release(&self, r: &ReleaseRow) -> Result<(), ServerError> {
        let result = sqlx::query(
            "INSERT INTO releases (class, version, build_id, audience, kind, image_size, image_sha256,
                payload_key, payload_size, payload_sha256, manifest_key, manifest_size, manifest_sha256,
                seal_root, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.class)
        .bind(r.version.as_str())
        .bind(&r.build_id)
        .bind(&r.audience)
        .bind(&r.kind)
        .bind(r.image_size as i64)
        .bind(r.image_sha256.to_hex())
        .bind(&r.payload_key)
        .bind(r.payload_size as i64)
        .bind(r.payload_sha256.to_hex())
        .bind(&r.manifest_key)
        .bind(r.manifest_size as i64)
        .bind(r.manifest_sha256.to_hex())
        .bind(r.seal_root.map(|root| root.to_hex()))
        .bind(&r.created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(ServerError::DuplicateVersion {
                    class: r.class.clone(),
                    version: r.version.to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// All releases of a class, newest version first (versions compare numerically).
    pub async fn releases(&self, class: &str) -> Result<Vec<ReleaseRow>, ServerError> {
        let rows = sqlx::query("SELECT * FROM releases WHERE class = $1")
            .bind(class)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(row_to_release)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| b.version.cmp(&a.version));
        Ok(out)
    }

    /// Releases stored before their seal root had a column (migration 0005): their root is
    /// still to be read from their manifests.
    pub async fn releases_without_seal_root(&self) -> Result<Vec<ReleaseRow>, ServerError> {
        let rows = sqlx::query("SELECT * FROM releases WHERE seal_root IS NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_release).collect()
    }

    /// Records the seal root of a release stored before the column existed.
    pub async fn set_seal_root(
        &self,
        class: &str,
        version: &Version,
        root: &RootHash,
    ) -> Result<(), ServerError> {
        sqlx::query("UPDATE releases SET seal_root = $1 WHERE class = $2 AND version = $3")
            .bind(root.to_hex())
            .bind(class)
            .bind(version.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a stored delta.
    pub async fn insert_delta(&self, d: &DeltaRow) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO deltas (class, from_version, to_version, key, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&d.class)
        .bind(d.from.as_str())
        .bind(d.to.as_str())
        .bind(&d.key)
        .bind(d.size as i64)
        .bind(d.sha256.to_hex())
        .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every delta of a class.
    pub async fn deltas(&self, class: &str) -> Result<Vec<DeltaRow>, ServerError> {
        let rows = sqlx::query("SELECT * FROM deltas WHERE class = $1")
            .bind(class)
            .fetch_all(&self.pool)
            .await?;
        let corrupt = |what: &str| {
            ServerError::Database(sqlx::Error::Decode(format!("bad {what} in deltas").into()))
        };
        rows.iter()
            .map(|row| {
                Ok(DeltaRow {
                    class: row.try_get("class")?,
                    from: row
                        .try_get::<String, _>("from_version")?
                        .parse()
                        .map_err(|_| corrupt("from_version"))?,
                    to: row
                        .try_get::<String, _>("to_version")?
                        .parse()
                        .map_err(|_| corrupt("to_version"))?,
                    key: row.try_get("key")?,
                    size: row.try_get::<i64, _>("size")? as u64,
                    sha256: row
                        .try_get::<String, _>("sha256")?
                        .parse()
                        .map_err(|_| corrupt("sha256"))?,
                })
            })
            .collect()
    }

    /// Records a stored chunked payload.
    pub async fn insert_chunks(&self, c: &ChunkRow) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO chunk_payloads (class, version, payload_key, payload_size, payload_sha256, index_key, index_size, index_sha256, hints, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&c.class)
        .bind(c.version.as_str())
        .bind(&c.payload_key)
        .bind(c.payload_size as i64)
        .bind(c.payload_sha256.to_hex())
        .bind(&c.index_key)
        .bind(c.index_size as i64)
        .bind(c.index_sha256.to_hex())
        .bind(&c.hints)
        .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a release row (publish undoes its row when signing fails).
    pub async fn delete_release(&self, class: &str, version: &Version) -> Result<(), ServerError> {
        sqlx::query("DELETE FROM releases WHERE class = $1 AND version = $2")
            .bind(class)
            .bind(version.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The object-store key of the payload or manifest whose SHA-256 is `sha256_hex` (how
    /// `/tuf/targets/<sha256>.<name>` finds its bytes).
    pub async fn artifact_key_by_sha256(
        &self,
        sha256_hex: &str,
    ) -> Result<Option<String>, ServerError> {
        let row = sqlx::query(
            "SELECT payload_key AS key FROM releases WHERE payload_sha256 = $1
             UNION ALL
             SELECT manifest_key AS key FROM releases WHERE manifest_sha256 = $1
             UNION ALL
             SELECT key FROM deltas WHERE sha256 = $1
             UNION ALL
             SELECT payload_key AS key FROM chunk_payloads WHERE payload_sha256 = $1
             UNION ALL
             SELECT index_key AS key FROM chunk_payloads WHERE index_sha256 = $1
             LIMIT 1",
        )
        .bind(sha256_hex)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("key")).transpose()?)
    }

    /// Whether `class` already has `version` (any spelling that compares equal).
    pub async fn has_version(&self, class: &str, version: &Version) -> Result<bool, ServerError> {
        Ok(self
            .releases(class)
            .await?
            .iter()
            .any(|r| &r.version == version))
    }
}

/// Creates `path` with mode 0600 if it is missing, and takes group and other access away
/// from it and its `-wal`, `-shm` and `-journal` files where they exist.
fn private_database_files(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |op| move |source| ServerError::Io { op, source };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io("creating the database file"))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        let mode = match std::fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(io("reading the database file's mode")(source)),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(io("making the database file private"))?;
        }
    }
    Ok(())
}

fn row_to_release(row: &AnyRow) -> Result<ReleaseRow, ServerError> {
    let corrupt = |what: &str| {
        ServerError::Database(sqlx::Error::Decode(
            format!("bad {what} in releases").into(),
        ))
    };
    let digest = |col: &str| -> Result<Sha256, ServerError> {
        row.try_get::<String, _>(col)?
            .parse()
            .map_err(|_| corrupt(col))
    };
    Ok(ReleaseRow {
        class: row.try_get("class")?,
        version: row
            .try_get::<String, _>("version")?
            .parse()
            .map_err(|_| corrupt("version"))?,
        build_id: row.try_get("build_id")?,
        audience: row.try_get("audience")?,
        kind: row.try_get("kind")?,
        image_size: row.try_get::<i64, _>("image_size")? as u64,
        image_sha256: digest("image_sha256")?,
        payload_key: row.try_get("payload_key")?,
        payload_size: row.try_get::<i64, _>("payload_size")? as u64,
        payload_sha256: digest("payload_sha256")?,
        manifest_key: row.try_get("manifest_key")?,
        manifest_size: row.try_get::<i64, _>("manifest_size")? as u64,
        manifest_sha256: digest("manifest_sha256")?,
        seal_root: row
            .try_get::<Option<String>, _>("seal_root")?
            .map(|text| text.parse().map_err(|_| corrupt("seal_root")))
            .transpose()?,
        created_at: row.try_get("created_at")?,
    })
}

/// `url` with its password replaced by `***` (for messages and logs).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sqlite://PATH` and the default both open a SQLite file; any other scheme that is not
    /// PostgreSQL's is refused before connecting, and a password never reaches a message.
    #[tokio::test]
    async fn database_urls_pick_the_backend() {
        let tmp = tempfile::tempdir().unwrap();
        let named = tmp.path().join("a name with spaces & ?.db");
        let url = format!("sqlite://{}", named.display());
        let db = Db::open_url(Some(&url), tmp.path()).await.unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        assert!(named.exists(), "the file the URL names");
        let db = Db::open_url(None, tmp.path()).await.unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        assert!(tmp.path().join("ferry.db").exists());
        let refused = Db::open_url(Some("mysql://u:hunter2@h/db"), tmp.path())
            .await
            .unwrap_err();
        assert!(matches!(refused, ServerError::Invalid { .. }), "{refused}");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        assert_eq!(
            redact_url("postgres://ferry:hunter2@db:5432/ferry"),
            "postgres://ferry:***@db:5432/ferry"
        );
    }
}
