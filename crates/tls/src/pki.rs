//! A small certificate authority for the server's TLS certificate, which devices pin.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_types::Diagnose;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// File name of the CA certificate in a directory written by [`Ca::save`].
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a server certificate written by [`ServerCert::save`].
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of a server private key (mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key";

/// How long a CA certificate is valid (20 years).
pub const CA_VALIDITY_DAYS: i64 = 20 * 365;
/// How long a server certificate is valid (2 years).
pub const SERVER_CERT_VALIDITY_DAYS: i64 = 2 * 365;

/// A certificate or key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to make or parse a certificate or key.
    #[error("could not {operation}: {reason}")]
    Certificate {
        /// What was being done.
        operation: &'static str,
        /// What rcgen said.
        reason: String,
    },
    /// A PEM file could not be read or written.
    #[error("could not {operation} {path}: {source}")]
    Io {
        /// `"read"` or `"write"`.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Diagnose for PkiError {
    fn code(&self) -> &'static str {
        match self {
            PkiError::Certificate { .. } => "PKI_CERTIFICATE",
            PkiError::Io { .. } => "PKI_IO",
        }
    }

    fn fix(&self) -> String {
        let fix = match self {
            PkiError::Certificate { .. } => {
                "Regenerate the CA and server certificate, or restore the PEM files from backup"
            }
            PkiError::Io { .. } => "Check that the directory exists and is writable by the server",
        };
        fix.into()
    }
}

fn certificate_error(operation: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |error| PkiError::Certificate {
        operation,
        reason: error.to_string(),
    }
}

/// A certificate authority: its self-signed certificate and its key, both PEM.
#[derive(Clone)]
pub struct Ca {
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A server certificate (leaf only, issued by a [`Ca`]) and its key, both PEM.
#[derive(Clone)]
pub struct ServerCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = chrono::Utc::now();
    // A day of slack before now, so a device whose clock is a little behind still accepts it.
    let not_before = now - chrono::Duration::days(1);
    let not_after = now + chrono::Duration::days(days);
    params.not_before = to_offset(not_before);
    params.not_after = to_offset(not_after);
}

fn to_offset(time: chrono::DateTime<chrono::Utc>) -> time::OffsetDateTime {
    // Any time chrono's `now ± 20 years` produces is in range.
    time::OffsetDateTime::from_unix_timestamp(time.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

impl Ca {
    /// Makes a CA named `name` (its subject common name) with a new ECDSA P-256 key.
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate().map_err(certificate_error("generate the CA key"))?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        subject.push(DnType::OrganizationName, "ferry");
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(certificate_error("sign the CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Reads a CA from its certificate and key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(certificate_error("read the CA key"))?;
        Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(certificate_error("read the CA certificate"))?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM: the pin devices keep in `config.toml`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a server certificate for `names`: each name that parses as an IP address
    /// (`"127.0.0.1"`, `"::1"`) becomes an IP SAN, every other (`"localhost"`,
    /// `"updates.example.com"`) a DNS SAN. The first name is also the subject common name.
    pub fn issue_server_cert(&self, names: &[&str]) -> Result<ServerCert, PkiError> {
        let ca_key =
            KeyPair::from_pem(&self.key_pem).map_err(certificate_error("read the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(certificate_error("read the CA certificate"))?;
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())
            .map_err(certificate_error("use the server names"))?;
        let mut subject = DistinguishedName::new();
        subject.push(
            DnType::CommonName,
            names.first().map_or("ferry server", String::as_str),
        );
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, SERVER_CERT_VALIDITY_DAYS);
        let key = KeyPair::generate().map_err(certificate_error("generate the server key"))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(certificate_error("sign the server certificate"))?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem` and `ca.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        write_file(&dir.join(CA_CERT_FILE), &self.cert_pem, 0o644)?;
        write_file(&dir.join(CA_KEY_FILE), &self.key_pem, 0o600)
    }

    /// Reads `ca.pem` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let cert_pem = read_file(&dir.join(CA_CERT_FILE))?;
        let key_pem = read_file(&dir.join(CA_KEY_FILE))?;
        Ca::from_pem(&cert_pem, &key_pem)
    }
}

impl ServerCert {
    /// Writes `server.pem` and `server.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        write_file(&dir.join(SERVER_CERT_FILE), &self.cert_pem, 0o644)?;
        write_file(&dir.join(SERVER_KEY_FILE), &self.key_pem, 0o600)
    }

    /// Reads `server.pem` and `server.key` from `dir`.
    pub fn load(dir: &Path) -> Result<ServerCert, PkiError> {
        Ok(ServerCert {
            cert_pem: read_file(&dir.join(SERVER_CERT_FILE))?,
            key_pem: read_file(&dir.join(SERVER_KEY_FILE))?,
        })
    }
}

fn read_file(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        operation: "read",
        path: path.to_owned(),
        source,
    })
}

/// Writes durably through `ferry-durable`, with `mode` from the file's creation on.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    ferry_durable::write_atomic_with_mode(path, contents.as_bytes(), mode).map_err(|source| {
        PkiError::Io {
            operation: "write",
            path: path.to_owned(),
            source,
        }
    })
}
