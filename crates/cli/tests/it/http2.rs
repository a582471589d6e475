//! HTTP/2 (#17), on the real `ferry server`: it offers ALPN `h2` and `http/1.1`; an HTTP/2
//! client gets the same answers as an HTTP/1.1 one (and as a client that offers no ALPN, as
//! ferry's devices do) on device and dashboard routes; one HTTP/2 connection carries more
//! live streams than a browser's six HTTP/1.1 connections plus ordinary requests, and every
//! stream hears the dashboard's action; an HTTP/2 client that sends nothing, or only the
//! preface, is sent away and dropped within two header deadlines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::sim::*;
use crate::common::web::{csrf, percent_encode, runtime};
use crate::common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Live streams opened on one HTTP/2 connection: more than the six HTTP/1.1 connections a
/// browser allows per origin.
const LIVE_STREAMS: usize = 8;

/// A server with release 1.0 of class `vm`, started with `extra` flags.
fn server_with_release(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let image = tmp.path().join("v1.img");
    make_image(&image, 1, 1);
    publish(&data, &image, "1.0");
    let server = Server::start_with(&data, extra);
    (tmp, server)
}

/// The server's pinned-CA client configuration offering `alpn` (empty: no ALPN, as ferry's
/// devices connect).
fn tls_config(server: &Server, alpn: &[&str]) -> tokio_rustls::rustls::ClientConfig {
    let ca = std::fs::read_to_string(server.ca()).unwrap();
    let (mut config, _) = ferry_tls::client_config_pinned(&ca).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// A client of `server` offering `alpn`; redirects are not followed.
fn client(server: &Server, alpn: &[&str]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(server, alpn))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What a request answered, as compared across protocols.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

/// `GET url` with the session `cookie` if any: the protocol it went over and the answer.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
) -> (reqwest::Version, Answer) {
    let mut request = client.get(url).header("accept", "text/html");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let version = response.version();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = Answer {
        status: response.status().as_u16(),
        content_type,
        body: response.text().await.unwrap(),
    };
    (version, answer)
}

/// The `name=value` of the `Set-Cookie` named `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Signs in to the dashboard with the admin token over `client`: the session's `Cookie`.
async fn sign_in(client: &reqwest::Client, server: &Server) -> String {
    let base = server.url();
    let page = client
        .get(format!("{base}/dashboard/login"))
        .send()
        .await
        .unwrap();
    let form_cookie = set_cookie(&page, "__Host-ferry_login");
    let token = csrf(&page.text().await.unwrap());
    let admin = std::fs::read_to_string(server.data.join("admin-token")).unwrap();
    let body = format!(
        "token={}&csrf={}",
        percent_encode(admin.trim()),
        percent_encode(&token)
    );
    let signed_in = client
        .post(format!("{base}/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", form_cookie)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    set_cookie(&signed_in, "ferry_session")
}

#[test]
fn http2_and_http1_clients_get_the_same_answers() {
    let (_tmp, server) = server_with_release(&[]);
    let base = server.url();
    let clients = [
        (
            client(&server, &["h2", "http/1.1"]),
            reqwest::Version::HTTP_2,
        ),
        (client(&server, &["http/1.1"]), reqwest::Version::HTTP_11),
        (client(&server, &[]), reqwest::Version::HTTP_11),
    ];
    runtime().block_on(async {
        // Device routes, and dashboard routes without a session (a static asset, the live
        // stream's refusal, the sign-in redirect).
        for (path, expected) in [
            ("/healthz", 200),
            ("/v1/releases?class=vm", 200),
            ("/tuf/metadata/timestamp.json", 200),
            ("/dashboard/assets/style.css", 200),
            ("/dashboard/events", 401),
            ("/dashboard/failures", 303),
        ] {
            let url = format!("{base}{path}");
            let mut answers = Vec::new();
            for (client, version) in &clients {
                let (went, answer) = fetch(client, &url, None).await;
                assert_eq!(went, *version, "{path}");
                answers.push(answer);
            }
            assert_eq!(answers[0].status, expected, "{path}: {:?}", answers[0]);
            assert!(
                answers.iter().all(|a| *a == answers[0]),
                "{path}: {answers:#?}"
            );
        }
        // A dashboard page with a session, signed in over each protocol: the same page but
        // for the session's CSRF token.
        let mut pages = Vec::new();
        for (client, version) in &clients {
            let session = sign_in(client, &server).await;
            let (went, mut page) = fetch(
                client,
                &format!("{base}/dashboard/failures"),
                Some(&session),
            )
            .await;
            assert_eq!(went, *version);
            assert_eq!(page.status, 200, "{}", page.body);
            if page.body.contains(r#"name="csrf""#) {
                page.body = page.body.replace(&csrf(&page.body), "CSRF");
            }
            pages.push(page);
        }
        assert!(pages.iter().all(|p| *p == pages[0]), "{pages:#?}");
    });
}

/// Opens one TLS connection to `server` offering only ALPN `h2`; asserts the server chose it.
async fn h2_tls(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(server, &["h2"])));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(server.addr.ip().into());
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// Reads `body` until `needle` appears in it; what it read.
async fn read_until(body: &mut hyper::body::Incoming, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let frame = body.frame().await.expect("the stream ended").unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    seen
}

