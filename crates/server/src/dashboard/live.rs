//! Live updates: every report the event writer commits, and every dashboard action, is
//! sent on a broadcast channel ([`Feed`]) and pushed to open pages as server-sent events
//! (`GET /dashboard/events`). One process: each replica pushes what it ingested itself
//! (ARCHITECTURE.md, "Dashboard").

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use ferry_events::{EventKind, EventReport};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use super::{Dash, Session};

/// Most live messages kept for a slow page before it skips ahead.
const BACKLOG: usize = 1024;

/// What one live message says.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Live {
    /// A device's report was stored.
    Report {
        /// The device.
        device_id: String,
        /// The event (`progress`, `installed`, …).
        event: String,
        /// The phase or state it reports.
        phase: Option<String>,
        /// Percent done, for progress.
        percent: Option<f64>,
        /// Seconds remaining, as the device estimated them.
        eta_secs: Option<f64>,
        /// The error code, for failures.
        code: Option<String>,
    },
    /// A rollout was halted, resumed or paused from the dashboard.
    Rollout {
        /// The rollout.
        id: i64,
    },
}

/// The sending end, shared by the event writer and the dashboard (cheap to clone).
#[derive(Debug, Clone)]
pub struct Feed {
    tx: broadcast::Sender<Live>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    /// A feed nobody listens to yet.
    pub fn new() -> Feed {
        Feed {
            tx: broadcast::channel(BACKLOG).0,
        }
    }

    /// Sends the reports just committed (nothing when no page is open).
    pub fn reports(&self, reports: &[EventReport]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for r in reports {
            let _ = self.tx.send(Live::Report {
                device_id: r.device_id.to_string(),
                event: r.event.as_str().into(),
                phase: r
                    .progress
                    .as_ref()
                    .map(|p| p.phase.clone())
                    .or_else(|| r.transition.as_ref().map(|t| t.to.clone())),
                percent: r.progress.as_ref().map(|p| p.percent).or(matches!(
                    r.event,
                    EventKind::Installed | EventKind::Committed
                )
                .then_some(100.0)),
                eta_secs: r.progress.as_ref().and_then(|p| p.eta_secs),
                code: r.error.as_ref().map(|e| e.code.clone()),
            });
        }
    }

    /// Says a rollout changed.
    pub fn rollout_changed(&self, id: i64) {
        let _ = self.tx.send(Live::Rollout { id });
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.tx.subscribe()
    }
}

/// `GET /dashboard/events`: the live messages as server-sent events (`data:` JSON).
pub async fn events(
    State(dash): State<Dash>,
    _session: Session,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = dash.feed.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(live) => Event::default()
                .json_data(&live)
                .unwrap_or_else(|_| Event::default().comment("unencodable")),
            // A slow page skips ahead and says so; the next reload is whole.
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
