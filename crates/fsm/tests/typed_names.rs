//! The item form of `machine!`: typed names that spell exactly what the string form
//! spells, so journals written through either replay through the other, and a
//! declaration with a leftover name is caught.

use ferry_fsm::{
    Instance, Machine, MachineDef, Name, Store, StoreOptions, TypedNames, machine, replay,
    unused_names,
};

machine! {
    /// The job machine, typed.
    pub const JOB in job {
        name: "job",
        states: [IDLE, RUNNING, DONE, FAILED],
        events: [Start, Finish, Fail],
        actions: [Run, Report, RecordFailure],
        initial: IDLE,
        finals: [DONE, FAILED],
        failures: [Fail],
        exempt: [],
        rows: [
            IDLE    + Start  => Run           -> RUNNING,
            RUNNING + Finish => Report        -> DONE,
            IDLE    + Fail   => RecordFailure -> FAILED,
            RUNNING + Fail   => RecordFailure -> FAILED,
        ],
    }
}

/// The same table in the string form.
const JOB_BY_STRINGS: MachineDef = machine! {
    name: "job",
    initial: IDLE,
    finals: [DONE, FAILED],
    failures: [Fail],
    exempt: [],
    rows: [
        IDLE    + Start  => Run           -> RUNNING,
        RUNNING + Finish => Report        -> DONE,
        IDLE    + Fail   => RecordFailure -> FAILED,
        RUNNING + Fail   => RecordFailure -> FAILED,
    ],
};

machine! {
    /// A declaration that kept an action no row runs any more.
    const TIDY_NOT in tidy_not {
        name: "tidy_not",
        states: [IDLE, DONE],
        events: [Go],
        actions: [Work, Leftover],
        initial: IDLE,
        finals: [DONE],
        failures: [],
        exempt: [],
        rows: [
            IDLE + Go => Work -> DONE,
        ],
    }
}

#[test]
fn typed_tables_spell_the_same_names_as_string_tables() {
    assert_eq!(JOB, JOB_BY_STRINGS);
    assert_eq!(job::DEF, JOB);
    assert_eq!(*<job::Names as TypedNames>::DEF, JOB);
    assert!(Machine::check(&JOB).is_empty());
    assert_eq!(job::State::RUNNING.name(), "RUNNING");
    assert_eq!(job::Action::RecordFailure.to_string(), "RecordFailure");
    assert_eq!(format!("{:<8}|", job::Event::Start), "Start   |");
    for state in job::State::ALL {
        assert_eq!(job::State::from_name(state.name()), Some(*state));
    }
    assert_eq!(job::Event::from_name("Stop"), None);
    assert_eq!(job::State::from_name("running"), None, "names are exact");
}

#[test]
fn a_journal_written_through_typed_names_replays_through_the_string_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(
        tmp.path().join("journal"),
        tmp.path().join("state"),
        StoreOptions::default(),
    )
    .unwrap();
    let typed = Machine::new(&JOB).unwrap();
    let mut instance = Instance::start(typed, "j1", &store).unwrap();
    let step = instance
        .fire(job::Event::Start.name(), serde_json::Value::Null)
        .unwrap();
    assert_eq!(job::Action::from_name(step.action), Some(job::Action::Run));
    assert_eq!(
        job::State::from_name(instance.state()),
        Some(job::State::RUNNING)
    );
    instance
        .fire(job::Event::Finish.name(), serde_json::Value::Null)
        .unwrap();
    let records = store.read_journal().unwrap().records;
    assert_eq!(
        (
            records[1].s.as_str(),
            records[1].e.as_str(),
            records[1].a.as_str()
        ),
        ("RUNNING", "Finish", "Report")
    );
    let by_strings = Machine::new(&JOB_BY_STRINGS).unwrap();
    let report = replay(&[by_strings], &records).expect("the same names on disk");
    assert_eq!(report.n_transitions, 2);
}

#[test]
fn declared_names_the_table_never_uses_are_listed() {
    assert_eq!(unused_names::<job::Names>(), Vec::<&str>::new());
    assert_eq!(unused_names::<tidy_not::Names>(), vec!["Leftover"]);
    assert!(
        Machine::check(&TIDY_NOT).is_empty(),
        "a valid table all the same"
    );
}
