//! HTTP/2's limits, for TLS connections that negotiated ALPN `h2` (see [`crate::serve`]).
//!
//! One HTTP/2 connection carries many requests at once (the dashboard's live streams of every
//! tab, a device's downloads), so its limits are per connection and per stream. hyper has no
//! request-head deadline for HTTP/2, and keep-alive pings keep a silent connection's bytes
//! moving, so the header deadline's job (closing connections left unused) is done here by
//! counting the connection's open streams: none open for the header deadline and the
//! connection is told to go away (GOAWAY), then dropped if it has not gone a deadline later.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;

/// Streams one connection may have open at once: dozens of dashboard tabs (one live stream
/// each) and their page loads fit; a client cannot make one connection cost more (each
/// stream may hold an artifact file and a send buffer).
pub const MAX_CONCURRENT_STREAMS: u32 = 32;

/// Largest request header list (HPACK-decoded) accepted: room for cookies and a bearer
/// token many times over, while a header flood is refused before it costs memory.
pub const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Flow-control window each stream grants the client (bytes it may send before the server
/// reads): bounds what one upload buffers in the server.
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// Flow-control window of the whole connection (the sum over its streams): bounds what one
/// connection buffers in the server whatever its streams do. Fixed (no adaptive window),
/// so a client cannot grow it.
pub const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;

/// Bytes the server queues per stream for a client that is slow to read: bounds the memory
/// a stalled reader holds (at most [`MAX_CONCURRENT_STREAMS`] times this per connection).
pub const MAX_SEND_BUFFER: usize = 256 * 1024;

/// An HTTP/2 connection builder for the idle deadline `idle`: keep-alive pings every half of it,
/// answered within the other half (so a vanished peer is dropped within the idle deadline,
/// as an HTTP/1.1 one is), and the bounds above. hyper's defaults stay for the reset-flood
/// guards (pending-accept and local-error resets, CVE-2023-44487) and the 16 KiB frame size.
pub fn builder(idle: Duration) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let half_idle = (idle / 2).max(Duration::from_millis(100));
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .keep_alive_interval(half_idle)
        .keep_alive_timeout(half_idle)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_send_buf_size(MAX_SEND_BUFFER);
    http
}

/// How many streams of one connection are open, and how many were ever opened (so a burst
/// of short requests between two looks still counts as use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Streams {
    open: usize,
    opened: u64,
}

/// The open streams of one HTTP/2 connection: [`StreamCount::service`] counts them,
/// [`StreamCount::unused_for`] waits until none has been open for a while.
#[derive(Debug, Clone)]
pub struct StreamCount {
    streams: Arc<watch::Sender<Streams>>,
}

impl Default for StreamCount {
    fn default() -> Self {
        StreamCount {
            streams: Arc::new(watch::Sender::new(Streams::default())),
        }
    }
}

impl StreamCount {
    /// Wraps `inner` so each request's stream counts as open from its arrival until its
    /// response body ends or is dropped (a live stream stays open as long as it is read).
    pub fn service<S>(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            count: self.clone(),
        }
    }

    /// Completes once no stream has been open, nor opened, for `quiet`.
    pub async fn unused_for(&self, quiet: Duration) {
        let mut seen = self.streams.subscribe();
        loop {
            let Ok(now) = seen.wait_for(|s| s.open == 0).await.map(|s| *s) else {
                return;
            };
            let used = tokio::time::timeout(quiet, seen.wait_for(|s| s.opened != now.opened));
            if used.await.is_err() {
                return;
            }
        }
    }

    fn open(&self) -> OpenStream {
        self.streams.send_modify(|s| {
            s.open += 1;
            s.opened += 1;
        });
        OpenStream(self.clone())
    }
}

/// One open stream; dropping it closes it.
#[derive(Debug)]
struct OpenStream(StreamCount);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams.send_modify(|s| s.open -= 1);
    }
}

/// A hyper service whose requests count as open streams of a [`StreamCount`].
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    count: StreamCount,
}

impl<S, E> hyper::service::Service<Request<Incoming>> for Counted<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = E>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = E;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let stream = self.count.open();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                Body::new(CountedBody {
                    body,
                    _stream: stream,
                })
            }))
        })
    }
}

/// A response body that keeps its stream counted open until it ends or is dropped.
struct CountedBody {
    body: Body,
    _stream: OpenStream,
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection whose streams are all closed is unused after the quiet time; one with a
    /// stream open, or with a stream opened during the quiet time, is not.
    #[tokio::test]
    async fn unused_for_waits_for_no_open_stream_and_a_quiet_time() {
        let count = StreamCount::default();
        let quiet = Duration::from_millis(200);
        let started = std::time::Instant::now();
        count.unused_for(quiet).await;
        assert!(started.elapsed() >= quiet);

        let open = count.open();
        let waiting = tokio::time::timeout(Duration::from_millis(500), count.unused_for(quiet));
        assert!(waiting.await.is_err(), "unused while a stream was open");
        drop(open);

        let busy = count.clone();
        let opener = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(busy.open());
            }
        });
        let started = std::time::Instant::now();
        count.unused_for(quiet).await;
        opener.await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
    }
}
