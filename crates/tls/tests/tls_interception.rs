//! Pinned TLS over real loopback handshakes: our CA's server is accepted; a server with a
//! certificate from another CA (an intercepting proxy) is refused and the probe names it.

use std::sync::Arc;

use ferry_tls::pki::{Ca, ServerCert};
use ferry_tls::{self as tls, TlsError};
use ferry_types::Diagnose;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Serves one minimal HTTP/1.1 response per connection with `cert` until the test ends.
async fn serve(cert: &ServerCert) -> std::net::SocketAddr {
    let config = tls::server_config(&cert.cert_pem, &cert.key_pem).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    address
}

async fn handshake(
    ca_pem: &str,
    address: std::net::SocketAddr,
    name: &str,
) -> (std::io::Result<()>, tls::InterceptionProbe) {
    let (config, probe) = tls::client_config_pinned(ca_pem).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let result = connector.connect(server_name, tcp).await.map(|_| ());
    (result, probe)
}

#[tokio::test]
async fn our_ca_is_accepted_by_ip_and_by_name() {
    let ca = Ca::generate("ferry test CA").unwrap();
    let cert = ca.issue_server_cert(&["127.0.0.1", "localhost"]).unwrap();
    let address = serve(&cert).await;
    for name in ["127.0.0.1", "localhost"] {
        let (result, probe) = handshake(ca.cert_pem(), address, name).await;
        result.unwrap();
        assert!(probe.last_failure().is_none());
    }
}

#[tokio::test]
async fn an_intercepting_proxy_is_named_by_its_issuer() {
    let ours = Ca::generate("ferry test CA").unwrap();
    let proxy = Ca::generate("Corporate Inspection Proxy CA").unwrap();
    let cert = proxy
        .issue_server_cert(&["127.0.0.1", "localhost"])
        .unwrap();
    let address = serve(&cert).await;
    let (result, probe) = handshake(ours.cert_pem(), address, "127.0.0.1").await;
    assert!(result.is_err());
    let failure = probe
        .last_failure()
        .expect("the probe recorded the refusal");
    assert!(failure.is_interception());
    assert!(
        failure.issuer.contains("Corporate Inspection Proxy CA"),
        "{}",
        failure.issuer
    );
    assert!(failure.subject.contains("127.0.0.1"), "{}", failure.subject);
    let error = probe.take_error().unwrap();
    assert_eq!(error.code(), "TLS_INTERCEPTED");
    assert!(
        error.to_string().contains("Corporate Inspection Proxy CA"),
        "{error}"
    );
    assert!(probe.last_failure().is_none());
}

#[tokio::test]
async fn a_proxy_copying_our_ca_name_is_still_caught() {
    let ours = Ca::generate("ferry test CA").unwrap();
    let impostor = Ca::generate("ferry test CA").unwrap();
    let cert = impostor.issue_server_cert(&["127.0.0.1"]).unwrap();
    let address = serve(&cert).await;
    let (result, probe) = handshake(ours.cert_pem(), address, "127.0.0.1").await;
    assert!(result.is_err());
    assert_eq!(probe.take_error().unwrap().code(), "TLS_INTERCEPTED");
}

#[tokio::test]
async fn a_name_the_certificate_lacks_is_not_called_interception() {
    let ca = Ca::generate("ferry test CA").unwrap();
    let cert = ca.issue_server_cert(&["localhost"]).unwrap();
    let address = serve(&cert).await;
    let (result, probe) = handshake(ca.cert_pem(), address, "127.0.0.1").await;
    assert!(result.is_err());
    assert!(matches!(
        probe.take_error(),
        Some(TlsError::WrongName { .. })
    ));
}

#[tokio::test]
async fn reqwest_uses_the_pinned_config_and_the_probe_explains_its_failure() {
    let ours = Ca::generate("ferry test CA").unwrap();
    let good = serve(&ours.issue_server_cert(&["127.0.0.1", "localhost"]).unwrap()).await;
    let proxy = Ca::generate("Corporate Inspection Proxy CA").unwrap();
    let intercepted = serve(&proxy.issue_server_cert(&["127.0.0.1"]).unwrap()).await;

    let (config, probe) = tls::client_config_pinned(ours.cert_pem()).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap();
    let body = client
        .get(format!("https://localhost:{}/v1/time", good.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "ok");

    let error = client
        .get(format!("https://127.0.0.1:{}/v1/time", intercepted.port()))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    match probe.take_error() {
        Some(TlsError::Intercepted { issuer, .. }) => {
            assert!(issuer.contains("Corporate Inspection Proxy CA"), "{issuer}")
        }
        other => panic!("expected TLS_INTERCEPTED, got {other:?}"),
    }
}

#[test]
fn the_ca_and_certificates_survive_a_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("ferry test CA").unwrap();
    ca.save(dir.path()).unwrap();
    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    let cert = loaded.issue_server_cert(&["localhost"]).unwrap();
    cert.save(dir.path()).unwrap();
    assert_eq!(
        ServerCert::load(dir.path()).unwrap().cert_pem,
        cert.cert_pem
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        Ca::load(&dir.path().join("missing")).unwrap_err().code(),
        "PKI_IO"
    );
    assert!(tls::server_config("not pem", "not pem").is_err());
    assert!(tls::client_config_pinned("").is_err());
}

#[test]
fn the_pinned_ca_is_described_and_a_damaged_one_is_tls_config() {
    let ca = Ca::generate("ferry test CA").unwrap();
    let summary = tls::describe_ca(ca.cert_pem()).unwrap();
    assert!(summary.subject.contains("ferry test CA"), "{summary:?}");
    assert!(summary.not_before < summary.not_after);
    assert!(summary.not_after > chrono::Utc::now());
    assert_eq!(tls::describe_ca("").unwrap_err().code(), "TLS_CONFIG");
    let damaged = ca.cert_pem().replacen("MII", "MIX", 1);
    assert_eq!(tls::describe_ca(&damaged).unwrap_err().code(), "TLS_CONFIG");
}
