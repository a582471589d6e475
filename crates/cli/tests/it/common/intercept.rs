//! A TLS-inspecting proxy, as a corporate middlebox would be: the device's pin must
//! refuse it and name its issuer.

use std::path::Path;
use std::sync::Arc;

/// A tiny TLS-inspecting proxy: it terminates TLS with a certificate from its own CA
/// ("Corp Inspection CA") and re-originates TLS to the real server, which it trusts.
pub struct InterceptingProxy {
    /// Its `https://` URL.
    pub url: String,
    /// The proxy's own CA, which a client of the proxy would have to trust.
    proxy_ca: String,
    runtime: tokio::runtime::Runtime,
}

impl InterceptingProxy {
    pub fn start(upstream: std::net::SocketAddr, upstream_ca: &Path) -> InterceptingProxy {
        use ferry_tls::pki::Ca;
        let ca = Ca::generate("Corp Inspection CA").unwrap();
        let cert = ca.issue_server_cert(&["127.0.0.1", "localhost"]).unwrap();
        let server_config =
            Arc::new(ferry_tls::server_config(&cert.cert_pem, &cert.key_pem).unwrap());
        let upstream_ca = std::fs::read_to_string(upstream_ca).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let client_config = Arc::new(ferry_tls::client_config_pinned(&upstream_ca).unwrap().0);
        runtime.spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
            let connector = tokio_rustls::TlsConnector::from(client_config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let connector = connector.clone();
                tokio::spawn(async move {
                    let Ok(mut inbound) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let name = rustls_name();
                    let Ok(mut outbound) = connector.connect(name, up).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        InterceptingProxy {
            url: format!("https://{addr}"),
            proxy_ca: ca.cert_pem().to_owned(),
            runtime,
        }
    }

    /// Whether a client trusting the proxy's own CA gets through to the real server.
    pub fn relayed_ok(&self) -> bool {
        let (config, _) = ferry_tls::client_config_pinned(&self.proxy_ca).unwrap();
        let url = format!("{}/healthz", self.url);
        self.runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(config)
                .build()
                .unwrap();
            match client.get(&url).send().await {
                Ok(response) => response.status().is_success(),
                Err(_) => false,
            }
        })
    }
}

fn rustls_name() -> tokio_rustls::rustls::pki_types::ServerName<'static> {
    tokio_rustls::rustls::pki_types::ServerName::IpAddress(
        std::net::IpAddr::from([127, 0, 0, 1]).into(),
    )
}
