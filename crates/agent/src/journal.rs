//! The device's journal and machine instances: opening the fsm store under the device
//! directory, reporting torn tails and corrupt state instead of crashing, and the
//! crash-injection points the crash harness uses.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_fsm::{Machine, Name, Store, StoreOptions, TypedNames};
use ferry_types::{Diagnose, Report};

use crate::AgentError;
use crate::device::Device;

/// Fault injection for the crash harness (`tests/crash.rs`, `bench/crash`): the process
/// kills itself with SIGKILL right after its Nth durable journal record.
pub const CRASH_AFTER_RECORDS: &str = "FERRY_CRASH_AFTER_RECORDS";
/// Fault injection: SIGKILL once this many payload bytes have arrived.
pub const CRASH_AFTER_BYTES: &str = "FERRY_CRASH_AFTER_BYTES";
/// Fault injection for the table-coverage test (`tests/fsm_coverage.rs`): a
/// comma-separated list of `machine:STATE`; the step out of that state fails with
/// `INJECTED_FAULT`, so the failure row of every state can be driven for real.
pub const FAIL_IN: &str = crate::error::FAIL_IN;
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
            device.layout().journal_dir(),
            device.layout().state_dir(),
            StoreOptions::default(),
        )?;
        let warnings = warnings.iter().map(Diagnose::report).collect();
        Ok(Journal { store, warnings })
    }

    /// The instance `id` of the machine named by `N`: loaded if it exists and is usable,
    /// else started. A finished instance is started afresh (`restart_finished`), and a
    /// corrupt state file is reported and replaced by a fresh instance: the device state
    /// it would have pointed to (install progress, slots) is re-derived in
    /// LOADING_PERSISTED.
    pub fn instance<N: TypedNames>(
        &mut self,
        id: &str,
        restart_finished: bool,
    ) -> Result<Instance<N>, AgentError> {
        let machine = machine(N::DEF)?;
        let start = |store: &Store| ferry_fsm::Instance::start(machine, id, store);
        let instance = match ferry_fsm::Instance::load(machine, id, &self.store) {
            Ok(inst) if restart_finished && inst.is_finished() => {
                remove_state(&self.store, machine.name(), id)?;
                start(&self.store)?
            }
            Ok(inst) => inst,
            Err(e) if e.code() == "STATE_MISSING" => start(&self.store)?,
            Err(e) if e.code() == "STATE_CORRUPT" => {
                self.warnings.push(e.report());
                remove_state(&self.store, machine.name(), id)?;
                start(&self.store)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Instance {
            instance,
            names: PhantomData,
        })
    }
}

/// One instance of a machine of [`crate::machines`], e.g. `update[<uuid>]`, spoken to in
/// its typed names `N`: events go in and actions come out as enums, so a name the table
/// does not have is a compile error, not a run-time `NO_TRANSITION`.
#[derive(Debug)]
pub struct Instance<N: TypedNames> {
    instance: ferry_fsm::Instance,
    names: PhantomData<N>,
}

impl<N: TypedNames> Instance<N> {
    /// Fires `event`: the engine makes the new state durable and journals it, then the
    /// crash-injection points are honoured; returns the action to run.
    pub fn fire(
        &mut self,
        event: N::Event,
        data: serde_json::Value,
    ) -> Result<N::Action, AgentError> {
        let event = event.name();
        let machine = self.instance.machine();
        if !machine.def().failure_events.contains(&event) {
            let here = (machine.name(), self.instance.state());
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
        let step = self.instance.fire(event, data)?;
        let n = RECORDS.fetch_add(1, Ordering::SeqCst) + 1;
        if crash_point(CRASH_AFTER_RECORDS).is_some_and(|at| n >= at) {
            crash();
        }
        N::Action::from_name(step.action).ok_or_else(|| AgentError::NoAction {
            action: format!(
                "{} (of {}, not in its typed names)",
                step.action,
                machine.name()
            ),
        })
    }

    /// Whether the instance is in `state`.
    pub fn is_in(&self, state: N::State) -> bool {
        self.instance.state() == state.name()
    }

    /// The current state, spelled as the journal spells it.
    pub fn state_name(&self) -> &'static str {
        self.instance.state()
    }

    /// Durably records that the pending action finished.
    pub fn complete_action(&mut self) -> Result<(), AgentError> {
        Ok(self.instance.complete_action()?)
    }
}

/// A machine from its table; a defective table is the device's error (TABLE_ codes).
fn machine(def: &'static ferry_fsm::MachineDef) -> Result<Machine, AgentError> {
    Ok(Machine::new(def)?)
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
    ferry_durable::remove(&path).map_err(AgentError::io("removing a machine state file", &path))
}
