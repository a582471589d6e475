//! Protects the journal's bounds: rotation keeps N files of bounded size,
//! large data goes out of line, and blobs no kept file references are deleted.

mod common;

use std::collections::HashSet;
use std::fs;

use common::{Device, update};
use ferry_fsm::{Instance, JournalConfig, Start, read_journal, replay_from};
use ferry_types::Diagnose;
use serde_json::json;

fn journal_bytes(device: &Device) -> u64 {
    fs::read_dir(device.journal_dir())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| e.metadata().expect("stat").len())
        .sum()
}

fn blob_names(device: &Device) -> HashSet<String> {
    fs::read_dir(device.journal_dir().join("blobs"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn referenced_blobs(device: &Device) -> HashSet<String> {
    read_journal(device.journal_dir())
        .expect("read")
        .records
        .iter()
        .filter_map(|r| r.blob.as_ref())
        .map(|b| b.trim_start_matches("sha256:").to_string())
        .collect()
}

#[test]
fn rotation_bounds_total_size_and_gcs_blobs() {
    let config = JournalConfig {
        max_file_bytes: 2_000,
        keep_files: 3,
        blob_threshold: 256,
    };
    let device = Device::with_config(config);
    let (store, _) = device.open();
    let mut max_total = 0;
    for n in 0..40 {
        let id = format!("u{n}");
        let mut instance = Instance::start(update(), &id, &store).expect("start");
        // Unique large data each time: a new blob per instance.
        instance
            .fire(
                "Start",
                json!({"catalog": format!("{n}:{}", "c".repeat(1_000))}),
            )
            .expect("fire");
        instance.fire("Ticket", json!({"n": n})).expect("fire");
        max_total = max_total.max(journal_bytes(&device));
        // Blobs never pile up: exactly those the kept files reference remain.
        assert_eq!(
            blob_names(&device),
            referenced_blobs(&device),
            "after instance {n}"
        );
    }
    // 3 files, each under 2000 bytes plus one record.
    assert!(max_total <= 3 * 2_400, "journal grew to {max_total}");
    let mut names: Vec<String> = fs::read_dir(device.journal_dir())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blobs",
            "journal.1.jsonl",
            "journal.2.jsonl",
            "journal.jsonl",
            "rotated"
        ]
    );

    let journal = read_journal(device.journal_dir()).expect("read");
    assert!(journal.rotated_out);
    assert_eq!(journal.start(), Start::FirstRecord);
    // Most of the 40 blobs were collected.
    assert!(
        blob_names(&device).len() < 20,
        "{}",
        blob_names(&device).len()
    );
    for record in &journal.records {
        store.data(record).expect("data resolves");
    }
    // Records are in order across files, and replay from mid-way passes.
    assert!(journal.records.windows(2).all(|w| w[0].t < w[1].t));
    replay_from(&[update()], &journal.records, journal.start()).expect("replay");
}

#[test]
fn large_data_goes_out_of_line_and_is_deduplicated() {
    let config = JournalConfig {
        blob_threshold: 100,
        ..JournalConfig::default()
    };
    let device = Device::with_config(config);
    let (store, _) = device.open();
    let big = json!({"size_calculation": "9".repeat(500)});
    for id in ["a", "b"] {
        let mut instance = Instance::start(update(), id, &store).expect("start");
        instance.fire("Start", big.clone()).expect("fire");
        instance
            .fire("Ticket", json!({"small": true}))
            .expect("fire");
    }
    let journal = store.read_journal().expect("read");
    let blob = journal.records[0].blob.clone().expect("out of line");
    assert!(blob.starts_with("sha256:") && blob.len() == 7 + 64);
    assert_eq!(journal.records[0].data, json!(null));
    assert_eq!(journal.records[2].blob.as_ref(), Some(&blob));
    assert_eq!(journal.records[1].blob, None);
    assert_eq!(journal.records[1].data, json!({"small": true}));
    assert_eq!(blob_names(&device).len(), 1);
    assert_eq!(store.data(&journal.records[0]).expect("data"), big);

    // A blob whose content no longer matches its name is reported, not returned.
    let path = device
        .journal_dir()
        .join("blobs")
        .join(blob.trim_start_matches("sha256:"));
    fs::write(&path, b"{}").expect("write");
    assert_eq!(
        store.data(&journal.records[0]).expect_err("corrupt").code(),
        "BLOB_CORRUPT"
    );
    fs::remove_file(&path).expect("remove");
    assert_eq!(
        store.data(&journal.records[0]).expect_err("missing").code(),
        "BLOB_MISSING"
    );
}

#[test]
fn filter_by_fsm_and_id() {
    let device = Device::new();
    let (store, _) = device.open();
    for id in ["a", "b"] {
        let mut instance = Instance::start(update(), id, &store).expect("start");
        instance.fire("Start", json!(null)).expect("fire");
    }
    let journal = store.read_journal().expect("read");
    assert_eq!(journal.filter(Some("update"), None).count(), 2);
    assert_eq!(journal.filter(Some("update"), Some("b")).count(), 1);
    assert_eq!(journal.filter(Some("scan"), None).count(), 0);
    assert_eq!(
        journal
            .filter(None, Some("a"))
            .next()
            .map(|r| r.id.as_str()),
        Some("a")
    );
}
