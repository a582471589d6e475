//! Telling a failed TLS handshake from a network that is down: an error that comes back from
//! an HTTPS client is searched for the rustls error (or the early end of the connection)
//! that made the handshake fail, so a port that speaks no TLS is named as such instead of
//! "the server could not be reached".

use crate::config::TlsError;

/// The handshake failure in `error` (a client error and its sources, as reqwest returns
/// them), if the handshake is what failed: a rustls protocol error (an answer that is not
/// TLS: "received corrupt message of type InvalidContentType", an alert, a peer that
/// misbehaved) or a connection that ended or was reset during the handshake. Certificate
/// refusals are not handled here (the pinned verifier reports them more precisely), and
/// neither are connections refused or timed out, which are the network's.
///
/// Pass only errors of setting a connection up (reqwest: `is_connect()`): a connection
/// reset or cut later, mid-answer, is the network's too.
pub fn handshake_failure(
    error: &(dyn std::error::Error + 'static),
    server: &str,
) -> Option<TlsError> {
    let failed = |reason: String| TlsError::HandshakeFailed {
        server: server.to_owned(),
        reason,
    };
    let mut next = Some(error);
    while let Some(error) = next.map(innermost_io) {
        if let Some(tls) = rustls_error(error) {
            return match tls {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    None
                }
                other => Some(failed(format!(
                    "{other} (what answered does not speak TLS, or refused the handshake)"
                ))),
            };
        }
        // The TCP connection was up (refused and unreachable are other kinds): closed or
        // reset before the handshake finished.
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            )
        {
            return Some(failed(
                "the connection was closed during the handshake (what answered does not speak TLS)"
                    .to_owned(),
            ));
        }
        next = error.source();
    }
    None
}

/// The error an `io::Error` wraps, through every layer (a connector wraps the TLS stream's
/// `io::Error` in another; `source()` skips such layers), or `error` itself.
fn innermost_io<'a>(
    mut error: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    while let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .filter(|inner| inner.is::<std::io::Error>())
    {
        error = inner;
    }
    error
}

/// The rustls error `error` is, or wraps as an `io::Error` (how TLS streams report it).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    error
        .downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    #[test]
    fn a_rustls_protocol_error_inside_an_io_error_is_a_handshake_failure() {
        let inner = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let found = handshake_failure(&io, "https://127.0.0.1:8080").expect("found");
        // As a connector reports it: wrapped once more.
        let wrapped = std::io::Error::other(io);
        assert_eq!(
            handshake_failure(&wrapped, "https://127.0.0.1:8080"),
            Some(found.clone())
        );
        assert_eq!(found.code(), "TLS_HANDSHAKE_FAILED");
        assert!(found.to_string().contains("InvalidContentType"), "{found}");
        assert!(found.fix().contains("HTTPS port"), "{}", found.fix());
    }

    #[test]
    fn certificate_refusals_and_network_errors_are_not_handshake_failures() {
        let certificate = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(handshake_failure(&certificate, "s"), None);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(handshake_failure(&refused, "s"), None);
    }
}
