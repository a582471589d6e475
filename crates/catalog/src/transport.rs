//! The HTTP transport tough fetches through: reqwest with rustls, optionally trusting only a
//! pinned CA, plus `file://` URLs for local use.
//!
//! With consistent snapshots, `N.snapshot.json`, `N.targets.json` and `N.bins-XX.json` never
//! change once published, so when the device already trusts version N of a role the transport
//! answers from the raw bytes it kept of it (`GEN/raw/N.ROLE.json`; tough's own datastore
//! copies are re-serialized, so their hashes differ) instead of the network: a scan that finds
//! nothing new moves only `timestamp.json` (and the 404 for the next root). tough still
//! verifies what it gets (length and hash from the parent role, signatures, expiry), so a
//! local answer is checked exactly like a downloaded one. Raw bytes are written into the
//! staging generation, which is committed only when the whole refresh verified.

use crate::error::CatalogError;
use async_trait::async_trait;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::time::Duration;
use tough::{FilesystemTransport, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Fetches catalog files over HTTP(S) or from `file://` URLs.
#[derive(Debug, Clone)]
pub(crate) struct CatalogTransport {
    client: reqwest::Client,
    /// The metadata base URL, the raw metadata of the trusted generation (to answer from) and
    /// the raw directory of the staging generation (to keep what this refresh uses).
    raw: Option<RawMetadata>,
}

#[derive(Debug, Clone)]
struct RawMetadata {
    metadata_base_url: String,
    trusted_dir: Option<PathBuf>,
    staging_dir: PathBuf,
}

/// Where a generation keeps the raw bytes of its versioned metadata.
pub(crate) const RAW_DIR: &str = "raw";
/// Raw files larger than this are not kept (they are fetched again).
const MAX_RAW_SIZE: usize = 64 * 1024 * 1024;

impl CatalogTransport {
    /// A transport trusting the platform's roots, or only `ca_pem` when given.
    pub(crate) fn new(ca_pem: Option<&[u8]>) -> Result<Self, CatalogError> {
        let mut builder = reqwest::Client::builder()
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
        Ok(Self { client, raw: None })
    }

    /// Keeps the raw bytes of versioned metadata (`N.ROLE.json`, not root) fetched under
    /// `metadata_base_url` in `staging_dir/raw/`, and answers such requests from
    /// `trusted_dir/raw/` when it has them.
    pub(crate) fn with_raw_metadata(
        mut self,
        metadata_base_url: &Url,
        trusted_dir: Option<PathBuf>,
        staging_dir: PathBuf,
    ) -> Self {
        self.raw = Some(RawMetadata {
            metadata_base_url: metadata_base_url.to_string(),
            trusted_dir: trusted_dir.map(|dir| dir.join(RAW_DIR)),
            staging_dir: staging_dir.join(RAW_DIR),
        });
        self
    }

    /// The file name `N.ROLE.json` of `url` when it is versioned metadata other than root.
    fn versioned_file(&self, url: &Url) -> Option<(RawMetadata, String)> {
        let raw = self.raw.as_ref()?;
        let file = url.as_str().strip_prefix(raw.metadata_base_url.as_str())?;
        let (version, rest) = file.split_once('.')?;
        let role = rest.strip_suffix(".json")?;
        let valid = !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_digit())
            && !role.is_empty()
            && role != "root"
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        valid.then(|| (raw.clone(), file.to_owned()))
    }
}

#[async_trait]
impl Transport for CatalogTransport {
    // Answers versioned metadata from the trusted raw copy when it has it, else fetches.
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let versioned = self.versioned_file(&url);
        if let Some((raw, file)) = &versioned
            && let Some(trusted_dir) = &raw.trusted_dir
            && let Ok(bytes) = std::fs::read(trusted_dir.join(file))
        {
            keep_raw(&raw.staging_dir, file, &bytes);
            let chunk: Result<bytes::Bytes, TransportError> = Ok(bytes.into());
            return Ok(Box::pin(futures_util::stream::iter([chunk])));
        }
        let stream = self.fetch_remote(url).await?;
        let Some((raw, file)) = versioned else {
            return Ok(stream);
        };
        // Tee the bytes; write them once the body has ended (never for a body cut short).
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Some(Vec::new())));
        let tee = buffer.clone();
        let teed = stream.inspect(move |chunk| {
            if let (Ok(chunk), Ok(mut guard)) = (chunk, tee.lock()) {
                let too_big = guard
                    .as_ref()
                    .is_some_and(|kept| kept.len() + chunk.len() > MAX_RAW_SIZE);
                if too_big {
                    *guard = None;
                } else if let Some(kept) = guard.as_mut() {
                    kept.extend_from_slice(chunk);
                }
            }
        });
        let finish = futures_util::stream::once(async move {
            if let Ok(mut guard) = buffer.lock()
                && let Some(bytes) = guard.take()
            {
                keep_raw(&raw.staging_dir, &file, &bytes);
            }
        })
        .filter_map(|()| async { None });
        Ok(Box::pin(teed.chain(finish)))
    }
}

/// Writes raw metadata into the staging generation (best effort: without it the next scan
/// fetches the file again).
fn keep_raw(staging_raw_dir: &std::path::Path, file: &str, bytes: &[u8]) {
    if std::fs::create_dir_all(staging_raw_dir).is_ok() {
        let _ = std::fs::write(staging_raw_dir.join(file), bytes);
    }
}

impl CatalogTransport {
    async fn fetch_remote(&self, url: Url) -> Result<TransportStream, TransportError> {
        match url.scheme() {
            "file" => return FilesystemTransport.fetch(url).await,
            "http" | "https" => {}
            _ => {
                return Err(TransportError::new(
                    TransportErrorKind::UnsupportedUrlScheme,
                    url,
                ));
            }
        }
        let response = self.client.get(url.clone()).send().await.map_err(|error| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), error)
        })?;
        let status = response.status();
        if matches!(status.as_u16(), 403 | 404 | 410) {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if !status.is_success() {
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                format!("HTTP status {status}"),
            ));
        }
        let stream_url = url.clone();
        let stream = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|error| {
                TransportError::new_with_cause(TransportErrorKind::Other, stream_url.clone(), error)
            })
        });
        Ok(Box::pin(stream))
    }
}
