//! rustls configurations: the server's, and a device's that trusts only the pinned CA and
//! says who answered when something else did.
//!
//! Both use rustls's aws-lc-rs provider explicitly (the one reqwest 0.13's `rustls` feature
//! uses), so a process that links both providers never depends on a process-wide default.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use ferry_types::{Diagnose, Sha256};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The crypto provider every ferry TLS configuration uses: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS configuration could not be built, or a server's certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate that answered does not chain to the pinned CA: something between the
    /// device and the server (a proxy, a captive portal) intercepts TLS.
    #[error(
        "TLS to {server_name} was intercepted: the certificate that answered (subject {subject}) was issued by {issuer}, not by the pinned CA"
    )]
    Intercepted {
        /// The name the device connected to.
        server_name: String,
        /// Issuer of the certificate that answered.
        issuer: String,
        /// Subject of the certificate that answered.
        subject: String,
    },
    /// The certificate chains to the pin but is not valid at the device's current time.
    #[error(
        "the certificate of {server_name} is valid from {not_before} to {not_after}, not at the device's time {device_time}"
    )]
    NotValidNow {
        /// The name the device connected to.
        server_name: String,
        /// Start of validity.
        not_before: DateTime<Utc>,
        /// End of validity.
        not_after: DateTime<Utc>,
        /// The device's clock.
        device_time: DateTime<Utc>,
    },
    /// The certificate chains to the pin but does not name the server.
    #[error("the certificate of {server_name} (subject {subject}) does not name {server_name}")]
    WrongName {
        /// The name the device connected to.
        server_name: String,
        /// Subject of the certificate that answered.
        subject: String,
    },
    /// Any other refusal of the server's certificate.
    #[error(
        "the certificate of {server_name} (subject {subject}, issuer {issuer}) was refused: {reason}"
    )]
    CertificateRefused {
        /// The name the device connected to.
        server_name: String,
        /// Issuer of the certificate that answered.
        issuer: String,
        /// Subject of the certificate that answered.
        subject: String,
        /// What rustls said.
        reason: String,
    },
    /// The TLS handshake itself failed before any certificate was seen: what answered on
    /// that port does not speak TLS (a plain HTTP server, another service), or closed or
    /// refused the handshake.
    #[error("the TLS handshake with {server} failed: {reason}")]
    HandshakeFailed {
        /// The server (URL or host and port) the device connected to.
        server: String,
        /// What went wrong, as rustls or the connection said it.
        reason: String,
    },
    /// A certificate, key or configuration could not be used.
    #[error("could not build the TLS configuration: {reason}")]
    Config {
        /// What failed.
        reason: String,
    },
}

impl Diagnose for TlsError {
    fn code(&self) -> &'static str {
        match self {
            TlsError::Intercepted { .. } => "TLS_INTERCEPTED",
            TlsError::NotValidNow { .. } => "TLS_CERT_NOT_VALID_NOW",
            TlsError::WrongName { .. } => "TLS_WRONG_NAME",
            TlsError::CertificateRefused { .. } => "TLS_CERT_REFUSED",
            TlsError::HandshakeFailed { .. } => "TLS_HANDSHAKE_FAILED",
            TlsError::Config { .. } => "TLS_CONFIG",
        }
    }

    fn fix(&self) -> String {
        let fix = match self {
            TlsError::Intercepted { .. } => {
                "Let the device reach the server directly: exempt the server's host from the TLS-inspecting proxy or firewall named as issuer"
            }
            TlsError::NotValidNow { .. } => {
                "Set the device clock, or renew the server certificate if it has expired"
            }
            TlsError::WrongName { .. } => {
                "Point the device at a name the server certificate lists, or issue a certificate for this name"
            }
            TlsError::CertificateRefused { .. } => {
                "Issue the server a new certificate from the CA the devices pin"
            }
            TlsError::HandshakeFailed { .. } => {
                "Check the server URL's port: it must be the ferry server's HTTPS port (the one `ferry server` prints), not a plain HTTP or other service"
            }
            TlsError::Config { .. } => "Check the PEM files named in the configuration",
        };
        fix.into()
    }
}

fn config_error(what: &str) -> impl FnOnce(String) -> TlsError + '_ {
    move |reason| TlsError::Config {
        reason: format!("{what}: {reason}"),
    }
}

