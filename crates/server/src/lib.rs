//! ferry's HTTP service (axum on tokio): serves release metadata and payloads to
//! devices, payloads with HTTP range requests so downloads resume, and registers
//! releases ([`publish()`]).
//!
//! State is split the way a fleet server needs it: rows in SQL ([`db`], SQLite by
//! default, created on first start with versioned migrations) and artifacts behind the
//! `object_store` interface ([`store`], a local directory now, S3 by configuration).
//! Nothing a second replica would need is kept in memory.
//!
//! The release store is also a TUF repository ([`tuf`], built on `ferry-catalog`): devices
//! trust only what its metadata signs, served under `/tuf/metadata/` and `/tuf/targets/`;
//! `/v1/releases` remains for operators and scripts.
//!
//! Entry points: [`DataDir::open`], [`app`] (the router, testable without a socket),
//! [`serve`] (bind, log, shut down on SIGINT/SIGTERM).
#![deny(missing_docs)]

pub mod api;
pub mod cache;
pub mod db;
mod delta;
mod error;
mod publish;
mod routes;
pub mod store;
pub mod tuf;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::ServerError;
pub use publish::{PublishRequest, publish};
pub use routes::app;

/// A server's data directory: `ferry.db` (SQLite) and `artifacts/` (the object store).
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
        std::fs::create_dir_all(path).map_err(|source| ServerError::Io {
            op: "creating the data directory",
            source,
        })?;
        let path = path.canonicalize().map_err(|source| ServerError::Io {
            op: "resolving the data directory",
            source,
        })?;
        let db = db::Db::open(&path.join("ferry.db")).await?;
        let store = Arc::new(store::Store::local(&path.join("artifacts"))?);
        Ok(DataDir { path, db, store })
    }
}

/// Serves `data` on `listener` until SIGINT or SIGTERM, then finishes in-flight
/// requests and returns.
pub async fn serve(listener: tokio::net::TcpListener, data: DataDir) -> Result<(), ServerError> {
    serve_until(listener, data, shutdown_signal()).await
}

/// Serves `data` on `listener` until `shutdown` completes (for the demo and tests).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    data: DataDir,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr: SocketAddr = listener.local_addr().map_err(|source| ServerError::Io {
        op: "reading the listen address",
        source,
    })?;
    tuf::ensure_initialised(&tuf::CatalogPaths::new(&data.path, None)).await?;
    tuf::refresh_timestamp_if_due(&data.path).await?;
    let timestamp_task = tokio::spawn(tuf::keep_timestamp_fresh(data.path.clone()));
    tracing::info!(%addr, data = %data.path.display(), "ferry server listening");
    let served = axum::serve(listener, app(data))
        .with_graceful_shutdown(shutdown)
        .await;
    timestamp_task.abort();
    served.map_err(|source| ServerError::Io {
        op: "serving HTTP",
        source,
    })?;
    tracing::info!("ferry server stopped");
    Ok(())
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
