//! The device's one error type: every failure has a stable code, a cause and a fix. A
//! library's error is wrapped whole (`#[from]`, transparent): its code and fix are the
//! library's own.

use std::path::PathBuf;

use ferry_types::Sha256;

/// The variable that injects a fault for the table-coverage test (`journal` reads it;
/// [`AgentError::InjectedFault`] names it).
pub const FAIL_IN: &str = "FERRY_FAIL_IN";

/// Everything a device command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `--device DIR` does not exist or is not a device directory.
    #[error("there is no ferry device at {}", dir.display())]
    DeviceMissing {
        /// The directory.
        dir: PathBuf,
    },
    /// A device file is missing or unreadable.
    #[error("the device file {} is corrupt: {reason}", path.display())]
    DeviceCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `config.toml` is not UTF-8 TOML the configuration reads.
    #[error("the device configuration {} is not valid: {reason}", path.display())]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `identity.json` gives an all-zero device id: the hardware id could not be read.
    #[error("{} gives an all-zero {zero_fields}: the hardware id could not be read", path.display())]
    IdentityUnread {
        /// The file.
        path: PathBuf,
        /// The fields that read as zero (`device_id`, and any of `board_id`, `chip_id`,
        /// `hardware_uuid`).
        zero_fields: String,
    },
    /// `device init` into a directory that is already in use.
    #[error("{} already exists and is not empty", dir.display())]
    DeviceExists {
        /// The directory.
        dir: PathBuf,
    },
    /// Another ferry process holds the device.
    #[error("another ferry process is using the device at {}", dir.display())]
    DeviceBusy {
        /// The directory.
        dir: PathBuf,
    },
    /// The server could not be reached at all.
    #[error("the update server at {url} could not be reached: {reason}")]
    ServerUnreachable {
        /// What was asked for.
        url: String,
        /// What the network said.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("the update server answered {status} for {url}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    ServerRefused {
        /// What was asked for.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's error code, when it sent one.
        code: Option<String>,
    },
    /// The server's answer is not what the protocol says.
    #[error("the update server sent an invalid answer for {url}: {reason}")]
    ServerInvalid {
        /// What was asked for.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `install LABEL` named no available update.
    #[error("no update is labelled {label:?}{}", if available.is_empty() { " (none is available)".to_owned() } else { format!(" (available: {})", available.join(", ")) })]
    NoSuchLabel {
        /// What was asked for.
        label: String,
        /// What exists.
        available: Vec<String>,
    },
    /// The image does not fit the inactive slot.
    #[error("the update needs {needed} bytes but slot {slot} holds only {capacity}")]
    SlotTooSmall {
        /// The slot.
        slot: String,
        /// Image size.
        needed: u64,
        /// Slot capacity.
        capacity: u64,
    },
    /// The payload ended before all its bytes arrived.
    #[error("the payload ended after {received} of {expected} bytes")]
    PayloadTruncated {
        /// Bytes received (counted from the start of the payload).
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The catalog offers a delta without signing its manifest pin (published by a ferry from
    /// before the pin was signed): it is not applied, so no unverified byte reaches the slot.
    #[error(
        "the catalog does not sign the manifest digest of the delta {url} (published by an older ferry), so it is not applied"
    )]
    DeltaNotPinned {
        /// The delta.
        url: String,
    },
    /// A stream took longer than its overall deadline (its size at the slowest rate the
    /// device accepts): a link, proxy or LAN cache that trickles bytes.
    #[error(
        "the download from {url} took more than its {deadline_secs} s deadline ({received} of {expected} bytes)"
    )]
    StreamTooSlow {
        /// What was being fetched.
        url: String,
        /// The overall deadline.
        deadline_secs: u64,
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The server stopped sending mid-download.
    #[error(
        "the download from {url} stalled: no byte for {secs}s after {received} of {expected} bytes"
    )]
    NetworkTimeout {
        /// What was being fetched.
        url: String,
        /// The read timeout.
        secs: u64,
        /// Bytes received (payload offset).
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// Bytes did not match their digest.
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// Expected digest.
        expected: Sha256,
        /// Actual digest.
        actual: Sha256,
    },
    /// The payload could not be decoded.
    #[error(transparent)]
    Payload(#[from] ferry_payload::PayloadError),
    /// Boot control failed.
    #[error(transparent)]
    Boot(#[from] ferry_boot::BootError),
    /// The slot that should boot did not verify; the device fell back.
    #[error("slot {slot} (version {version}) failed verification and was abandoned: {reason}")]
    SlotVerifyFailed {
        /// The slot.
        slot: String,
        /// Its version.
        version: String,
        /// What failed.
        reason: String,
    },
    /// The committed slot failed its check at boot and the other slot cannot boot either:
    /// the device needs recovery.
    #[error(
        "no slot can boot: slot {slot} failed its check ({reason}), and slot {other} cannot take over ({other_reason})"
    )]
    NoBootableSlot {
        /// The primary slot.
        slot: String,
        /// Why it failed.
        reason: String,
        /// The other slot.
        other: String,
        /// Why it cannot boot.
        other_reason: String,
    },
    /// A slot's content does not match its seal.
    #[error("{what} does not match its seal (root hash {expected}){}", first_bad_block.map(|b| format!(": block {b} is the first that differs")).unwrap_or_else(|| format!(", its tree gives {actual}")))]
    SealMismatch {
        /// What was checked.
        what: String,
        /// The trusted root hash.
        expected: String,
        /// What was found.
        actual: String,
        /// The first data block that differs, when known.
        first_bad_block: Option<u64>,
    },
    /// The seal could not be built or read.
    #[error(transparent)]
    Seal(#[from] ferry_seal::SealError),
    /// A health check failed at boot.
    #[error("the health check `{command}` {outcome}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    HealthCheckFailed {
        /// The command.
        command: String,
        /// How it failed.
        outcome: String,
        /// The end of what it printed on stderr.
        stderr: String,
    },
    /// A health check failed within the post-commit watch: the release was committed and
    /// runs, and went unwell within the set time.
    #[error(
        "{version} was committed {after_secs} s ago and then failed its post-commit health watch: {check}"
    )]
    HealthWatchFailed {
        /// The release watched.
        version: String,
        /// Seconds from its commit to the failing check.
        after_secs: u64,
        /// The failed check, in words (`HEALTH_CHECK_FAILED`'s cause).
        check: String,
    },
    /// A tailored delta could not be applied, or chunk reuse could not rebuild the image
    /// (BASE_MISMATCH, DELTA_CORRUPT, INDEX_INVALID, DIGEST_MISMATCH, CHUNK_MISSING, …): the
    /// install falls back to the full image.
    #[error(transparent)]
    Delta(#[from] ferry_delta::Error),
    /// The chunk index does not describe this release (the install falls back to the full
    /// image).
    #[error(
        "the chunk index describes a {index_image_size}-byte image in a {index_payload_len}-byte payload, \
         where the release has a {image_size}-byte image and a {payload_size}-byte chunk payload"
    )]
    ChunkIndexMismatch {
        /// Image size the index gives.
        index_image_size: u64,
        /// Payload length the index gives.
        index_payload_len: u64,
        /// Image size the release gives.
        image_size: u64,
        /// Chunk payload size the catalog signs.
        payload_size: u64,
    },
    /// The server answered a byte-range request with the whole artifact (the install falls
    /// back to the full image).
    #[error(
        "the server answered {status} with the whole artifact to a request for one byte range of {path}"
    )]
    RangesUnsupported {
        /// What was asked for.
        path: String,
        /// HTTP status.
        status: reqwest::StatusCode,
    },
    /// A downloaded chunk failed its digest, and again when fetched once more (the install
    /// falls back to the full image).
    #[error(
        "chunk {chunk} (payload bytes {start}..{end}) failed its digest twice: expected {expected}, got {actual}"
    )]
    ChunkCorrupt {
        /// Chunk number in the index.
        chunk: usize,
        /// First payload byte.
        start: u64,
        /// End of its payload bytes.
        end: u64,
        /// blake3 the index gives.
        expected: String,
        /// blake3 of what arrived the second time.
        actual: String,
    },
    /// The journal or a machine's state could not be used (NO_TRANSITION, STATE_CORRUPT,
    /// JOURNAL_IO, …).
    #[error(transparent)]
    Fsm(#[from] ferry_fsm::FsmError),
    /// A machine's table is defective (TABLE_DEAD_END, …).
    #[error(transparent)]
    FsmTable(#[from] ferry_fsm::TableError),
    /// A fault injected for tests (`FERRY_FAIL_IN`).
    #[error(
        "a fault was injected ({}) as {machine} left {state} on {event}",
        FAIL_IN
    )]
    InjectedFault {
        /// The machine.
        machine: &'static str,
        /// The state it was leaving.
        state: &'static str,
        /// The event it was firing.
        event: String,
    },
    /// The install tried a payload the offer does not have (a bug).
    #[error("the install tried {what}, which the offer does not have")]
    NoPayload {
        /// What it tried.
        what: String,
    },
    /// The controller table names an action the agent does not run.
    #[error("the controller table names an action ({action}) the agent does not run")]
    NoAction {
        /// The action.
        action: String,
    },
    /// The controller reached a step before what it needs was loaded.
    #[error("the controller reached a step that needs {needs} before it was loaded")]
    StepOutOfOrder {
        /// What it needs.
        needs: &'static str,
    },
    /// The catalog refused what the server sent, or could not be refreshed: expired, rolled
    /// back, badly signed, mixed-and-matched or oversized metadata, a target that is not the
    /// one signed. The device keeps its last good metadata.
    #[error(transparent)]
    Catalog(ferry_catalog::CatalogError),
    /// The device's power, network or space could not be read.
    #[error(transparent)]
    Facts(#[from] crate::facts::FactsError),
    /// A device class that is not valid (`device init --class`).
    #[error(transparent)]
    DeviceClassInvalid(#[from] ferry_types::DeviceClassError),
    /// An audience name that is not valid.
    #[error("{audience:?} is not a valid audience")]
    AudienceInvalid {
        /// The name given.
        audience: String,
    },
    /// The device has no pinned catalog root.
    #[error("the device has no pinned catalog root at {}", path.display())]
    RootNotPinned {
        /// Where it should be.
        path: PathBuf,
    },
    /// The root given to pin is not TUF root metadata.
    #[error("the catalog root for {} is not valid: {reason}", path.display())]
    RootInvalid {
        /// Where it was to be pinned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The personalization service refused to sign (CLOCK_SKEW, NOT_SIGNED, …): the
    /// server's own code, cause, fix and data.
    #[error(transparent)]
    Refused(#[from] ferry_personalize::Refusal),
    /// The personalization service refused in a way this version cannot read.
    #[error(transparent)]
    RefusalUnreadable(#[from] ferry_personalize::RefusalWireError),
    /// The server is overloaded (503), still after retries.
    #[error("the update server at {url} is overloaded (it answered {status}, also after retries)")]
    Overloaded {
        /// What was asked for.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The device has no usable enrollment (no credential, or the server refused it).
    #[error("the device is not enrolled: {reason}")]
    NotEnrolled {
        /// What is missing or what the server said.
        reason: String,
    },
    /// The server refused to enroll the device (a spent token, a token made for another
    /// device, a device id already enrolled): its code, cause and fix.
    #[error("the server refused to enroll the device: {cause} ({server_code})")]
    EnrollmentRefused {
        /// The server's code (ENROLLMENT_TOKEN_INVALID, DEVICE_ALREADY_ENROLLED, …).
        server_code: String,
        /// The server's cause.
        cause: String,
        /// The server's fix.
        fix: String,
    },
    /// TLS to the server failed against the pinned CA (TLS_INTERCEPTED names the issuer
    /// that answered).
    #[error(transparent)]
    Tls(#[from] ferry_tls::TlsError),
    /// A ticket failed its check (TICKET_BAD_SIGNATURE, TICKET_OTHER_DEVICE, …).
    #[error(transparent)]
    Ticket(#[from] ferry_personalize::TicketError),
    /// The personalization key set the catalog offered cannot replace the trusted one
    /// (malformed, or older).
    #[error(transparent)]
    KeySet(#[from] ferry_personalize::KeySetError),
    /// The director's decision was refused (DECISION_KEY_NOT_TRUSTED,
    /// DECISION_TARGET_MISMATCH, …).
    #[error(transparent)]
    Decision(#[from] ferry_personalize::DecisionError),
    /// The device has no personalization key set yet: no scan took one from the catalog.
    #[error("the device trusts no personalization key yet ({} is missing)", path.display())]
    KeySetMissing {
        /// Where the key set should be.
        path: PathBuf,
    },
    /// The stored personalization key set no longer parses (local damage): the next scan
    /// takes it again from the verified catalog.
    #[error("the personalization key set at {} is damaged: {reason}", path.display())]
    KeySetDamaged {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        reason: String,
    },
    /// A slot installed by an update has no ticket.
    #[error("slot {slot} has no personalization ticket ({} is missing)", path.display())]
    TicketMissing {
        /// The slot.
        slot: String,
        /// Where the ticket should be.
        path: PathBuf,
    },
    /// The nonce a slot's ticket is bound to is missing.
    #[error("the nonce the ticket of slot {slot} is bound to is missing ({})", path.display())]
    NonceMissing {
        /// The slot.
        slot: String,
        /// Where the nonce should be.
        path: PathBuf,
    },
    /// There is not enough free space for the update, even after purging what could be
    /// purged: per filesystem, what the update needs, what is free and what is purgeable
    /// (the sizing of DESIGN §3 step 2, [`crate::install::sizing`]).
    #[error("{}", crate::facts::Shortfall::describe_all(filesystems))]
    InsufficientSpace {
        /// Each filesystem that is short.
        filesystems: Vec<crate::facts::Shortfall>,
    },
    /// A precondition holds the download or install back (BATTERY_LOW, LOW_POWER_MODE,
    /// METERED_NETWORK).
    #[error(transparent)]
    Precondition(#[from] crate::policy::Precondition),
    /// The run was stopped part-way (cancelled, suspended, or the agent shut down); what
    /// it made durable is kept and the next run resumes from it.
    #[error("the {what} was {} while {state}", match reason {
        crate::stop::StopReason::Cancelled => "cancelled",
        crate::stop::StopReason::Suspended => "suspended",
        crate::stop::StopReason::Shutdown => "stopped because the agent shut down",
    })]
    Stopped {
        /// Why.
        reason: crate::stop::StopReason,
        /// What was running (`install of 2.0`).
        what: String,
        /// The state it was in.
        state: &'static str,
    },
    /// The outbox of event reports could not be read or written (OUTBOX_IO,
    /// OUTBOX_CORRUPT).
    #[error(transparent)]
    Outbox(#[from] ferry_events::OutboxError),
    /// Local I/O failed (`DISK_FULL` when the filesystem is full).
    #[error("I/O failed while {op} ({}): {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Whether `source` says the filesystem is full.
pub(crate) fn is_disk_full(source: &std::io::Error) -> bool {
    matches!(
        source.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl AgentError {
    /// An [`AgentError::Io`] for `op` on `path`.
    pub fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> AgentError {
        let path = path.into();
        move |source| AgentError::Io { op, path, source }
    }
}

/// A catalog that cannot reach its server is the device's "server unreachable"; every other
/// catalog failure keeps the catalog's own code.
impl From<ferry_catalog::CatalogError> for AgentError {
    fn from(error: ferry_catalog::CatalogError) -> AgentError {
        match error {
            ferry_catalog::CatalogError::Unreachable { url, detail } => {
                AgentError::ServerUnreachable {
                    url,
                    reason: detail,
                }
            }
            other => AgentError::Catalog(other),
        }
    }
}

mod diagnose;
#[cfg(test)]
mod tests;
