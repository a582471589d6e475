//! Protects the journal's sequence numbers, which a live event stream hands out so that a
//! client reconnecting with `since=N` misses nothing and sees nothing twice: they rise by
//! one per record, across rotation and reopening, and the observer sees every record
//! appended, in order.

mod common;

use std::sync::{Arc, Mutex};

use common::{Device, update};
use ferry_fsm::{Instance, JournalConfig, Store, StoreOptions, read_journal};
use serde_json::json;

fn seqs(device: &Device) -> Vec<u64> {
    read_journal(device.journal_dir())
        .expect("read")
        .records
        .iter()
        .map(|r| r.seq.expect("every new record is numbered"))
        .collect()
}

#[test]
fn numbers_rise_by_one_across_rotation_and_reopening() {
    let config = JournalConfig {
        max_file_bytes: 600,
        keep_files: 8,
        blob_threshold: 4096,
    };
    let device = Device::with_config(config);
    for round in 0..3 {
        let (store, _) = device.open();
        for n in 0..4 {
            let mut instance =
                Instance::start(update(), &format!("r{round}u{n}"), &store).expect("start");
            instance.fire("Start", json!({ "n": n })).expect("fire");
            instance.fire("Ticket", json!({})).expect("fire");
        }
    }
    assert!(
        device.journal_dir().join("journal.1.jsonl").exists(),
        "the journal rotated"
    );
    let seqs = seqs(&device);
    assert_eq!(seqs, (1..=24).collect::<Vec<u64>>());
}

#[test]
fn a_journal_emptied_by_rotation_continues_from_the_rotated_file() {
    let config = JournalConfig {
        max_file_bytes: 1,
        keep_files: 4,
        blob_threshold: 4096,
    };
    let device = Device::with_config(config);
    {
        let (store, _) = device.open();
        let mut instance = Instance::start(update(), "a", &store).expect("start");
        instance.fire("Start", json!({})).expect("fire");
        instance.fire("Ticket", json!({})).expect("fire");
    }
    // A rotation whose append never happened (power cut): the current file is empty
    // and the newest number is in journal.1.jsonl.
    let dir = device.journal_dir();
    std::fs::rename(dir.join("journal.1.jsonl"), dir.join("journal.2.jsonl")).unwrap();
    std::fs::rename(dir.join("journal.jsonl"), dir.join("journal.1.jsonl")).unwrap();
    std::fs::write(dir.join("journal.jsonl"), b"").unwrap();
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), "b", &store).expect("start");
    instance.fire("Start", json!({})).expect("fire");
    let read = read_journal(device.journal_dir()).expect("read");
    assert_eq!(read.records.last().and_then(|r| r.seq), Some(3));
}

#[test]
fn the_observer_sees_every_appended_record_in_order() {
    let device = Device::new();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = seen.clone();
    let options = StoreOptions {
        journal: device.config,
        clock: device.clock.clone(),
        observer: Some(Arc::new(move |record: &ferry_fsm::Record| {
            sink.lock().unwrap().extend(record.seq);
        })),
    };
    let (store, _) =
        Store::open(device.journal_dir(), device.state_dir(), options).expect("store opens");
    let mut instance = Instance::start(update(), "o", &store).expect("start");
    instance.fire("Start", json!({})).expect("fire");
    instance.fire("Ticket", json!({})).expect("fire");
    instance.fire("ChunkDone", json!({})).expect("fire");
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
    assert_eq!(seqs(&device), vec![1, 2, 3]);
}

#[test]
fn records_written_before_numbers_existed_still_read() {
    let device = Device::new();
    std::fs::create_dir_all(device.journal_dir()).unwrap();
    std::fs::write(
        device.journal_dir().join("journal.jsonl"),
        concat!(
            r#"{"t":"2026-03-20T18:51:32.924688Z","fsm":"update","id":"old","s":"IDLE","e":"Start","a":"Personalize","next":"PERSONALIZING","data":null}"#,
            "\n"
        ),
    )
    .unwrap();
    let (store, _) = device.open();
    let mut instance = Instance::start(update(), "new", &store).expect("start");
    instance.fire("Start", json!({})).expect("fire");
    let read = read_journal(device.journal_dir()).expect("read");
    let numbers: Vec<Option<u64>> = read.records.iter().map(|r| r.seq).collect();
    assert_eq!(numbers, vec![None, Some(1)]);
}
