//! Work done once, across processes: two `ferry server` replicas on one PostgreSQL; the
//! first to start holds the leader lease (the timestamp re-signing and the silent-device
//! watch run there). Killed with SIGKILL, it renews nothing and releases nothing; the other
//! replica takes the lease within the stated bound (lease + a third of it). Skipped loudly
//! when PostgreSQL is not installed (failed in CI).

use std::time::{Duration, Instant};

use crate::common::*;

const LEASE_SECS: u64 = 3;

/// The process id in the lease's holder (`PID-RANDOM`), if a replica holds it.
fn leader_pid(runtime: &tokio::runtime::Runtime, db: &ferry_server::db::Db) -> Option<u32> {
    let holder = runtime.block_on(db.leader()).unwrap()?;
    holder.split('-').next()?.parse().ok()
}

#[test]
fn the_leaders_work_moves_within_the_bound_when_it_is_killed() {
    let Some(pg) = postgres::Postgres::start() else {
        return;
    };
    let url = pg.database();
    use_database(url.clone());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let image = tmp.path().join("v1.img");
    make_image(&image, 1, 1);
    publish(&data, &image, "1.0");
    let lease = LEASE_SECS.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime
        .block_on(ferry_server::db::Db::connect_postgres(&url, 1))
        .unwrap();
    let mut first = Server::start_with(&data, &["--lease-ttl", &lease]);
    let started = Instant::now();
    while leader_pid(&runtime, &db) != Some(first.child.id()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the only replica leads"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = Server::start_with(&data, &["--lease-ttl", &lease]);
    // Held, not merely taken: the lease outlives its first term while the leader lives.
    std::thread::sleep(Duration::from_secs(LEASE_SECS + 1));
    assert_eq!(leader_pid(&runtime, &db), Some(first.child.id()));

    first.kill();
    let killed = Instant::now();
    let bound = Duration::from_millis(LEASE_SECS * 1000 * 4 / 3);
    while leader_pid(&runtime, &db) != Some(second.child.id()) {
        assert!(
            killed.elapsed() < bound + Duration::from_secs(2),
            "no replica took the work within {bound:?} of the leader's death"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed.elapsed();
    eprintln!(
        "the second replica leads {took:?} after the first was killed (bound {bound:?} with a {LEASE_SECS} s lease)"
    );
    assert!(took <= bound + Duration::from_millis(500), "{took:?}");
}
