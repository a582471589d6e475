//! Protects the durability contract: fire persists before returning, load
//! restores, a crash leaves the pending action visible, garbled state is
//! `STATE_CORRUPT`, and a lost journal record is restored from the state file.

mod common;

use std::fs;

use common::{Device, UUID, update};
use ferry_fsm::{Instance, Step, Warning, read_journal, replay};
use ferry_types::Diagnose;
use serde_json::json;

#[test]
fn fire_persists_and_load_round_trips() {
    let device = Device::new();
    let (store, warnings) = device.open();
    assert_eq!(warnings, vec![]);
    let mut instance = Instance::start(update(), UUID, &store).expect("start");
    assert_eq!(instance.state(), "IDLE");
    assert_eq!(instance.pending_action(), None);

    let step = instance
        .fire("Start", json!({"build": "26D5"}))
        .expect("fire");
    assert_eq!(
        step,
        Step {
            action: "Personalize",
            next: "PERSONALIZING"
        }
    );
    instance.complete_action().expect("complete");
    instance
        .fire("Ticket", json!({"nonce": "ab12"}))
        .expect("fire");

    let loaded = Instance::load(update(), UUID, &store).expect("load");
    assert_eq!(loaded.state(), "DOWNLOADING");
    assert_eq!(loaded.pending_action(), Some("OpenStream"));
    let last = loaded.last_record().expect("has a last record");
    assert_eq!(
        (last.s.as_str(), last.e.as_str()),
        ("PERSONALIZING", "Ticket")
    );
    assert_eq!(last.data, json!({"nonce": "ab12"}));

    let journal = read_journal(device.journal_dir()).expect("read");
    assert_eq!(journal.records.len(), 2);
    assert_eq!(journal.records[1], *last);
}

#[test]
fn journal_line_has_the_design_format() {
    let device = Device::new();
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), UUID, &store).expect("start");
    instance.fire("Start", json!({"k": 1})).expect("fire");
    let text = fs::read_to_string(device.journal_dir().join("journal.jsonl")).expect("read");
    assert_eq!(
        text,
        format!(
            "{{\"seq\":1,\"t\":\"2026-03-20T18:51:32.924688Z\",\"fsm\":\"update\",\"id\":\"{UUID}\",\"s\":\"IDLE\",\
             \"e\":\"Start\",\"a\":\"Personalize\",\"next\":\"PERSONALIZING\",\"data\":{{\"k\":1}}}}\n"
        )
    );
}

#[test]
fn missing_row_is_an_error_and_changes_nothing() {
    let device = Device::new();
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), UUID, &store).expect("start");
    let error = instance.fire("Verified", json!(null)).expect_err("no row");
    assert_eq!(error.code(), "NO_TRANSITION");
    assert_eq!(
        error.to_string(),
        format!("update[{UUID}] has no transition from state IDLE on event Verified")
    );
    assert!(error.fix().contains("Verified"));
    assert_eq!(instance.state(), "IDLE");
    assert_eq!(
        read_journal(device.journal_dir()).expect("read").records,
        vec![]
    );
    assert_eq!(
        Instance::load(update(), UUID, &store)
            .expect("load")
            .state(),
        "IDLE"
    );
}

#[test]
fn final_state_accepts_no_event() {
    let device = Device::new();
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), UUID, &store).expect("start");
    instance
        .fire("Fail", json!({"code": "CLOCK_SKEW"}))
        .expect("fire");
    assert!(instance.is_finished());
    assert_eq!(
        instance
            .fire("Fail", json!(null))
            .expect_err("final")
            .code(),
        "NO_TRANSITION"
    );
}

#[test]
fn crash_between_persist_and_action_leaves_action_pending() {
    let device = Device::new();
    {
        let (store, _) = device.open();
        let mut instance = Instance::start(update(), UUID, &store).expect("start");
        instance.fire("Start", json!(null)).expect("fire");
        instance.fire("Ticket", json!(null)).expect("fire");
        // The process dies here, before OpenStream ran: nothing else is written.
    }
    let (store, warnings) = device.open();
    assert_eq!(warnings, vec![]);
    let mut instance = Instance::load(update(), UUID, &store).expect("load");
    assert_eq!(instance.state(), "DOWNLOADING");
    assert_eq!(instance.pending_action(), Some("OpenStream"));

    // Re-run it, mark it done: a second crash does not ask for it again.
    instance.complete_action().expect("complete");
    let instance = Instance::load(update(), UUID, &store).expect("load");
    assert_eq!(instance.pending_action(), None);
    assert_eq!(instance.state(), "DOWNLOADING");
}

