//! Table-driven finite state machines whose every transition is made
//! durable and written to a replayable journal before its action runs.
//!
//! A machine is a constant table of rows `(state, event) -> (action, next)`
//! (DESIGN §4), checked once when built into a [`Machine`]. An [`Instance`]
//! of it (e.g. `update[<uuid>]`) fires events; the engine, never the action,
//! persists the state and appends the journal record. Because of that, a
//! journal can be replayed through the tables ([`replay`]) to check that
//! every state reached is the one the table says.
//!
//! # Example
//!
//! ```
//! use ferry_fsm::{machine, Instance, Machine, MachineDef, Store, StoreOptions};
//! use ferry_types::Diagnose;
//!
//! const DOWNLOAD: MachineDef = machine! {
//!     name: "download",
//!     initial: IDLE,
//!     finals: [DONE, FAILED],
//!     failures: [Fail],
//!     exempt: [],
//!     rows: [
//!         IDLE        + Start     => OpenStream -> DOWNLOADING,
//!         DOWNLOADING + ChunkDone => WriteChunk -> DOWNLOADING,
//!         DOWNLOADING + Finished  => Verify     -> DONE,
//!         IDLE        + Fail      => Report     -> FAILED,
//!         DOWNLOADING + Fail      => Report     -> FAILED,
//!     ],
//! };
//!
//! # fn main() -> Result<(), ferry_fsm::FsmError> {
//! # let tmp = std::env::temp_dir().join(format!("ferry-fsm-doc-{}", std::process::id()));
//! let machine = Machine::new(&DOWNLOAD)?;
//! let (store, warnings) = Store::open(tmp.join("journal"), tmp.join("state"), StoreOptions::default())?;
//! assert!(warnings.is_empty());
//!
//! let mut download = Instance::start(machine, "0b5c7c1e-2f0a-5d8e-9a51-3c0f6f3f2a10", &store)?;
//! let step = download.fire("Start", serde_json::json!({"url": "https://example.test/p"}))?;
//! assert_eq!((step.action, step.next), ("OpenStream", "DOWNLOADING"));
//! // The state is durable now: run the action.
//! download.fire("ChunkDone", serde_json::json!({"offset": 0, "len": 65536}))?;
//! download.fire("Finished", serde_json::Value::Null)?;
//! download.complete_action()?; // Verify ran
//! assert!(download.is_finished());
//!
//! // Missing rows are errors, never ignored.
//! assert_eq!(download.fire("Start", serde_json::Value::Null).unwrap_err().code(), "NO_TRANSITION");
//!
//! let journal = store.read_journal()?;
//! let report = ferry_fsm::replay(&[machine], &journal.records)?;
//! assert_eq!(report.n_transitions, 3);
//! # std::fs::remove_dir_all(&tmp).ok();
//! # Ok(())
//! # }
//! ```
//!
//! # Typed names
//!
//! The item form of [`machine!`] (`const UPDATE in update { states: […], events: […],
//! actions: […], … }`) also generates enums of the machine's states, events and
//! actions ([`Name`], [`TypedNames`]): the table is written through them, so a row with
//! an undeclared name does not compile, and callers fire events and match actions as
//! enums instead of strings. On disk the names are the same strings.
//!
//! # Durability contract
//!
//! **The engine never returns an action before the state is durable.**
//! [`Instance::fire`] writes the instance's new state with the row's action
//! marked pending (temp file, fsync, rename, fsync directory), appends one
//! journal record (fsync), and only then returns the action. Actions must be
//! re-runnable: after a crash, [`Instance::load`] reports the action still
//! pending unless the caller marked it done with [`Instance::complete_action`]
//! or fired the next event, so an action may run twice but never zero times.
//! A crash between the state write and the journal append is repaired by
//! [`Store::open`], which re-appends the record from the state file.
//!
//! A caller that cannot use a state file (corrupt) starts the instance afresh with
//! [`Instance::restart`], which journals the restart (event [`RESTART_EVENT`]) so the
//! journal still replays.
//!
//! # On disk
//!
//! - `journal/journal.jsonl`, then `journal.1.jsonl` … older: one JSON
//!   line per transition, `{"seq","t","fsm","id","s","e","a","next","data","blob"}`
//!   (`seq` numbers records across rotation and restarts, so a reader can ask for
//!   what came after the last record it saw),
//!   rotated by size ([`JournalConfig`]). A torn tail (power cut mid-write,
//!   garbage appended) is cut off at open and reported as `JOURNAL_TORN`.
//! - `journal/blobs/<sha256 hex>`: event data larger than the threshold,
//!   referenced as `"blob":"sha256:<hex>"`, deleted at rotation once no kept
//!   journal file references it.
//! - `<state dir>/<fsm>/<id>.json`: the instance's state, pending action and
//!   last record as one JSON line, then a `sha256:<hex>` line over it.
//!
//! # Tests
//!
//! `cargo test` runs unit tests, the integration tests in `tests/` (each file
//! named for what it protects, all in temporary directories, no network) and
//! the doctests. `PROPTEST_CASES=N` changes how many random walks the replay
//! property tries.

#![deny(missing_docs)]

mod blob;
mod dot;
mod error;
mod instance;
mod journal;
mod replay;
mod table;

pub use blob::{BLOB_PREFIX, BlobStore, sha256_hex};
pub use error::{FsmError, JournalTorn, TableError, Warning};
pub use instance::{
    Instance, RESTART_ACTION, RESTART_EVENT, STATE_FORMAT, Step, Store, StoreOptions,
};
pub use journal::{
    BLOBS_DIR, CURRENT_FILE, Clock, Journal, JournalConfig, JournalRead, Observer, ROTATED_MARKER,
    Record, SystemClock, file_name, read_journal,
};
pub use replay::{Divergence, DivergenceKind, ReplayReport, Start, replay, replay_from};
pub use table::{Machine, MachineDef, Name, Row, TypedNames, unused_names};
