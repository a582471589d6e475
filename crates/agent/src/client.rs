//! HTTP to the update server: small verified artifacts, ranged payload streams. Every
//! failure becomes an [`AgentError`] that names the URL. What to fetch, and the size and
//! digest to check it against, come from the verified catalog ([`crate::scan`]).

use std::time::Duration;

use bytes::Bytes;
use ferry_types::{Identity, Sha256, Version};
use futures_util::StreamExt;
use serde::Deserialize;

use chrono::{DateTime, Utc};
use ferry_personalize::{Preflight, Refusal, RefusalWireError, SignedTicket, TicketRequest};
use ferry_tls::InterceptionProbe;

use crate::AgentError;
use crate::device::{Config, DEFAULT_READ_TIMEOUT, Device};
use crate::layout::Layout;

/// Where the server serves catalog metadata.
pub const METADATA_PATH: &str = "/tuf/metadata/";
/// Where the server serves catalog targets.
pub const TARGETS_PATH: &str = "/tuf/targets/";
/// Where the server serves release artifacts (payloads, manifests, deltas).
pub const ARTIFACTS_PATH: &str = "/artifacts/";

/// An artifact to fetch: a catalog target, with its signed length and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Server path.
    pub url: String,
    /// Length.
    pub size: u64,
    /// Digest.
    pub sha256: Sha256,
}

/// A release as the verified catalog lists it ([`crate::offer`] maps it from the signed
/// targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Device class.
    pub class: String,
    /// Version.
    pub version: Version,
    /// Build id.
    pub build_id: String,
    /// Audiences it is open to.
    pub audiences: Vec<String>,
    /// Payload kind.
    pub kind: String,
    /// Unarchived size.
    pub image_size: u64,
    /// Image digest.
    pub image_sha256: Sha256,
    /// The payload.
    pub payload: Artifact,
    /// Its manifest.
    pub manifest: Artifact,
}

/// What a health probe saw ([`Client::probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What was asked for.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after_secs: Option<u64>,
    /// How long the answer took.
    pub elapsed: Duration,
}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    read_timeout: Duration,
    /// Slowest average rate a stream may run at (bytes per second): see
    /// [`Client::stream_deadline`].
    stream_min_rate: u64,
    cache: Option<String>,
    /// Why the pinned TLS configuration refused a certificate, when it did.
    probe: Option<InterceptionProbe>,
}

impl Client {
    /// A client for `base` (e.g. `https://127.0.0.1:8080`) trusting the system's roots.
    pub fn new(base: &str) -> Result<Client, AgentError> {
        Client::with_timeout(base, DEFAULT_READ_TIMEOUT)
    }

    /// A client whose reads time out after `read_timeout` without a byte.
    pub fn with_timeout(base: &str, read_timeout: Duration) -> Result<Client, AgentError> {
        Client::pinned(base, None, read_timeout)
    }

    /// The device's client: it trusts only the CA pinned in its config (`ca`).
    pub fn for_device(device: &Device) -> Result<Client, AgentError> {
        Client::for_config(&device.layout(), &device.config)
    }

    /// The client of the device at `layout` configured by `config` (what
    /// [`Client::for_device`] does, for a device that could not be opened whole: the
    /// doctor).
    pub fn for_config(layout: &Layout<'_>, config: &Config) -> Result<Client, AgentError> {
        let ca_pem = match &config.ca {
            Some(path) => {
                let path = layout.resolve(path);
                Some(
                    std::fs::read_to_string(&path)
                        .map_err(AgentError::io("reading the pinned CA", &path))?,
                )
            }
            None => None,
        };
        Ok(Client::pinned(
            &config.server,
            ca_pem.as_deref(),
            Duration::from_secs(config.read_timeout_secs),
        )?
        .with_stream_min_rate(config.stream_min_rate)
        .with_cache(config.cache.clone()))
    }

