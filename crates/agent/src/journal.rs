//! The device's journal and machine instances: opening the fsm store under the device
//! directory, reporting torn tails and corrupt state instead of crashing, and the
//! crash-injection points the crash harness uses.

use std::sync::atomic::{AtomicU64, Ordering};

use ferry_fsm::{Instance, Machine, Store, StoreOptions};
use ferry_types::{Diagnose, Report};

use crate::AgentError;
use crate::device::{Device, JOURNAL_DIR};

/// Instance state files (one per machine instance).
pub const STATE_DIR: &str = "state";

/// Fault injection for the crash harness (`tests/crash.rs`, `bench/crash`): the process
/// kills itself with SIGKILL right after its Nth durable journal record.
pub const CRASH_AFTER_RECORDS: &str = "FERRY_CRASH_AFTER_RECORDS";
/// Fault injection: SIGKILL once this many payload bytes have arrived.
pub const CRASH_AFTER_BYTES: &str = "FERRY_CRASH_AFTER_BYTES";
/// Fault injection for the table-coverage test (`tests/fsm_coverage.rs`): a
/// comma-separated list of `machine:STATE`; the step out of that state fails with
/// `INJECTED_FAULT`, so the failure row of every state can be driven for real.
pub const FAIL_IN: &str = "FERRY_FAIL_IN";
/// Like [`FAIL_IN`], but the process is SIGKILLed as it leaves the state.
pub const CRASH_IN: &str = "FERRY_CRASH_IN";

static RECORDS: AtomicU64 = AtomicU64::new(0);

/// The journal of one device, opened.
#[derive(Debug)]
pub struct Journal {
    /// The fsm store (journal and state files).
    pub store: Store,
    /// What was found wrong and repaired on opening (torn tails, corrupt state).
    pub warnings: Vec<Report>,
}

impl Journal {
    /// Opens the device's journal; a torn tail is cut and reported, not fatal.
    pub fn open(device: &Device) -> Result<Journal, AgentError> {
        let (store, warnings) = Store::open(
            device.dir.join(JOURNAL_DIR),
            device.dir.join(STATE_DIR),
            StoreOptions::default(),
        )?;
        let warnings = warnings.iter().map(Diagnose::report).collect();
        Ok(Journal { store, warnings })
    }

    /// The instance `id` of `machine`: loaded if it exists and is usable, else started.
    /// A finished instance is started afresh (`restart_finished`), and a corrupt state
    /// file is reported and replaced by a fresh instance: the device state it would
    /// have pointed to (install progress, slots) is re-derived in LOADING_PERSISTED.
    pub fn instance(
        &mut self,
        machine: Machine,
        id: &str,
        restart_finished: bool,
    ) -> Result<Instance, AgentError> {
        match Instance::load(machine, id, &self.store) {
            Ok(inst) if restart_finished && inst.is_finished() => {
                remove_state(&self.store, machine.name(), id)?;
                Ok(Instance::start(machine, id, &self.store)?)
            }
            Ok(inst) => Ok(inst),
            Err(e) if e.code() == "STATE_MISSING" => Ok(Instance::start(machine, id, &self.store)?),
            Err(e) if e.code() == "STATE_CORRUPT" => {
                self.warnings.push(e.report());
                remove_state(&self.store, machine.name(), id)?;
                Ok(Instance::start(machine, id, &self.store)?)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A machine from its table; a defective table is the device's error (TABLE_ codes).
pub fn machine(def: &'static ferry_fsm::MachineDef) -> Result<Machine, AgentError> {
    Ok(Machine::new(def)?)
}

/// Fires `event` on `inst`, journals it, and honours the crash-injection point.
pub fn fire(
    inst: &mut Instance,
    event: &str,
    data: serde_json::Value,
) -> Result<&'static str, AgentError> {
    let machine = inst.machine();
    if !machine.def().failure_events.contains(&event) {
        let here = (machine.name(), inst.state());
        if injected_at(FAIL_IN, here) {
            return Err(AgentError::InjectedFault {
                machine: here.0,
                state: here.1,
                event: event.to_owned(),
            });
        }
        if injected_at(CRASH_IN, here) {
            crash();
        }
    }
    let step = inst.fire(event, data)?;
    let n = RECORDS.fetch_add(1, Ordering::SeqCst) + 1;
    if crash_point(CRASH_AFTER_RECORDS).is_some_and(|at| n >= at) {
        crash();
    }
    Ok(step.action)
}

/// Checks the byte crash point.
pub fn bytes_received(n: u64) {
    if crash_point(CRASH_AFTER_BYTES).is_some_and(|at| n >= at) {
        crash();
    }
}

/// Whether `var` names `machine:STATE` in its comma-separated list.
fn injected_at(var: &str, (machine, state): (&str, &str)) -> bool {
    std::env::var(var).is_ok_and(|v| {
        v.split(',')
            .any(|item| item.trim().split_once(':') == Some((machine, state)))
    })
}

fn crash_point(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

fn crash() -> ! {
    // SAFETY: sending SIGKILL to ourselves; nothing runs after it.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

fn remove_state(store: &Store, fsm: &str, id: &str) -> Result<(), AgentError> {
    let path = store.state_path(fsm, id);
    crate::durable::remove(&path).map_err(AgentError::io("removing a machine state file", &path))
}
