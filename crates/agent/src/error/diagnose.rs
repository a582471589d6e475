//! The code and the fix of every [`AgentError`]: the codes are stable, the fixes in one voice.

use ferry_types::Diagnose;

use super::{AgentError, FAIL_IN, is_disk_full};

impl Diagnose for AgentError {
    fn code(&self) -> &'static str {
        match self {
            AgentError::DeviceMissing { .. } => "DEVICE_MISSING",
            AgentError::DeviceCorrupt { .. } => "DEVICE_CORRUPT",
            AgentError::ConfigInvalid { .. } => "CONFIG_INVALID",
            AgentError::IdentityUnread { .. } => "DEVICE_ID_ZERO",
            AgentError::DeviceExists { .. } => "DEVICE_EXISTS",
            AgentError::DeviceBusy { .. } => "DEVICE_BUSY",
            AgentError::ServerUnreachable { .. } => "SERVER_UNREACHABLE",
            AgentError::ServerRefused { .. } => "SERVER_REFUSED",
            AgentError::ServerInvalid { .. } => "SERVER_INVALID",
            AgentError::NoSuchLabel { .. } => "NO_SUCH_LABEL",
            AgentError::SlotTooSmall { .. } => "SLOT_TOO_SMALL",
            AgentError::PayloadTruncated { .. } => "PAYLOAD_TRUNCATED",
            AgentError::NetworkTimeout { .. } => "NETWORK_TIMEOUT",
            AgentError::DeltaNotPinned { .. } => "DELTA_NOT_PINNED",
            AgentError::StreamTooSlow { .. } => "STREAM_TOO_SLOW",
            AgentError::DigestMismatch { .. } => "DIGEST_MISMATCH",
            AgentError::Payload(e) => e.code(),
            AgentError::Boot(e) => e.code(),
            AgentError::SlotVerifyFailed { .. } => "SLOT_VERIFY_FAILED",
            AgentError::NoBootableSlot { .. } => "BOOT_REFLASH_REQUIRED",
            AgentError::SealMismatch { .. } => "SEAL_MISMATCH",
            AgentError::Seal(e) => e.code(),
            AgentError::HealthCheckFailed { .. } => "HEALTH_CHECK_FAILED",
            AgentError::HealthWatchFailed { .. } => "HEALTH_WATCH_FAILED",
            AgentError::Delta(e) => e.code(),
            AgentError::ChunkIndexMismatch { .. } => "INDEX_INVALID",
            AgentError::RangesUnsupported { .. } => "RANGES_UNSUPPORTED",
            AgentError::Fsm(e) => e.code(),
            AgentError::FsmTable(e) => e.code(),
            AgentError::InjectedFault { .. } => "INJECTED_FAULT",
            AgentError::NoAction { .. } => "NO_ACTION",
            AgentError::NoPayload { .. } => "NO_PAYLOAD",
            AgentError::StepOutOfOrder { .. } => "NO_TRANSITION",
            AgentError::ChunkCorrupt { .. } => "CHUNK_CORRUPT",
            AgentError::Catalog(e) => e.code(),
            AgentError::Facts(e) => e.code(),
            AgentError::DeviceClassInvalid(e) => e.code(),
            AgentError::AudienceInvalid { .. } => "AUDIENCE_INVALID",
            AgentError::RootNotPinned { .. } => "ROOT_NOT_PINNED",
            AgentError::RootInvalid { .. } => "ROOT_INVALID",
            AgentError::InsufficientSpace { .. } => "INSUFFICIENT_SPACE",
            AgentError::Io { source, .. } if is_disk_full(source) => "DISK_FULL",
            AgentError::Io { .. } => "DEVICE_IO",
            AgentError::Precondition(e) => e.code(),
            AgentError::Stopped { reason, .. } => match reason {
                crate::stop::StopReason::Cancelled => "CANCELLED",
                crate::stop::StopReason::Suspended => "SUSPENDED",
                crate::stop::StopReason::Shutdown => "SHUTTING_DOWN",
            },
            AgentError::Outbox(e) => e.code(),
            AgentError::Refused(r) => r.code(),
            AgentError::RefusalUnreadable(e) => e.code(),
            AgentError::Overloaded { .. } => "OVERLOADED",
            AgentError::NotEnrolled { .. } => "NOT_ENROLLED",
            AgentError::EnrollmentRefused { .. } => "ENROLLMENT_REFUSED",
            AgentError::Tls(e) => e.code(),
            AgentError::Ticket(e) => e.code(),
            AgentError::KeySet(e) => e.code(),
            AgentError::Decision(e) => e.code(),
            AgentError::KeySetMissing { .. } => "KEYSET_MISSING",
            AgentError::KeySetDamaged { .. } => "KEYSET_DAMAGED",
            AgentError::TicketMissing { .. } => "TICKET_MISSING",
            AgentError::NonceMissing { .. } => "TICKET_NONCE_MISSING",
        }
    }

    fn fix(&self) -> String {
        match self {
            AgentError::DeviceMissing { .. } => {
                "Pass the right --device DIR (or FERRY_DEVICE), or make one with `ferry device init`".into()
            }
            AgentError::DeviceCorrupt { .. } => {
                "Restore the file from a backup or re-create the device with `ferry device init` (the running slot is untouched)".into()
            }
            AgentError::ConfigInvalid { path, .. } => format!(
                "Correct {} (UTF-8 TOML with `server` and `[slots]`, as `ferry device init` writes it) or restore it from a backup; nothing else on the device changed",
                path.display()
            ),
            AgentError::IdentityUnread { .. } => {
                "Have the device's hardware checked (its id registers could not be read), then write identity.json again from what the hardware reports".into()
            }
            AgentError::DeviceExists { .. } => "Choose a new directory or remove the old device first".into(),
            AgentError::DeviceBusy { .. } => "Wait for the other ferry command to finish, then run this one again".into(),
            AgentError::ServerUnreachable { .. } => {
                "Check the network and that the server in config.toml is running (nothing on the device changed)".into()
            }
            AgentError::ServerRefused { .. } => "Check the server's log for this request (nothing on the device changed)".into(),
            AgentError::ServerInvalid { .. } => {
                "Check that the server runs the same ferry version and that no proxy rewrites its answers".into()
            }
            AgentError::NoSuchLabel { .. } => "Run `ferry list` and use one of the labels it shows".into(),
            AgentError::SlotTooSmall { .. } => {
                "Give the device larger slots (device init --slot-size) or publish a smaller image".into()
            }
            AgentError::PayloadTruncated { .. } => {
                "Run the install again once the server or network is back (it resumes where it stopped)".into()
            }
            AgentError::NetworkTimeout { .. } => {
                "Check the network path to the server for a proxy or link that stalls, then run the install again (it resumes)".into()
            }
            AgentError::DeltaNotPinned { .. } => {
                "Nothing to do on the device (it installs the next payload); republish the release with a current ferry to sign its deltas' pins".into()
            }
            AgentError::StreamTooSlow { .. } => {
                "Run the install again (it resumes); if it recurs, check the link or the LAN cache (`cache` in config.toml) for throttling, or lower `stream_min_rate` in config.toml".into()
            }
            AgentError::DigestMismatch { .. } => {
                "Run the install again, and if it repeats, republish the release (the one on the server is damaged)".into()
            }
            AgentError::Payload(e) => e.fix(),
            AgentError::Boot(e) => e.fix(),
            AgentError::SlotVerifyFailed { .. } => {
                "Install the update again to rewrite the slot (the device still runs its previous version)".into()
            }
            AgentError::NoBootableSlot { .. } => {
                "Reflash the device with a signed system image from recovery media (a simulated device: `ferry device init` again), then check its storage".into()
            }
            AgentError::SealMismatch { .. } => {
                "Reinstall the update, and if the same block differs again, check the storage (the slot's bytes \
                 changed after they were written: a disk fault or tampering)"
                    .into()
            }
            AgentError::Seal(e) => e.fix(),
            AgentError::HealthWatchFailed { .. } => {
                "Fix what the check reports in a new release, or roll the device back to the previous one (the failure counts against the release's rollout)".into()
            }
            AgentError::HealthCheckFailed { .. } => {
                "Fix what the check reports, then install again (the device rolled back to the previous version)".into()
            }
            AgentError::Delta(e) => e.fix(),
            AgentError::ChunkIndexMismatch { .. } => {
                "Republish the release: its chunk index does not match it (this install used the full image)".into()
            }
            AgentError::RangesUnsupported { .. } => {
                "Let the server or CDN serve byte ranges to make chunk reuse work (this install used the full image)".into()
            }
            AgentError::Fsm(e) => e.fix(),
            AgentError::FsmTable(e) => e.fix(),
            AgentError::InjectedFault { .. } => {
                format!("Unset {}: it exists for tests", FAIL_IN)
            }
            AgentError::NoAction { .. }
            | AgentError::NoPayload { .. }
            | AgentError::StepOutOfOrder { .. } => {
                "Report this bug in ferry with the device's journal (ferry log show --json)".into()
            }
            AgentError::ChunkCorrupt { .. } => {
                "Republish the release or clear the cache in between if this repeats (this install used the full \
                 image; the chunk payload on the server or in a cache is damaged)"
                    .into()
            }
            AgentError::Catalog(e) => e.fix(),
            AgentError::Facts(e) => e.fix(),
            AgentError::DeviceClassInvalid(e) => e.fix(),
            AgentError::AudienceInvalid { .. } => {
                "Use customer, beta, or a programme name of 1-64 of a-z, 0-9, '.', '_', '-'".into()
            }
            AgentError::RootNotPinned { .. } => {
                "Re-create the device with `ferry device init --root FILE` (the server's DATA/tuf/metadata/N.root.json)".into()
            }
            AgentError::RootInvalid { .. } => {
                "Pass the server's root metadata file (DATA/tuf/metadata/N.root.json), unmodified".into()
            }
            AgentError::InsufficientSpace { filesystems } => {
                let worst = filesystems.iter().max_by_key(|s| s.missing());
                match worst {
                    Some(s) => format!(
                        "Free at least {} on the filesystem of {} (`ferry purge-cache` removes what ferry can spare), or give the device more storage",
                        crate::facts::mib(s.missing()),
                        s.path.display()
                    ),
                    None => "Free space on the device's filesystems, or give the device more storage".into(),
                }
            }
            AgentError::Io { source, path, .. } if is_disk_full(source) => format!(
                "Free space on the filesystem of {} (`ferry purge-cache` removes what ferry can spare), then run the command again: an install resumes where it stopped",
                path.display()
            ),
            AgentError::Io { .. } => "Check the path, its permissions and free space on the device".into(),
            AgentError::Precondition(e) => e.fix(),
            AgentError::Stopped { reason, .. } => match reason {
                crate::stop::StopReason::Cancelled => {
                    "Run the same ferry install or ferry download again to continue where it stopped".into()
                }
                crate::stop::StopReason::Suspended => {
                    "Run `ferry agent resume` to let it continue where it stopped".into()
                }
                crate::stop::StopReason::Shutdown => {
                    "Start the agent again (systemctl start ferry-agent): it continues where it stopped".into()
                }
            },
            AgentError::Outbox(e) => e.fix(),
            AgentError::Refused(r) => r.fix(),
            AgentError::RefusalUnreadable(e) => e.fix(),
            AgentError::Overloaded { .. } => "Try again later (nothing on the device changed)".into(),
            AgentError::EnrollmentRefused { fix, .. } => fix.clone(),
            AgentError::NotEnrolled { .. } => {
                "Enroll the device with a token from `ferry server token --data DIR`: ferry device init … --enroll-token TOKEN".into()
            }
            AgentError::Tls(e) => e.fix(),
            AgentError::Ticket(e) => e.fix(),
            AgentError::KeySet(e) => e.fix(),
            AgentError::Decision(e) => e.fix(),
            AgentError::KeySetMissing { .. } => {
                "Scan (`ferry list`) so the device takes the key set from the catalog, and if it stays missing, check that the server's catalog lists one (ferry server personalization-key list --data DIR)".into()
            }
            AgentError::KeySetDamaged { .. } => {
                "Scan (`ferry list`): the device takes the key set again from the verified catalog, then run this command again".into()
            }
            AgentError::TicketMissing { .. } | AgentError::NonceMissing { .. } => {
                "Install the update again (the device fell back to its previous version)".into()
            }
        }
    }
}