/// A server configuration presenting `cert_pem` (leaf first, then any intermediates) with
/// `key_pem` (PKCS#8, SEC1 or PKCS#1), TLS 1.2 and 1.3, no client certificates, no ALPN
/// (set `alpn_protocols` for HTTP/2).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<ServerConfig, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| config_error("read the server certificate")(error.to_string()))?;
    if chain.is_empty() {
        return Err(config_error("read the server certificate")(
            "no certificate in the PEM".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|error| config_error("read the server key")(error.to_string()))?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| config_error("choose protocol versions")(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| config_error("use the server certificate")(error.to_string()))
}

/// A client configuration that trusts only the CA(s) in `ca_pem`, and the probe that records
/// why a server's certificate was refused.
///
/// Give the configuration to reqwest 0.13 with
/// `reqwest::Client::builder().tls_backend_preconfigured(config)` (reqwest must link the same
/// rustls 0.23). When a request fails, [`InterceptionProbe::take_error`] turns the recorded
/// failure into `TLS_INTERCEPTED` (naming the issuer) or another precise error.
pub fn client_config_pinned(ca_pem: &str) -> Result<(ClientConfig, InterceptionProbe), TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|error| config_error("read the pinned CA")(error.to_string()))?;
        roots
            .add(cert)
            .map_err(|error| config_error("trust the pinned CA")(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(config_error("read the pinned CA")(
            "no certificate in the PEM".to_owned(),
        ));
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|error| config_error("build the certificate verifier")(error.to_string()))?;
    let probe = InterceptionProbe::default();
    let verifier = PinnedVerifier {
        inner,
        probe: probe.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| config_error("choose protocol versions")(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((config, probe))
}

/// The pinned CA as a person checks it: whose it is and when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSummary {
    /// Subject distinguished name of the (first) CA certificate.
    pub subject: String,
    /// Start of its validity.
    pub not_before: DateTime<Utc>,
    /// End of its validity.
    pub not_after: DateTime<Utc>,
    /// SHA-256 of its DER.
    pub sha256: Sha256,
}

/// Reads the CA certificate(s) in `ca_pem` as [`client_config_pinned`] would pin them and
/// describes the first: `TLS_CONFIG` when there is none or it does not parse.
pub fn describe_ca(ca_pem: &str) -> Result<CaSummary, TlsError> {
    let der = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .ok_or_else(|| config_error("read the pinned CA")("no certificate in the PEM".to_owned()))?
        .map_err(|error| config_error("read the pinned CA")(error.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|error| config_error("parse the pinned CA")(error.to_string()))?;
    let to_utc = |time: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(time.timestamp(), 0).ok_or_else(|| {
            config_error("parse the pinned CA")("a validity date out of range".to_owned())
        })
    };
    Ok(CaSummary {
        subject: cert.subject().to_string(),
        not_before: to_utc(cert.validity().not_before)?,
        not_after: to_utc(cert.validity().not_after)?,
        sha256: Sha256::of(der.as_ref()),
    })
}

/// Why a server's certificate was refused, with who issued the one that answered.
#[derive(Debug, Clone)]
pub struct CertFailure {
    /// The name the client connected to.
    pub server_name: String,
    /// Issuer distinguished name of the certificate that answered (RFC 4514 form).
    pub issuer: String,
    /// Subject distinguished name of the certificate that answered.
    pub subject: String,
    /// SHA-256 of the answering certificate's DER.
    pub cert_sha256: Sha256,
    /// Validity of the answering certificate, when it could be parsed.
    pub validity: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// When verification ran.
    pub at: DateTime<Utc>,
    /// rustls's reason.
    pub rustls_error: rustls::Error,
}

impl CertFailure {
    fn new(
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
        error: &rustls::Error,
    ) -> CertFailure {
        let (issuer, subject, validity) =
            match x509_parser::parse_x509_certificate(end_entity.as_ref()) {
                Ok((_, cert)) => {
                    let to_utc = |time: x509_parser::time::ASN1Time| {
                        DateTime::from_timestamp(time.timestamp(), 0)
                    };
                    let validity =
                        to_utc(cert.validity().not_before).zip(to_utc(cert.validity().not_after));
                    (
                        cert.issuer().to_string(),
                        cert.subject().to_string(),
                        validity,
                    )
                }
                Err(_) => (
                    "<unparseable certificate>".to_owned(),
                    "<unparseable certificate>".to_owned(),
                    None,
                ),
            };
        let at = i64::try_from(now.as_secs())
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .unwrap_or_default();
        CertFailure {
            server_name: server_name.to_str().into_owned(),
            issuer,
            subject,
            cert_sha256: Sha256::of(end_entity.as_ref()),
            validity,
            at,
            rustls_error: error.clone(),
        }
    }

    /// Whether the certificate does not chain to the pin (the interception case).
    pub fn is_interception(&self) -> bool {
        matches!(
            self.rustls_error,
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature
            )
        )
    }

    /// The precise error for this failure.
    pub fn to_error(&self) -> TlsError {
        let server_name = self.server_name.clone();
        if self.is_interception() {
            return TlsError::Intercepted {
                server_name,
                issuer: self.issuer.clone(),
                subject: self.subject.clone(),
            };
        }
        match (&self.rustls_error, self.validity) {
            (
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. },
                ),
                Some((not_before, not_after)),
            ) => TlsError::NotValidNow {
                server_name,
                not_before,
                not_after,
                device_time: self.at,
            },
            (
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ),
                _,
            ) => TlsError::WrongName {
                server_name,
                subject: self.subject.clone(),
            },
            (error, _) => TlsError::CertificateRefused {
                server_name,
                issuer: self.issuer.clone(),
                subject: self.subject.clone(),
                reason: error.to_string(),
            },
        }
    }
}

/// Shared record of the last refused server certificate of one pinned client configuration.
///
/// Clones share the record. With concurrent connections the latest failure wins; compare
/// [`CertFailure::server_name`] with the host that failed.
#[derive(Debug, Clone, Default)]
pub struct InterceptionProbe {
    last_failure: Arc<Mutex<Option<CertFailure>>>,
}

impl InterceptionProbe {
    fn record(&self, failure: CertFailure) {
        let mut slot = self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(failure);
    }

    /// The last refused certificate, if any.
    pub fn last_failure(&self) -> Option<CertFailure> {
        self.last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes the last failure as a precise error (`TLS_INTERCEPTED` naming the issuer, …),
    /// clearing the record.
    pub fn take_error(&self) -> Option<TlsError> {
        let mut slot = self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.take().map(|failure| failure.to_error())
    }

    /// Forgets any recorded failure.
    pub fn clear(&self) {
        let mut slot = self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = None;
    }
}

/// rustls's WebPKI verifier over the pinned roots, recording refusals in the probe.
#[derive(Debug)]
struct PinnedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    probe: InterceptionProbe,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .inspect_err(|error| {
                self.probe
                    .record(CertFailure::new(end_entity, server_name, now, error));
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
