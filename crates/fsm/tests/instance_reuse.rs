//! A finished instance's id may start a new life at the initial state (a retried
//! update); an unfinished one jumping back is still a divergence.

use ferry_fsm::{Instance, Machine, MachineDef, Store, StoreOptions, machine, replay};

const JOB: MachineDef = machine! {
    name: "job",
    initial: IDLE,
    finals: [DONE],
    failures: [],
    exempt: [],
    rows: [
        IDLE    + Start  => Run    -> RUNNING,
        RUNNING + Finish => Report -> DONE,
    ],
};

#[test]
fn finished_instance_id_can_start_again_but_a_running_one_cannot_jump_back() {
    let tmp = tempfile::tempdir().unwrap();
    let machine = Machine::new(&JOB).unwrap();
    let (store, _) = Store::open(
        tmp.path().join("journal"),
        tmp.path().join("state"),
        StoreOptions::default(),
    )
    .unwrap();
    let mut job = Instance::start(machine, "j1", &store).unwrap();
    job.fire("Start", serde_json::Value::Null).unwrap();
    job.fire("Finish", serde_json::Value::Null).unwrap();
    std::fs::remove_file(store.state_path("job", "j1")).unwrap();
    let mut again = Instance::start(machine, "j1", &store).unwrap();
    again.fire("Start", serde_json::Value::Null).unwrap();
    let records = store.read_journal().unwrap().records;
    replay(&[machine], &records).expect("a new life after a final state replays");

    // Unfinished (RUNNING) and back to IDLE: a gap.
    std::fs::remove_file(store.state_path("job", "j1")).unwrap();
    let mut third = Instance::start(machine, "j1", &store).unwrap();
    third.fire("Start", serde_json::Value::Null).unwrap();
    let records = store.read_journal().unwrap().records;
    let divergence = replay(&[machine], &records).expect_err("RUNNING cannot jump back to IDLE");
    assert_eq!(divergence.record_idx, 3);
}
