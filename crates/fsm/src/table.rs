//! Machines as data: constant transition tables and their validation.

use std::collections::{BTreeSet, HashSet, VecDeque};

use crate::error::TableError;

/// One transition: in `state`, on `event`, run `action` and go to `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Row {
    /// The state the row leaves.
    pub state: &'static str,
    /// The event that selects the row.
    pub event: &'static str,
    /// The action the caller runs once the new state is durable.
    pub action: &'static str,
    /// The state the row enters.
    pub next: &'static str,
}

/// A machine's declaration, usually a `const` written with [`machine!`](crate::machine).
///
/// It is checked when turned into a [`Machine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineDef {
    /// The machine's name, e.g. `update`; journal records carry it as `fsm`.
    pub name: &'static str,
    /// The state every instance starts in.
    pub initial: &'static str,
    /// States with no way out, where instances end.
    pub finals: &'static [&'static str],
    /// Events every non-final state must handle (e.g. `Fail`), unless exempted.
    pub failure_events: &'static [&'static str],
    /// (state, failure event) pairs that need no row.
    pub exempt: &'static [(&'static str, &'static str)],
    /// The transition table.
    pub rows: &'static [Row],
}

/// Declares a [`MachineDef`] so that the table reads like rows:
/// `STATE + Event => Action -> NEXT`.
///
/// ```
/// use ferry_fsm::{machine, MachineDef};
///
/// const DOOR: MachineDef = machine! {
///     name: "door",
///     initial: CLOSED,
///     finals: [BROKEN],
///     failures: [Kick],
///     exempt: [],
///     rows: [
///         CLOSED + Open  => Swing   -> OPEN,
///         OPEN   + Close => Swing   -> CLOSED,
///         CLOSED + Kick  => Shatter -> BROKEN,
///         OPEN   + Kick  => Shatter -> BROKEN,
///     ],
/// };
/// assert_eq!(DOOR.rows[0].next, "OPEN");
/// ```
#[macro_export]
macro_rules! machine {
    (
        name: $name:literal,
        initial: $initial:ident,
        finals: [$($final:ident),* $(,)?],
        failures: [$($failure:ident),* $(,)?],
        exempt: [$(($ex_state:ident, $ex_event:ident)),* $(,)?],
        rows: [$($state:ident + $event:ident => $action:ident -> $next:ident),* $(,)?] $(,)?
    ) => {
        $crate::MachineDef {
            name: $name,
            initial: stringify!($initial),
            finals: &[$(stringify!($final)),*],
            failure_events: &[$(stringify!($failure)),*],
            exempt: &[$((stringify!($ex_state), stringify!($ex_event))),*],
            rows: &[$($crate::Row {
                state: stringify!($state),
                event: stringify!($event),
                action: stringify!($action),
                next: stringify!($next),
            }),*],
        }
    };
}

/// A machine whose table passed every check; cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    def: &'static MachineDef,
}

impl Machine {
    /// Checks the table and returns the machine, or the first defect found.
    ///
    /// Checks, in order: names are valid; no duplicate (state, event); final
    /// states have no rows; every state is reachable from the initial one;
    /// every non-final state has a row leading elsewhere and, if the machine
    /// declares final states, a path to one; every failure event is handled
    /// in every non-final state unless exempted. [`Machine::check`] lists all.
    pub fn new(def: &'static MachineDef) -> Result<Machine, TableError> {
        match Machine::check(def).into_iter().next() {
            Some(table_error) => Err(table_error),
            None => Ok(Machine { def }),
        }
    }

