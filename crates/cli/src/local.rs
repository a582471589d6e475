//! The device a command acts on: its running agent, if there is one (device commands ask it
//! over its local API, `ferry_daemon::client`, and print its answer exactly as they print
//! their own), else its directory opened in-process ([`open`]).

use std::path::Path;

use ferry_agent::device::Device;
use ferry_daemon::client::{CallError, Client};

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
