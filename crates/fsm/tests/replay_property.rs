//! Property: any walk over the sample machine's table, journaled through
//! the engine (with rotation and blobs), replays clean. A failure means the
//! engine wrote a record the table would not make, lost one, or reordered them.

mod common;

use common::{Device, update};
use ferry_fsm::{Instance, JournalConfig, read_journal, replay_from};
use proptest::prelude::*;
use serde_json::json;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_walk_replays_clean(
        choices in prop::collection::vec((any::<u8>(), 0usize..6_000), 1..40),
        n_instances in 1usize..4,
    ) {
        let config = JournalConfig { max_file_bytes: 3_000, keep_files: 3, blob_threshold: 1_024 };
        let device = Device::with_config(config);
        let (store, _) = device.open();
        let machine = update();
        let mut instances: Vec<Instance> = (0..n_instances)
            .map(|n| Instance::start(machine, &format!("i{n}"), &store).expect("start"))
            .collect();
        let mut n_fired = 0;
        for (step_idx, (choice, data_len)) in choices.iter().enumerate() {
            let instance = &mut instances[step_idx % n_instances];
            let rows: Vec<_> = machine.rows().iter().filter(|r| r.state == instance.state()).collect();
            if rows.is_empty() {
                continue; // finished
            }
            let row = rows[usize::from(*choice) % rows.len()];
            let step = instance
                .fire(row.event, json!({"step": step_idx, "pad": "p".repeat(*data_len)}))
                .expect("a row of the table fires");
            prop_assert_eq!((step.action, step.next), (row.action, row.next));
            n_fired += 1;
        }
        let journal = read_journal(device.journal_dir()).expect("read");
        let report = replay_from(&[machine], &journal.records, journal.start());
        prop_assert!(report.is_ok(), "{:?}", report);
        if !journal.rotated_out {
            prop_assert_eq!(report.expect("ok").n_transitions, n_fired);
        }
        for record in &journal.records {
            store.data(record).expect("every kept blob resolves");
        }
        for instance in &instances {
            let loaded = Instance::load(machine, instance.id(), &store).expect("load");
            prop_assert_eq!(loaded.state(), instance.state());
        }
    }
}
