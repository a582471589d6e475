//! Routes, assembled in one place.

use std::ops::Bound;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::TypedHeader;
use axum_extra::headers::Range;
use futures_util::StreamExt;
use serde::Deserialize;
use tower_http::trace::TraceLayer;

use crate::api::Release;
use crate::{DataDir, ServerError};

/// The whole HTTP surface: build it once, serve it, or drive it with `oneshot` in tests.
pub fn app(data: DataDir) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/time", get(time))
        .route("/v1/releases", get(releases))
        .route("/artifacts/{*key}", get(artifact))
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

/// Serves an artifact, honouring a single byte range (`206`) so devices resume
/// downloads; a multi-range request is answered with the whole body (`200`), which
/// RFC 9110 allows.
async fn artifact(
    State(data): State<DataDir>,
    Path(key): Path<String>,
    range: Option<TypedHeader<Range>>,
) -> Result<Response, ServerError> {
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(ServerError::NotFound(format!("artifact {key:?}")));
    }
    let size = match data.store.size(&key).await {
        Ok(size) => size,
        Err(ServerError::Store(object_store::Error::NotFound { .. })) => {
            return Err(ServerError::NotFound(format!("artifact {key:?}")));
        }
        Err(e) => return Err(e),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT_RANGES,
        "bytes".parse().expect("static header"),
    );
    headers.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().expect("static header"),
    );
    let wanted = match range {
        Some(TypedHeader(r)) => single_range(&r, size)?,
        None => None,
    };
    let (status, range) = match wanted {
        Some(r) => {
            let value = format!("bytes {}-{}/{size}", r.start, r.end - 1);
            headers.insert(
                header::CONTENT_RANGE,
                value
                    .parse()
                    .map_err(|_| ServerError::RangeNotSatisfiable { size })?,
            );
            (StatusCode::PARTIAL_CONTENT, Some(r))
        }
        None => (StatusCode::OK, None),
    };
    let len = range.as_ref().map_or(size, |r| r.end - r.start);
    headers.insert(header::CONTENT_LENGTH, len.into());
    let stream = data.store.get_stream(&key, range).await?;
    let body = Body::from_stream(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    Ok((status, headers, body).into_response())
}

/// The one satisfiable range asked for, `None` to serve everything.
fn single_range(range: &Range, size: u64) -> Result<Option<std::ops::Range<u64>>, ServerError> {
    let ranges: Vec<_> = range.satisfiable_ranges(size).collect();
    if ranges.len() != 1 {
        return if ranges.is_empty() {
            Err(ServerError::RangeNotSatisfiable { size })
        } else {
            Ok(None)
        };
    }
    let (start, end) = ranges[0];
    let start = match start {
        Bound::Included(s) => s,
        Bound::Excluded(s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match end {
        Bound::Included(e) => e + 1,
        Bound::Excluded(e) => e,
        Bound::Unbounded => size,
    }
    .min(size);
    if start >= end {
        return Err(ServerError::RangeNotSatisfiable { size });
    }
    Ok(Some(start..end))
}
