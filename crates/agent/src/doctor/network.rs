//! The network check, step by step, as far as it gets: the proxy variables in effect,
//! name resolution, a TCP connection, TLS against the pinned CA (a certificate that does
//! not chain to it is `TLS_INTERCEPTED`, naming the issuer that answered), then HTTP
//! through the device's own client. The server check ([`crate::doctor::server`]) judges
//! the HTTP answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpStream;

use crate::AgentError;
use crate::client::Probe;
use crate::doctor::check::{Check, Finding};
use crate::doctor::net::Net;
use crate::doctor::subject::Subject;

/// Name of the check.
pub const NETWORK: &str = "network";

/// How long one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// The proxy variables reqwest honours, and their values.
pub fn proxy_variables() -> Vec<(String, String)> {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ]
    .iter()
    .filter_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| ((*name).to_owned(), v))
    })
    .collect()
}

/// Runs the steps; `probe` is the HTTP step's answer (`GET /healthz` through the
/// device's client), made by the caller so the server check can judge it too.
pub async fn check(subject: &Subject, net: &Net, probe: &Result<Probe, AgentError>) -> Check {
    let proxies = proxy_variables();
    let via_proxy = proxies
        .iter()
        .any(|(name, _)| !name.eq_ignore_ascii_case("no_proxy"));
    let mut steps = Vec::new();
    let direct = direct_steps(subject, net.server(), &mut steps).await;
    let http = match probe {
        Ok(p) => {
            steps.push(json!({
                "step": "http",
                "ok": true,
                "detail": format!("GET /healthz answered {} in {} ms", p.status, p.elapsed.as_millis()),
            }));
            Ok(())
        }
        Err(e) => {
            steps.push(json!({ "step": "http", "ok": false, "detail": e.to_string() }));
            Err(e)
        }
    };
    let evidence = json!({
        "server": net.server(),
        "proxies": proxies.iter().map(|(k, v)| json!({ "variable": k, "value": v })).collect::<Vec<_>>(),
        "steps": steps,
    });
    match (direct, http) {
        (Ok(summary), Ok(())) => Check::ok(NETWORK, summary, evidence),
        // Through a proxy the direct steps may fail while HTTP works: say so.
        (Err(problem), Ok(())) if via_proxy => Check::warn(NETWORK, problem.as_ref(), evidence)
            .with_summary(
                "the server is reached through the proxy in the environment, not directly",
            ),
        (Err(problem), _) => Check::fail(NETWORK, problem.as_ref(), evidence),
        (Ok(_), Err(e)) => Check::fail(NETWORK, e, evidence),
    }
}

/// DNS, TCP, TLS to the server named in the config, each noted in `steps`.
async fn direct_steps(
    subject: &Subject,
    server: &str,
    steps: &mut Vec<serde_json::Value>,
) -> Result<String, Box<dyn ferry_types::Diagnose + Send + Sync>> {
    let unreachable = |reason: String| -> Box<dyn ferry_types::Diagnose + Send + Sync> {
        Box::new(AgentError::ServerUnreachable {
            url: server.to_owned(),
            reason,
        })
    };
    let url = url::Url::parse(server).map_err(|e| unreachable(format!("not a URL: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| unreachable("the URL names no host".into()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);

    // 1. Name resolution.
    let started = Instant::now();
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup =
                tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host.clone(), port)))
                    .await;
            let found = match lookup {
                Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
                Ok(Err(e)) => {
                    steps.push(json!({ "step": "resolve", "ok": false, "detail": e.to_string() }));
                    return Err(Box::new(Finding::NameResolution {
                        host,
                        reason: e.to_string(),
                    }));
                }
                Err(_) => {
                    let reason = format!("no answer within {} s", STEP_TIMEOUT.as_secs());
                    steps.push(json!({ "step": "resolve", "ok": false, "detail": reason }));
                    return Err(Box::new(Finding::NameResolution { host, reason }));
                }
            };
            if found.is_empty() {
                return Err(Box::new(Finding::NameResolution {
                    host,
                    reason: "no address".into(),
                }));
            }
            found
        }
    };
    steps.push(json!({
        "step": "resolve",
        "ok": true,
        "detail": format!("{host} is {} ({} ms)", addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "), started.elapsed().as_millis()),
    }));

    // 2. TCP.
    let mut stream = None;
    let mut tcp_errors = Vec::new();
    for addr in &addrs {
        let started = Instant::now();
        match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                steps.push(json!({
                    "step": "tcp",
                    "ok": true,
                    "detail": format!("connected to {addr} in {} ms", started.elapsed().as_millis()),
                }));
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => tcp_errors.push(format!("{addr}: {e}")),
            Err(_) => tcp_errors.push(format!(
                "{addr}: no answer within {} s",
                STEP_TIMEOUT.as_secs()
            )),
        }
    }
    let Some(stream) = stream else {
        let reason = tcp_errors.join("; ");
        steps.push(json!({ "step": "tcp", "ok": false, "detail": reason }));
        return Err(unreachable(reason));
    };

    // 3. TLS against the pinned CA.
    let Some(ca) = subject.config().and_then(|c| c.ca.clone()) else {
        steps.push(json!({ "step": "tls", "ok": false, "detail": "no CA is pinned" }));
        return Ok("name, TCP fine; TLS not checked (no CA pinned)".into());
    };
    let ca_pem = match std::fs::read_to_string(subject.layout().resolve(&ca)) {
        Ok(pem) => pem,
        Err(e) => {
            steps.push(json!({ "step": "tls", "ok": false, "detail": format!("the pinned CA cannot be read: {e}") }));
            return Ok("name, TCP fine; TLS not checked (the pinned CA cannot be read)".into());
        }
    };
    let (config, probe) = match ferry_tls::client_config_pinned(&ca_pem) {
        Ok(pinned) => pinned,
        Err(e) => {
            steps.push(json!({ "step": "tls", "ok": false, "detail": e.to_string() }));
            return Err(Box::new(AgentError::Tls(e)));
        }
    };
    let server_name = match tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone()) {
        Ok(name) => name,
        Err(e) => return Err(unreachable(format!("{host} is not a TLS server name: {e}"))),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let started = Instant::now();
    match tokio::time::timeout(STEP_TIMEOUT, connector.connect(server_name, stream)).await {
        Ok(Ok(tls)) => {
            let version = tls
                .get_ref()
                .1
                .protocol_version()
                .map_or("TLS".to_owned(), |v| format!("{v:?}"));
            steps.push(json!({
                "step": "tls",
                "ok": true,
                "detail": format!("{version} with a certificate that chains to the pinned CA ({} ms)", started.elapsed().as_millis()),
            }));
            Ok(format!(
                "{host} resolves, {} accepts TCP, TLS chains to the pinned CA, HTTP answers",
                addrs[0]
            ))
        }
        Ok(Err(e)) => {
            steps.push(json!({ "step": "tls", "ok": false, "detail": e.to_string() }));
            match probe.take_error() {
                Some(tls) => Err(Box::new(AgentError::Tls(tls))),
                None => Err(Box::new(Finding::TlsHandshake {
                    server: format!("{host}:{port}"),
                    reason: e.to_string(),
                })),
            }
        }
        Err(_) => {
            let reason = format!("no handshake within {} s", STEP_TIMEOUT.as_secs());
            steps.push(json!({ "step": "tls", "ok": false, "detail": reason }));
            Err(Box::new(Finding::TlsHandshake {
                server: format!("{host}:{port}"),
                reason,
            }))
        }
    }
}
