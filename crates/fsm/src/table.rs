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

/// Declares a machine so that the table reads like rows:
/// `STATE + Event => Action -> NEXT`.
///
/// Two forms. The expression form gives a bare [`MachineDef`], whose names are strings
/// only (tests, one-off tables):
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
///
/// The item form, `const NAME in module { … }`, declares every state, event and
/// action once and also generates `module`, the machine's typed names: the enums
/// `module::State`, `module::Event` and `module::Action` (each implementing [`Name`]),
/// the marker `module::Names` ([`TypedNames`]) and the table `module::DEF`, which
/// `NAME` equals. Every row is written through the enums, so a row naming a state,
/// event or action that is not declared does not compile, and code that matches on
/// `module::Action` must handle every action the table can return. The names on disk
/// (journal records, state files) are the same strings either way.
///
/// ```
/// use ferry_fsm::{machine, Name, TypedNames};
///
/// machine! {
///     /// A door that can be kicked in.
///     pub const DOOR in door {
///         name: "door",
///         states: [CLOSED, OPEN, BROKEN],
///         events: [Open, Close, Kick],
///         actions: [Swing, Shatter],
///         initial: CLOSED,
///         finals: [BROKEN],
///         failures: [Kick],
///         exempt: [],
///         rows: [
///             CLOSED + Open  => Swing   -> OPEN,
///             OPEN   + Close => Swing   -> CLOSED,
///             CLOSED + Kick  => Shatter -> BROKEN,
///             OPEN   + Kick  => Shatter -> BROKEN,
///         ],
///     }
/// }
/// assert_eq!(DOOR.rows[0].next, door::State::OPEN.name());
/// assert_eq!(door::Event::from_name("Kick"), Some(door::Event::Kick));
/// assert_eq!(<door::Names as TypedNames>::DEF.name, "door");
/// let action = door::Action::Swing;
/// let moves = match action {
///     door::Action::Swing => true,
///     door::Action::Shatter => false,
/// };
/// assert!(moves);
/// ```
#[macro_export]
macro_rules! machine {
    (
        $(#[$meta:meta])*
        $vis:vis const $def:ident in $module:ident {
            name: $name:literal,
            states: [$($st:ident),* $(,)?],
            events: [$($ev:ident),* $(,)?],
            actions: [$($ac:ident),* $(,)?],
            initial: $initial:ident,
            finals: [$($final:ident),* $(,)?],
            failures: [$($failure:ident),* $(,)?],
            exempt: [$(($ex_state:ident, $ex_event:ident)),* $(,)?],
            rows: [$($state:ident + $event:ident => $action:ident -> $next:ident),* $(,)?] $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis const $def: $crate::MachineDef = $module::DEF;

        #[doc = concat!("Typed names of the `", $name, "` machine ([`", stringify!($def), "`]).")]
        $vis mod $module {
            $crate::__machine_names!(
                State,
                concat!("A state of the `", $name, "` machine."),
                $($st),*
            );
            $crate::__machine_names!(
                Event,
                concat!("An event of the `", $name, "` machine."),
                $($ev),*
            );
            $crate::__machine_names!(
                Action,
                concat!("An action of the `", $name, "` machine."),
                $($ac),*
            );

            #[doc = concat!("The `", $name, "` machine's names, as one type.")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct Names;

            impl $crate::TypedNames for Names {
                type State = State;
                type Event = Event;
                type Action = Action;
                const DEF: &'static $crate::MachineDef = &DEF;
            }

            #[doc = concat!("The `", $name, "` machine's table.")]
            pub const DEF: $crate::MachineDef = $crate::MachineDef {
                name: $name,
                initial: State::$initial.name(),
                finals: &[$(State::$final.name()),*],
                failure_events: &[$(Event::$failure.name()),*],
                exempt: &[$((State::$ex_state.name(), Event::$ex_event.name())),*],
                rows: &[$($crate::Row {
                    state: State::$state.name(),
                    event: Event::$event.name(),
                    action: Action::$action.name(),
                    next: State::$next.name(),
                }),*],
            };
        }
    };
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

/// One enum of typed names for [`machine!`]; not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __machine_names {
    ($ty:ident, $doc:expr, $($variant:ident),*) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum $ty {
            $(
                #[doc = concat!("`", stringify!($variant), "`")]
                $variant,
            )*
        }

        impl $ty {
            /// The name as tables, journal records and state files spell it.
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => stringify!($variant),)*
                }
            }
        }

        impl $crate::Name for $ty {
            const ALL: &'static [$ty] = &[$($ty::$variant),*];

            fn name(self) -> &'static str {
                $ty::name(self)
            }
        }

        impl ::core::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.pad(self.name())
            }
        }
    };
}

/// A state, event or action name of a machine declared with the item form of
/// [`machine!`]: an enum whose variants are spelled as the table spells them.
pub trait Name: Copy + Eq + std::fmt::Debug + std::fmt::Display + 'static {
    /// Every name, in declaration order.
    const ALL: &'static [Self];

    /// The name as tables, journal records and state files spell it.
    fn name(self) -> &'static str;

    /// The typed name spelled `name`, if the machine declares it.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|n| n.name() == name)
    }
}

/// The typed names of one machine, generated by the item form of [`machine!`] as
/// `module::Names`.
pub trait TypedNames: 'static {
    /// The machine's states.
    type State: Name;
    /// The machine's events.
    type Event: Name;
    /// The machine's actions.
    type Action: Name;
    /// The machine's table, written through these names.
    const DEF: &'static MachineDef;
}

/// Names that `N` declares but its table never uses (a leftover after a row was
/// removed): empty for a tidy declaration.
pub fn unused_names<N: TypedNames>() -> Vec<&'static str> {
    let def = N::DEF;
    let mut used: HashSet<&'static str> = states_of(def).into_iter().collect();
    used.extend(def.failure_events.iter().copied());
    for row in def.rows {
        used.extend([row.event, row.action]);
    }
    let declared = N::State::ALL
        .iter()
        .map(|s| s.name())
        .chain(N::Event::ALL.iter().map(|e| e.name()))
        .chain(N::Action::ALL.iter().map(|a| a.name()));
    declared.filter(|name| !used.contains(name)).collect()
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
