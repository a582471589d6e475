//! Issue 19, item 9: bad input gets the code of its real cause, staged for real against the
//! `ferry` binary and a loopback server: a `config.toml` that is not UTF-8, an all-zero
//! hardware id, a server URL whose port speaks no TLS, an artifact name too long for any
//! store, and an admin `Authorization` scheme in another case.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::common::*;

fn error_of(out: &std::process::Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    v["error"].clone()
}

#[test]
fn a_config_that_is_not_utf8_is_invalid_configuration_not_an_io_error() {
    let f = fleet(2, |s| s.url());
    let config = f.device.join("config.toml");
    let saved = std::fs::read(&config).unwrap();
    let mut bytes = saved.clone();
    bytes.splice(0..0, [0xff, 0xfe, b'\n']);
    std::fs::write(&config, &bytes).unwrap();
    let error = error_of(&run(&["list", "--json", "--device", s(&f.device)]));
    assert_eq!(error["code"], "CONFIG_INVALID", "{error}");
    assert!(
        error["cause"].as_str().unwrap().contains("not UTF-8"),
        "{error}"
    );
    let fix = error["fix"].as_str().unwrap();
    assert!(
        fix.contains("config.toml") && !fix.contains("permissions"),
        "{error}"
    );
    // TOML that does not parse is the same cause.
    std::fs::write(&config, "server = [").unwrap();
    let error = error_of(&run(&["status", "--json", "--device", s(&f.device)]));
    assert_eq!(error["code"], "CONFIG_INVALID", "{error}");
    std::fs::write(&config, saved).unwrap();
    ok(&["list", "--device", s(&f.device)]);
}

#[test]
fn an_all_zero_device_id_is_a_hardware_id_that_could_not_be_read() {
    let f = fleet(2, |s| s.url());
    let path = f.device.join("identity.json");
    let mut identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    identity["device_id"] = "0000000000000000".into();
    std::fs::write(&path, serde_json::to_vec(&identity).unwrap()).unwrap();
    let error = error_of(&run(&["status", "--json", "--device", s(&f.device)]));
    assert_eq!(error["code"], "DEVICE_ID_ZERO", "{error}");
    assert!(
        error["cause"]
            .as_str()
            .unwrap()
            .contains("hardware id could not be read"),
        "{error}"
    );
    let fix = error["fix"].as_str().unwrap();
    assert!(
        fix.contains("hardware") && !fix.contains("backup"),
        "{error}"
    );
    // A file that is not an identity at all is still a damaged file.
    std::fs::write(&path, b"{").unwrap();
    let error = error_of(&run(&["status", "--json", "--device", s(&f.device)]));
    assert_eq!(error["code"], "DEVICE_CORRUPT", "{error}");
}

/// A listener on loopback that answers every connection as `answer` does, until dropped.
fn listener(answer: fn(std::net::TcpStream)) -> String {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", socket.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in socket.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    url
}

fn point_at(device: &std::path::Path, url: &str) {
    let config = device.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("server = ") {
                format!("server = \"{url}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&config, text).unwrap();
}

#[test]
fn a_port_that_speaks_no_tls_is_a_failed_handshake_not_an_unreachable_server() {
    let f = fleet(2, |s| s.url());
    // A plain HTTP server on the port, and a service that hangs up at once.
    let plain_http = listener(|mut stream| {
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    });
    let hangs_up = listener(drop);
    for url in [plain_http, hangs_up] {
        point_at(&f.device, &url);
        let error = error_of(&run(&["list", "--json", "--device", s(&f.device)]));
        assert_eq!(error["code"], "TLS_HANDSHAKE_FAILED", "{url}: {error}");
        assert!(error["cause"].as_str().unwrap().contains(&url), "{error}");
        assert!(error["fix"].as_str().unwrap().contains("port"), "{error}");
    }
    // Nothing listening at all is still the network's.
    let closed = {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", socket.local_addr().unwrap())
    };
    point_at(&f.device, &closed);
    let error = error_of(&run(&["list", "--json", "--device", s(&f.device)]));
    assert_eq!(error["code"], "SERVER_UNREACHABLE", "{error}");
}

/// GET `path` on the server (pinned CA) with `authorization`, if any: (status, body).
fn get(server: &Server, path: &str, authorization: Option<&str>) -> (u16, String) {
    let url = format!("{}{path}", server.url());
    let authorization = authorization.map(str::to_owned);
    on_pinned_client(server, |client| async move {
        let mut request = client.get(&url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}

#[test]
fn an_artifact_name_too_long_for_the_store_is_not_found() {
    let f = fleet(2, |s| s.url());
    let long = "a".repeat(300);
    for path in [
        format!("/artifacts/{long}"),
        format!("/artifacts/x/{long}"),
        format!("/artifacts/{}", "b/".repeat(600)),
        format!("/tuf/metadata/{long}.json"),
        format!("/tuf/targets/{}.{long}", "0".repeat(64)),
    ] {
        let (status, body) = get(&f.server, &path, None);
        assert_eq!(status, 404, "{}: {body}", &path[..40]);
        assert!(body.contains("NOT_FOUND"), "{body}");
    }
}

#[test]
fn the_admin_authorization_scheme_is_case_insensitive() {
    let f = fleet(2, |s| s.url());
    let token = std::fs::read_to_string(f.server.data.join("admin-token")).unwrap();
    let token = token.trim();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, body) = get(
            &f.server,
            "/v1/admin/devices",
            Some(&format!("{scheme} {token}")),
        );
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    let (status, _) = get(
        &f.server,
        "/v1/admin/devices",
        Some(&format!("bearer   {token}")),
    );
    assert_eq!(status, 200, "spaces after the scheme");
    for refused in [
        format!("Basic {token}"),
        format!("Bearer{token}"),
        "bearer ".into(),
    ] {
        let (status, body) = get(&f.server, "/v1/admin/devices", Some(&refused));
        assert_eq!(status, 401, "{refused:?}: {body}");
    }
}
