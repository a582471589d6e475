//! Replay: re-run the tables over the journal's events and check that every
//! recorded transition is the one the table makes.

use std::collections::HashMap;
use std::fmt;

use ferry_types::Diagnose;

use crate::instance::{RESTART_ACTION, RESTART_EVENT};
use crate::journal::Record;
use crate::table::Machine;

/// Where each instance's replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the machine's initial state: the journal holds whole histories.
    Initial,
    /// From the state of the instance's first record: rotation deleted the
    /// start of some histories ([`JournalRead::start`](crate::JournalRead::start) tells).
    FirstRecord,
}

/// What a clean replay checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayReport {
    /// Instances (fsm + id) seen.
    pub n_instances: usize,
    /// Transitions checked.
    pub n_transitions: usize,
    /// Instances that ended in a final state.
    pub n_finished: usize,
    /// Restart records among the transitions: instances started afresh because their
    /// state file could not be used ([`Instance::restart`](crate::Instance::restart)).
    pub n_restarts: usize,
}

/// How a record disagrees with the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DivergenceKind {
    /// No machine of that name was given.
    UnknownMachine,
    /// The record's state is not where the instance was (the previous
    /// record's `next`, or the initial state).
    StateGap {
        /// Where the instance was.
        expected_state: String,
    },
    /// The table has no row for the record's (s, e).
    NoRow,
    /// The row runs another action.
    ActionDiffers {
        /// The table's action.
        table_action: &'static str,
    },
    /// The row goes to another state.
    NextDiffers {
        /// The table's next state.
        table_next: &'static str,
    },
}

/// The first record that does not match the tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// Index of the record in the replayed sequence, from 0.
    pub record_idx: usize,
    /// The record as written.
    pub record: Record,
    /// What the table says instead.
    pub kind: DivergenceKind,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        write!(
            f,
            "journal record {} of {}[{}] diverges from the table: recorded {} + {} => {} -> {}, ",
            self.record_idx, r.fsm, r.id, r.s, r.e, r.a, r.next
        )?;
        match &self.kind {
            DivergenceKind::UnknownMachine => write!(f, "but no machine {} is known", r.fsm),
            DivergenceKind::StateGap { expected_state } => {
                write!(f, "but the instance was in state {expected_state}")
            }
            DivergenceKind::NoRow => write!(f, "but the table has no row for ({}, {})", r.s, r.e),
            DivergenceKind::ActionDiffers { table_action } => {
                write!(f, "but the table runs action {table_action}")
            }
            DivergenceKind::NextDiffers { table_next } => {
                write!(f, "but the table goes to {table_next}")
            }
        }
    }
}

impl std::error::Error for Divergence {}

impl Diagnose for Divergence {
    fn code(&self) -> &'static str {
        "REPLAY_DIVERGED"
    }

    fn fix(&self) -> String {
        match self.kind {
            DivergenceKind::UnknownMachine => {
                format!("Replay with the table of machine {} included", self.record.fsm)
            }
            _ => "Replay with the table version that wrote this journal, or keep the journal as evidence of a bug"
                .to_string(),
        }
    }
}

/// Replays `records` with every instance starting at its machine's initial state.
pub fn replay<'r>(
    machines: &[Machine],
    records: impl IntoIterator<Item = &'r Record>,
) -> Result<ReplayReport, Box<Divergence>> {
    replay_from(machines, records, Start::Initial)
}

/// Replays `records` in order: for each record, the instance must be in the
/// record's state `s`, the table must have a row for (`s`, `e`), and that
/// row must run `a` and go to `next`. A restart record (event
/// [`RESTART_EVENT`]) has no row: it must go to the initial state, running
/// [`RESTART_ACTION`]. Stops at the first divergence.
pub fn replay_from<'r>(
    machines: &[Machine],
    records: impl IntoIterator<Item = &'r Record>,
    start: Start,
) -> Result<ReplayReport, Box<Divergence>> {
    let mut current: HashMap<(&str, &str), (Machine, &'static str)> = HashMap::new();
    let mut n_transitions = 0;
    let mut n_restarts = 0;
    for (record_idx, record) in records.into_iter().enumerate() {
        let diverged = |kind| {
            Box::new(Divergence {
                record_idx,
                record: record.clone(),
                kind,
            })
        };
        let key = (record.fsm.as_str(), record.id.as_str());
        let (machine, state) = match current.get(&key) {
            Some(known) => *known,
            None => {
                let machine = machines
                    .iter()
                    .find(|m| m.name() == record.fsm)
                    .ok_or_else(|| diverged(DivergenceKind::UnknownMachine))?;
                let state = match start {
                    Start::Initial => machine.initial(),
                    Start::FirstRecord => machine
                        .state(&record.s)
                        .ok_or_else(|| diverged(DivergenceKind::NoRow))?,
                };
                (*machine, state)
            }
        };
        // An instance id may be used again once it has finished (a retried update):
        // its new life starts at the initial state.
        let state = if machine.is_final(state) && record.s == machine.initial() {
            machine.initial()
        } else {
            state
        };
        if record.s != state {
            return Err(diverged(DivergenceKind::StateGap {
                expected_state: state.to_string(),
            }));
        }
        let (action, next) = if record.e == RESTART_EVENT {
            n_restarts += 1;
            (RESTART_ACTION, machine.initial())
        } else {
            let row = machine
                .row(state, &record.e)
                .ok_or_else(|| diverged(DivergenceKind::NoRow))?;
            (row.action, row.next)
        };
        if action != record.a {
            return Err(diverged(DivergenceKind::ActionDiffers {
                table_action: action,
            }));
        }
        if next != record.next {
            return Err(diverged(DivergenceKind::NextDiffers { table_next: next }));
        }
        current.insert(key, (machine, next));
        n_transitions += 1;
    }
    let n_finished = current.values().filter(|(m, s)| m.is_final(s)).count();
    Ok(ReplayReport {
        n_instances: current.len(),
        n_transitions,
        n_finished,
        n_restarts,
    })
}
