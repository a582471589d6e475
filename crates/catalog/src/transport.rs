//! Fetches catalog files over HTTP(S) (reqwest with rustls, optionally trusting only a pinned
//! CA) or from `file://` URLs, never reading more than a caller's limit.

use crate::error::CatalogError;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Where a metadata fetch stands: the file, its bytes so far, and whether it is whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file (the URL's last segment: `timestamp.json`, `3.snapshot.json`).
    pub file: String,
    /// Bytes received so far.
    pub bytes: u64,
    /// The whole file arrived (it is verified next).
    pub done: bool,
}

/// Told of every metadata fetch as its bytes arrive, so a scan has units of its own.
#[derive(Clone)]
pub struct FetchObserver(pub Arc<dyn Fn(&Fetched) + Send + Sync>);

impl std::fmt::Debug for FetchObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchObserver")
    }
}

/// Why a fetch gave no bytes.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// 403, 404 or 410 (or a missing file): the repository does not have it.
    NotFound,
    /// The body went past the limit.
    TooLarge { max_size: u64 },
    /// 429 or 503: the server asks the client to come back later, maybe saying when
    /// (`Retry-After`, in seconds or as an HTTP date).
    Throttled {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Anything else (connection, TLS, other status, I/O), described.
    Failed(String),
}

/// The HTTP client the catalog fetches with.
#[derive(Debug, Clone)]
pub(crate) struct CatalogTransport {
    client: reqwest::Client,
    observer: Option<FetchObserver>,
}

impl CatalogTransport {
    /// A transport trusting the platform's roots, or only `ca_pem` when given.
    pub(crate) fn new(ca_pem: Option<&[u8]>) -> Result<Self, CatalogError> {
        // HTTP/1.1, as devices always fetched the catalog (the server's HTTP/2 is for
        // browsers; reqwest would otherwise offer ALPN `h2` here).
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(30))
            .user_agent(concat!("ferry-catalog/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certificate =
                reqwest::Certificate::from_pem(pem).map_err(|error| CatalogError::InvalidUrl {
                    url: "(pinned CA certificate)".into(),
                    reason: error.to_string(),
                })?;
            builder = builder.tls_certs_only([certificate]);
        }
        let client = builder.build().map_err(|error| CatalogError::Tuf {
            detail: error.to_string(),
        })?;
        Ok(Self {
            client,
            observer: None,
        })
    }

    /// This transport, telling `observer` of every fetch.
    pub(crate) fn observed(mut self, observer: Option<FetchObserver>) -> Self {
        self.observer = observer;
        self
    }

    fn tell(&self, url: &Url, bytes: u64, done: bool) {
        if let Some(FetchObserver(observe)) = &self.observer {
            let file = url
                .path_segments()
                .and_then(|mut segments| segments.next_back())
                .unwrap_or_default()
                .to_owned();
            observe(&Fetched { file, bytes, done });
        }
    }

    /// The body of `url`, refused as soon as it exceeds `max_size` bytes.
    pub(crate) async fn fetch(&self, url: &Url, max_size: u64) -> Result<Vec<u8>, FetchError> {
        Ok(self.fetch_dated(url, max_size).await?.0)
    }

    /// [`CatalogTransport::fetch`], with the server's clock when it answered: its `Date`
    /// header (RFC 9110 §6.6.1), when present and readable (`file://` has none).
    pub(crate) async fn fetch_dated(
        &self,
        url: &Url,
        max_size: u64,
    ) -> Result<(Vec<u8>, Option<DateTime<Utc>>), FetchError> {
        match url.scheme() {
            "file" => {
                let bytes = fetch_file(url, max_size)?;
                self.tell(url, bytes.len() as u64, true);
                return Ok((bytes, None));
            }
            "http" | "https" => {}
            scheme => {
                return Err(FetchError::Failed(format!(
                    "unsupported URL scheme {scheme}"
                )));
            }
        }
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|error| FetchError::Failed(error_chain(&error)))?;
        let status = response.status();
        if matches!(status.as_u16(), 403 | 404 | 410) {
            return Err(FetchError::NotFound);
        }
        if matches!(status.as_u16(), 429 | 503) {
            let retry_after_secs = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Err(FetchError::Throttled {
                status: status.as_u16(),
                retry_after_secs,
            });
        }
        if !status.is_success() {
            return Err(FetchError::Failed(format!("HTTP status {status}")));
        }
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| DateTime::parse_from_rfc2822(text).ok())
            .map(|date| date.with_timezone(&Utc));
        if response
            .content_length()
            .is_some_and(|length| length > max_size)
        {
            return Err(FetchError::TooLarge { max_size });
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| FetchError::Failed(error_chain(&error)))?;
            if body.len() as u64 + chunk.len() as u64 > max_size {
                return Err(FetchError::TooLarge { max_size });
            }
            body.extend_from_slice(&chunk);
            self.tell(url, body.len() as u64, false);
        }
        self.tell(url, body.len() as u64, true);
        Ok((body, date))
    }
}

/// `Retry-After`: delay-seconds, or an HTTP date (seconds from now, 0 if past).
fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        at.signed_duration_since(chrono::Utc::now())
            .num_seconds()
            .max(0) as u64,
    )
}

fn fetch_file(url: &Url, max_size: u64) -> Result<Vec<u8>, FetchError> {
    use std::io::Read;
    let path = url
        .to_file_path()
        .map_err(|()| FetchError::Failed("not a local file path".into()))?;
    let file = std::fs::File::open(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => FetchError::NotFound,
        _ => FetchError::Failed(error.to_string()),
    })?;
    let mut body = Vec::new();
    file.take(max_size + 1)
        .read_to_end(&mut body)
        .map_err(|error| FetchError::Failed(error.to_string()))?;
    if body.len() as u64 > max_size {
        return Err(FetchError::TooLarge { max_size });
    }
    Ok(body)
}

/// An error and its sources on one line (reqwest's own message hides the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(super::parse_retry_after("120"), Some(120));
        assert_eq!(super::parse_retry_after(" 7 "), Some(7));
        assert_eq!(
            super::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0),
            "a date in the past"
        );
        assert_eq!(super::parse_retry_after("soon"), None);
    }
}
