//! systemd's notify protocol (`Type=notify`): one datagram per message to the socket in
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Hand-written (std's
//! `UnixDatagram`) rather than a crate: it is a dozen lines and needs nothing else.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The variable systemd sets when `WatchdogSec=` is on (microseconds).
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";

/// Sends `state` (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=…`) to systemd; does
/// nothing outside a notify service. A failure is logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(error) = result {
        tracing::warn!(%error, state, "could not notify systemd");
    }
}

/// How often to send `WATCHDOG=1`: half the watchdog timeout systemd set, if it set one.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var(WATCHDOG_USEC).ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket_systemd_names() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        // SAFETY (of the test): this test is the only one in this binary touching these
        // variables.
        unsafe {
            std::env::set_var(NOTIFY_SOCKET, &path);
            std::env::set_var(WATCHDOG_USEC, "2000000");
        }
        notify("READY=1");
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert_eq!(watchdog_interval(), Some(Duration::from_secs(1)));
        unsafe {
            std::env::remove_var(NOTIFY_SOCKET);
            std::env::remove_var(WATCHDOG_USEC);
        }
        notify("WATCHDOG=1"); // outside a notify service: nothing, no error
        assert_eq!(watchdog_interval(), None);
    }
}
