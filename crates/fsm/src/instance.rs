//! Instances of machines, their durable state files, and the store that
//! holds state files and the journal together.
//!
//! A state file `<state dir>/<fsm>/<id>.json` has two lines: the state as
//! JSON, then `sha256:<hex>` of the first line's bytes, so a garbled file is
//! told apart from a valid one ([`FsmError::StateCorrupt`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::blob::{BLOB_PREFIX, sha256_hex};
use crate::error::{FsmError, Warning};
use crate::journal::{Clock, Journal, JournalConfig, JournalRead, Observer, Record, SystemClock};
use crate::table::{Machine, is_valid_name};

/// Version of the state file layout.
pub const STATE_FORMAT: u32 = 1;

/// The event of a restart record ([`Instance::restart`]): not a table event (no table name
/// may start with `$`); replay moves the instance back to its initial state on it.
pub const RESTART_EVENT: &str = "$restart";
/// The action of a restart record: nothing runs.
pub const RESTART_ACTION: &str = "$none";

/// How a [`Store`] is set up.
#[derive(Clone)]
pub struct StoreOptions {
    /// Journal limits.
    pub journal: JournalConfig,
    /// Timestamps for records.
    pub clock: Arc<dyn Clock>,
    /// Called with every record once it is durably appended.
    pub observer: Option<Observer>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("journal", &self.journal)
            .field("clock", &self.clock)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            journal: JournalConfig::default(),
            clock: Arc::new(SystemClock),
            observer: None,
        }
    }
}

/// The state directory and the journal, shared by every instance (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
    journal: Arc<Mutex<Journal>>,
}

impl Store {
    /// Opens the journal in `journal_dir` (cutting off a torn tail) and the
    /// state files in `state_dir`, and re-appends any transition a state file
    /// holds that the journal lost (crash between the two writes).
    ///
    /// Open the store before anything fires: the repair relies on no new
    /// record having been appended since the crash.
    pub fn open(
        journal_dir: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        options: StoreOptions,
    ) -> Result<(Store, Vec<Warning>), FsmError> {
        let state_dir = state_dir.into();
        ferry_durable::create_dir(&state_dir).map_err(state_io("create directory", &state_dir))?;
        let (mut journal, torn) = Journal::open(journal_dir, options.journal, options.clock)?;
        let mut warnings: Vec<Warning> = torn.into_iter().map(Warning::JournalTorn).collect();
        restore_lost_records(&state_dir, &mut journal, &mut warnings)?;
        journal.set_observer(options.observer);
        Ok((
            Store {
                state_dir,
                journal: Arc::new(Mutex::new(journal)),
            },
            warnings,
        ))
    }

    /// The directory of state files.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The state file of instance `id` of machine `fsm`.
    pub fn state_path(&self, fsm: &str, id: &str) -> PathBuf {
        self.state_dir.join(fsm).join(format!("{id}.json"))
    }

    /// Every record kept in the journal, oldest first.
    pub fn read_journal(&self) -> Result<JournalRead, FsmError> {
        self.lock()?.read()
    }

    /// The data of a record, from the blob store if it went out of line.
    pub fn data(&self, record: &Record) -> Result<serde_json::Value, FsmError> {
        self.lock()?.data(record)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Journal>, FsmError> {
        self.journal.lock().map_err(|_| FsmError::Poisoned)
    }
}

/// What the caller must do after a transition: run `action`; the instance
/// is already durably in `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The action to run.
    pub action: &'static str,
    /// The state the instance is now in.
    pub next: &'static str,
}

/// One running machine, e.g. `update[<uuid>]`.
///
/// Contract: [`Instance::fire`] returns an action only once the new state
/// and the pending action are on disk and the journal record is appended.
/// The caller then runs the action. After a crash, [`Instance::load`]
/// returns the instance with [`Instance::pending_action`] still set unless
/// the caller recorded completion ([`Instance::complete_action`], or firing
/// the next event, which implies the previous action finished). So an action
/// may run more than once, never zero times: actions must be re-runnable.
#[derive(Debug, Clone)]
pub struct Instance {
    machine: Machine,
    id: String,
    state: &'static str,
    pending: Option<&'static str>,
    last: Option<Record>,
    store: Store,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateBody {
    format: u32,
    fsm: String,
    id: String,
    state: String,
    pending: Option<String>,
    last: Option<Record>,
}

impl Instance {
    /// Starts a new instance in the machine's initial state, durably.
    /// Fails with `INSTANCE_EXISTS` if it has a state file already.
    pub fn start(machine: Machine, id: &str, store: &Store) -> Result<Instance, FsmError> {
        check_id(id)?;
        let path = store.state_path(machine.name(), id);
        if path.exists() {
            return Err(FsmError::InstanceExists {
                fsm: machine.name(),
                id: id.to_string(),
                path,
            });
        }
        let instance = Instance {
            machine,
            id: id.to_string(),
            state: machine.initial(),
            pending: None,
            last: None,
            store: store.clone(),
        };
        instance.persist()?;
        Ok(instance)
    }

