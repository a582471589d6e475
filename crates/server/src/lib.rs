//! ferry's HTTP service (axum on tokio): serves release metadata and payloads to
//! devices, payloads with HTTP range requests so downloads resume, and registers
//! releases ([`publish()`]).
//!
//! State is split the way a fleet server needs it: rows in SQL ([`db`], SQLite by
//! default, created on first start with versioned migrations) and artifacts behind the
//! `object_store` interface ([`store`], `DATA/artifacts` by default, an S3 bucket with
//! `--store s3://…`, where the catalog is kept too: [`catalog_store`]).
//! Nothing a second replica would need is kept in memory.
//!
//! The release store is also a TUF repository ([`tuf`], built on `ferry-catalog`): devices
//! trust only what its metadata signs, served under `/tuf/metadata/` and `/tuf/targets/`;
//! `/v1/releases` remains for operators and scripts.
//!
//! Event reports ([`events`], [`fleet`], [`metrics`]): `POST /v1/events` stores each
//! device's reports once per sequence and folds them into its current state; the fleet
//! read side, the silent-device watch, the per-class phase rates and `GET /metrics`.
//!
//! Rollouts ([`rollouts`]): waves, the hold the signing service applies, the halt rule
//! counted in the event-ingest transaction, the admin endpoints.
//!
//! The fleet dashboard ([`dashboard`]): `GET /` and `/dashboard/…`, pages rendered on the
//! server behind a sign-in, live updates by server-sent events, SVG charts.
//!
//! Personalization ([`personalize`], [`enroll`], [`devices`]): enrollment tokens,
//! device credentials, the signing service and its admin endpoints. Everything is served
//! over HTTPS ([`pki`]): the CA, server certificate, online keys and admin token are made
//! in the data directory on first start. Connections are served under limits ([`serve`]):
//! a connection cap and handshake, header, body and idle deadlines.
//!
//! Entry points: [`DataDir::open`], [`app`] (the catalog router, testable without a
//! socket), [`Https::prepare`] then [`Https::serve_until`] (or [`serve`]: bind, log,
//! shut down on SIGINT/SIGTERM).
#![deny(missing_docs)]

pub mod api;
mod batcher;
pub mod byteranges;
pub mod cache;
pub mod catalog_store;
mod chunks;
pub mod dashboard;
pub mod db;
mod delta;
pub mod devices;
pub mod director;
pub mod enroll;
mod error;
pub mod events;
pub mod fleet;
pub mod http2;
pub mod key_share;
pub mod keyset;
pub mod leader;
pub mod metrics;
pub mod personalize;
pub mod pki;
mod preflight;
mod publish;
pub mod rollouts;
mod routes;
pub mod serve;
pub mod store;
pub mod tuf;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_types::Diagnose;

pub use error::ServerError;
pub use personalize::{Service, ServiceOptions};
pub use pki::Secrets;
pub use publish::{PublishRequest, publish};
pub use routes::app;

/// A server's data directory: `ferry.db` (SQLite, unless the database is PostgreSQL) and
/// `artifacts/` (the object store).
#[derive(Clone)]
pub struct DataDir {
    /// Root of the data directory.
    pub path: PathBuf,
    /// The database.
    pub db: db::Db,
    /// The artifact store.
    pub store: Arc<store::Store>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DataDir {
    /// Opens (creating on first use) a data directory and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<DataDir, ServerError> {
        DataDir::open_with(path, None, None).await
    }

    /// [`DataDir::open`] with the database `--database` names ([`db::Db::open_url`]:
    /// `postgres://…` for replicas sharing one database, `None` for `ferry.db` in `path`)
    /// and the artifacts in the store `--store` names ([`store::Store::open`]: an `s3://`
    /// URL or a directory; `None` for `DATA/artifacts`).
    pub async fn open_with(
        path: &Path,
        database: Option<&str>,
        store: Option<&str>,
    ) -> Result<DataDir, ServerError> {
        let path = DataDir::create(path)?;
        let db = db::Db::open_url(database, &path).await?;
        let store = Arc::new(match store {
            Some(spec) => store::Store::open(spec)?,
            None => store::Store::local(&path.join("artifacts"))?,
        });
        let data = DataDir { path, db, store };
        publish::fill_missing_seal_roots(&data).await?;
        Ok(data)
    }

    /// Only the database of the data directory at `path` (`database` as in
    /// [`DataDir::open_with`]), schema brought up to date: what the administration
    /// commands need, without opening (or leaving behind) the artifact store.
    pub async fn open_database(path: &Path, database: Option<&str>) -> Result<db::Db, ServerError> {
        let path = DataDir::create(path)?;
        db::Db::open_url(database, &path).await
    }

    /// Creates the directory `path` if need be; its canonical path.
    fn create(path: &Path) -> Result<PathBuf, ServerError> {
        std::fs::create_dir_all(path).map_err(|source| ServerError::Io {
            op: "creating the data directory",
            source,
        })?;
        path.canonicalize().map_err(|source| ServerError::Io {
            op: "resolving the data directory",
            source,
        })
    }
}

/// A server ready to serve HTTPS: its data, its secrets, the signing service.
#[derive(Debug)]
pub struct Https {
    /// The data directory.
    pub data: DataDir,
    /// CA, certificate, keys, admin token.
    pub secrets: Secrets,
    /// The personalization service.
    pub service: Service,
    /// What one connection may cost ([`serve::Limits`]).
    pub limits: serve::Limits,
    /// Event ingest and the fleet's read side.
    pub events: events::Events,
    /// This replica's metrics.
    pub metrics: metrics::Metrics,
    /// Signed decisions for devices.
    pub director: director::Director,
    /// The leader lease's lifetime ([`leader`]): the periodic work moves to another replica
    /// within `ttl + ttl / 3` of the leader's death.
    pub lease_ttl: std::time::Duration,
}

