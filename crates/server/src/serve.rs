//! Serving connections under limits, for the HTTPS server and `ferry cache` alike: a cap on
//! connections held at once, a TLS handshake deadline, a request-head deadline, a request-body
//! deadline and an idle deadline, so clients that stall at any step cannot hold the server's
//! file descriptors (a few hundred stalled connections used to make it refuse everyone).
//!
//! The listener takes a permit from a semaphore before it accepts, so beyond
//! [`Limits::max_connections`] new connections wait in the kernel's backlog instead of
//! costing a descriptor each; the permit goes back when the connection ends. A TLS connection
//! that negotiated ALPN `h2` is served as HTTP/2 under the limits of [`crate::http2`] (streams,
//! header list, windows, keep-alive pings, unused-connection deadline); every other one
//! (ALPN `http/1.1`, no ALPN, plain TCP) as hyper's HTTP/1.1 with a timer (header-read
//! timeout). Either way its request bodies are wrapped in a total deadline (tower-http) and
//! its socket in [`IdleTimeout`]. TCP keepalive and `TCP_USER_TIMEOUT` let the kernel drop
//! connections of devices that lost power, which the idle deadline would otherwise only
//! notice at its next read or write. On shutdown every connection is told to finish (HTTP/2:
//! GOAWAY) and the server waits until each has given its permit back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::http2;

/// Descriptors kept for everything that is not a client connection (database, log, listener,
/// runtime, the cache's upstream connections) when [`Limits::max_connections`] is derived from
/// the process's descriptor limit.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Descriptors one connection may hold: its socket and the artifact file it streams.
pub const DESCRIPTORS_PER_CONNECTION: u64 = 2;

/// Most connections served at once by default, whatever the descriptor limit allows.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Most descriptors [`raise_descriptor_limit`] asks for.
const MAX_DESCRIPTORS: u64 = 1 << 20;

/// What one connection may cost the server. The defaults are documented on each field; every
/// one is a flag of `ferry server` and `ferry cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once (default: [`default_max_connections`], from the descriptor
    /// limit). Beyond it, new connections wait in the kernel's listen backlog until one ends.
    pub max_connections: usize,
    /// Time for the TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Time for a request's head (request line and headers) to arrive, counted from the moment
    /// the connection is ready for it: after the handshake or after the previous answer, so it
    /// also closes keep-alive connections left unused this long (default 10 s). HTTP/2 has no
    /// request-head deadline in hyper: there a connection with no open stream for this long
    /// is sent a GOAWAY, and dropped one more such deadline later if still there.
    pub header_timeout: Duration,
    /// Time for a whole request body to arrive (default 30 s).
    pub body_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed: a client that
    /// stopped reading its answer, a device that vanished mid-transfer (default 60 s). HTTP/2
    /// pings every half of it and drops a peer that does not answer within the other half; a
    /// stalled HTTP/2 reader is bounded by flow control instead (the pings keep bytes moving).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The process's soft descriptor limit, if it can be read.
fn descriptor_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    known.then_some(limit)
}

/// Raises the soft descriptor limit to the hard one (at most 2^20), as a server should: the
/// soft default (often 1024) is meant for interactive programs. Returns the soft limit now.
pub fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = descriptor_limit()?;
    let wanted = limit.rlim_max.min(MAX_DESCRIPTORS as libc::rlim_t);
    if limit.rlim_cur < wanted {
        limit.rlim_cur = wanted;
        // SAFETY: setrlimit reads the struct; a soft limit up to the hard one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "could not raise the descriptor limit");
        }
    }
    descriptor_limit().map(|limit| limit.rlim_cur)
}

/// The connections the soft descriptor limit allows: less [`RESERVED_DESCRIPTORS`], at
/// [`DESCRIPTORS_PER_CONNECTION`] each, between 16 and [`DEFAULT_MAX_CONNECTIONS`].
pub fn default_max_connections() -> usize {
    let soft = descriptor_limit().map_or(DEFAULT_MAX_CONNECTIONS as u64 * 2, |l| l.rlim_cur);
    let usable = (soft.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_CONNECTION).max(16);
    usize::try_from(usable)
        .unwrap_or(DEFAULT_MAX_CONNECTIONS)
        .min(DEFAULT_MAX_CONNECTIONS)
}

