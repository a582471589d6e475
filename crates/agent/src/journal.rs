//! The device's journal and machine instances: opening the fsm store under the device
//! directory, repairing torn tails and corrupt state instead of crashing (each repair
//! reported where it is made and recorded in `journal/repairs.jsonl` for the doctor:
//! [`repairs`]), the one place event reports are made from transitions
//! ([`Instance::fire`] hands each to the [`Reporter`]), and the crash-injection points the
//! crash harness uses.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use ferry_fsm::{Machine, Name, Store, StoreOptions, TypedNames, Warning};
use ferry_types::{Diagnose, Report};
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::device::Device;
use crate::report::build::Reporter;

/// Fault injection for the crash harness (`tests/it/crash.rs`, `bench/crash`): the process
/// kills itself with SIGKILL right after its Nth durable journal record.
pub const CRASH_AFTER_RECORDS: &str = "FERRY_CRASH_AFTER_RECORDS";
/// Fault injection: SIGKILL once this many payload bytes have arrived.
pub const CRASH_AFTER_BYTES: &str = "FERRY_CRASH_AFTER_BYTES";
/// Fault injection for the table-coverage test: the download is cancelled (as
/// `ferry agent cancel` would) once this many payload bytes have arrived in a run.
pub const CANCEL_AFTER_BYTES: &str = "FERRY_CANCEL_AFTER_BYTES";
/// Fault injection for the table-coverage test (`tests/it/fsm_coverage.rs`): a
/// comma-separated list of `machine:STATE`; the step out of that state fails with
/// `INJECTED_FAULT`, so the failure row of every state can be driven for real. (Declared
/// with the error it causes, which names it.)
pub use crate::error::FAIL_IN;
/// Like [`FAIL_IN`], but the process is SIGKILLed as it leaves the state.
pub const CRASH_IN: &str = "FERRY_CRASH_IN";
/// Fault injection for the event tests (`tests/it/event_reports.rs`): SIGKILL right after the
/// server answered the Nth event batch, before the device records the acknowledgement.
pub const CRASH_AFTER_SEND: &str = "FERRY_CRASH_AFTER_SEND";

static RECORDS: AtomicU64 = AtomicU64::new(0);

/// Repairs kept in `journal/repairs.jsonl` (the oldest are dropped beyond this).
pub const MAX_REPAIRS: usize = 100;

/// One repair the device made on its own, as `journal/repairs.jsonl` keeps it: when, and
/// the warning it was reported with (code, cause, fix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repair {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// What was found and done, as reported.
    #[serde(flatten)]
    pub report: Report,
}

/// The repairs the device made on its own, oldest first (at most [`MAX_REPAIRS`]): a torn
/// journal tail cut off, a lost record restored, a corrupt state file given up, a damaged
/// catalog or key set file fetched again. What `ferry doctor` shows; empty when none.
pub fn repairs(device: &Device) -> Result<Vec<Repair>, AgentError> {
    read_repairs(&device.layout().journal_repairs())
}

fn read_repairs(path: &Path) -> Result<Vec<Repair>, AgentError> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AgentError::Io {
                op: "reading the record of repairs",
                path: path.to_owned(),
                source,
            });
        }
    };
    // A line that does not parse (a torn write before this file was replaced whole) is
    // skipped: the record is for people, not a ground truth.
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// Reports a repair the device just made ([`crate::warnings::report`]) and records it in
/// `journal/repairs.jsonl` (the whole file rewritten durably, at most [`MAX_REPAIRS`]
/// lines). Recording is best effort: a repair is not undone for want of its record (on a
/// full disk, say); that failure is logged.
pub fn record_repair(device: &Device, report: &Report) {
    record_repair_at(&device.layout().journal_repairs(), report);
}

