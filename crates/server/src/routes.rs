//! Routes, assembled in one place.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::TypedHeader;
use axum_extra::headers::Range;
use futures_util::StreamExt;
use serde::Deserialize;
use tower_http::trace::TraceLayer;

use crate::api::Release;
use crate::{DataDir, ServerError, byteranges, catalog_store, tuf};

/// The whole HTTP surface: build it once, serve it, or drive it with `oneshot` in tests.
pub fn app(data: DataDir) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/time", get(time))
        .route("/v1/releases", get(releases))
        .route("/artifacts/{*key}", get(artifact))
        .route("/tuf/metadata/{file}", get(tuf_metadata))
        .route("/tuf/targets/{file}", get(tuf_target))
        .layer(TraceLayer::new_for_http())
        .with_state(data)
}

#[derive(Deserialize)]
struct ReleaseQuery {
    class: String,
}

async fn releases(
    State(data): State<DataDir>,
    Query(q): Query<ReleaseQuery>,
) -> Result<axum::Json<Vec<Release>>, ServerError> {
    let rows = data.db.releases(&q.class).await?;
    let deltas = data.db.deltas(&q.class).await?;
    let releases = rows
        .iter()
        .map(|r| {
            let mut release = r.to_api();
            release.deltas = deltas
                .iter()
                .filter(|d| d.to == r.version)
                .map(|d| crate::api::Delta {
                    from: d.from.clone(),
                    artifact: crate::api::Artifact {
                        url: format!("/artifacts/{}", d.key),
                        size: d.size,
                        sha256: d.sha256,
                    },
                })
                .collect();
            release
        })
        .collect();
    Ok(axum::Json(releases))
}

async fn time() -> axum::Json<serde_json::Value> {
    let now = chrono::Utc::now();
    axum::Json(serde_json::json!({ "unix": now.timestamp(), "rfc3339": now.to_rfc3339() }))
}

/// Serves an artifact, honouring byte ranges: one (`206`) so devices resume downloads,
/// several (`206` `multipart/byteranges`) so they fetch only the chunks they miss.
async fn artifact(
    State(data): State<DataDir>,
    Path(key): Path<String>,
    range: Option<TypedHeader<Range>>,
) -> Result<Response, ServerError> {
    // The sealed online keys share the bucket but are never served.
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
        || key.split('/').next() == Some(crate::key_share::PREFIX)
    {
        return Err(ServerError::NotFound(format!("artifact {key:?}")));
    }
    serve_artifact(&data, &key, range).await
}

/// Serves a catalog metadata file (`N.root.json`, `N.targets.json`, `N.snapshot.json`,
/// `timestamp.json`, …) from `DATA/tuf/metadata/`. Versioned files never change, so caches may
/// keep them; `timestamp.json` is rewritten in place and must be revalidated every time.
async fn tuf_metadata(
    State(data): State<DataDir>,
    Path(file): Path<String>,
) -> Result<Response, ServerError> {
    if !tuf::is_flat_name(&file) || !file.ends_with(".json") {
        return Err(ServerError::NotFound(format!("catalog metadata {file:?}")));
    }
    let bytes = match catalog_file(&data, tuf::METADATA_DIR, &file).await {
        Ok(bytes) => bytes,
        // A name too long for the file system names no file either.
        Err(e) if is_absent(&e) => {
            return Err(ServerError::NotFound(format!("catalog metadata {file:?}")));
        }
        Err(source) => {
            return Err(ServerError::Io {
                op: "reading catalog metadata",
                source,
            });
        }
    };
    let cache_control = if file == "timestamp.json" {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, cache_control),
    ];
    Ok((headers, bytes).into_response())
}

/// Serves a catalog target, `<sha256>.<name>` (consistent snapshots): the payload, manifest or
/// delta whose digest that is, from the artifact store, with the same range support as
/// `/artifacts/`, else a file the catalog owns in `DATA/tuf/targets/` (the key set). The device checks the bytes against the signed length and digest.
async fn tuf_target(
    State(data): State<DataDir>,
    Path(file): Path<String>,
    range: Option<TypedHeader<Range>>,
) -> Result<Response, ServerError> {
    let not_found = || ServerError::NotFound(format!("catalog target {file:?}"));
    let Some((sha256_hex, _name)) = tuf::split_target_file(&file) else {
        return Err(not_found());
    };
    if let Some(key) = data.db.artifact_key_by_sha256(sha256_hex).await? {
        return serve_artifact(&data, &key, range).await;
    }
    // Targets the catalog owns (the personalization key set) live beside its metadata.
    match catalog_file(&data, tuf::TARGETS_DIR, &file).await {
        Ok(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        Err(e) if is_absent(&e) => Err(not_found()),
        Err(source) => Err(ServerError::Io {
            op: "reading a catalog target",
            source,
        }),
    }
}

/// A served catalog file: from the shared store when there is one (what any replica signed),
/// else from `DATA/<folder>/`.
async fn catalog_file(data: &DataDir, folder: &str, file: &str) -> std::io::Result<Vec<u8>> {
    if !data.store.is_shared() {
        return tokio::fs::read(data.path.join(folder).join(file)).await;
    }
    match data
        .store
        .get_bytes(&catalog_store::key(folder, file))
        .await
    {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(ServerError::Store(object_store::Error::NotFound { .. })) => {
            Err(std::io::ErrorKind::NotFound.into())
        }
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Whether a read failed because there is no such file: missing, or a name the file system
/// cannot hold (`ENAMETOOLONG`), which names no file.
fn is_absent(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidFilename
    )
}

/// Streams the artifact at `key`: whole, one byte range (`206`), or several in one
/// `multipart/byteranges` answer ([`byteranges`]).
async fn serve_artifact(
    data: &DataDir,
    key: &str,
    range: Option<TypedHeader<Range>>,
) -> Result<Response, ServerError> {
    let size = match data.store.size(key).await {
        Ok(size) => size,
        Err(ServerError::Store(object_store::Error::NotFound { .. })) => {
            return Err(ServerError::NotFound(format!("artifact {key:?}")));
        }
        Err(e) => return Err(e),
    };
    let wanted = byteranges::wanted(range.as_ref().map(|TypedHeader(r)| r), size)?;
    let store = data.store.clone();
    let key = key.to_owned();
    let open: byteranges::OpenRange = std::sync::Arc::new(move |range| {
        let (store, key) = (store.clone(), key.clone());
        Box::pin(async move {
            let stream = store
                .get_stream(&key, range)
                .await
                .map_err(std::io::Error::other)?;
            Ok(stream
                .map(|chunk| chunk.map_err(std::io::Error::other))
                .boxed())
        })
    });
    byteranges::respond(wanted, size, "application/octet-stream", open).await
}
