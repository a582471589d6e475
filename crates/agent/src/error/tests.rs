use super::*;
use ferry_types::{Diagnose, Report};

/// The contract every rendered error keeps ([`Report::breach`]).
fn assert_contract(error: &AgentError) {
    assert_eq!(error.report().breach(), None);
}

/// A library error wrapped by the agent keeps the library's code, cause and fix: a
/// failure means the agent re-maps or flattens what the library says.
#[test]
fn wrapped_library_errors_keep_their_code_cause_and_fix() {
    let device_id = ferry_types::DeviceId::new(0x4d2).unwrap();
    let cases: Vec<(Report, AgentError)> = vec![
        (
            ferry_fsm::FsmError::Poisoned.report(),
            ferry_fsm::FsmError::Poisoned.into(),
        ),
        (
            ferry_delta::Error::ChunkMissing {
                chunk: 3,
                offset: 4096,
            }
            .report(),
            ferry_delta::Error::ChunkMissing {
                chunk: 3,
                offset: 4096,
            }
            .into(),
        ),
        (
            ferry_personalize::Refusal::RateLimited { device_id }.report(),
            ferry_personalize::Refusal::RateLimited { device_id }.into(),
        ),
        (
            ferry_personalize::TicketError::Malformed { reason: "x".into() }.report(),
            ferry_personalize::TicketError::Malformed { reason: "x".into() }.into(),
        ),
        (
            ferry_tls::TlsError::Config { reason: "x".into() }.report(),
            ferry_tls::TlsError::Config { reason: "x".into() }.into(),
        ),
        (
            ferry_personalize::KeySetError::Malformed { reason: "x".into() }.report(),
            ferry_personalize::KeySetError::Malformed { reason: "x".into() }.into(),
        ),
        (
            "".parse::<ferry_types::DeviceClass>().unwrap_err().report(),
            "".parse::<ferry_types::DeviceClass>().unwrap_err().into(),
        ),
    ];
    for (library, wrapped) in cases {
        assert_eq!(wrapped.report(), library);
        assert_contract(&wrapped);
    }
    let table = ferry_fsm::TableError::InvalidName {
        machine: "m",
        what: "state",
        name: "a b",
    };
    assert_eq!(AgentError::from(table.clone()).report(), table.report());
    assert_eq!(
        AgentError::from(ferry_fsm::FsmError::Poisoned).code(),
        "JOURNAL_POISONED"
    );
}

