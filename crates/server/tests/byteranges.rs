//! Byte ranges as devices use them for chunk reuse: the server and `ferry cache` answer
//! several ranges in one `206 multipart/byteranges`, each part with its Content-Range
//! and exactly the bytes asked, a Content-Length that is the body's, one range as a plain
//! `206`, and nothing satisfiable as `416`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use ferry_server::cache::{Cache, CacheConfig, cache_app};
use ferry_server::{DataDir, app};
use tower::ServiceExt;

fn artifact_bytes() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn get(path: &str, range: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(range) = range {
        request = request.header(header::RANGE, range);
    }
    request.body(Body::empty()).unwrap()
}

async fn read_body(response: Response) -> (axum::http::response::Parts, Vec<u8>) {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap().to_vec();
    (parts, bytes)
}

/// Parses a multipart/byteranges body the plain way (scan for the delimiter), which is
/// how curl and browsers read it: `(Content-Range, bytes)` per part.
fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("\r\n--{boundary}");
    let text = body.to_vec();
    let mut out = Vec::new();
    let positions: Vec<usize> = text
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, w)| *w == delimiter.as_bytes())
        .map(|(i, _)| i)
        .collect();
    let last = *positions.last().expect("a closing delimiter");
    assert_eq!(
        &text[last..],
        format!("{delimiter}--\r\n").as_bytes(),
        "the body ends with the closing delimiter"
    );
    for pair in positions.windows(2) {
        let part = &text[pair[0] + delimiter.len()..pair[1]];
        let head_end = part
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header block");
        let head = String::from_utf8_lossy(&part[..head_end]).to_string();
        let content_range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("a Content-Range")
            .to_owned();
        out.push((content_range, part[head_end + 4..].to_vec()));
    }
    out
}

fn check_multipart(parts_found: &[(String, Vec<u8>)], bytes: &[u8], asked: &[(usize, usize)]) {
    assert_eq!(parts_found.len(), asked.len());
    for ((content_range, data), &(start, end)) in parts_found.iter().zip(asked) {
        assert_eq!(
            content_range,
            &format!("bytes {start}-{end}/{}", bytes.len())
        );
        assert_eq!(data.as_slice(), &bytes[start..=end]);
    }
}

async fn server_with_artifact() -> (tempfile::TempDir, axum::Router, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::open(tmp.path()).await.unwrap();
    let bytes = artifact_bytes();
    data.store
        .put_bytes("releases/vm/1.0/a.chunks.zst", bytes.clone())
        .await
        .unwrap();
    (tmp, app(data), bytes)
}

#[tokio::test]
async fn the_server_answers_several_ranges_in_one_multipart_response() {
    let (_tmp, app, bytes) = server_with_artifact().await;
    let path = "/artifacts/releases/vm/1.0/a.chunks.zst";
    let response = app
        .clone()
        .oneshot(get(path, Some("bytes=10-19,1000-1999,99990-")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let (head, body) = read_body(response).await;
    let content_type = head.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("multipart/byteranges; boundary="));
    assert_eq!(
        head.headers[header::CONTENT_LENGTH].to_str().unwrap(),
        body.len().to_string()
    );
    check_multipart(
        &parts(content_type, &body),
        &bytes,
        &[(10, 19), (1000, 1999), (99_990, 99_999)],
    );

    // One range: a plain 206.
    let (head, body) = read_body(
        app.clone()
            .oneshot(get(path, Some("bytes=5-9")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.headers[header::CONTENT_RANGE], "bytes 5-9/100000");
    assert_eq!(body, &bytes[5..10]);

    // Nothing inside: 416 naming the size.
    let response = app
        .clone()
        .oneshot(get(path, Some("bytes=200000-200010,300000-")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */100000");

    // Overlaps adding up to more than the artifact are not amplified: the whole body.
    let (head, body) = read_body(
        app.oneshot(get(path, Some("bytes=0-99999,0-99999")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, bytes);
}

#[tokio::test]
async fn the_lan_cache_answers_several_ranges_from_its_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(CacheConfig {
        // Never reached: the object is already cached.
        upstream: "http://127.0.0.1:9".into(),
        dir: tmp.path().to_owned(),
        max_bytes: 1 << 30,
        upstream_ca: None,
    })
    .unwrap();
    let bytes = artifact_bytes();
    // The cache serves only `<sha256>.<name>` target paths.
    let file = format!("{}.vm-1.0.chunks.zst", "ab".repeat(32));
    let object = tmp.path().join("objects/tuf/targets").join(&file);
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, &bytes).unwrap();
    let app = cache_app(cache);
    let path = &format!("/tuf/targets/{file}");
    let response = app
        .clone()
        .oneshot(get(path, Some("bytes=0-0,4096-8191,50000-50100")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let (head, body) = read_body(response).await;
    let content_type = head.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert_eq!(
        head.headers[header::CONTENT_LENGTH].to_str().unwrap(),
        body.len().to_string()
    );
    check_multipart(
        &parts(content_type, &body),
        &bytes,
        &[(0, 0), (4096, 8191), (50_000, 50_100)],
    );
    // One range still goes through ServeFile.
    let (head, body) = read_body(app.oneshot(get(path, Some("bytes=7-8"))).await.unwrap()).await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[7..9]);
}
