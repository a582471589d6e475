//! Protects recovery from a power cut mid-append: a half-written last line
//! or garbage after the last record is dropped (and only that), reported as
//! `JOURNAL_TORN`, and appending continues.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;

use common::{Device, UUID, update};
use ferry_fsm::{Instance, Warning, read_journal, replay};
use ferry_types::Diagnose;
use serde_json::json;

/// Three transitions, then returns the journal's bytes.
fn three_transitions(device: &Device) -> Vec<u8> {
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), UUID, &store).expect("start");
    for event in ["Start", "Ticket", "ChunkDone"] {
        instance.fire(event, json!({"event": event})).expect("fire");
    }
    fs::read(device.journal_dir().join("journal.jsonl")).expect("read")
}

fn append_raw(device: &Device, bytes: &[u8]) {
    let path = device.journal_dir().join("journal.jsonl");
    OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open")
        .write_all(bytes)
        .expect("write");
}

fn torn_warning(warnings: &[Warning]) -> (u64, usize) {
    match warnings {
        [Warning::JournalTorn(torn)] => (torn.n_bytes_dropped, torn.n_records_dropped),
        other => panic!("expected one JOURNAL_TORN warning, got {other:?}"),
    }
}

#[test]
fn half_written_last_line_is_dropped() {
    let device = Device::new();
    let good = three_transitions(&device);
    // Cut the third record in half: as if power failed mid-write.
    let second_end = good
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .expect("2 lines")
        .0
        + 1;
    let cut = second_end + (good.len() - second_end) / 2;
    fs::write(device.journal_dir().join("journal.jsonl"), &good[..cut]).expect("write");

    // Readers skip the tail without writing.
    let read = read_journal(device.journal_dir()).expect("read");
    assert_eq!(read.records.len(), 2);
    assert_eq!(
        read.torn.as_ref().map(|t| t.n_bytes_dropped),
        Some((cut - second_end) as u64)
    );

    let (store, warnings) = device.open();
    assert_eq!(warnings[0].code(), "JOURNAL_TORN");
    // The state file still holds the cut transition, so open restores it too.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[1].code(), "JOURNAL_RECORD_RESTORED");
    assert_eq!(torn_warning(&warnings[..1]), ((cut - second_end) as u64, 1));
    let bytes = fs::read(device.journal_dir().join("journal.jsonl")).expect("read");
    assert_eq!(bytes, good, "cut back to the last newline, then restored");

    let mut instance = Instance::load(update(), UUID, &store).expect("load");
    instance
        .fire("Downloaded", json!(null))
        .expect("appending continues");
    let read = store.read_journal().expect("read");
    assert_eq!(read.torn, None);
    assert_eq!(read.records.len(), 4);
    replay(&[update()], &read.records).expect("replays clean");
}

#[test]
fn garbage_after_last_record_is_dropped() {
    let device = Device::new();
    let good = three_transitions(&device);
    let garbage = b"\x00\x00\x7fGARBAGE{\"t\":\n not json either\n{\"half\":";
    append_raw(&device, garbage);

    let (store, warnings) = device.open();
    assert_eq!(torn_warning(&warnings), (garbage.len() as u64, 3));
    assert_eq!(
        fs::read(device.journal_dir().join("journal.jsonl")).expect("read"),
        good
    );
    let read = store.read_journal().expect("read");
    assert_eq!(read.records.len(), 3, "only the torn records are dropped");

    let mut instance = Instance::load(update(), UUID, &store).expect("load");
    instance
        .fire("Downloaded", json!(null))
        .expect("appending continues");
    let read = store.read_journal().expect("read");
    assert_eq!(read.records.len(), 4);
    replay(&[update()], &read.records).expect("replays clean");
}

#[test]
fn garbage_in_the_middle_is_corruption_not_a_torn_tail() {
    let device = Device::new();
    let good = three_transitions(&device);
    let first_end = good.iter().position(|b| *b == b'\n').expect("a line") + 1;
    let mut bytes = good[..first_end].to_vec();
    bytes.extend_from_slice(b"garbage\n");
    bytes.extend_from_slice(&good[first_end..]);
    fs::write(device.journal_dir().join("journal.jsonl"), &bytes).expect("write");
    let error = read_journal(device.journal_dir()).expect_err("corrupt");
    assert_eq!(error.code(), "JOURNAL_CORRUPT");
    assert!(error.to_string().contains("line 2"), "{error}");
}

#[test]
fn clean_journal_reports_nothing() {
    let device = Device::new();
    three_transitions(&device);
    let (_, warnings) = device.open();
    assert_eq!(warnings, vec![]);
}