#[test]
fn the_agents_own_errors_keep_the_contract() {
    let path = PathBuf::from("/dev/null");
    let digest = Sha256::of(b"x");
    let errors = [
        AgentError::DeviceMissing { dir: path.clone() },
        AgentError::DeviceCorrupt {
            path: path.clone(),
            reason: "r".into(),
        },
        AgentError::ConfigInvalid {
            path: path.clone(),
            reason: "r".into(),
        },
        AgentError::IdentityUnread {
            path: path.clone(),
            zero_fields: "device_id".into(),
        },
        AgentError::DeviceExists { dir: path.clone() },
        AgentError::DeviceBusy { dir: path.clone() },
        AgentError::ServerUnreachable {
            url: "u".into(),
            reason: "r".into(),
        },
        AgentError::ServerRefused {
            url: "u".into(),
            status: 500,
            code: None,
        },
        AgentError::ServerInvalid {
            url: "u".into(),
            reason: "r".into(),
        },
        AgentError::NoSuchLabel {
            label: "l".into(),
            available: vec![],
        },
        AgentError::SlotTooSmall {
            slot: "b".into(),
            needed: 2,
            capacity: 1,
        },
        AgentError::PayloadTruncated {
            received: 1,
            expected: 2,
        },
        AgentError::NetworkTimeout {
            url: "u".into(),
            secs: 1,
            received: 1,
            expected: 2,
        },
        AgentError::DigestMismatch {
            what: "w".into(),
            expected: digest,
            actual: digest,
        },
        AgentError::SlotVerifyFailed {
            slot: "b".into(),
            version: "1".into(),
            reason: "r".into(),
        },
        AgentError::NoBootableSlot {
            slot: "a".into(),
            reason: "r".into(),
            other: "b".into(),
            other_reason: "o".into(),
        },
        AgentError::SealMismatch {
            what: "w".into(),
            expected: "e".into(),
            actual: "a".into(),
            first_bad_block: Some(1),
        },
        AgentError::HealthCheckFailed {
            command: "c".into(),
            outcome: "failed".into(),
            stderr: String::new(),
        },
        AgentError::HealthWatchFailed {
            version: "2.0".into(),
            after_secs: 3,
            check: "the health check `c` failed".into(),
        },
        AgentError::ChunkIndexMismatch {
            index_image_size: 1,
            index_payload_len: 2,
            image_size: 3,
            payload_size: 4,
        },
        AgentError::RangesUnsupported {
            path: "p".into(),
            status: reqwest::StatusCode::OK,
        },
        AgentError::ChunkCorrupt {
            chunk: 1,
            start: 0,
            end: 1,
            expected: "e".into(),
            actual: "a".into(),
        },
        AgentError::InjectedFault {
            machine: "update",
            state: "READY",
            event: "Go".into(),
        },
        AgentError::NoAction {
            action: "Dance".into(),
        },
        AgentError::StepOutOfOrder {
            needs: "the manifest",
        },
        AgentError::AudienceInvalid {
            audience: "A".into(),
        },
        AgentError::RootNotPinned { path: path.clone() },
        AgentError::RootInvalid {
            path: path.clone(),
            reason: "r".into(),
        },
        AgentError::Overloaded {
            url: "u".into(),
            status: 503,
        },
        AgentError::NotEnrolled { reason: "r".into() },
        AgentError::DeltaNotPinned { url: "u".into() },
        AgentError::StreamTooSlow {
            url: "u".into(),
            deadline_secs: 60,
            received: 1,
            expected: 2,
        },
        AgentError::EnrollmentRefused {
            server_code: "DEVICE_ALREADY_ENROLLED".into(),
            cause: "device 0000000000000007 is already enrolled".into(),
            fix: "Ask the administrator for a re-enrollment token".into(),
        },
        AgentError::KeySetMissing { path: path.clone() },
        AgentError::KeySetDamaged {
            path: path.clone(),
            reason: "r".into(),
        },
        AgentError::TicketMissing {
            slot: "b".into(),
            path: path.clone(),
        },
        AgentError::NonceMissing {
            slot: "b".into(),
            path: path.clone(),
        },
        AgentError::InsufficientSpace {
            filesystems: vec![crate::facts::Shortfall {
                path: path.clone(),
                needed: 3 << 20,
                free: 1 << 20,
                purgeable: 0,
            }],
        },
        AgentError::Io {
            op: "writing",
            path: path.clone(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        },
        AgentError::Stopped {
            reason: crate::stop::StopReason::Cancelled,
            what: "install of 2.0".into(),
            state: "DOWNLOADING_UPDATE",
        },
        AgentError::Stopped {
            reason: crate::stop::StopReason::Suspended,
            what: "download of 2.0".into(),
            state: "READY",
        },
        AgentError::Stopped {
            reason: crate::stop::StopReason::Shutdown,
            what: "install of 2.0".into(),
            state: "READY",
        },
        AgentError::Precondition(crate::policy::Precondition::LowPowerMode { step: "install" }),
        AgentError::Io {
            op: "reading",
            path,
            source: std::io::Error::other("x"),
        },
    ];
    for error in &errors {
        assert_contract(error);
    }
    let codes: Vec<&str> = errors.iter().map(Diagnose::code).collect();
    let space = errors
        .iter()
        .find(|e| e.code() == "INSUFFICIENT_SPACE")
        .map(|e| e.report())
        .unwrap();
    assert!(
        space.cause.contains("3.0 MiB") && space.cause.contains("1.0 MiB"),
        "{space:?}"
    );
    assert!(
        space.fix.contains("2.0 MiB"),
        "the fix names what to free: {space:?}"
    );
    for code in [
        "INDEX_INVALID",
        "RANGES_UNSUPPORTED",
        "INJECTED_FAULT",
        "NO_ACTION",
        "NO_TRANSITION",
        "DEVICE_IO",
        "DISK_FULL",
        "INSUFFICIENT_SPACE",
    ] {
        assert!(codes.contains(&code), "{code}");
    }
}