    /// A client for `base` that trusts only the CA(s) in `ca_pem` when given: a
    /// certificate that does not chain to them is [`AgentError::Tls`]
    /// (`TLS_INTERCEPTED`, naming the issuer that answered).
    pub fn pinned(
        base: &str,
        ca_pem: Option<&str>,
        read_timeout: Duration,
    ) -> Result<Client, AgentError> {
        // HTTP/1.1, as the device always spoke (the server also offers HTTP/2, for browsers;
        // the pinned configuration offers no ALPN, and this keeps platform roots alike).
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .user_agent(concat!("ferry-agent/", env!("CARGO_PKG_VERSION")));
        let mut probe = None;
        if let Some(ca_pem) = ca_pem {
            let (config, pinned_probe) =
                ferry_tls::client_config_pinned(ca_pem).map_err(AgentError::Tls)?;
            builder = builder.tls_backend_preconfigured(config);
            probe = Some(pinned_probe);
        }
        let http = builder.build().map_err(|e| AgentError::ServerUnreachable {
            url: base.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            read_timeout,
            stream_min_rate: crate::device::DEFAULT_STREAM_MIN_RATE,
            cache: None,
            probe,
        })
    }

    /// A request error: the pinned verifier's precise reason when it refused the
    /// certificate, a failed handshake when what answered does not speak TLS
    /// (`TLS_HANDSHAKE_FAILED`), else unreachable.
    fn failed(&self, url: &str, e: reqwest::Error) -> AgentError {
        if let Some(tls) = self.probe.as_ref().and_then(InterceptionProbe::take_error) {
            return AgentError::Tls(tls);
        }
        if e.is_connect()
            && let Some(tls) = ferry_tls::handshake_failure(&e, &self.base)
        {
            return AgentError::Tls(tls);
        }
        unreachable(url, e)
    }

