//! Errors and warnings: each with a stable code, a one-sentence cause
//! (`Display`) and a one-sentence fix.

use std::io;
use std::path::PathBuf;

use ferry_types::Diagnose;

use crate::replay::Divergence;

/// A defect found in a machine's transition table when it is built.
///
/// Every variant names the machine; [`TableError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A machine, state, event or action name is empty or has characters
    /// other than ASCII letters, digits, `_`, `-` and `.`.
    #[error("machine {machine:?} has an invalid {what} name {name:?}")]
    InvalidName {
        /// The machine.
        machine: &'static str,
        /// What kind of name: machine, state, event or action.
        what: &'static str,
        /// The offending name.
        name: &'static str,
    },
    /// Two rows share one (state, event).
    #[error("machine {machine} has two rows for state {state} on event {event}")]
    DuplicateRow {
        /// The machine.
        machine: &'static str,
        /// The state of both rows.
        state: &'static str,
        /// The event of both rows.
        event: &'static str,
    },
    /// A state cannot be reached from the initial state.
    #[error("machine {machine} can never reach state {state} from its initial state {initial}")]
    UnreachableState {
        /// The machine.
        machine: &'static str,
        /// The unreachable state.
        state: &'static str,
        /// The initial state.
        initial: &'static str,
    },
    /// A non-final state has no row leading to another state.
    #[error("machine {machine} has no way out of non-final state {state}")]
    DeadEnd {
        /// The machine.
        machine: &'static str,
        /// The state with no way out.
        state: &'static str,
    },
    /// No final state can be reached from a non-final state.
    #[error("machine {machine} can never finish once in state {state}")]
    Trap {
        /// The machine.
        machine: &'static str,
        /// The state from which no final state is reachable.
        state: &'static str,
    },
    /// A declared failure event is neither handled nor exempted in a
    /// non-final state.
    #[error("machine {machine} does not handle failure event {event} in state {state}")]
    FailureUnhandled {
        /// The machine.
        machine: &'static str,
        /// The state lacking the row.
        state: &'static str,
        /// The failure event.
        event: &'static str,
    },
    /// A final state has outgoing rows.
    #[error("machine {machine} has a row leaving final state {state} on event {event}")]
    FinalHasRows {
        /// The machine.
        machine: &'static str,
        /// The final state.
        state: &'static str,
        /// The event of the offending row.
        event: &'static str,
    },
    /// An exemption names a state or failure event the machine does not have.
    #[error("machine {machine} exempts unknown pair state {state} on failure event {event}")]
    UnknownExemption {
        /// The machine.
        machine: &'static str,
        /// The exempted state.
        state: &'static str,
        /// The exempted event.
        event: &'static str,
    },
}