    /// Every defect of the table, in the order [`Machine::new`] checks them.
    pub fn check(def: &'static MachineDef) -> Vec<TableError> {
        let machine = def.name;
        let mut errors = Vec::new();
        let bad_name = |name: &str| !is_valid_name(name);
        if bad_name(def.name) {
            errors.push(TableError::InvalidName {
                machine,
                what: "machine",
                name: def.name,
            });
        }
        let mut names: Vec<(&'static str, &'static str)> = vec![("state", def.initial)];
        names.extend(def.finals.iter().map(|s| ("state", *s)));
        names.extend(def.failure_events.iter().map(|e| ("event", *e)));
        for row in def.rows {
            names.extend([("state", row.state), ("event", row.event)]);
            names.extend([("action", row.action), ("state", row.next)]);
        }
        let mut seen_names = HashSet::new();
        for (what, name) in names {
            if bad_name(name) && seen_names.insert(name) {
                errors.push(TableError::InvalidName {
                    machine,
                    what,
                    name,
                });
            }
        }

        let mut seen_rows = HashSet::new();
        for row in def.rows {
            if !seen_rows.insert((row.state, row.event)) {
                errors.push(TableError::DuplicateRow {
                    machine,
                    state: row.state,
                    event: row.event,
                });
            }
        }
        let finals: HashSet<&str> = def.finals.iter().copied().collect();
        for row in def.rows {
            if finals.contains(row.state) {
                errors.push(TableError::FinalHasRows {
                    machine,
                    state: row.state,
                    event: row.event,
                });
            }
        }

        let states = states_of(def);
        let reachable = reachable_from(def, &[def.initial]);
        for state in &states {
            if !reachable.contains(state) {
                errors.push(TableError::UnreachableState {
                    machine,
                    state,
                    initial: def.initial,
                });
            }
        }
        for state in states.iter().filter(|s| !finals.contains(*s)) {
            let way_out = def
                .rows
                .iter()
                .any(|r| r.state == *state && r.next != *state);
            if !way_out {
                errors.push(TableError::DeadEnd { machine, state });
            } else if !finals.is_empty() {
                let onward = reachable_from(def, &[state]);
                if !onward.iter().any(|s| finals.contains(s)) {
                    errors.push(TableError::Trap { machine, state });
                }
            }
        }

        for (state, event) in def.exempt {
            if !states.contains(state) || !def.failure_events.contains(event) {
                errors.push(TableError::UnknownExemption {
                    machine,
                    state,
                    event,
                });
            }
        }
        for state in states.iter().filter(|s| !finals.contains(*s)) {
            for event in def.failure_events {
                let handled = def
                    .rows
                    .iter()
                    .any(|r| r.state == *state && r.event == *event);
                let exempted = def.exempt.contains(&(*state, *event));
                if !handled && !exempted {
                    errors.push(TableError::FailureUnhandled {
                        machine,
                        state,
                        event,
                    });
                }
            }
        }
        errors
    }

    /// The machine's name (`fsm` in journal records).
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// The initial state.
    pub fn initial(&self) -> &'static str {
        self.def.initial
    }

    /// The declaration this machine was built from.
    pub fn def(&self) -> &'static MachineDef {
        self.def
    }

    /// The table's rows, in declaration order.
    pub fn rows(&self) -> &'static [Row] {
        self.def.rows
    }

    /// The row for (state, event), if any.
    pub fn row(&self, state: &str, event: &str) -> Option<&'static Row> {
        self.def
            .rows
            .iter()
            .find(|r| r.state == state && r.event == event)
    }

    /// Whether `state` is final.
    pub fn is_final(&self, state: &str) -> bool {
        self.def.finals.contains(&state)
    }

    /// Every state named by the machine, sorted.
    pub fn states(&self) -> Vec<&'static str> {
        states_of(self.def).into_iter().collect()
    }

    /// The machine's own spelling of a state name, if it has that state.
    pub fn state(&self, name: &str) -> Option<&'static str> {
        states_of(self.def).into_iter().find(|s| *s == name)
    }

    /// The machine's own spelling of an action name, if a row runs it.
    pub fn action(&self, name: &str) -> Option<&'static str> {
        self.def.rows.iter().map(|r| r.action).find(|a| *a == name)
    }
}

/// Whether `name` is usable as a machine, state, event or action name (and
/// so as a file-name component): 1 to 128 of `[A-Za-z0-9_.-]`, not starting with `.`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn states_of(def: &'static MachineDef) -> BTreeSet<&'static str> {
    let mut states = BTreeSet::from([def.initial]);
    states.extend(def.finals.iter().copied());
    for row in def.rows {
        states.insert(row.state);
        states.insert(row.next);
    }
    states
}

fn reachable_from(def: &'static MachineDef, start: &[&'static str]) -> HashSet<&'static str> {
    let mut seen: HashSet<&'static str> = start.iter().copied().collect();
    let mut queue: VecDeque<&'static str> = start.iter().copied().collect();
    while let Some(state) = queue.pop_front() {
        for row in def.rows.iter().filter(|r| r.state == state) {
            if seen.insert(row.next) {
                queue.push_back(row.next);
            }
        }
    }
    seen
}
