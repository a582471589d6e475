use super::*;
use crate::client::{Artifact, Release};
use crate::offer::ChunkedPayload;

fn artifact(name: &str) -> Artifact {
    Artifact {
        url: format!("/tuf/targets/{name}"),
        size: 1000,
        sha256: ferry_types::Sha256::of(name.as_bytes()),
    }
}

fn offer(delta: bool, chunks: bool) -> Offer {
    Offer {
        label: "vm-2.0".into(),
        title: "vm 2.0".into(),
        version: "2.0".parse().unwrap(),
        build_id: "2.0-1".into(),
        download_size: 1000,
        image_size: 4096,
        recommended: true,
        action: "restart",
        kind: if delta { "delta" } else { "full" }.into(),
        delta: delta.then(|| artifact("delta")),
        delta_manifest_digest: delta.then_some(ferry_types::DeltaDigest([7; 32])),
        chunks: chunks.then(|| ChunkedPayload {
            payload: artifact("chunks"),
            index: artifact("index"),
        }),
        release: Release {
            class: "vm".into(),
            version: "2.0".parse().unwrap(),
            build_id: "2.0-1".into(),
            audiences: vec!["customer".into()],
            kind: "full".into(),
            image_size: 4096,
            image_sha256: ferry_types::Sha256::of(b"image"),
            payload: artifact("payload"),
            manifest: artifact("manifest"),
        },
    }
}

fn record(json: &str) -> InstallProgress {
    let base = serde_json::json!({
        "update_id": "6f1c9a52-3b0e-5d7a-8c11-2e4f90ab7d33",
        "version": "2.0",
        "manifest_sha256": ferry_types::Sha256::of(b"manifest"),
        "slot": "b",
        "frames_done": 0,
        "bytes_downloaded": 0,
    });
    let mut value = base;
    let extra: serde_json::Value = serde_json::from_str(json).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

#[test]
fn payloads_are_tried_in_order_and_a_fallback_is_never_retried() {
    use Payload::{Chunks, Delta, Full};
    let fresh = record("{}");
    assert_eq!(remaining(&offer(true, true), &fresh), [Delta, Chunks, Full]);
    assert_eq!(remaining(&offer(true, false), &fresh), [Delta, Full]);
    assert_eq!(remaining(&offer(false, true), &fresh), [Chunks, Full]);
    assert_eq!(remaining(&offer(false, false), &fresh), [Full]);
    // A delta cut by the network left nothing in the record: it runs again.
    let cut = record(r#"{"bytes_downloaded": 5000}"#);
    assert_eq!(remaining(&offer(true, true), &cut), [Delta, Chunks, Full]);
    assert!(!resumes_frames(&offer(true, true), &cut));
    let after_delta = record(
        r#"{"fallback": {"code":"BASE_MISMATCH","cause":"c","fix":"f"},
            "fallback_from": "delta"}"#,
    );
    assert_eq!(remaining(&offer(true, true), &after_delta), [Chunks, Full]);
    let chunks_begun = record(
        r#"{"chunks": {"index_sha256": "0000000000000000000000000000000000000000000000000000000000000000",
            "n_batches": 3, "batches_done": 1, "bytes_downloaded": 10,
            "multi_range": true, "abandoned": false}}"#,
    );
    assert_eq!(remaining(&offer(true, true), &chunks_begun), [Chunks, Full]);
    let after_chunks = record(
        r#"{"fallback": {"code":"CHUNK_CORRUPT","cause":"c","fix":"f"},
            "fallback_from": "chunks"}"#,
    );
    assert_eq!(remaining(&offer(true, true), &after_chunks), [Full]);
    assert!(resumes_frames(&offer(true, true), &after_chunks));
    // Frames of the full payload in the slot: only the full payload resumes them.
    let frames = record(r#"{"frames_done": 3}"#);
    assert_eq!(remaining(&offer(true, true), &frames), [Full]);
    assert!(resumes_frames(&offer(true, true), &frames));
}

#[test]
fn the_environment_ends_the_install_and_the_content_falls_back() {
    let environment = [
        AgentError::ServerUnreachable {
            url: "u".into(),
            reason: "r".into(),
        },
        AgentError::PayloadTruncated {
            received: 1,
            expected: 2,
        },
        AgentError::NetworkTimeout {
            url: "u".into(),
            secs: 30,
            received: 1,
            expected: 2,
        },
        AgentError::ServerRefused {
            url: "u".into(),
            status: 503,
            code: None,
        },
        AgentError::ServerRefused {
            url: "u".into(),
            status: 429,
            code: None,
        },
        AgentError::Io {
            op: "writing the inactive slot",
            path: "slots/b.img".into(),
            source: std::io::Error::other("disk full"),
        },
        AgentError::InjectedFault {
            machine: "downloader",
            state: "STREAMING",
            event: "Checkpoint".into(),
        },
    ];
    for error in &environment {
        assert_eq!(Failure::of(error), Failure::Environment, "{error:?}");
    }
    let content = [
        AgentError::Delta(ferry_delta::Error::BaseMismatch {
            what: "size",
            expected: "1".into(),
            found: "2".into(),
        }),
        AgentError::DigestMismatch {
            what: "the delta".into(),
            expected: ferry_types::Sha256::of(b"a"),
            actual: ferry_types::Sha256::of(b"b"),
        },
        AgentError::ChunkCorrupt {
            chunk: 0,
            start: 0,
            end: 1,
            expected: "e".into(),
            actual: "a".into(),
        },
        AgentError::ServerRefused {
            url: "u".into(),
            status: 404,
            code: None,
        },
        AgentError::ServerInvalid {
            url: "u".into(),
            reason: "the delta did not start at byte 0".into(),
        },
    ];
    for error in &content {
        assert_eq!(Failure::of(error), Failure::Content, "{error:?}");
    }
}
