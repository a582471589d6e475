//! `ferry cache`: a LAN content cache, like macOS Content Caching. Devices fetch payload
//! bytes (`/artifacts/…`, `/tuf/targets/…`: immutable, content-addressed paths) from it;
//! a miss is fetched from upstream once, however many devices ask at the same moment,
//! and kept on disk within a byte budget, least recently used evicted first. The cache
//! is not trusted: devices verify every byte end to end as they would from the origin. It
//! serves only paths of those two forms ([`CachePath`]), decoded before they are checked, and
//! builds the upstream URL from the checked parts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, OnceCell};
use tower::ServiceExt;

use crate::ServerError;

/// How the cache runs.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The origin (or a parent cache), e.g. `http://updates.example:8080`.
    pub upstream: String,
    /// Where cached objects live.
    pub dir: PathBuf,
    /// Disk budget for cached objects, in bytes.
    pub max_bytes: u64,
    /// The upstream's CA (PEM) to pin, for an HTTPS upstream with its own CA (the
    /// origin's `DIR/pki/ca.pem`); `None` trusts the system's roots.
    pub upstream_ca: Option<String>,
}

/// Counters, served at `GET /cache/stats`.
#[derive(Debug, Default, Serialize)]
pub struct CacheStats {
    /// Requests answered from disk.
    pub hits: u64,
    /// Requests that needed an upstream fetch (or waited for one).
    pub misses: u64,
    /// Fetches made upstream.
    pub upstream_fetches: u64,
    /// Objects evicted.
    pub evictions: u64,
    /// Bytes on disk.
    pub bytes_cached: u64,
}

/// One upstream fetch that concurrent misses of the same object wait on.
type Inflight = Arc<OnceCell<Result<(), String>>>;

/// The cache service's state.
pub struct Cache {
    config: CacheConfig,
    http: reqwest::Client,
    inflight: Mutex<HashMap<String, Inflight>>,
    hits: AtomicU64,
    misses: AtomicU64,
    upstream_fetches: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache over `config.dir` (created if missing).
    pub fn new(config: CacheConfig) -> Result<Arc<Cache>, ServerError> {
        for sub in ["objects", "tmp"] {
            std::fs::create_dir_all(config.dir.join(sub)).map_err(|source| ServerError::Io {
                op: "creating the cache directory",
                source,
            })?;
        }
        // HTTP/1.1 upstream, as before the server offered HTTP/2 (with platform roots reqwest
        // would otherwise offer ALPN `h2`).
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = &config.upstream_ca {
            let (tls, _) =
                ferry_tls::client_config_pinned(ca).map_err(|e| ServerError::Secrets {
                    cause: format!("the upstream CA is unusable: {e}"),
                })?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|e| ServerError::Io {
            op: "building the upstream client",
            source: std::io::Error::other(e),
        })?;
        Ok(Arc::new(Cache {
            config,
            http,
            inflight: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            upstream_fetches: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }))
    }

    fn object_path(&self, path: &str) -> PathBuf {
        self.config.dir.join("objects").join(path)
    }