fn record_repair_at(path: &Path, report: &Report) {
    crate::warnings::report(report);
    let mut kept = read_repairs(path).unwrap_or_default();
    kept.push(Repair {
        at: Utc::now(),
        report: report.clone(),
    });
    let skip = kept.len().saturating_sub(MAX_REPAIRS);
    let mut text = String::new();
    for repair in &kept[skip..] {
        if let Ok(line) = serde_json::to_string(repair) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    if let Err(error) = ferry_durable::write_atomic(path, text.as_bytes()) {
        tracing::warn!(%error, path = %path.display(), code = report.code, "could not record a repair");
    }
}

/// The journal of one device, opened.
#[derive(Debug)]
pub struct Journal {
    /// The fsm store (journal and state files).
    pub store: Store,
    /// What was found wrong and repaired since opening (torn tails, corrupt state): each
    /// also reported as it was made and recorded ([`repairs`]).
    pub warnings: Vec<Report>,
    /// `journal/repairs.jsonl`.
    repairs_path: PathBuf,
    /// Makes the event reports of the transitions fired through this journal.
    reporter: Reporter,
}

impl Journal {
    /// Opens the device's journal, repairing what the fsm store found on the way, in this
    /// one place whichever command meets it first: a torn tail is cut off, a record lost
    /// in a crash is restored, and an instance whose state file is corrupt is started
    /// afresh with its restart journaled (so `ferry log replay` still checks). Each repair
    /// is reported and recorded ([`record_repair`]); none is fatal.
    pub fn open(device: &Device) -> Result<Journal, AgentError> {
        Journal::open_observed(device, None)
    }

    /// Opens the device's journal with `observer` called for every record appended (the
    /// daemon's live event stream). One process opens one journal per device: its
    /// records' sequence numbers are handed out by it. Repairs as [`Journal::open`].
    pub fn open_observed(
        device: &Device,
        observer: Option<ferry_fsm::Observer>,
    ) -> Result<Journal, AgentError> {
        let layout = device.layout();
        let (store, found) = Store::open(
            layout.journal_dir(),
            layout.state_dir(),
            StoreOptions {
                observer,
                ..StoreOptions::default()
            },
        )?;
        let mut journal = Journal {
            store,
            warnings: Vec::new(),
            repairs_path: layout.journal_repairs(),
            reporter: Reporter::for_device(device),
        };
        for warning in found {
            match &warning {
                Warning::StateUnreadable { fsm, id, .. } => {
                    match crate::machines::ALL.iter().find(|def| def.name == fsm) {
                        Some(def) => {
                            journal.restart(machine(def)?, id, warning.report())?;
                        }
                        // Not one of this agent's machines: leave the file, say so.
                        None => journal.repaired(warning.report()),
                    }
                }
                _ => journal.repaired(warning.report()),
            }
        }
        Ok(journal)
    }

    /// Notes, reports and records one repair.
    fn repaired(&mut self, report: Report) {
        record_repair_at(&self.repairs_path, &report);
        self.warnings.push(report);
    }

    /// Gives up instance `id` of `machine` (its state file is corrupt) and starts it afresh,
    /// journaled, reporting `corrupt` with what was done.
    fn restart(&mut self, machine: Machine, id: &str, corrupt: Report) -> Result<(), AgentError> {
        let started = ferry_fsm::Instance::restart(
            machine,
            id,
            &self.store,
            serde_json::json!({ "error": corrupt }),
        )?;
        self.repaired(Report {
            cause: format!(
                "{}; {}[{id}] was started afresh in {} (journaled)",
                corrupt.cause,
                machine.name(),
                started.state()
            ),
            ..corrupt
        });
        Ok(())
    }

    /// The state of instance `id` of the machine named by `N`, without starting it:
    /// `None` when it never started (or its state file is unreadable).
    pub fn peek<N: TypedNames>(&self, id: &str) -> Result<Option<N::State>, AgentError> {
        match ferry_fsm::Instance::load(machine(N::DEF)?, id, &self.store) {
            Ok(instance) => Ok(N::State::from_name(instance.state())),
            Err(e) if matches!(e.code(), "STATE_MISSING" | "STATE_CORRUPT") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The reporter of this journal's transitions (progress samples go through it too).
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// The instance `id` of the machine named by `N`: loaded if it exists and is usable,
    /// else started. A finished instance is started afresh (`restart_finished`), and a
    /// corrupt state file is reported and replaced by a fresh instance, the restart
    /// journaled: the device state it would have pointed to (install progress, slots) is
    /// re-derived in LOADING_PERSISTED.
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
                self.restart(machine, id, e.report())?;
                ferry_fsm::Instance::load(machine, id, &self.store)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Instance {
            instance,
            store: self.store.clone(),
            reporter: self.reporter.clone(),
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
    store: Store,
    reporter: Reporter,
    names: PhantomData<N>,
}

impl<N: TypedNames> Instance<N> {
    /// Fires `event`: its event report (if the transition is a reported one) is queued
    /// durably in the outbox, the engine makes the new state durable and journals it, then
    /// the crash-injection points are honoured; returns the action to run.
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
        if let Some(row) = machine.row(self.instance.state(), event) {
            self.reporter.before_fire(
                &self.store,
                machine.name(),
                self.instance.id(),
                row.state,
                row.event,
                row.next,
                &data,
            )?;
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

/// Checks the crash point after an event batch was answered (the `n`th of the process).
pub fn batch_answered(n: u64) {
    if crash_point(CRASH_AFTER_SEND).is_some_and(|at| n >= at) {
        crash();
    }
}

/// Checks the byte crash point.
pub fn bytes_received(n: u64) {
    if crash_point(CRASH_AFTER_BYTES).is_some_and(|at| n >= at) {
        crash();
    }
}

/// Where [`CANCEL_AFTER_BYTES`] asks for a cancel, if it does.
pub fn cancel_point() -> Option<u64> {
    crash_point(CANCEL_AFTER_BYTES)
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
