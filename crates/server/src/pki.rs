//! The server's secrets, made on first start so `ferry server` needs no set-up (the catalog
//! apart: `ferry server init`); `serve` serves HTTPS with them.
//!
//! Layout in the data directory:
//!
//! ```text
//! pki/ca.pem, pki/ca.key            the CA devices pin (`device init --ca DIR/pki/ca.pem`)
//! pki/server.pem, pki/server.key    the server certificate, issued by that CA
//! keys-online/credential.pk8        Ed25519 key that signs device credentials (0600)
//! keys-online/personalization/      the keys that sign tickets (see `keyset`)
//! admin-token                       bearer token of the admin endpoints (0600)
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ferry_personalize::{CredentialSigner, EnrollmentToken};
use ferry_tls::pki::{Ca, ServerCert};
use tokio_rustls::rustls::ServerConfig;

use crate::ServerError;

/// CA, server certificate and key pair files.
pub const PKI_DIR: &str = "pki";
/// Online signing keys.
pub const KEYS_ONLINE_DIR: &str = "keys-online";
/// Credential signing key (PKCS#8 DER).
pub const CREDENTIAL_KEY_FILE: &str = "credential.pk8";
/// The admin endpoints' bearer token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Everything secret the server runs with.
pub struct Secrets {
    /// The CA certificate (PEM) devices pin.
    pub ca_pem: String,
    /// rustls configuration presenting the server certificate.
    pub tls: Arc<ServerConfig>,
    /// Signs device credentials.
    pub credential_signer: CredentialSigner,
    /// The admin token.
    pub admin_token: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field(
                "credential_key",
                &self.credential_signer.public_key().key_id(),
            )
            .finish_non_exhaustive()
    }
}

fn secrets_error(op: &str) -> impl FnOnce(String) -> ServerError + '_ {
    move |reason| ServerError::Secrets {
        cause: format!("could not {op}: {reason}"),
    }
}

impl Secrets {
    /// Loads the secrets from `dir`, making whatever is missing: a CA, a server
    /// certificate for `127.0.0.1`, `::1`, `localhost` and the listen address, the
    /// credential key and the admin token. (Ticket keys are the key set's: `keyset`.)
    pub fn load_or_create(dir: &Path, listen: Option<SocketAddr>) -> Result<Secrets, ServerError> {
        let pki = dir.join(PKI_DIR);
        let keys = dir.join(KEYS_ONLINE_DIR);
        for sub in [&pki, &keys] {
            ferry_durable::create_dir(sub).map_err(|source| ServerError::Io {
                op: "creating the secrets directories",
                source,
            })?;
        }
        let ca = if pki.join(ferry_tls::pki::CA_CERT_FILE).exists() {
            Ca::load(&pki).map_err(|e| secrets_error("read the CA")(e.to_string()))?
        } else {
            let ca = Ca::generate("ferry update server CA")
                .map_err(|e| secrets_error("make the CA")(e.to_string()))?;
            ca.save(&pki)
                .map_err(|e| secrets_error("store the CA")(e.to_string()))?;
            ca
        };
        let server_cert = if pki.join(ferry_tls::pki::SERVER_CERT_FILE).exists() {
            ServerCert::load(&pki)
                .map_err(|e| secrets_error("read the server certificate")(e.to_string()))?
        } else {
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
            if let Some(addr) = listen
                && !addr.ip().is_unspecified()
                && !names.contains(&addr.ip().to_string())
            {
                names.push(addr.ip().to_string());
            }
            if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
                let host = host.trim();
                if !host.is_empty() && !names.iter().any(|n| n == host) {
                    names.push(host.to_owned());
                }
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let cert = ca
                .issue_server_cert(&refs)
                .map_err(|e| secrets_error("issue the server certificate")(e.to_string()))?;
            cert.save(&pki)
                .map_err(|e| secrets_error("store the server certificate")(e.to_string()))?;
            cert
        };
        let mut tls = ferry_tls::server_config(&server_cert.cert_pem, &server_cert.key_pem)
            .map_err(|e| secrets_error("build the TLS configuration")(e.to_string()))?;
        // HTTP/2 first (browsers multiplex the dashboard's live streams on one connection),
        // HTTP/1.1 for the rest; a client that offers no ALPN (ferry's devices) gets HTTP/1.1.
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let credential_signer = load_or_make_key(
            &keys.join(CREDENTIAL_KEY_FILE),
            || CredentialSigner::generate().to_pkcs8(),
            |der| CredentialSigner::from_pkcs8(der).map_err(|e| e.to_string()),
        )?;
        let token_path = dir.join(ADMIN_TOKEN_FILE);
        let admin_token = match std::fs::read_to_string(&token_path) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            _ => {
                let token = EnrollmentToken::random().as_str().to_owned();
                write_secret(&token_path, format!("{token}\n").as_bytes())?;
                token
            }
        };
        Ok(Secrets {
            ca_pem: ca.cert_pem().to_owned(),
            tls: Arc::new(tls),
            credential_signer,
            admin_token,
        })
    }
}

fn load_or_make_key<K>(
    path: &Path,
    make: impl FnOnce() -> Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<K, String>,
) -> Result<K, ServerError> {
    let der = match std::fs::read(path) {
        Ok(der) => der,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let der = make();
            write_secret(path, &der)?;
            der
        }
        Err(source) => {
            return Err(ServerError::Io {
                op: "reading an online key",
                source,
            });
        }
    };
    parse(&der).map_err(|reason| ServerError::Secrets {
        cause: format!("the key {} is unusable: {reason}", path.display()),
    })
}

/// Writes a secret through `ferry-durable`: mode 0600 from its creation on, temp file,
/// fsync, rename, fsync the directory.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    ferry_durable::write_private(path, bytes).map_err(|source| ServerError::Io {
        op: "writing a secret",
        source,
    })
}