    /// Makes sure `path` is on disk: a hit touches it, a miss fetches it, and
    /// concurrent misses share one upstream fetch.
    async fn ensure(&self, path: &str) -> Result<(), String> {
        let object = self.object_path(path);
        if object.is_file() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            touch(&object);
            return Ok(());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let cell = {
            let mut inflight = self.inflight.lock().await;
            inflight
                .entry(path.to_owned())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let result = cell.get_or_init(|| self.fetch(path)).await.clone();
        self.inflight.lock().await.remove(path);
        result
    }

    /// Fetches `path` (a [`CachePath::relative`]) from upstream into the cache.
    async fn fetch(&self, path: &str) -> Result<(), String> {
        let object = self.object_path(path);
        if object.is_file() {
            return Ok(()); // another fetch finished between our check and our turn
        }
        self.upstream_fetches.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/{path}", self.config.upstream.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("upstream {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("upstream answered {} for {url}", response.status()));
        }
        if let Some(parent) = object.parent() {
            ferry_durable::create_dir(parent).map_err(|e| e.to_string())?;
        }
        // Streamed into tmp/ (eviction lists objects/, which never holds a partial
        // object), then committed under its name: fsync, rename, fsync objects/….
        let pending = ferry_durable::AtomicFile::create_in(
            &self.config.dir.join("tmp"),
            &object,
            ferry_durable::FILE_MODE,
        )
        .map_err(|e| e.to_string())?;
        let mut out =
            tokio::fs::File::from_std(pending.file().try_clone().map_err(|e| e.to_string())?);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(|e| format!("upstream {url}: {e}"))?)
                .await
                .map_err(|e| e.to_string())?;
        }
        out.flush().await.map_err(|e| e.to_string())?;
        drop(out);
        tokio::task::spawn_blocking(move || pending.commit())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.evict(&object);
        Ok(())
    }

    /// Removes least recently used objects until the budget holds (never `keep`).
    fn evict(&self, keep: &Path) {
        let mut objects = Vec::new();
        collect(&self.config.dir.join("objects"), &mut objects);
        let mut total: u64 = objects.iter().map(|(_, size, _)| size).sum();
        objects.sort_by_key(|(_, _, used)| *used);
        for (path, size, _) in objects {
            if total <= self.config.max_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= size;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        let mut objects = Vec::new();
        collect(&self.config.dir.join("objects"), &mut objects);
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            upstream_fetches: self.upstream_fetches.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes_cached: objects.iter().map(|(_, size, _)| size).sum(),
        }
    }
}

fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, u64, SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => collect(&path, out),
            Ok(m) => out.push((
                path,
                m.len(),
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            )),
            Err(_) => {}
        }
    }
}

/// The cache's HTTP surface.
pub fn cache_app(cache: Arc<Cache>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/cache/stats",
            get(|State(c): State<Arc<Cache>>| async move { axum::Json(c.stats()) }),
        )
        .route("/artifacts/{*rest}", get(serve))
        .route("/tuf/targets/{*rest}", get(serve))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(cache)
}

/// A path the cache serves, decoded and checked: only the two forms devices fetch, each
/// segment a plain name, so nothing else of the origin (`/v1/time`, `/v1/admin/…`) can be
/// reached or cached through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePath {
    /// `/artifacts/releases/<class>/<version>/<file>`: a release's payload, manifest, delta or
    /// chunks, as the origin stores them.
    Artifact {
        /// Device class.
        class: String,
        /// Version.
        version: String,
        /// File name (`<sha256>.payload.zst`, …).
        file: String,
    },
    /// `/tuf/targets/<sha256>.<name>`: a catalog target.
    Target {
        /// The file name.
        file: String,
    },
}

impl CachePath {
    /// Reads a request path: percent-decoded first, then matched against the two forms.
    /// `None` for anything else (`..`, an encoded `/`, another route).
    pub fn parse(raw: &str) -> Option<CachePath> {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        let segments: Vec<&str> = decoded.strip_prefix('/')?.split('/').collect();
        match segments.as_slice() {
            ["artifacts", "releases", class, version, file]
                if [class, version, file].iter().all(|s| is_plain_name(s)) =>
            {
                Some(CachePath::Artifact {
                    class: (*class).to_owned(),
                    version: (*version).to_owned(),
                    file: (*file).to_owned(),
                })
            }
            ["tuf", "targets", file] if crate::tuf::split_target_file(file).is_some() => {
                Some(CachePath::Target {
                    file: (*file).to_owned(),
                })
            }
            _ => None,
        }
    }

    /// The path relative to the origin's root (and to `DIR/objects`), built from the checked
    /// parts only.
    pub fn relative(&self) -> String {
        match self {
            CachePath::Artifact {
                class,
                version,
                file,
            } => format!("artifacts/releases/{class}/{version}/{file}"),
            CachePath::Target { file } => format!("tuf/targets/{file}"),
        }
    }
}

/// A class, version or file name as the origin writes them: letters, digits, `.`, `-`, `_`,
/// 1 to 255 bytes, not starting with `.` (so never `.` or `..`).
fn is_plain_name(name: &str) -> bool {
    crate::tuf::is_flat_name(name)
}