    /// `POST /v1/enroll`: the one-time token for a credential.
    pub async fn enroll(&self, token: &str, identity: &Identity) -> Result<String, AgentError> {
        #[derive(Deserialize)]
        struct Enrolled {
            credential: String,
        }
        let url = self.url("/v1/enroll");
        let request = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "token": token, "identity": identity }));
        let (status, body) = self.send_small(&url, request).await?;
        if status.is_success() {
            let enrolled: Enrolled =
                serde_json::from_slice(&body).map_err(|e| AgentError::ServerInvalid {
                    url,
                    reason: e.to_string(),
                })?;
            return Ok(enrolled.credential);
        }
        match refusal_error(url, status, &body) {
            error @ (AgentError::Refused(_) | AgentError::Overloaded { .. }) => Err(error),
            other => match serde_json::from_slice::<ferry_types::Report>(&body) {
                Ok(report) => Err(AgentError::EnrollmentRefused {
                    server_code: report.code,
                    cause: report.cause,
                    fix: report.fix,
                }),
                Err(_) => Err(other),
            },
        }
    }

    /// `GET /healthz`: the server answers over the pinned TLS.
    pub async fn healthz(&self) -> Result<(), AgentError> {
        let url = self.url("/healthz");
        self.get_limited(&url, 1024).await.map(|_| ())
    }

    /// `GET /v1/time`: the server's clock, and the round trip it took.
    pub async fn server_time(&self) -> Result<(DateTime<Utc>, Duration), AgentError> {
        #[derive(Deserialize)]
        struct Time {
            unix: i64,
        }
        let url = self.url("/v1/time");
        let started = std::time::Instant::now();
        let body = self.get_limited(&url, 4096).await?;
        let rtt = started.elapsed();
        let time: Time = serde_json::from_slice(&body).map_err(|e| AgentError::ServerInvalid {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let at =
            DateTime::from_timestamp(time.unix, 0).ok_or_else(|| AgentError::ServerInvalid {
                url,
                reason: format!("{} is not a time", time.unix),
            })?;
        Ok((at, rtt))
    }

    /// `GET path` and only its status line and `Retry-After` (seconds), for a health probe:
    /// any HTTP answer is `Ok`, whatever its status.
    pub async fn probe(&self, path: &str) -> Result<Probe, AgentError> {
        let url = self.url(path);
        let started = std::time::Instant::now();
        let response = self.send(&url, self.http.get(&url)).await?;
        let retry_after_secs = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok(Probe {
            url,
            status: response.status().as_u16(),
            retry_after_secs,
            elapsed: started.elapsed(),
        })
    }

    /// `POST /v1/personalize/preflight`: whether the service would sign `request` now, and
    /// if not, why (nothing is signed, the nonce is not recorded).
    pub async fn preflight(
        &self,
        credential: &str,
        request: &TicketRequest,
    ) -> Result<Preflight, AgentError> {
        self.post_ticket_request(
            "/v1/personalize/preflight",
            credential,
            request,
            "the preflight answer does not parse",
        )
        .await
    }

    /// `POST /v1/personalize` with the device credential.
    pub async fn personalize(
        &self,
        credential: &str,
        request: &TicketRequest,
    ) -> Result<SignedTicket, AgentError> {
        self.post_ticket_request(
            "/v1/personalize",
            credential,
            request,
            "the ticket does not parse",
        )
        .await
    }

    /// Posts a ticket request with the device credential; a success is parsed as `T`
    /// (`unparsed` names it), anything else is the service's refusal.
    async fn post_ticket_request<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        credential: &str,
        request: &TicketRequest,
        unparsed: &str,
    ) -> Result<T, AgentError> {
        let url = self.url(path);
        let request = self.http.post(&url).bearer_auth(credential).json(request);
        let (status, body) = self.send_small(&url, request).await?;
        if status.is_success() {
            return parse(url, &body, unparsed);
        }
        Err(refusal_error(url, status, &body))
    }

    /// Streams run at `bytes_per_second` on average at least ([`Client::stream_deadline`]).
    pub fn with_stream_min_rate(mut self, bytes_per_second: u64) -> Client {
        self.stream_min_rate = bytes_per_second.max(1);
        self
    }

    /// The overall deadline of a stream of `bytes`: the read timeout plus `bytes` at the
    /// slowest accepted rate. A stream still running then is cut ([`Client::stream_failed`]),
    /// however steadily it trickles.
    pub fn stream_deadline(&self, bytes: u64) -> Duration {
        self.read_timeout + Duration::from_secs(bytes / self.stream_min_rate)
    }

    /// The error for a stream of `bytes` begun at `started` that failed with a timeout:
    /// [`AgentError::StreamTooSlow`] once its overall deadline has passed, else
    /// [`AgentError::NetworkTimeout`] (no byte within the read timeout).
    pub fn stream_failed(
        &self,
        url: &str,
        started: std::time::Instant,
        bytes: u64,
        received: u64,
        expected: u64,
    ) -> AgentError {
        let deadline = self.stream_deadline(bytes);
        if started.elapsed() >= deadline {
            AgentError::StreamTooSlow {
                url: url.to_owned(),
                deadline_secs: deadline.as_secs(),
                received,
                expected,
            }
        } else {
            AgentError::NetworkTimeout {
                url: url.to_owned(),
                secs: self.read_timeout.as_secs(),
                received,
                expected,
            }
        }
    }

    /// `POST /v1/events` with the device credential: one batch of event reports, answered
    /// by the sequences the server now holds. A refusal (`4xx` with `{code, cause, fix}`)
    /// is [`AgentError::ServerRefused`] with the server's code.
    pub async fn post_events(
        &self,
        credential: &str,
        batch: &ferry_events::EventBatch,
    ) -> Result<ferry_events::BatchAck, AgentError> {
        let url = self.url(ferry_events::wire::EVENTS_PATH);
        let response = self.post_with(&url, credential, batch).await?;
        self.small_answer(url, response, "the acknowledgement does not parse")
            .await
    }

    /// `GET /v1/decision` with the device credential: the director's signed decision, or
    /// `None` when the server has no director (`404`). Nothing in it is trusted yet.
    pub async fn decision(
        &self,
        credential: &str,
    ) -> Result<Option<ferry_personalize::SignedDecision>, AgentError> {
        let url = self.url("/v1/decision");
        let response = self.get_with(&url, credential).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.small_answer(url, response, "the decision does not parse")
            .await
            .map(Some)
    }

    /// `POST /v1/deferrals` with the device credential: defers a rollout's release; the
    /// server's answer (`rollout_id`, `version`, `until`, `latest`) or its refusal.
    pub async fn defer(
        &self,
        credential: &str,
        version: &str,
        for_: &str,
    ) -> Result<serde_json::Value, AgentError> {
        let url = self.url("/v1/deferrals");
        let body = serde_json::json!({ "version": version, "for": for_ });
        let response = self.post_with(&url, credential, &body).await?;
        self.small_answer(url, response, "the deferral does not parse")
            .await
    }

    /// `GET /v1/rates?class=C` with the device credential: the class's phase rates.
    pub async fn phase_rates(
        &self,
        credential: &str,
        class: &str,
    ) -> Result<ferry_events::PhaseRates, AgentError> {
        let url = format!("{}?class={class}", self.url(ferry_events::wire::RATES_PATH));
        let response = self.get_with(&url, credential).await?;
        self.small_answer(url, response, "the phase rates do not parse")
            .await
    }

    /// `GET url` with the device credential.
    async fn get_with(&self, url: &str, credential: &str) -> Result<reqwest::Response, AgentError> {
        self.send(url, self.http.get(url).bearer_auth(credential))
            .await
    }

    /// `POST url` with the device credential and a JSON body.
    async fn post_with<B: serde::Serialize + ?Sized>(
        &self,
        url: &str,
        credential: &str,
        body: &B,
    ) -> Result<reqwest::Response, AgentError> {
        self.send(url, self.http.post(url).bearer_auth(credential).json(body))
            .await
    }

    /// Sends `request` (to `url`): its response, whatever the status.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AgentError> {
        request.send().await.map_err(|e| self.failed(url, e))
    }

    /// Sends `request` (to `url`) and reads its answer whole under the 64 KiB cap, whatever
    /// its status: the status and the body, for a caller that reads refusals itself.
    async fn send_small(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Bytes), AgentError> {
        let response = self.send(url, request).await?;
        let status = response.status();
        Ok((
            status,
            self.read_capped(url, response, MAX_SMALL_ANSWER).await?,
        ))
    }

    /// A small JSON answer: a success parsed as `T` (`unparsed` names it), read under
    /// the 64 KiB cap; anything else is the server's refusal.
    async fn small_answer<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        response: reqwest::Response,
        unparsed: &str,
    ) -> Result<T, AgentError> {
        if !response.status().is_success() {
            return Err(refused(url, response).await);
        }
        let body = self.read_capped(&url, response, MAX_SMALL_ANSWER).await?;
        parse(url, &body, unparsed)
    }

    /// Fetches artifacts through a LAN cache first (`ferry cache`), going to the origin
    /// when the cache is down or failing. Everything is verified end to end either way.
    pub fn with_cache(mut self, cache: Option<String>) -> Client {
        self.cache = cache.map(|c| c.trim_end_matches('/').to_owned());
        self
    }

    /// The bases to try for `path`: the cache first for immutable artifact paths.
    fn bases(&self, path: &str) -> Vec<&str> {
        let cacheable = path.starts_with(ARTIFACTS_PATH) || path.starts_with(TARGETS_PATH);
        match &self.cache {
            Some(cache) if cacheable => vec![cache.as_str(), self.base.as_str()],
            _ => vec![self.base.as_str()],
        }
    }

    /// How long a read may wait for a byte.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A small file of at most `limit` bytes (`device init --trust-on-first-use` fetches the
    /// root with it).
    pub async fn small_file(&self, path: &str, limit: u64) -> Result<Bytes, AgentError> {
        self.get_limited(&self.url(path), limit).await
    }

    /// A small artifact, checked against its expected size and digest. For a catalog target
    /// (`/tuf/targets/…`) a longer or different body fails with the catalog's codes.
    pub async fn artifact(&self, artifact: &Artifact, what: &str) -> Result<Bytes, AgentError> {
        let target = artifact
            .url
            .strip_prefix(TARGETS_PATH)
            .and_then(|file| file.split_once('.'))
            .map(|(_, name)| name.to_owned());
        let result = self
            .via_bases(&artifact.url, |url| async move {
                self.get_limited(&url, artifact.size).await
            })
            .await;
        let bytes = match result {
            Err(AgentError::ServerInvalid { .. }) if target.is_some() => {
                return Err(ferry_catalog::CatalogError::TargetTooLong {
                    target: target.unwrap_or_default(),
                    max_length: artifact.size,
                }
                .into());
            }
            other => other?,
        };
        if bytes.len() as u64 != artifact.size {
            return Err(AgentError::PayloadTruncated {
                received: bytes.len() as u64,
                expected: artifact.size,
            });
        }
        let actual = Sha256::of(&bytes);
        if let Some(target) = target
            && actual != artifact.sha256
        {
            return Err(ferry_catalog::CatalogError::TargetMismatch {
                target,
                expected: artifact.sha256.to_hex(),
                actual: actual.to_hex(),
            }
            .into());
        }
        if actual != artifact.sha256 {
            return Err(AgentError::DigestMismatch {
                what: what.to_owned(),
                expected: artifact.sha256,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Starts streaming `path` from byte `start`, `bytes` long from there (the overall
    /// deadline is [`Client::stream_deadline`] of it). Returns the response and the offset
    /// its body really starts at (a server that ignores `Range` starts at 0).
    pub async fn stream_from(
        &self,
        path: &str,
        start: u64,
        bytes: u64,
    ) -> Result<(reqwest::Response, u64), AgentError> {
        self.via_bases(path, |url| self.stream_from_url(url, start, bytes))
            .await
    }

    /// `GET path` with `Range: bytes=<ranges>` (the cache first, as [`Client::stream_from`],
    /// with the overall deadline of the ranges' bytes). Returns the answer whatever its
    /// status, for the caller to read: `206` (one range or `multipart/byteranges`), `200`
    /// (ranges ignored) or `416` (multi-range refused).
    pub async fn get_ranges(
        &self,
        path: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<reqwest::Response, AgentError> {
        let deadline = self.stream_deadline(ranges_bytes(ranges));
        let value = ranges
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end.saturating_sub(1)))
            .collect::<Vec<_>>()
            .join(",");
        let value = &value;
        self.via_bases(path, |url| async move {
            let response = self
                .http
                .get(&url)
                .header(reqwest::header::RANGE, format!("bytes={value}"))
                .timeout(deadline)
                .send()
                .await
                .map_err(|e| self.failed(&url, e))?;
            if response.status().is_server_error() {
                return Err(refused(url, response).await);
            }
            Ok(response)
        })
        .await
    }

    /// Runs `request` on the URL of `path` at each base in turn (the cache first), going
    /// on to the origin only when the cache failed in a way the origin may not.
    async fn via_bases<T, F, Fut>(&self, path: &str, mut request: F) -> Result<T, AgentError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, AgentError>>,
    {
        let bases = self.bases(path);
        let mut result = Err(AgentError::ServerUnreachable {
            url: path.to_owned(),
            reason: "no server".into(),
        });
        for (idx, base) in bases.iter().enumerate() {
            let url = format!("{base}{path}");
            result = request(url.clone()).await;
            match &result {
                Err(e) if idx + 1 < bases.len() && cache_should_fall_back(e) => {
                    tracing::warn!(%url, error = %e, "the cache failed; going to the origin");
                }
                _ => break,
            }
        }
        result
    }

    async fn stream_from_url(
        &self,
        url: String,
        start: u64,
        bytes: u64,
    ) -> Result<(reqwest::Response, u64), AgentError> {
        let mut request = self.http.get(&url).timeout(self.stream_deadline(bytes));
        if start > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={start}-"));
        }
        let response = self.send(&url, request).await?;
        let status = response.status();
        if status == reqwest::StatusCode::PARTIAL_CONTENT {
            let content_range = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let begins = content_range
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if begins != Some(start) {
                return Err(AgentError::ServerInvalid {
                    url,
                    reason: format!(
                        "asked for bytes from {start}, got Content-Range {content_range:?}"
                    ),
                });
            }
            Ok((response, start))
        } else if status.is_success() {
            Ok((response, 0))
        } else {
            Err(refused(url, response).await)
        }
    }

    async fn get_limited(&self, url: &str, limit: u64) -> Result<Bytes, AgentError> {
        let request = self.http.get(url).timeout(self.stream_deadline(limit));
        let response = self.send(url, request).await?;
        if !response.status().is_success() {
            return Err(refused(url.to_owned(), response).await);
        }
        self.read_capped(url, response, limit).await
    }

    /// The body of an answer the device reads whole, refused (`SERVER_INVALID`) as soon as it
    /// passes `limit` bytes: an answer from an untrusted cache or proxy can be any size.
    async fn read_capped(
        &self,
        url: &str,
        response: reqwest::Response,
        limit: u64,
    ) -> Result<Bytes, AgentError> {
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| AgentError::ServerUnreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(AgentError::ServerInvalid {
                    url: url.to_owned(),
                    reason: format!("the answer is longer than the {limit} bytes allowed"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }
}

/// `body` (an answer read whole, under its cap) as `T`, or `SERVER_INVALID` saying `what`.
fn parse<T: serde::de::DeserializeOwned>(
    url: String,
    body: &[u8],
    what: &str,
) -> Result<T, AgentError> {
    serde_json::from_slice(body).map_err(|e| AgentError::ServerInvalid {
        url,
        reason: format!("{what}: {e}"),
    })
}

fn unreachable(url: &str, e: reqwest::Error) -> AgentError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    AgentError::ServerUnreachable {
        url: url.to_owned(),
        reason,
    }
}

/// A failed answer of the personalization or enrollment endpoints: a refusal with its
/// code and data, a credential problem, an overloaded server.
fn refusal_error(url: String, status: reqwest::StatusCode, body: &[u8]) -> AgentError {
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return AgentError::Overloaded {
            url,
            status: status.as_u16(),
        };
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let wire: Option<ferry_types::Report> = serde_json::from_slice(body).ok();
        return AgentError::NotEnrolled {
            reason: wire.map_or_else(
                || format!("the server answered {status}"),
                |r| format!("{} ({})", r.cause, r.code),
            ),
        };
    }
    match Refusal::from_wire(body) {
        Ok(refusal) => AgentError::Refused(refusal),
        Err(RefusalWireError::Malformed { .. }) => {
            #[derive(Deserialize)]
            struct Body {
                code: String,
            }
            let code = serde_json::from_slice::<Body>(body).ok().map(|b| b.code);
            AgentError::ServerRefused {
                url,
                status: status.as_u16(),
                code,
            }
        }
        Err(e) => AgentError::RefusalUnreadable(e),
    }
}

/// A failed answer: its status and, when its body (read up to [`MAX_SMALL_ANSWER`], never
/// more) is a ferry error, its code. A longer body is left unread: the connection closes.
async fn refused(url: String, mut response: reqwest::Response) -> AgentError {
    #[derive(Deserialize)]
    struct Body {
        code: String,
    }
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut complete = false;
    while let Ok(chunk) = response.chunk().await {
        let Some(chunk) = chunk else {
            complete = true;
            break;
        };
        if body.len() + chunk.len() > MAX_SMALL_ANSWER as usize {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let code = complete
        .then(|| serde_json::from_slice::<Body>(&body).ok())
        .flatten()
        .map(|b| b.code);
    AgentError::ServerRefused { url, status, code }
}

/// Most bytes read of an answer the device does not stream: an error body, an enrollment
/// answer, a ticket.
pub const MAX_SMALL_ANSWER: u64 = 64 << 10;

/// Bytes the ranges cover.
fn ranges_bytes(ranges: &[std::ops::Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum()
}

/// A cache that cannot be reached or fails on its side is skipped; an answer about
/// the object itself (404 from upstream through the cache is a 502) is skipped too,
/// since the origin has the final word.
fn cache_should_fall_back(e: &AgentError) -> bool {
    match e {
        AgentError::ServerUnreachable { .. } | AgentError::NetworkTimeout { .. } => true,
        AgentError::ServerRefused { status, .. } => *status >= 500,
        _ => false,
    }
}
