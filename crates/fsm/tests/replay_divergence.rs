//! Protects `replay`: a real run replays clean, and an edited journal
//! reports its first divergence with the record, instance and table's word.

mod common;

use common::{Device, update};
use ferry_fsm::{DivergenceKind, FsmError, Instance, Record, Start, replay, replay_from};
use ferry_types::Diagnose;
use serde_json::json;

/// Two interleaved instances, one applied and one failed.
fn real_run() -> Vec<Record> {
    let device = Device::new();
    let (store, _) = device.open();
    let mut a = Instance::start(update(), "a", &store).expect("start");
    let mut b = Instance::start(update(), "b", &store).expect("start");
    a.fire("Start", json!(null)).expect("fire");
    b.fire("Start", json!(null)).expect("fire");
    a.fire("Ticket", json!(null)).expect("fire");
    b.fire("Fail", json!({"code": "CLOCK_SKEW"})).expect("fire");
    for event in [
        "ChunkDone",
        "Interrupted",
        "ChunkDone",
        "Downloaded",
        "Verified",
    ] {
        a.fire(event, json!(null)).expect("fire");
    }
    store.read_journal().expect("read").records
}

#[test]
fn real_run_replays_clean() {
    let records = real_run();
    let report = replay(&[update()], &records).expect("clean");
    assert_eq!(report.n_instances, 2);
    assert_eq!(report.n_transitions, 9);
    assert_eq!(report.n_finished, 2);
}

#[test]
fn edited_next_state_is_reported() {
    let mut records = real_run();
    records[4].next = "PREPARING".to_string(); // a: DOWNLOADING + ChunkDone
    let divergence = replay(&[update()], &records).expect_err("edited");
    assert_eq!(divergence.record_idx, 4);
    assert_eq!(divergence.record.id, "a");
    assert_eq!(
        divergence.kind,
        DivergenceKind::NextDiffers {
            table_next: "DOWNLOADING"
        }
    );
    assert_eq!(divergence.code(), "REPLAY_DIVERGED");
    let cause = divergence.to_string();
    assert_eq!(
        cause,
        "journal record 4 of update[a] diverges from the table: recorded DOWNLOADING + ChunkDone \
         => WriteChunk -> PREPARING, but the table goes to DOWNLOADING"
    );
    let error = FsmError::from(divergence);
    assert_eq!(error.code(), "REPLAY_DIVERGED");
}

#[test]
fn edited_action_is_reported() {
    let mut records = real_run();
    records[2].a = "Skip".to_string();
    let divergence = replay(&[update()], &records).expect_err("edited");
    assert_eq!(
        (divergence.record_idx, divergence.kind.clone()),
        (
            2,
            DivergenceKind::ActionDiffers {
                table_action: "OpenStream"
            }
        )
    );
}

#[test]
fn deleted_record_shows_as_a_state_gap() {
    let mut records = real_run();
    records.remove(2); // a: PERSONALIZING + Ticket
    let divergence = replay(&[update()], &records).expect_err("gap");
    assert_eq!(divergence.record_idx, 3);
    assert_eq!(
        divergence.kind,
        DivergenceKind::StateGap {
            expected_state: "PERSONALIZING".to_string()
        }
    );
}

#[test]
fn unknown_event_and_unknown_machine_are_reported() {
    let mut records = real_run();
    records[5].e = "Teleport".to_string();
    assert_eq!(
        replay(&[update()], &records).expect_err("no row").kind,
        DivergenceKind::NoRow
    );
    let records = real_run();
    assert_eq!(
        replay(&[], &records).expect_err("no machine").kind,
        DivergenceKind::UnknownMachine
    );
}

#[test]
fn journal_missing_its_start_needs_first_record_start() {
    let records = real_run();
    let tail = &records[4..]; // a starts mid-download
    assert_eq!(
        replay(&[update()], tail).expect_err("strict").kind,
        DivergenceKind::StateGap {
            expected_state: "IDLE".to_string()
        }
    );
    let report = replay_from(&[update()], tail, Start::FirstRecord).expect("from first record");
    assert_eq!(report.n_transitions, 5);
}