async fn serve(State(cache): State<Arc<Cache>>, request: Request) -> Response {
    let Some(checked) = CachePath::parse(request.uri().path()) else {
        return (StatusCode::NOT_FOUND, "no such object").into_response();
    };
    let path = checked.relative();
    if let Err(e) = cache.ensure(&path).await {
        tracing::warn!(%path, error = %e, "cache miss could not be filled");
        return (StatusCode::BAD_GATEWAY, e).into_response();
    }
    // Several ranges: one multipart/byteranges answer (ServeFile refuses them with 416).
    let object = cache.object_path(&path);
    let range = request.headers().get(axum::http::header::RANGE).cloned();
    if let Some(response) = multi_range(&object, range).await {
        return response;
    }
    // ServeFile answers one range and conditional requests from the cached file.
    match tower_http::services::ServeFile::new(object)
        .oneshot(request)
        .await
    {
        Ok(response) => response.map(Body::new),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The `multipart/byteranges` answer when the `Range` header asks several ranges of
/// `object`; `None` for everything ServeFile answers (no range, one range).
async fn multi_range(object: &Path, range: Option<axum::http::HeaderValue>) -> Option<Response> {
    use axum_extra::headers::{Header, Range};
    let value = range?;
    let range = Range::decode(&mut std::iter::once(&value)).ok()?;
    let size = std::fs::metadata(object).ok()?.len();
    let wanted = match crate::byteranges::wanted(Some(&range), size) {
        Ok(wanted @ crate::byteranges::Wanted::Many(_)) => wanted,
        _ => return None,
    };
    let object = object.to_owned();
    let open: crate::byteranges::OpenRange = Arc::new(move |range| {
        let object = object.clone();
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut file = tokio::fs::File::open(&object).await?;
            let (start, len) = match range {
                Some(r) => (r.start, r.end - r.start),
                None => (0, file.metadata().await?.len()),
            };
            file.seek(std::io::SeekFrom::Start(start)).await?;
            let reader = file.take(len);
            let stream = futures_util::stream::unfold(reader, |mut reader| async move {
                let mut buf = vec![0u8; 256 << 10];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), reader))
                    }
                    Err(e) => Some((Err(e), reader)),
                }
            });
            Ok(stream.boxed())
        })
    });
    Some(
        crate::byteranges::respond(wanted, size, "application/octet-stream", open)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_forms_pass_decoded_and_rebuilt_from_their_parts() {
        let digest = "a".repeat(64);
        let payload = format!("/artifacts/releases/vm/2.0/{digest}.payload.zst");
        assert_eq!(
            CachePath::parse(&payload).map(|p| p.relative()),
            Some(payload[1..].to_owned())
        );
        let target = format!("/tuf/targets/{digest}.vm-2.0.payload.zst");
        assert_eq!(
            CachePath::parse(&target).map(|p| p.relative()),
            Some(target[1..].to_owned())
        );
        // Harmless escapes decode to the same object.
        let escaped = format!("/artifacts/releases/vm/2%2E0/{digest}.payload.zst");
        assert_eq!(
            CachePath::parse(&escaped).map(|p| p.relative()),
            Some(payload[1..].to_owned())
        );
        for bad in [
            "/artifacts/%2e%2e/v1/time".to_owned(),
            "/artifacts/releases/%2e%2e/%2e%2e/v1/time".to_owned(),
            "/artifacts/releases/vm/..%2fadmin/x".to_owned(),
            "/artifacts/releases/vm/2.0/a%2fb".to_owned(),
            "/artifacts/releases/vm/2.0/.hidden".to_owned(),
            "/artifacts/releases/vm/2.0/x/y".to_owned(),
            "/artifacts/releases/vm//x".to_owned(),
            "/artifacts/v1/time".to_owned(),
            "/tuf/targets/%2e%2e%2fmetadata%2froot.json".to_owned(),
            "/tuf/targets/root.json".to_owned(),
            "/v1/time".to_owned(),
            "/artifacts/releases/vm/2.0/%ff".to_owned(),
        ] {
            assert_eq!(CachePath::parse(&bad), None, "{bad}");
        }
    }
}
