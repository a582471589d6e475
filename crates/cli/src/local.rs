//! The device a command acts on: its running agent, if there is one (device commands ask it
//! over its local API, `ferry_daemon::client`, and print its answer exactly as they print
//! their own), else its directory opened in-process ([`open`]).

use std::path::Path;

use ferry_agent::device::Device;
use ferry_daemon::client::{CallError, Client};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::args::DeviceArgs;
use crate::failure::Failure;

/// How long a command waits at its end to deliver queued event reports.
const DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Delivers queued event reports for at most [`DELIVERY_WAIT`]: never fails the command
/// (the reports stay queued and `ferry status` shows them).
pub(crate) async fn deliver_queued(device: &Device) {
    ferry_agent::report::deliver::deliver_within(device, DELIVERY_WAIT).await;
}

pub(crate) fn open(a: &DeviceArgs) -> Result<Device, Failure> {
    Device::open(&a.device).map_err(|e| Failure::from(e).json(a.json))
}

/// A client of the agent running for the device at `dir`; `None` when none answers.
pub async fn agent(dir: &Path) -> Option<Client> {
    if !ferry_agent::layout::Layout::new(dir)
        .agent_socket()
        .exists()
    {
        return None;
    }
    Client::connect(dir).await.ok()
}

/// A failed call as the command's failure: the agent's own report and data when it
/// answered with an error.
pub fn failure(error: CallError, json: bool) -> Failure {
    match error {
        CallError::Local(e) => Failure::from(e).json(json),
        CallError::Remote(remote) => {
            let mut failure =
                Failure::new(&remote.report.code, remote.report.cause, remote.report.fix);
            failure.data = remote.data;
            failure.json(json)
        }
    }
}

/// `GET path` (`body` `None`) or `POST path body` to the running agent: its answer, or the
/// command's failure ([`failure`]).
pub(crate) async fn call(
    agent: &Client,
    path: &str,
    body: Option<Value>,
    json: bool,
) -> Result<Value, Failure> {
    let answer = match body {
        None => agent.get(path).await,
        Some(body) => agent.post(path, body).await,
    };
    answer.map_err(|e| failure(e, json))
}

/// The agent's answer to `path` (or its `field`) read as a `T`: an answer this ferry cannot
/// read is `AGENT_API` (an agent of another version).
pub(crate) fn read<T: DeserializeOwned>(
    answer: &Value,
    path: &str,
    field: Option<&str>,
    json: bool,
) -> Result<T, Failure> {
    let value = match field {
        Some(field) => answer[field].clone(),
        None => answer.clone(),
    };
    serde_json::from_value(value).map_err(|e| {
        Failure::from(ferry_daemon::DaemonError::Api {
            path: path.into(),
            reason: e.to_string(),
        })
        .json(json)
    })
}

/// [`call`] then [`read`]: the `field` of the agent's answer to `path` as a `T`.
pub(crate) async fn ask<T: DeserializeOwned>(
    agent: &Client,
    path: &str,
    body: Option<Value>,
    field: Option<&str>,
    json: bool,
) -> Result<T, Failure> {
    read(&call(agent, path, body, json).await?, path, field, json)
}
