//! The running agent of a device, if there is one: device commands ask it over its local
//! API (`ferry_daemon::client`) and print its answer exactly as they print their own.

use std::path::Path;

use ferry_daemon::client::{CallError, Client};

use crate::failure::Failure;

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