    /// Starts instance `id` afresh in the machine's initial state, whatever its state file
    /// holds (a corrupt one is replaced), and journals it: one record from the state the
    /// journal last had the instance in, event [`RESTART_EVENT`], to the initial state, with
    /// `data` saying why. So a recovery that gives up on a state file still replays
    /// ([`crate::replay`]). Durable like [`Instance::fire`]: state file, then record.
    pub fn restart(
        machine: Machine,
        id: &str,
        store: &Store,
        data: serde_json::Value,
    ) -> Result<Instance, FsmError> {
        check_id(id)?;
        let mut journal = store.lock()?;
        let last_known = journal
            .read()?
            .records
            .iter()
            .rev()
            .find(|r| r.fsm == machine.name() && r.id == id)
            .and_then(|r| machine.state(&r.next))
            .unwrap_or_else(|| machine.initial());
        let transition = (last_known, RESTART_EVENT, RESTART_ACTION, machine.initial());
        let record = journal.record(machine.name(), id, transition, data)?;
        let instance = Instance {
            machine,
            id: id.to_string(),
            state: machine.initial(),
            pending: None,
            last: Some(record.clone()),
            store: store.clone(),
        };
        instance.persist()?;
        journal.append(&record)?;
        Ok(instance)
    }

    /// Restores an instance from its state file. A garbled file, a failed
    /// checksum or a state the machine does not have is `STATE_CORRUPT`;
    /// the caller picks the safe fallback (e.g. move it aside and start anew).
    pub fn load(machine: Machine, id: &str, store: &Store) -> Result<Instance, FsmError> {
        check_id(id)?;
        let path = store.state_path(machine.name(), id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(FsmError::StateMissing {
                    fsm: machine.name(),
                    id: id.to_string(),
                    path,
                });
            }
            Err(source) => {
                return Err(FsmError::StateIo {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let corrupt = |reason: String| FsmError::StateCorrupt {
            path: path.clone(),
            reason,
        };
        let body = parse_state_file(&bytes).map_err(corrupt)?;
        if body.fsm != machine.name() || body.id != id {
            return Err(corrupt(format!("it belongs to {}[{}]", body.fsm, body.id)));
        }
        let state = machine.state(&body.state).ok_or_else(|| {
            corrupt(format!(
                "machine {} has no state {}",
                machine.name(),
                body.state
            ))
        })?;
        let pending = match &body.pending {
            None => None,
            Some(action) => Some(machine.action(action).ok_or_else(|| {
                corrupt(format!("machine {} has no action {action}", machine.name()))
            })?),
        };
        if let Some(last) = &body.last
            && last.next != body.state
        {
            return Err(corrupt(format!(
                "its last record ends in {} not {}",
                last.next, body.state
            )));
        }
        Ok(Instance {
            machine,
            id: id.to_string(),
            state,
            pending,
            last: body.last,
            store: store.clone(),
        })
    }

    /// Fires `event`: looks up the row (none is `NO_TRANSITION`), persists the
    /// next state with the row's action pending, appends the journal record,
    /// and only then returns the action to run. Firing implies the previous
    /// pending action finished.
    ///
    /// If the journal append fails the state is already durable: the
    /// instance moves on and the error is returned; the next [`Store::open`]
    /// restores the record. Do not run the action then; reload instead.
    pub fn fire(&mut self, event: &str, data: serde_json::Value) -> Result<Step, FsmError> {
        let row = self
            .machine
            .row(self.state, event)
            .ok_or_else(|| FsmError::NoTransition {
                fsm: self.machine.name(),
                id: self.id.clone(),
                state: self.state,
                event: event.to_string(),
            })?;
        let store = self.store.clone();
        let mut journal = store.lock()?;
        let transition = (row.state, row.event, row.action, row.next);
        let record = journal.record(self.machine.name(), &self.id, transition, data)?;
        let moved = Instance {
            state: row.next,
            pending: Some(row.action),
            last: Some(record.clone()),
            ..self.clone()
        };
        moved.persist()?;
        *self = moved;
        journal.append(&record)?;
        Ok(Step {
            action: row.action,
            next: row.next,
        })
    }

    /// Durably records that the pending action finished, so a load after a
    /// crash does not ask for it again. Not journaled.
    pub fn complete_action(&mut self) -> Result<(), FsmError> {
        if self.pending.is_none() {
            return Ok(());
        }
        let done = Instance {
            pending: None,
            ..self.clone()
        };
        done.persist()?;
        *self = done;
        Ok(())
    }

    /// The machine.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current state.
    pub fn state(&self) -> &'static str {
        self.state
    }

    /// The action returned by the last transition and not yet completed:
    /// after a crash, run it again.
    pub fn pending_action(&self) -> Option<&'static str> {
        self.pending
    }

    /// The record of the last transition, if any.
    pub fn last_record(&self) -> Option<&Record> {
        self.last.as_ref()
    }

    /// Whether the instance is in a final state.
    pub fn is_finished(&self) -> bool {
        self.machine.is_final(self.state)
    }

    fn persist(&self) -> Result<(), FsmError> {
        let path = self.store.state_path(self.machine.name(), &self.id);
        let body = StateBody {
            format: STATE_FORMAT,
            fsm: self.machine.name().to_string(),
            id: self.id.clone(),
            state: self.state.to_string(),
            pending: self.pending.map(str::to_string),
            last: self.last.clone(),
        };
        let mut bytes = serde_json::to_vec(&body).map_err(|source| FsmError::DataEncode {
            fsm: body.fsm.clone(),
            id: body.id.clone(),
            source,
        })?;
        let checksum = format!("\n{BLOB_PREFIX}{}\n", sha256_hex(&bytes));
        bytes.extend_from_slice(checksum.as_bytes());
        if let Some(dir) = path.parent() {
            ferry_durable::create_dir(dir).map_err(state_io("create directory", dir))?;
        }
        ferry_durable::write_atomic(&path, &bytes).map_err(state_io("write", &path))
    }
}

fn parse_state_file(bytes: &[u8]) -> Result<StateBody, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_string())?;
    let mut lines = text.split('\n');
    let (Some(body), Some(checksum), Some(""), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err("it is not two lines (state, checksum)".to_string());
    };
    let expected = format!("{BLOB_PREFIX}{}", sha256_hex(body.as_bytes()));
    if checksum != expected {
        return Err(format!(
            "checksum {checksum} does not match content {expected}"
        ));
    }
    let body: StateBody =
        serde_json::from_str(body).map_err(|e| format!("it is not valid state JSON: {e}"))?;
    if body.format != STATE_FORMAT {
        return Err(format!("unknown format {}", body.format));
    }
    Ok(body)
}

