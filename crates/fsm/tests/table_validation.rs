//! Protects `Machine::new`: each table defect is caught, by name.

mod common;

use ferry_fsm::{Machine, MachineDef, Row, TableError, machine};
use ferry_types::Diagnose;

fn codes(def: &'static MachineDef) -> Vec<&'static str> {
    Machine::check(def).iter().map(TableError::code).collect()
}

#[test]
fn sample_machine_is_valid() {
    assert_eq!(Machine::check(&common::UPDATE), vec![]);
    let machine = common::update();
    assert_eq!(machine.name(), "update");
    assert_eq!(machine.rows().len(), 10);
    assert_eq!(
        machine.row("DOWNLOADING", "ChunkDone"),
        Some(&Row {
            state: "DOWNLOADING",
            event: "ChunkDone",
            action: "WriteChunk",
            next: "DOWNLOADING"
        })
    );
}

#[test]
fn duplicate_row_is_caught() {
    const DEF: MachineDef = machine! {
        name: "dup", initial: A, finals: [Z], failures: [], exempt: [],
        rows: [A + Go => Run -> Z, A + Go => Other -> Z],
    };
    assert_eq!(
        Machine::new(&DEF),
        Err(TableError::DuplicateRow {
            machine: "dup",
            state: "A",
            event: "Go"
        })
    );
}

#[test]
fn unreachable_state_is_caught() {
    const DEF: MachineDef = machine! {
        name: "island", initial: A, finals: [Z], failures: [], exempt: [],
        rows: [A + Go => Run -> Z, B + Go => Run -> Z],
    };
    assert_eq!(
        Machine::new(&DEF),
        Err(TableError::UnreachableState {
            machine: "island",
            state: "B",
            initial: "A"
        })
    );
}

#[test]
fn dead_end_is_caught() {
    const DEF: MachineDef = machine! {
        name: "stuck", initial: A, finals: [Z], failures: [], exempt: [],
        rows: [A + Go => Run -> B, A + End => Run -> Z, B + Spin => Run -> B],
    };
    assert_eq!(codes(&DEF), vec!["TABLE_DEAD_END"]);
    assert_eq!(
        Machine::new(&DEF),
        Err(TableError::DeadEnd {
            machine: "stuck",
            state: "B"
        })
    );
}

#[test]
fn trap_without_path_to_final_is_caught() {
    const DEF: MachineDef = machine! {
        name: "loop", initial: A, finals: [Z], failures: [], exempt: [],
        rows: [A + Go => Run -> B, A + End => Run -> Z, B + Go => Run -> C, C + Go => Run -> B],
    };
    assert_eq!(codes(&DEF), vec!["TABLE_TRAP", "TABLE_TRAP"]);
}

#[test]
fn machine_without_finals_may_cycle_forever() {
    const DEF: MachineDef = machine! {
        name: "scan_manager", initial: IDLE, finals: [], failures: [Fail], exempt: [],
        rows: [IDLE + Tick => Scan -> SCANNING, SCANNING + Done => Sleep -> IDLE,
               IDLE + Fail => Sleep -> IDLE, SCANNING + Fail => Sleep -> IDLE],
    };
    assert_eq!(Machine::check(&DEF), vec![]);
}

#[test]
fn unhandled_failure_event_is_caught_unless_exempted() {
    const MISSING: MachineDef = machine! {
        name: "fragile", initial: A, finals: [Z, F], failures: [Fail], exempt: [],
        rows: [A + Go => Run -> B, B + Go => Run -> Z, A + Fail => Report -> F],
    };
    assert_eq!(
        Machine::new(&MISSING),
        Err(TableError::FailureUnhandled {
            machine: "fragile",
            state: "B",
            event: "Fail"
        })
    );
    const EXEMPT: MachineDef = machine! {
        name: "fragile", initial: A, finals: [Z, F], failures: [Fail], exempt: [(B, Fail)],
        rows: [A + Go => Run -> B, B + Go => Run -> Z, A + Fail => Report -> F],
    };
    assert_eq!(Machine::check(&EXEMPT), vec![]);
}

#[test]
fn unknown_exemption_is_caught() {
    const DEF: MachineDef = machine! {
        name: "typo", initial: A, finals: [Z], failures: [Fail], exempt: [(Q, Fail)],
        rows: [A + Go => Run -> Z, A + Fail => Run -> Z],
    };
    assert_eq!(codes(&DEF), vec!["TABLE_UNKNOWN_EXEMPTION"]);
}

#[test]
fn final_with_rows_is_caught() {
    const DEF: MachineDef = machine! {
        name: "zombie", initial: A, finals: [Z], failures: [], exempt: [],
        rows: [A + Go => Run -> Z, Z + Again => Run -> A],
    };
    assert_eq!(
        Machine::new(&DEF),
        Err(TableError::FinalHasRows {
            machine: "zombie",
            state: "Z",
            event: "Again"
        })
    );
}

#[test]
fn invalid_name_is_caught() {
    const DEF: MachineDef = MachineDef {
        name: "bad name",
        initial: "A",
        finals: &["Z"],
        failure_events: &[],
        exempt: &[],
        rows: &[Row {
            state: "A",
            event: "",
            action: "Run",
            next: "Z",
        }],
    };
    let found = codes(&DEF);
    assert_eq!(found, vec!["TABLE_INVALID_NAME", "TABLE_INVALID_NAME"]);
}

#[test]
fn every_table_error_has_code_cause_and_fix() {
    const DEF: MachineDef = machine! {
        name: "zombie", initial: A, finals: [Z], failures: [], exempt: [],
        rows: [A + Go => Run -> Z, Z + Again => Run -> A],
    };
    let error = Machine::new(&DEF).expect_err("invalid");
    let cause = error.to_string();
    assert!(!cause.ends_with('.'), "{cause}");
    assert!(cause.contains("Z") && cause.contains("Again"), "{cause}");
    assert!(error.fix().contains("Z"));
    let wrapped = ferry_fsm::FsmError::from(error);
    assert_eq!(wrapped.code(), "TABLE_INVALID");
}

#[test]
fn dot_shows_every_row_and_marks_initial_and_finals() {
    let dot = common::update().to_dot();
    assert!(dot.starts_with("digraph \"update\" {"), "{dot}");
    assert!(
        dot.contains("\"DOWNLOADING\" -> \"DOWNLOADING\" [label=\"ChunkDone / WriteChunk\"];"),
        "{dot}"
    );
    assert!(dot.contains("\"IDLE\" [style=\"rounded,bold\"];"), "{dot}");
    assert!(dot.contains("\"APPLIED\" [shape=doublecircle];"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 10);
    assert!(dot.trim_end().ends_with('}'));
}