/// Serves `router` on `listener` under `limits` (over TLS with `tls`, HTTP/2 or HTTP/1.1 as
/// ALPN chose, else plain HTTP/1.1) until `shutdown` completes; then stops accepting, lets
/// each connection finish the requests it is in, and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let max_connections = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX >> 3);
    let permits = Arc::new(Semaphore::new(max_connections as usize));
    let (stop, stopped) = watch::channel(false);
    let acceptor = tls.map(TlsAcceptor::from);
    let router = router.layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
        limits.body_timeout,
    ));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tune_socket(&tcp, &limits);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            let io = TokioIo::new(IdleTimeout::new(tls, limits.idle_timeout));
                            if h2 {
                                serve_http2(io, service, &limits, stopped).await
                            } else {
                                serve_http1(io, service, &limits, stopped).await
                            }
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%addr, %error, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%addr, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
                None => {
                    let io = TokioIo::new(IdleTimeout::new(tcp, limits.idle_timeout));
                    serve_http1(io, service, &limits, stopped).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%addr, %error, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection is told to finish; each gives its permit back when it has.
    let _ = stop.send(true);
    let _ = permits.acquire_many(max_connections).await;
    Ok(())
}

/// The router as hyper serves it, one per connection.
type Service = TowerToHyperService<Router>;

/// A socket as hyper serves it.
type Io<T> = TokioIo<IdleTimeout<T>>;

/// Serves one connection as HTTP/1.1 until it ends or `stopped` turns true (then lets it
/// finish the request it is in). The header deadline also closes keep-alive connections
/// left unused.
async fn serve_http1<T>(
    io: Io<T>,
    service: Service,
    limits: &Limits,
    stopped: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = std::pin::pin!(http.serve_connection(io, service));
    let ended = until_stopped(connection, stopped, std::future::pending()).await;
    match ended {
        Ended::Served(result) => result,
        Ended::Stopping(mut connection) | Ended::Unused(mut connection) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Serves one TLS connection that negotiated ALPN `h2` as HTTP/2 under [`http2::builder`]'s
/// limits, until it ends or `stopped` turns true (then lets its open streams finish). A
/// connection with no open stream for the header deadline is sent away (GOAWAY), and dropped
/// if it has not gone after one more header deadline: that also bounds a client that
/// connects and never sends the HTTP/2 preface (hyper waits for the preface before it can
/// send a GOAWAY).
async fn serve_http2<T>(
    io: Io<T>,
    service: Service,
    limits: &Limits,
    stopped: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let streams = http2::StreamCount::default();
    let http = http2::builder(limits.idle_timeout);
    let connection = std::pin::pin!(http.serve_connection(io, streams.service(service)));
    let unused = streams.unused_for(limits.header_timeout);
    match until_stopped(connection, stopped, unused).await {
        Ended::Served(result) => result,
        Ended::Stopping(mut connection) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        Ended::Unused(mut connection) => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.header_timeout, connection).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            }
        }
    }
}

/// How a connection's service ended: it ended by itself, or the server is stopping, or the
/// connection went unused; the last two hand the connection back to be shut down.
enum Ended<C: Future> {
    Served(C::Output),
    Stopping(C),
    Unused(C),
}

/// Drives `connection` until it ends, `stopped` turns true (or its sender is gone) or
/// `unused` completes.
async fn until_stopped<C: Future + Unpin>(
    mut connection: C,
    mut stopped: watch::Receiver<bool>,
    unused: impl Future<Output = ()>,
) -> Ended<C> {
    let stopping = tokio::select! {
        result = &mut connection => return Ended::Served(result),
        _ = stopped.wait_for(|stop| *stop) => true,
        () = unused => false,
    };
    if stopping {
        Ended::Stopping(connection)
    } else {
        Ended::Unused(connection)
    }
}

