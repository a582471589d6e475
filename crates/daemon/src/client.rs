//! The local API's client (what the `ferry` device commands use when an agent runs):
//! HTTP/1.1 over the device's Unix socket with hyper, one connection per request.

use std::path::{Path, PathBuf};

use bytes_util::Bytes;
use ferry_types::Report;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::error::DaemonError;
use crate::events::Event;

mod bytes_util {
    pub use axum::body::Bytes;
}

/// An error the agent answered with: its report and data, as a local run would give them.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Code, cause, fix.
    pub report: Report,
    /// The data behind it (a personalization refusal's times, …).
    pub data: Option<Value>,
}

/// What a call can fail with.
#[derive(Debug)]
pub enum CallError {
    /// The call did not get an answer.
    Local(DaemonError),
    /// The agent answered with an error.
    Remote(Remote),
}

impl From<DaemonError> for CallError {
    fn from(e: DaemonError) -> CallError {
        CallError::Local(e)
    }
}

/// A client of one device's agent.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    pid: Option<u32>,
}

impl Client {
    /// Connects to the agent of the device at `dir`: `AGENT_NOT_RUNNING` when no agent
    /// answers on its socket.
    pub async fn connect(dir: &Path) -> Result<Client, DaemonError> {
        let socket = ferry_agent::layout::Layout::new(dir).agent_socket();
        let mut client = Client { socket, pid: None };
        let hello =
            client
                .call("GET", "/v1/hello", None)
                .await
                .map_err(|_| DaemonError::NotRunning {
                    dir: dir.to_owned(),
                })?;
        client.pid = hello["pid"].as_u64().map(|p| p as u32);
        Ok(client)
    }

    /// The agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call("GET", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value, CallError> {
        self.call("POST", path, Some(body)).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, DaemonError> {
        let socket_error = |op| {
            let path = self.socket.clone();
            move |source| DaemonError::Socket { op, path, source }
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(socket_error("connecting"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.api(path, e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "ferry-agent")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| self.api(path, e))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| self.api(path, e))
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CallError> {
        let response = self.send(method, path, body).await?;
        let ok = response.status().is_success();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.api(path, e))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| self.api(path, e))?;
        if ok {
            return Ok(value);
        }
        let error = &value["error"];
        let report: Report =
            serde_json::from_value(error.clone()).map_err(|e| self.api(path, e))?;
        let data = error.get("data").cloned();
        Err(CallError::Remote(Remote { report, data }))
    }

    /// The event stream from after `since`: each line an [`Event`], until the agent or
    /// the caller ends it.
    pub async fn events(&self, since: u64) -> Result<EventStream, DaemonError> {
        let path = format!("/v1/events?since={since}");
        let response = self.send("GET", &path, None).await?;
        if !response.status().is_success() {
            return Err(self.api(&path, format!("status {}", response.status())));
        }
        Ok(EventStream {
            body: response.into_body(),
            buffer: Vec::new(),
        })
    }

    fn api(&self, path: &str, reason: impl std::fmt::Display) -> DaemonError {
        DaemonError::Api {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The events of one connection, in order.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Result<Event, DaemonError>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(
                    serde_json::from_slice(&line[..end]).map_err(|e| DaemonError::Api {
                        path: "/v1/events".into(),
                        reason: e.to_string(),
                    }),
                );
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Err(e) => {
                    return Some(Err(DaemonError::Api {
                        path: "/v1/events".into(),
                        reason: e.to_string(),
                    }));
                }
            }
        }
    }
}