impl Https {
    /// Loads (making on first start) the secrets in `data`, the catalog and its
    /// personalization key set (signing with the set's current key), and starts the signing
    /// service's nonce writer. Call inside the runtime that will serve.
    ///
    /// `custody` says where the catalog's offline keys may be: a real server
    /// ([`tuf::KeyCustody::Offline`]) refuses to start without a catalog made by `ferry server
    /// init --keys DIR` or with the root or targets key in `data`.
    pub async fn prepare(
        data: DataDir,
        listen: Option<SocketAddr>,
        options: ServiceOptions,
        custody: tuf::KeyCustody,
    ) -> Result<Https, ServerError> {
        // A replica on a shared store starts from the catalog the others signed.
        catalog_store::pull(&data).await?;
        if let Err(error) = key_share::fetch_missing(&data).await {
            tracing::error!(code = error.code(), %error, "could not take a rotated online key from the shared store");
        }
        tuf::check_custody(&data.path, custody).await?;
        let secrets = Secrets::load_or_create(&data.path, listen)?;
        let catalog = tuf::CatalogPaths::new(&data.path, None);
        let (key_set, _) = keyset::ensure_published(&catalog).await?;
        let signer = keyset::signer(&catalog, &key_set)?;
        let service = Service::new(
            data.clone(),
            signer,
            secrets.credential_signer.clone(),
            secrets.admin_token.clone(),
            options,
        );
        let metrics = metrics::Metrics::new();
        let events = events::Events::new(service.clone(), metrics.clone());
        let director = director::Director::load(service.clone(), &catalog)?;
        catalog_store::push(&data).await?;
        Ok(Https {
            data,
            secrets,
            service,
            limits: serve::Limits::default(),
            events,
            metrics,
            director,
            lease_ttl: leader::DEFAULT_TTL,
        })
    }

    /// Holds the leader lease for `ttl` instead of [`leader::DEFAULT_TTL`].
    pub fn with_lease_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Serves under `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: serve::Limits) -> Https {
        self.limits = limits;
        self
    }

    /// The whole HTTP surface: catalog, personalization, enrollment, events, admin,
    /// metrics; every request timed for `/metrics`.
    pub fn router(&self) -> axum::Router {
        let admin = events::admin_routes(self.events.clone())
            .merge(rollouts::http::admin_routes(self.data.db.clone()))
            .route_layer(axum::middleware::from_fn_with_state(
                self.service.clone(),
                enroll::require_admin,
            ));
        let dashboard = dashboard::routes(dashboard::Dash {
            db: self.data.db.clone(),
            admin_token: self.service.inner.admin_token.clone(),
            feed: self.events.feed().clone(),
        });
        app(self.data.clone())
            .merge(dashboard)
            .merge(
                personalize::routes(self.service.clone())
                    .merge(enroll::routes(self.service.clone()))
                    .merge(events::routes(self.events.clone()))
                    .merge(director::routes(self.director.clone()))
                    .merge(admin)
                    .layer(tower_http::trace::TraceLayer::new_for_http()),
            )
            .layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                metrics::observe,
            ))
    }

    /// Serves HTTPS on `listener` until `shutdown` completes, then finishes in-flight
    /// requests and returns.
    pub async fn serve_until(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr: SocketAddr = listener.local_addr().map_err(|source| ServerError::Io {
            op: "reading the listen address",
            source,
        })?;
        // Periodic work runs on the replica holding the leader lease (always this one on
        // SQLite).
        let leadership = leader::Leadership::for_server(self.data.db.clone(), self.lease_ttl);
        let leads = leadership.try_hold().await.unwrap_or_else(|error| {
            tracing::error!(code = error.code(), %error, "could not take the leader lease");
            false
        });
        // The catalog (checked by `prepare`): its timestamp kept fresh while serving, signed
        // and given back under the catalog lock ([`catalog_store::change`]).
        catalog_store::change(&self.data, async {
            if leads {
                tuf::refresh_timestamp_if_due(&self.data.path).await?;
            }
            Ok(())
        })
        .await?;
        let lease_task = tokio::spawn(leadership.clone().keep());
        let timestamp_task = tokio::spawn(tuf::keep_timestamp_fresh(
            self.data.clone(),
            leadership.clone(),
        ));
        let key_task = tokio::spawn(keyset::keep_signer_current(
            self.service.clone(),
            tuf::CatalogPaths::new(&self.data.path, None),
        ));
        let director_task = tokio::spawn(
            self.director
                .clone()
                .keep_current(tuf::CatalogPaths::new(&self.data.path, None)),
        );
        let silence_task = tokio::spawn(events::watch_silence(
            self.data.db.clone(),
            self.metrics.clone(),
            self.service.inner.options.silent_after,
            leadership.clone(),
        ));
        tracing::info!(
            %addr,
            data = %self.data.path.display(),
            store = %self.data.store.name(),
            max_connections = self.limits.max_connections,
            "ferry server listening (https)"
        );
        let router = self.router();
        let served = serve::serve(
            listener,
            Some(self.secrets.tls.clone()),
            router,
            self.limits,
            shutdown,
        )
        .await;
        timestamp_task.abort();
        key_task.abort();
        director_task.abort();
        silence_task.abort();
        lease_task.abort();
        if let Err(error) = leadership.release().await {
            tracing::warn!(code = error.code(), %error, "could not give the leader lease up");
        }
        served.map_err(|source| ServerError::Io {
            op: "serving HTTPS",
            source,
        })?;
        tracing::info!("ferry server stopped");
        Ok(())
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<(), ServerError> {
        self.serve_until(listener, shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}