impl Diagnose for TableError {
    fn code(&self) -> &'static str {
        match self {
            TableError::InvalidName { .. } => "TABLE_INVALID_NAME",
            TableError::DuplicateRow { .. } => "TABLE_DUPLICATE_ROW",
            TableError::UnreachableState { .. } => "TABLE_UNREACHABLE_STATE",
            TableError::DeadEnd { .. } => "TABLE_DEAD_END",
            TableError::Trap { .. } => "TABLE_TRAP",
            TableError::FailureUnhandled { .. } => "TABLE_FAILURE_UNHANDLED",
            TableError::FinalHasRows { .. } => "TABLE_FINAL_HAS_ROWS",
            TableError::UnknownExemption { .. } => "TABLE_UNKNOWN_EXEMPTION",
        }
    }

    fn fix(&self) -> String {
        match self {
            TableError::InvalidName { name, .. } => {
                format!("Rename {name:?} using only ASCII letters, digits, '_', '-' and '.'")
            }
            TableError::DuplicateRow { state, event, .. } => {
                format!("Keep one row for ({state}, {event}) and delete the other")
            }
            TableError::UnreachableState { state, .. } => {
                format!("Add a row leading to {state} or delete its rows")
            }
            TableError::DeadEnd { state, .. } => {
                format!(
                    "Add a row leaving {state} (at least its failure event) or declare it final"
                )
            }
            TableError::Trap { state, .. } => {
                format!("Add a row from {state} towards a final state")
            }
            TableError::FailureUnhandled { state, event, .. } => {
                format!("Add a row for ({state}, {event}) or list it in the machine's exemptions")
            }
            TableError::FinalHasRows { state, .. } => {
                format!("Delete the rows leaving {state} or stop declaring it final")
            }
            TableError::UnknownExemption { state, event, .. } => {
                format!("Delete the exemption ({state}, {event}) or fix its spelling")
            }
        }
    }
}

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FsmError {
    /// The machine's table has no row for the instance's state and the event.
    #[error("{fsm}[{id}] has no transition from state {state} on event {event}")]
    NoTransition {
        /// The machine.
        fsm: &'static str,
        /// The instance id.
        id: String,
        /// The current state.
        state: &'static str,
        /// The event fired.
        event: String,
    },
    /// The machine's table is invalid.
    #[error("transition table is invalid: {0}")]
    TableInvalid(#[from] TableError),
    /// An instance id is empty, too long or has characters unsafe in a file name.
    #[error(
        "instance id {id:?} is not 1 to 128 ASCII letters, digits, '_', '-' or '.' (not first)"
    )]
    InvalidInstanceId {
        /// The rejected id.
        id: String,
    },
    /// A state file exists already where a new instance would start.
    #[error("instance {fsm}[{id}] exists already in {path}")]
    InstanceExists {
        /// The machine.
        fsm: &'static str,
        /// The instance id.
        id: String,
        /// Its state file.
        path: PathBuf,
    },
    /// No state file for the instance.
    #[error("instance {fsm}[{id}] has no state file at {path}")]
    StateMissing {
        /// The machine.
        fsm: &'static str,
        /// The instance id.
        id: String,
        /// Where the state file was looked for.
        path: PathBuf,
    },
    /// A state file is garbled, fails its checksum or contradicts the machine.
    #[error("state file {path} is corrupt: {reason}")]
    StateCorrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a state file failed.
    #[error("could not {op} state file {path}: {source}")]
    StateIo {
        /// The operation, e.g. "write".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading or writing the journal failed.
    #[error("could not {op} journal file {path}: {source}")]
    JournalIo {
        /// The operation, e.g. "append to".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A journal line that is not the file's tail does not parse.
    #[error("journal file {path} line {line} is not a valid record: {reason}")]
    JournalCorrupt {
        /// The journal file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The parse error.
        reason: String,
    },
    /// A blob referenced by a record is not in the blob store.
    #[error("blob {digest} is missing from {path}")]
    BlobMissing {
        /// The blob reference, `sha256:<hex>`.
        digest: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A blob's content does not hash to its name, or its reference is malformed.
    #[error("blob {digest} is corrupt: {reason}")]
    BlobCorrupt {
        /// The blob reference.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a blob failed.
    #[error("could not {op} blob {path}: {source}")]
    BlobIo {
        /// The operation.
        op: &'static str,
        /// The blob file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Event data could not be encoded as JSON.
    #[error("event data for {fsm}[{id}] could not be encoded: {source}")]
    DataEncode {
        /// The machine.
        fsm: String,
        /// The instance id.
        id: String,
        /// The encoding error.
        source: serde_json::Error,
    },
    /// Replaying the journal through the tables diverged.
    #[error("{0}")]
    ReplayDiverged(#[from] Box<Divergence>),
    /// Another thread panicked while holding the journal.
    #[error("journal lock is poisoned because another thread panicked while appending")]
    Poisoned,
}

impl Diagnose for FsmError {
    fn code(&self) -> &'static str {
        match self {
            FsmError::NoTransition { .. } => "NO_TRANSITION",
            FsmError::TableInvalid(_) => "TABLE_INVALID",
            FsmError::InvalidInstanceId { .. } => "INSTANCE_ID_INVALID",
            FsmError::InstanceExists { .. } => "INSTANCE_EXISTS",
            FsmError::StateMissing { .. } => "STATE_MISSING",
            FsmError::StateCorrupt { .. } => "STATE_CORRUPT",
            FsmError::StateIo { source, .. } | FsmError::JournalIo { source, .. }
                if disk_full(source) =>
            {
                "DISK_FULL"
            }
            FsmError::StateIo { .. } => "STATE_IO",
            FsmError::JournalIo { .. } => "JOURNAL_IO",
            FsmError::JournalCorrupt { .. } => "JOURNAL_CORRUPT",
            FsmError::BlobMissing { .. } => "BLOB_MISSING",
            FsmError::BlobCorrupt { .. } => "BLOB_CORRUPT",
            FsmError::BlobIo { .. } => "BLOB_IO",
            FsmError::DataEncode { .. } => "DATA_ENCODE",
            FsmError::ReplayDiverged(_) => "REPLAY_DIVERGED",
            FsmError::Poisoned => "JOURNAL_POISONED",
        }
    }

    fn fix(&self) -> String {
        match self {
            FsmError::NoTransition {
                fsm, state, event, ..
            } => format!("Do not fire {event} in state {state}, or add the row to the {fsm} table"),
            FsmError::TableInvalid(table_error) => table_error.fix(),
            FsmError::InvalidInstanceId { .. } => {
                "Use a UUID or another id made of letters, digits, '_', '-' and '.'".to_string()
            }
            FsmError::InstanceExists { .. } => {
                "Load the existing instance instead of starting a new one".to_string()
            }
            FsmError::StateMissing { .. } => {
                "Start the instance first, or check the state directory path".to_string()
            }
            FsmError::StateCorrupt { path, .. } => format!(
                "Move {} aside and restart the instance from its safe fallback state",
                path.display()
            ),
            FsmError::StateIo { path, source, .. } | FsmError::JournalIo { path, source, .. }
                if disk_full(source) =>
            {
                format!(
                    "Free space on the filesystem of {} and run the command again (the journal keeps every complete record)",
                    path.display()
                )
            }
            FsmError::StateIo { path, .. } => format!(
                "Check that {} is on a writable filesystem with free space",
                path.display()
            ),
            FsmError::JournalIo { path, .. } => format!(
                "Check that {} is on a writable filesystem with free space",
                path.display()
            ),
            FsmError::JournalCorrupt { path, .. } => format!(
                "Move {} aside to keep it for diagnosis (the journal restarts without it)",
                path.display()
            ),
            FsmError::BlobMissing { .. } | FsmError::BlobCorrupt { .. } => {
                "Read the record without its data (its out-of-line data is lost)".to_string()
            }
            FsmError::BlobIo { path, .. } => format!(
                "Check that {} is on a writable filesystem with free space",
                path.display()
            ),
            FsmError::DataEncode { .. } => {
                "Pass event data that serializes to JSON (string map keys, finite numbers)"
                    .to_string()
            }
            FsmError::ReplayDiverged(divergence) => divergence.fix(),
            FsmError::Poisoned => "Restart the process (the state on disk is intact)".to_string(),
        }
    }
}

/// A journal whose last record(s) were cut off or followed by garbage, found
/// when opening or reading it. Only those bytes are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalTorn {
    /// The journal file with the torn tail.
    pub path: PathBuf,
    /// Bytes after the last good record.
    pub n_bytes_dropped: u64,
    /// Torn or garbage lines dropped (a partial last line counts as one).
    pub n_records_dropped: usize,
}

/// Something recovered while opening a store: not an error, but worth reporting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// A torn tail was dropped from the journal.
    #[error(
        "journal {} had a torn tail: {} bytes in {} records dropped",
        .0.path.display(), .0.n_bytes_dropped, .0.n_records_dropped
    )]
    JournalTorn(JournalTorn),
    /// A state file held a transition the journal lacked (crash between
    /// persisting the state and appending the record), so it was appended.
    #[error("journal record for {fsm}[{id}] {state} on {event} was restored from its state file")]
    RecordRestored {
        /// The machine.
        fsm: String,
        /// The instance id.
        id: String,
        /// The record's state.
        state: String,
        /// The record's event.
        event: String,
    },
    /// A state file could not be read while checking the journal against it.
    #[error("state file {} was skipped: {reason}", path.display())]
    StateUnreadable {
        /// The machine the file is kept for (its directory's name).
        fsm: String,
        /// The instance id (the file's name without `.json`).
        id: String,
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Diagnose for Warning {
    fn code(&self) -> &'static str {
        match self {
            Warning::JournalTorn(_) => "JOURNAL_TORN",
            Warning::RecordRestored { .. } => "JOURNAL_RECORD_RESTORED",
            Warning::StateUnreadable { .. } => "STATE_CORRUPT",
        }
    }

    fn fix(&self) -> String {
        match self {
            Warning::JournalTorn(_) => {
                "Do nothing: power was probably cut mid-write, and appending continues after the dropped bytes".to_string()
            }
            Warning::RecordRestored { .. } => {
                "Do nothing: the journal again matches the state files".to_string()
            }
            Warning::StateUnreadable { path, .. } => format!(
                "Move {} aside (loading that instance would fail with STATE_CORRUPT)",
                path.display()
            ),
        }
    }
}

/// Whether an I/O error says the filesystem is full (`DISK_FULL`, whatever was written).
fn disk_full(source: &io::Error) -> bool {
    source.kind() == io::ErrorKind::StorageFull
}
