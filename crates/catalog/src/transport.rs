//! The HTTP transport tough fetches through: reqwest with rustls, optionally trusting only a
//! pinned CA, plus `file://` URLs for local use.

use crate::error::CatalogError;
use async_trait::async_trait;
use futures_util::StreamExt;
use std::time::Duration;
use tough::{FilesystemTransport, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Fetches catalog files over HTTP(S) or from `file://` URLs.
#[derive(Debug, Clone)]
pub(crate) struct CatalogTransport {
    client: reqwest::Client,
}

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
        Ok(Self { client })
    }
}

#[async_trait]
impl Transport for CatalogTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
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
