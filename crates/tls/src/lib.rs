//! Pinned TLS for ferry: the small certificate authority whose certificate devices pin
//! ([`pki`]), and the rustls configurations both sides speak — the server's, and a
//! device's that trusts only the pinned CA and, when another certificate answers, says
//! who issued it ([`TlsError::Intercepted`], `TLS_INTERCEPTED`).
//!
//! Every configuration uses rustls's aws-lc-rs provider explicitly ([`provider`]), the one
//! reqwest 0.13's `rustls` feature uses, so a process that links both providers never
//! depends on a process-wide default. Certificates are X.509 from rcgen; keys and
//! certificates are written through `ferry-durable` (keys 0600 from creation on).
//!
//! ```
//! use ferry_tls::pki::Ca;
//!
//! let ca = Ca::generate("ferry test CA")?;
//! let cert = ca.issue_server_cert(&["127.0.0.1", "localhost"])?;
//! let server = ferry_tls::server_config(&cert.cert_pem, &cert.key_pem)?;
//! // The device trusts this CA only; `probe` says why a certificate was refused.
//! let (client, probe) = ferry_tls::client_config_pinned(ca.cert_pem())?;
//! # let _ = (server, client);
//! assert!(probe.take_error().is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Tests: `cargo test -p ferry-tls` runs real handshakes on 127.0.0.1 (`tests/`), including
//! a server whose certificate comes from another CA, as an intercepting proxy's would.

#![deny(missing_docs)]

mod config;
mod handshake;
pub mod pki;

pub use config::{
    CaSummary, CertFailure, InterceptionProbe, TlsError, client_config_pinned, describe_ca,
    provider, server_config,
};
pub use handshake::handshake_failure;
