//! Stopping an install or a download part-way, cleanly: a [`StopToken`] the daemon holds
//! and the install checks between steps and while bytes stream (the download drains its
//! decode workers, syncs the slot and records its checkpoint before it returns, so what
//! arrived is kept and a later run resumes from there).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;
use tokio::sync::Notify;

/// Why a run was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A person or client cancelled it (`ferry agent cancel`): it waits until asked again.
    Cancelled,
    /// The agent was suspended (`ferry agent suspend`): it continues on resume.
    Suspended,
    /// The agent is shutting down (SIGTERM): it continues at the next start.
    Shutdown,
}

impl StopReason {
    fn code(self) -> u8 {
        match self {
            StopReason::Cancelled => 1,
            StopReason::Suspended => 2,
            StopReason::Shutdown => 3,
        }
    }

    fn from_code(code: u8) -> Option<StopReason> {
        match code {
            1 => Some(StopReason::Cancelled),
            2 => Some(StopReason::Suspended),
            3 => Some(StopReason::Shutdown),
            _ => None,
        }
    }
}

/// Asks a run to stop; cheap to clone, every clone sees the same request. The first
/// reason given wins.
#[derive(Debug, Clone, Default)]
pub struct StopToken {
    reason: Arc<AtomicU8>,
    notify: Arc<Notify>,
}

impl StopToken {
    /// A token nobody has asked to stop yet.
    pub fn new() -> StopToken {
        StopToken::default()
    }

    /// Asks the run to stop for `reason` (a second request keeps the first reason).
    pub fn stop(&self, reason: StopReason) {
        let _ = self
            .reason
            .compare_exchange(0, reason.code(), Ordering::SeqCst, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Why a stop was asked for, if one was.
    pub fn reason(&self) -> Option<StopReason> {
        StopReason::from_code(self.reason.load(Ordering::SeqCst))
    }

    /// Waits until a stop is asked for; returns its reason.
    pub async fn stopped(&self) -> StopReason {
        loop {
            let notified = self.notify.notified();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_wake() {
        let token = StopToken::new();
        assert_eq!(token.reason(), None);
        let waiter = {
            let token = token.clone();
            tokio::spawn(async move { token.stopped().await })
        };
        tokio::task::yield_now().await;
        token.stop(StopReason::Cancelled);
        token.stop(StopReason::Shutdown);
        assert_eq!(waiter.await.unwrap(), StopReason::Cancelled);
        assert_eq!(token.reason(), Some(StopReason::Cancelled));
        assert_eq!(token.stopped().await, StopReason::Cancelled);
    }
}
