//! The doctor's way to the server: the device's own client (pinned CA, its proxies), a
//! time limit on every request so an unreachable server costs seconds, not minutes, and
//! a count of the requests that failed (the server's error rate as the doctor saw it).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::AgentError;
use crate::client::Client;
use crate::doctor::subject::Subject;

/// The longest any one request of the doctor waits.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// The device's client, limited and counted.
#[derive(Debug)]
pub struct Net {
    client: Client,
    server: String,
    made: AtomicUsize,
    failed: AtomicUsize,
}

impl Net {
    /// The device's client, or why there is none (no readable config or CA: the config
    /// and trust checks say which).
    pub fn new(subject: &Subject) -> Result<Net, AgentError> {
        let client = subject.client()?;
        let server = subject
            .config()
            .map(|c| c.server.clone())
            .unwrap_or_default();
        Ok(Net {
            client,
            server,
            made: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Runs one request (`what` names it in a timeout) within [`REQUEST_TIMEOUT`],
    /// counting it.
    pub async fn call<'a, T, F, Fut>(&'a self, what: &str, request: F) -> Result<T, AgentError>
    where
        F: FnOnce(&'a Client) -> Fut,
        Fut: Future<Output = Result<T, AgentError>>,
    {
        self.made.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, request(&self.client)).await {
            Ok(result) => result,
            Err(_) => Err(AgentError::ServerUnreachable {
                url: format!("{}{what}", self.server),
                reason: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            }),
        };
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// (requests that failed, requests made) so far.
    pub fn errors(&self) -> (usize, usize) {
        (
            self.failed.load(Ordering::Relaxed),
            self.made.load(Ordering::Relaxed),
        )
    }
}
