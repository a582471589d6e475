//! `ferry cache`: the LAN content cache in front of an origin server.

use std::process::ExitCode;

use crate::args::CacheArgs;
use crate::failure::Failure;

pub async fn cache(a: CacheArgs) -> Result<ExitCode, Failure> {
    // Every connection costs a descriptor or two: use what the hard limit allows.
    ferry_server::serve::raise_descriptor_limit();
    let upstream_ca = match &a.upstream_ca {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                "CACHE_FAILED",
                format!("the upstream CA {} could not be read: {e}", path.display()),
                "pass the origin's DIR/pki/ca.pem with --upstream-ca",
            )
        })?),
        None => None,
    };
    let cache = ferry_server::cache::Cache::new(ferry_server::cache::CacheConfig {
        upstream_ca,
        upstream: a.upstream.clone(),
        dir: a.dir,
        max_bytes: a.max_bytes,
    })?;
    let listener = tokio::net::TcpListener::bind(a.listen).await.map_err(|e| {
        Failure::new(
            "LISTEN_FAILED",
            format!("the cache could not listen on {}: {e}", a.listen),
            "choose a free address with --listen",
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::new("LISTEN_FAILED", e.to_string(), "try again"))?;
    println!(
        "ferry cache listening on http://{addr} (upstream {})",
        a.upstream
    );
    ferry_server::serve::serve(
        listener,
        None,
        ferry_server::cache::cache_app(cache),
        a.limits.limits(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await
    .map_err(|e| {
        Failure::new(
            "CACHE_FAILED",
            format!("the cache stopped: {e}"),
            "check the log and restart it",
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