fn check_id(id: &str) -> Result<(), FsmError> {
    if is_valid_name(id) {
        Ok(())
    } else {
        Err(FsmError::InvalidInstanceId { id: id.to_string() })
    }
}

/// Re-appends transitions that state files hold and the journal lacks: the
/// record is missing and nothing newer is in the journal, so the crash came
/// between persisting the state and appending the record.
fn restore_lost_records(
    state_dir: &Path,
    journal: &mut Journal,
    warnings: &mut Vec<Warning>,
) -> Result<(), FsmError> {
    let mut lasts = Vec::new();
    for fsm_dir in list_dir(state_dir)? {
        if !fsm_dir.is_dir() {
            continue;
        }
        for path in list_dir(&fsm_dir)? {
            if path.extension().is_none_or(|ext| ext != "json") {
                continue; // temp files of an interrupted write
            }
            let bytes = fs::read(&path).map_err(state_io("read", &path))?;
            match parse_state_file(&bytes) {
                Ok(body) => lasts.extend(body.last),
                Err(reason) => warnings.push(Warning::StateUnreadable {
                    fsm: file_name(&fsm_dir),
                    id: path
                        .file_stem()
                        .map(|stem| stem.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path,
                    reason,
                }),
            }
        }
    }
    if lasts.is_empty() {
        return Ok(());
    }
    let records = journal.read()?.records;
    let newest = records.iter().map(|r| r.t).max();
    lasts.sort_by_key(|r| r.t);
    for last in lasts {
        let present = records.iter().rev().any(|r| r.same_transition(&last));
        if present || newest.is_some_and(|newest| newest > last.t) {
            continue;
        }
        journal.append(&last)?;
        warnings.push(Warning::RecordRestored {
            fsm: last.fsm.clone(),
            id: last.id.clone(),
            state: last.s.clone(),
            event: last.e.clone(),
        });
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, FsmError> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(state_io("list", dir))? {
        paths.push(entry.map_err(state_io("list", dir))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn state_io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsmError {
    let path = path.to_path_buf();
    move |source| FsmError::StateIo { op, path, source }
}