#[test]
fn crash_before_journal_append_is_repaired_at_open() {
    let device = Device::new();
    {
        let (store, _) = device.open();
        let mut instance = Instance::start(update(), UUID, &store).expect("start");
        instance.fire("Start", json!(null)).expect("fire");
        instance
            .fire("Ticket", json!({"big": "x".repeat(10_000)}))
            .expect("fire");
    }
    // Simulate the crash after the state file was written but before the
    // record reached the journal: cut the last line off.
    let path = device.journal_dir().join("journal.jsonl");
    let text = fs::read_to_string(&path).expect("read");
    let first_line_len = text.find('\n').expect("two lines") + 1;
    fs::write(&path, &text[..first_line_len]).expect("write");

    let (store, warnings) = device.open();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].code(), "JOURNAL_RECORD_RESTORED");
    let journal = store.read_journal().expect("read");
    assert_eq!(journal.records.len(), 2);
    assert_eq!(journal.records[1].e, "Ticket");
    assert_eq!(
        store.data(&journal.records[1]).expect("blob")["big"]
            .as_str()
            .map(str::len),
        Some(10_000)
    );
    replay(&[update()], &journal.records).expect("replays clean");

    // Opening again restores nothing more.
    let (_, warnings) = device.open();
    assert_eq!(warnings, vec![]);
}

#[test]
fn garbled_state_file_is_state_corrupt() {
    let device = Device::new();
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), UUID, &store).expect("start");
    instance.fire("Start", json!(null)).expect("fire");
    let path = store.state_path("update", UUID);
    let good = fs::read(&path).expect("read");

    let mut flipped = good.clone();
    let at = flipped
        .iter()
        .position(|b| *b == b'P')
        .expect("a P in PERSONALIZING");
    flipped[at] = b'Q';
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped byte", flipped),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not utf-8", vec![0xff, 0xfe, b'\n']),
    ];
    for (what, bytes) in cases {
        fs::write(&path, &bytes).expect("write");
        let error = Instance::load(update(), UUID, &store).expect_err(what);
        assert_eq!(error.code(), "STATE_CORRUPT", "{what}: {error}");
    }
    let (_, warnings) = device.open();
    assert!(
        matches!(warnings.as_slice(), [Warning::StateUnreadable { .. }]),
        "{warnings:?}"
    );

    fs::write(&path, &good).expect("write");
    assert_eq!(
        Instance::load(update(), UUID, &store)
            .expect("load")
            .state(),
        "PERSONALIZING"
    );
}

/// Giving up on a corrupt state file is journaled: the instance starts afresh from the
/// state the journal last had it in, and the journal still replays. A failure means a
/// recovered device's own journal no longer checks (`ferry log replay` REPLAY_DIVERGED).
#[test]
fn a_restart_after_a_corrupt_state_file_is_journaled_and_replays() {
    let device = Device::new();
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), UUID, &store).expect("start");
    instance.fire("Start", json!(null)).expect("fire");
    instance.fire("Ticket", json!(null)).expect("fire");
    let path = store.state_path("update", UUID);
    fs::write(&path, b"{\"format\":1,\"state\":\"DOWNLOAD").expect("garble");
    assert_eq!(
        Instance::load(update(), UUID, &store)
            .expect_err("corrupt")
            .code(),
        "STATE_CORRUPT"
    );

    let mut restarted =
        Instance::restart(update(), UUID, &store, json!({"why": "corrupt"})).expect("restart");
    assert_eq!(restarted.state(), "IDLE");
    assert_eq!(restarted.pending_action(), None);
    let loaded = Instance::load(update(), UUID, &store).expect("the state file is good again");
    assert_eq!(loaded.state(), "IDLE");
    restarted
        .fire("Start", json!(null))
        .expect("fire after restart");

    let journal = read_journal(device.journal_dir()).expect("read");
    let restart = &journal.records[2];
    assert_eq!(
        (
            restart.s.as_str(),
            restart.e.as_str(),
            restart.a.as_str(),
            restart.next.as_str()
        ),
        (
            "DOWNLOADING",
            ferry_fsm::RESTART_EVENT,
            ferry_fsm::RESTART_ACTION,
            "IDLE"
        )
    );
    assert_eq!(restart.data, json!({"why": "corrupt"}));
    let report = replay(&[update()], &journal.records).expect("replays");
    assert_eq!((report.n_transitions, report.n_restarts), (4, 1));

    // A restart record that does not go to the initial state is not a restart.
    let mut forged = journal.records.clone();
    forged[2].next = "PREPARING".into();
    let divergence = replay(&[update()], &forged).expect_err("diverges");
    assert_eq!(divergence.record_idx, 2);
    // Without the restart record the journal does not replay (the fault this fixes).
    let mut without = journal.records.clone();
    without.remove(2);
    assert!(replay(&[update()], &without).is_err());
}

#[test]
fn missing_state_and_existing_instance_are_named() {
    let device = Device::new();
    let (store, _) = device.open();
    assert_eq!(
        Instance::load(update(), UUID, &store)
            .expect_err("missing")
            .code(),
        "STATE_MISSING"
    );
    Instance::start(update(), UUID, &store).expect("start");
    assert_eq!(
        Instance::start(update(), UUID, &store)
            .expect_err("exists")
            .code(),
        "INSTANCE_EXISTS"
    );
    assert_eq!(
        Instance::start(update(), "../etc", &store)
            .expect_err("bad id")
            .code(),
        "INSTANCE_ID_INVALID"
    );
}
