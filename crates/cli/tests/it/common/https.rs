//! HTTPS requests to a test server as its devices make them: trusting only its CA.

use super::Server;

/// An HTTPS client that trusts only `server`'s CA (what its devices pin).
pub fn pinned_client(server: &Server) -> reqwest::Client {
    let ca = std::fs::read_to_string(server.ca()).unwrap();
    let (config, _) = ferry_tls::client_config_pinned(&ca).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// Runs `requests` with a [`pinned_client`] of `server` on a runtime of their own.
pub fn on_pinned_client<T, F: std::future::Future<Output = T>>(
    server: &Server,
    requests: impl FnOnce(reqwest::Client) -> F,
) -> T {
    let client = pinned_client(server);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(requests(client))
}

/// `GET path` (no body) or `POST path` (with `body`) on the server over its pinned CA, with a
/// bearer token unless `bearer` is empty: (status, JSON body or null).
pub fn https_json(
    server: &Server,
    path: &str,
    bearer: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", server.url());
    let body = body.cloned();
    let bearer = bearer.to_owned();
    on_pinned_client(server, |client| async move {
        let mut request = match &body {
            Some(body) => client.post(&url).json(body),
            None => client.get(&url),
        };
        if !bearer.is_empty() {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, value)
    })
}