/// TCP keepalive (first probe after the idle deadline, then every 10 s, 3 tries) and
/// `TCP_USER_TIMEOUT` (unacknowledged data for the idle deadline): the kernel drops the
/// connection of a device that lost power, which never sends a FIN.
fn tune_socket(tcp: &TcpStream, limits: &Limits) {
    let _ = tcp.set_nodelay(true);
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(limits.idle_timeout)
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(error) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "could not set TCP keepalive");
    }
    if let Err(error) = socket.set_tcp_user_timeout(Some(limits.idle_timeout)) {
        tracing::debug!(%error, "could not set TCP_USER_TIMEOUT");
    }
}

/// A socket that fails with `TimedOut` once no byte has moved either way for its deadline
/// while a read, write or flush waits: the idle deadline of [`Limits`].
#[derive(Debug)]
pub struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    /// Wraps `inner`; the deadline starts now.
    pub fn new(inner: T, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn progressed(&mut self) {
        self.sleep.as_mut().reset(Instant::now() + self.timeout);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep.as_mut().poll(cx).is_ready()
    }

    /// A write's outcome: bytes written move the deadline, a write still pending past it
    /// fails.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no byte moved within the idle deadline",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that sends nothing is cut at the deadline; one that keeps sending is not.
    #[tokio::test]
    async fn idle_timeout_cuts_a_silent_peer_and_spares_a_talking_one() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut silent = IdleTimeout::new(a, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let mut buf = [0u8; 8];
        let error = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let (a, mut peer) = tokio::io::duplex(64);
        let mut talking = IdleTimeout::new(a, Duration::from_millis(300));
        let writer = tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                peer.write_all(b"x").await.unwrap();
            }
        });
        let mut got = 0;
        while got < 6 {
            got += talking.read(&mut buf).await.unwrap();
        }
        writer.await.unwrap();
        b.shutdown().await.unwrap();
    }

    /// A request in flight on each protocol when the server is told to stop.
    async fn slow_request(
        addr: std::net::SocketAddr,
        ca_pem: &str,
        alpn: &[u8],
    ) -> tokio::task::JoinHandle<(hyper::Version, u16, String)> {
        let (mut config, _) = ferry_tls::client_config_pinned(ca_pem).unwrap();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let io = TokioIo::new(tls);
        let request = hyper::Request::get(format!("https://{addr}/slow"))
            .body(String::new())
            .unwrap();
        let response = if alpn == b"h2" {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            tokio::spawn(async move { sender.send_request(request).await })
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            tokio::spawn(async move { sender.send_request(request).await })
        };
        tokio::spawn(async move {
            let response = response.await.unwrap().unwrap();
            let (version, status) = (response.version(), response.status().as_u16());
            let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1024)
                .await
                .unwrap();
            (version, status, String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Stopping lets the request in flight on an HTTP/2 and on an HTTP/1.1 connection
    /// finish, then `serve` returns and the port is closed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_lets_requests_in_flight_finish_on_both_protocols() {
        let ca = ferry_tls::pki::Ca::generate("serve test CA").unwrap();
        let cert = ca.issue_server_cert(&["127.0.0.1"]).unwrap();
        let mut tls = ferry_tls::server_config(&cert.cert_pem, &cert.key_pem).unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let router = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Some(Arc::new(tls)),
            router,
            Limits::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let h2 = slow_request(addr, ca.cert_pem(), b"h2").await;
        let h1 = slow_request(addr, ca.cert_pem(), b"http/1.1").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(()).unwrap();
        let stopping = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !server.is_finished(),
            "serve returned before its requests ended"
        );
        assert_eq!(
            h2.await.unwrap(),
            (hyper::Version::HTTP_2, 200, "done".to_owned())
        );
        assert_eq!(
            h1.await.unwrap(),
            (hyper::Version::HTTP_11, 200, "done".to_owned())
        );
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returned once the requests were done")
            .unwrap()
            .unwrap();
        assert!(stopping.elapsed() < Duration::from_secs(5));
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        let cap = default_max_connections();
        assert!((16..=DEFAULT_MAX_CONNECTIONS).contains(&cap), "{cap}");
    }
}