#[test]
fn one_http2_connection_carries_many_live_streams_and_an_action() {
    let (_tmp, server) = server_with_release(&[]);
    let api = Api::new(&server);
    let (status, rollout) = api.admin(
        "/v1/admin/rollouts",
        Some(serde_json::json!({ "class": "vm", "version": "1.0" })),
    );
    assert_eq!(status, 200, "{rollout}");
    let rollout = rollout["id"].as_i64().unwrap();
    let base = server.url();
    runtime().block_on(async {
        let session = sign_in(&client(&server, &["http/1.1"]), &server).await;
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(h2_tls(&server).await),
        )
        .await
        .unwrap();
        let connection = tokio::spawn(connection);
        let get = |path: &str| {
            hyper::Request::get(format!("{base}{path}"))
                .header("cookie", &session)
                .body(Full::new(Bytes::new()))
                .unwrap()
        };

        // The live streams, all open at once on the one connection.
        let mut streams = Vec::new();
        for _ in 0..LIVE_STREAMS {
            let response = sender
                .clone()
                .send_request(get("/dashboard/events"))
                .await
                .unwrap();
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            assert_eq!(response.status().as_u16(), 200);
            assert_eq!(
                response.headers()["content-type"].to_str().unwrap(),
                "text/event-stream"
            );
            streams.push(response.into_body());
        }

        // Ordinary requests beside them: the rollout's page, then its halt.
        let page = sender
            .clone()
            .send_request(get(&format!("/dashboard/rollouts/{rollout}")))
            .await
            .unwrap();
        assert_eq!(page.status().as_u16(), 200);
        let page = page.into_body().collect().await.unwrap().to_bytes();
        let token = csrf(&String::from_utf8_lossy(&page));
        let halt = hyper::Request::post(format!("{base}/dashboard/rollouts/{rollout}/halt"))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!(
                "csrf={}",
                percent_encode(&token)
            ))))
            .unwrap();
        let halted = sender.clone().send_request(halt).await.unwrap();
        assert_eq!(halted.status().as_u16(), 303);

        // Every live stream hears the halt.
        let said = format!(r#""kind":"rollout","id":{rollout}"#);
        for (idx, stream) in streams.iter_mut().enumerate() {
            let heard = tokio::time::timeout(Duration::from_secs(10), read_until(stream, &said))
                .await
                .unwrap_or_else(|_| panic!("live stream {idx} never heard the halt"));
            assert!(heard.contains("data:"), "{heard}");
        }
        assert!(!connection.is_finished(), "the connection ended early");
        drop(streams);
        drop(sender);
        connection.abort();
    });
}

/// Seconds until the server closed `io`, and every byte it sent before.
async fn until_closed<T: tokio::io::AsyncRead + Unpin>(
    io: &mut T,
    started: Instant,
) -> (f64, Vec<u8>) {
    let mut sent = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => sent.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the server never closed the connection");
    (started.elapsed().as_secs_f64(), sent)
}

/// The HTTP/2 frame types in `bytes` (the server's side: no preface).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

/// HTTP/2's GOAWAY frame type.
const GOAWAY: u8 = 0x7;

/// The server's first frame, its SETTINGS: (identifier, value) pairs.
fn first_settings(bytes: &[u8]) -> Vec<(u16, u32)> {
    assert!(bytes.len() >= 9 && bytes[3] == 0x4, "no SETTINGS first");
    let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
    bytes[9..9 + len]
        .chunks(6)
        .map(|e| {
            (
                u16::from_be_bytes([e[0], e[1]]),
                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
            )
        })
        .collect()
}

#[test]
fn an_http2_client_that_sends_nothing_is_dropped_within_two_header_deadlines() {
    // A header deadline of 1 s; the idle deadline far beyond, so it is not what closes.
    let (_tmp, server) = server_with_release(&["--header-timeout", "1", "--idle-timeout", "20"]);
    runtime().block_on(async {
        // Nothing at all after the TLS handshake: hyper waits for the preface, so the
        // server can only drop it, one deadline after asking it to go away.
        let started = Instant::now();
        let mut silent = h2_tls(&server).await;
        let (after, _) = until_closed(&mut silent, started).await;
        assert!(
            (1.5..4.0).contains(&after),
            "a silent client was dropped after {after:.2} s"
        );

        // The preface and SETTINGS, then no request: a GOAWAY after one deadline, and the
        // connection gone after another when the client does not answer it.
        let started = Instant::now();
        let mut idle = h2_tls(&server).await;
        idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let (after, sent) = until_closed(&mut idle, started).await;
        assert!(
            (0.8..4.0).contains(&after),
            "an unused client was dropped after {after:.2} s"
        );
        assert!(
            frame_types(&sent).contains(&GOAWAY),
            "no GOAWAY: {:?}",
            frame_types(&sent)
        );
        // Its SETTINGS announce the stream, window and header-list bounds.
        let settings = first_settings(&sent);
        for (id, value) in [
            (0x3, ferry_server::http2::MAX_CONCURRENT_STREAMS),
            (0x4, ferry_server::http2::STREAM_WINDOW),
            (0x6, ferry_server::http2::MAX_HEADER_LIST_SIZE),
        ] {
            assert!(settings.contains(&(id, value)), "{id:#x}: {settings:?}");
        }

        // A client that keeps using its connection is not sent away: requests 400 ms apart
        // over three header deadlines all answered on the one connection.
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(h2_tls(&server).await),
        )
        .await
        .unwrap();
        let connection = tokio::spawn(connection);
        for _ in 0..8 {
            let request = hyper::Request::get(format!("{}/healthz", server.url()))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert!(!connection.is_finished());
        connection.abort();
    });
}
