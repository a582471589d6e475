//! Every database behaviour a replica relies on, on both backends: SQLite (one server) and
//! a real PostgreSQL 15 cluster started by the test (two "replicas" are two independent
//! connection pools on one database, each with its own writer tasks, as two processes are).
//! Enrollment tokens are spent once, nonces are signed once, event reports are stored once,
//! the halt rule halts once, and the leader lease moves when its holder dies.

#[path = "../support/mod.rs"]
mod support;

mod dashboard;
use dashboard::dashboard;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry_events::{EventBatch, EventKind, EventReport, EventResult, OutboxHealth};
use ferry_server::db::{Backend, Db};
use ferry_server::db::{ChunkRow, DeltaRow, ReleaseRow};
use ferry_server::devices::{NonceWriter, TokenScope};
use ferry_server::fleet::Filter;
use ferry_server::leader::Leadership;
use ferry_server::rollouts::entitle::DeviceTags;
use ferry_server::rollouts::{Action, NewRollout, RolloutState};
use ferry_types::{DeviceId, Identity, RootHash, Sha256};
use support::postgres::Postgres;

/// One backend under test: its databases, and what keeps them alive (the cluster is
/// stopped when the value is dropped).
enum Under {
    Sqlite(tempfile::TempDir),
    Postgres(#[allow(dead_code)] Postgres, String),
}

impl Under {
    fn sqlite() -> Under {
        Under::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None`: PostgreSQL is not installed and CI is not set (the support says so loudly).
    fn postgres() -> Option<Under> {
        let pg = Postgres::start()?;
        let url = pg.database();
        Some(Under::Postgres(pg, url))
    }

    /// A replica: its own pool on the shared database.
    async fn replica(&self) -> Db {
        match self {
            Under::Sqlite(dir) => Db::open(&dir.path().join("ferry.db")).await.unwrap(),
            Under::Postgres(_, url) => Db::connect_postgres(url, 8).await.unwrap(),
        }
    }
}

fn identity(id: u64, class: &str) -> Identity {
    serde_json::from_value(serde_json::json!({
        "device_id": format!("{id:016x}"),
        "board_id": "000000a1",
        "chip_id": "00008103",
        "hardware_uuid": format!("00000000-0000-4000-8000-{id:012x}"),
        "device_class": class,
    }))
    .unwrap()
}

fn report(device: u64, sequence: u64, event: EventKind, target: &str) -> EventReport {
    let mut r = EventReport::new(&identity(device, "vm"), event, EventResult::Success);
    r.sequence = sequence;
    r.uuid = Some("00000000-0000-4000-8000-000000000007".parse().unwrap());
    r.event_time = "2026-03-20T18:51:32Z".parse().unwrap();
    r.current_os_version = Some("1.0".parse().unwrap());
    r.current_base_os_version = r.current_os_version.clone();
    r.current_slot = serde_json::from_value(serde_json::json!("a")).unwrap();
    r.target_os_version = Some(target.parse().unwrap());
    r.on_ac_power = true;
    r
}

fn batch(device: u64, reports: Vec<EventReport>) -> EventBatch {
    EventBatch {
        device_id: DeviceId::new(device).unwrap(),
        outbox: OutboxHealth {
            queued: reports.len() as u64,
            dropped_progress: 0,
            dropped_steps: 0,
            full: false,
        },
        reports,
    }
}

/// Runs `scenario` on SQLite, then on PostgreSQL (when installed).
macro_rules! on_both {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Under::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(under) = super::Under::postgres() {
                    super::$scenario(under).await;
                }
            }
        }
    };
}

on_both!(enrollment_token_spent_once, token_spent_once);
on_both!(concurrent_enrollments_all_succeed, enrollments_at_once);
on_both!(nonce_signed_once, nonces_once);
on_both!(event_reports_stored_once, events_once);
on_both!(one_round_of_many_batches, events_in_one_round);
on_both!(rollout_halts_once, rollout_halt);
on_both!(every_read_query_runs, reads);
on_both!(leader_lease_moves, lease_moves);
on_both!(dashboard_counts_and_reads, dashboard);
on_both!(a_tokens_tags_land_at_enrollment, token_tags);

/// A token enrolls one device; racing enrollments with one token on two replicas: one wins.
async fn token_spent_once(under: Under) {
    let (a, b) = (under.replica().await, under.replica().await);
    let token = a
        .create_enrollment_token(&TokenScope::default())
        .await
        .unwrap();
    a.enroll(&token, &identity(1, "vm"), "cred-1")
        .await
        .unwrap();
    let again = b.enroll(&token, &identity(2, "vm"), "cred-2").await;
    assert_eq!(
        again.unwrap_err().to_string(),
        ferry_server::ServerError::EnrollmentTokenInvalid.to_string()
    );
    // Twenty tokens, each raced by two replicas for two devices at once.
    for round in 0..20u64 {
        let token = a
            .create_enrollment_token(&TokenScope::default())
            .await
            .unwrap();
        let copy = token.clone();
        let (first, second) = (
            identity(100 + 2 * round, "vm"),
            identity(101 + 2 * round, "vm"),
        );
        let (ra, rb) = tokio::join!(a.enroll(&token, &first, "x"), b.enroll(&copy, &second, "y"),);
        assert_eq!(
            usize::from(ra.is_ok()) + usize::from(rb.is_ok()),
            1,
            "round {round}: exactly one replica spends the token ({ra:?}, {rb:?})"
        );
    }
    assert_eq!(a.devices().await.unwrap().len(), 21);
}

/// A token's tenant, region and tags become the device's at enrollment; a re-enrollment
/// token that names only a region keeps the tenant and tags; a bad tag is refused when the
/// token is made, not when the device enrolls.
async fn token_tags(under: Under) {
    let db = under.replica().await;
    let tags = |tenant: Option<&str>, region: &str, tags: Option<&str>| DeviceTags {
        tenant: tenant.map(str::to_owned),
        region: Some(region.to_owned()),
        tags: tags.map(|t| t.split(',').map(str::to_owned).collect()),
    };
    let scope = TokenScope {
        tags: tags(Some("acme"), "eu", Some("line-3,beta")),
        ..TokenScope::default()
    };
    let token = db.create_enrollment_token(&scope).await.unwrap();
    let device = identity(7, "vm");
    db.enroll(&token, &device, "cred").await.unwrap();
    let facts = db.cohort_facts(&device.device_id, false).await.unwrap();
    assert_eq!(facts.tenant.as_deref(), Some("acme"));
    assert_eq!(facts.region.as_deref(), Some("eu"));
    assert_eq!(facts.tags.iter().collect::<Vec<_>>(), ["beta", "line-3"]);

    let again = TokenScope {
        device_id: Some(device.device_id),
        reenroll: true,
        tags: tags(None, "us", None),
        ..TokenScope::default()
    };
    let token = db.create_enrollment_token(&again).await.unwrap();
    db.enroll(&token, &device, "cred-2").await.unwrap();
    let facts = db.cohort_facts(&device.device_id, false).await.unwrap();
    assert_eq!(facts.tenant.as_deref(), Some("acme"));
    assert_eq!(facts.region.as_deref(), Some("us"));
    assert_eq!(facts.tags.len(), 2);

    // A plain token leaves a device's tags alone; a bad tag is no token.
    let plain = db
        .create_enrollment_token(&TokenScope::default())
        .await
        .unwrap();
    let other = identity(8, "vm");
    db.enroll(&plain, &other, "cred").await.unwrap();
    let facts = db.cohort_facts(&other.device_id, false).await.unwrap();
    assert!(facts.tenant.is_none() && facts.tags.is_empty(), "{facts:?}");
    let bad = TokenScope {
        tags: tags(None, "eu west", None),
        ..TokenScope::default()
    };
    let refused = db.create_enrollment_token(&bad).await.unwrap_err();
    assert_eq!(
        ferry_types::Diagnose::code(&refused),
        "ROLLOUT_INVALID",
        "{refused}"
    );
}

/// Sixty-four devices enroll at once through two pools on one database (on SQLite, two
/// servers' worth of connections on one file): every enrollment waits its turn for the
/// writer rather than failing with "database is locked".
async fn enrollments_at_once(under: Under) {
    let (a, b) = (under.replica().await, under.replica().await);
    let mut tokens = Vec::new();
    for _ in 0..64 {
        tokens.push(
            a.create_enrollment_token(&TokenScope::default())
                .await
                .unwrap(),
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, token) in tokens.into_iter().enumerate() {
        let db = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            db.enroll(&token, &identity(1000 + n as u64, "vm"), "cred")
                .await
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(a.devices().await.unwrap().len(), 64);
}

/// Two replicas, each with its own nonce writer, record the same 400 nonces at once (and
/// each nonce twice on its own): every nonce is new exactly once.
async fn nonces_once(under: Under) {
    let (a, b) = (under.replica().await, under.replica().await);
    let (wa, wb) = (NonceWriter::start(a.clone()), NonceWriter::start(b.clone()));
    let device = DeviceId::new(0x42).unwrap();
    let nonces: Vec<Sha256> = (0..400u32).map(|i| Sha256::of(&i.to_le_bytes())).collect();
    let mut tasks = Vec::new();
    for writer in [wa.clone(), wb.clone(), wa, wb] {
        for nonce in nonces.clone() {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                (nonce, writer.record(nonce, device).await)
            }));
        }
    }
    let mut new = HashSet::new();
    let mut reused = 0;
    for task in tasks {
        let (nonce, answer) = task.await.unwrap();
        if answer.unwrap() {
            assert!(new.insert(nonce), "{nonce} was signed twice");
        } else {
            reused += 1;
        }
    }
    assert_eq!(new.len(), 400, "every nonce was new once");
    assert_eq!(reused, 1200);
    assert_eq!(a.count_nonces().await.unwrap(), 400);
}

/// A retried batch stores nothing twice, also when two replicas get it at once.
async fn events_once(under: Under) {
    let (a, b) = (under.replica().await, under.replica().await);
    let reports = |device| {
        vec![
            report(device, 1, EventKind::InstallStarted, "2.0"),
            report(device, 2, EventKind::Personalized, "2.0"),
        ]
    };
    let (acks, fresh) = a.ingest(&[batch(7, reports(7))]).await.unwrap();
    assert_eq!((acks[0].stored, acks[0].duplicates, fresh.len()), (2, 0, 2));
    // A progress report after reports without one: the same statement binds a percent
    // where it bound NULL (the `Any` driver once sent the two as different float types).
    let mut progress = report(8, 2, EventKind::Progress, "2.0");
    progress.progress = Some(ferry_events::ProgressReport {
        phase: "DOWNLOADING_UPDATE".into(),
        percent: 42.5,
        done: 1,
        total: 2,
        rate_bytes_per_sec: 1.0,
        eta_secs: None,
    });
    let started = report(8, 1, EventKind::InstallStarted, "2.0");
    let (acks, _) = a
        .ingest(&[batch(8, vec![started, progress])])
        .await
        .unwrap();
    assert_eq!(acks[0].stored, 2);
    let state = a
        .device_states(&Filter {
            device: Some(format!("{:016x}", 8)),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(state[0].update_percent, Some(42.5));
    let (acks, fresh) = b.ingest(&[batch(7, reports(7))]).await.unwrap();
    assert_eq!((acks[0].stored, acks[0].duplicates, fresh.len()), (0, 2, 0));
    // Ten devices' batches sent to both replicas at once.
    let mut tasks = Vec::new();
    for device in 10..20u64 {
        for db in [a.clone(), b.clone()] {
            tasks.push(tokio::spawn(async move {
                db.ingest(&[batch(device, reports(device))]).await
            }));
        }
    }
    let mut stored = 0;
    for task in tasks {
        let (acks, _) = task.await.unwrap().unwrap();
        stored += acks[0].stored;
    }
    assert_eq!(stored, 20, "each report stored once");
    let all = a
        .event_reports(&Filter {
            limit: Some(1000),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 24);
    let states = b.device_states(&Filter::default()).await.unwrap();
    assert_eq!(states.len(), 12);
    assert!(states.iter().all(|s| s.status == "updating"), "{states:?}");
}

/// One writer round of several batches (multi-row statements): a device twice in the round
/// is folded in batch order, a copy of a report within the round or of a stored one is a
/// duplicate; two replicas' rounds over the same devices in opposite orders both commit.
async fn events_in_one_round(under: Under) {
    let (a, b) = (under.replica().await, under.replica().await);
    let installed = |device, sequence| {
        let mut r = report(device, sequence, EventKind::Installed, "2.0");
        r.phases = vec![ferry_events::PhaseDuration {
            phase: "DOWNLOADING_UPDATE".into(),
            secs: 4.0,
        }];
        r
    };
    let mut later = batch(
        30,
        vec![
            report(30, 2, EventKind::Personalized, "2.0"),
            installed(30, 3),
        ],
    );
    later.outbox.dropped_steps = 3;
    let round = [
        batch(
            30,
            vec![
                report(30, 1, EventKind::InstallStarted, "2.0"),
                report(30, 2, EventKind::Personalized, "2.0"),
            ],
        ),
        batch(31, vec![installed(31, 1)]),
        later,
        batch(31, vec![installed(31, 1)]),
    ];
    let (acks, fresh) = a.ingest(&round).await.unwrap();
    let counts: Vec<(u64, u64)> = acks.iter().map(|a| (a.stored, a.duplicates)).collect();
    assert_eq!(counts, [(2, 0), (1, 0), (1, 1), (0, 1)]);
    assert_eq!(acks[2].acked, [2, 3]);
    assert_eq!(fresh.len(), 4);
    let states = a.device_states(&Filter::default()).await.unwrap();
    let state = |id: u64| {
        states
            .iter()
            .find(|s| s.device_id == format!("{id:016x}"))
            .cloned()
            .unwrap()
    };
    let s30 = state(30);
    assert_eq!(
        (s30.status.as_str(), s30.last_sequence, s30.outbox_dropped),
        ("staged", 3, 3)
    );
    assert_eq!(s30.phases, [("DOWNLOADING_UPDATE".to_string(), 4.0)]);
    assert_eq!(state(31).status, "staged");
    let hourly = a.dashboard_outcomes_per_hour(0).await.unwrap();
    let installed_n: i64 = hourly
        .iter()
        .filter(|(_, event, _)| event == "installed")
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(installed_n, 2, "each new outcome counted once: {hourly:?}");
    // Two replicas, 40 devices each, in opposite orders, at once.
    let forward: Vec<EventBatch> = (100..140u64)
        .map(|d| batch(d, vec![report(d, 1, EventKind::InstallStarted, "2.0")]))
        .collect();
    let backward: Vec<EventBatch> = forward.iter().rev().cloned().collect();
    let (one, two) = tokio::join!(a.ingest(&forward), b.ingest(&backward));
    let stored = |acks: Vec<ferry_events::BatchAck>| acks.iter().map(|a| a.stored).sum::<u64>();
    assert_eq!(stored(one.unwrap().0) + stored(two.unwrap().0), 40);
    assert_eq!(a.device_states(&Filter::default()).await.unwrap().len(), 42);
}

/// Rollbacks reported to two replicas halt the rollout once; pause and resume are
/// conditional and a resume after a halt starts a new counting epoch.
async fn rollout_halt(under: Under) {
    let (a, b) = (under.replica().await, under.replica().await);
    let rollout = a
        .create_rollout(&NewRollout {
            class: "vm".into(),
            version: "2.0".into(),
            threshold: Some(0.05),
            min_attempts: Some(3),
            ..NewRollout::default()
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for device in 1..=8u64 {
        let db = if device % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            db.ingest(&[batch(
                device,
                vec![
                    report(device, 1, EventKind::Personalized, "2.0"),
                    report(device, 2, EventKind::RolledBack, "2.0"),
                ],
            )])
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let view = b.rollout_view(rollout.id).await.unwrap();
    assert_eq!(view.rollout.state, RolloutState::Halted);
    let halts: Vec<_> = view.changes.iter().filter(|c| c.action == "halt").collect();
    assert_eq!(halts.len(), 1, "halted once: {:?}", view.changes);
    assert_eq!(view.wave_counts[0].attempts, 8);
    assert_eq!(view.wave_counts[0].failures, 8);
    // An operator's pause of a halted rollout is refused; resume starts epoch 1.
    assert!(a.act_on_rollout(rollout.id, Action::Pause).await.is_err());
    let resumed = a.act_on_rollout(rollout.id, Action::Resume).await.unwrap();
    assert_eq!((resumed.state, resumed.epoch), (RolloutState::Running, 1));
    let paused = b.act_on_rollout(rollout.id, Action::Pause).await.unwrap();
    assert_eq!(paused.state, RolloutState::Paused);
    let view = a.rollout_view(rollout.id).await.unwrap();
    let actions: Vec<&str> = view.changes.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["halt", "resume", "pause"]);
    assert_eq!(
        view.wave_counts[0].attempts, 0,
        "the new epoch counts afresh"
    );
}

/// The read side's queries (filters, counts, JSON, aggregation) answer alike.
async fn reads(under: Under) {
    let db = under.replica().await;
    let token = db
        .create_enrollment_token(&TokenScope::default())
        .await
        .unwrap();
    db.enroll(&token, &identity(5, "vm"), "cred").await.unwrap();
    db.set_signing_window("vm", "b1", false).await.unwrap();
    let facts = db
        .device_facts(&DeviceId::new(5).unwrap(), "b1")
        .await
        .unwrap()
        .unwrap();
    assert!(!facts.window_open && !facts.revoked && facts.published_roots.is_empty());
    assert!(db.revoke(&DeviceId::new(5).unwrap()).await.unwrap());
    let facts = db
        .device_facts(&DeviceId::new(5).unwrap(), "b2")
        .await
        .unwrap()
        .unwrap();
    assert!(facts.revoked && !facts.window_open, "b2 is not published");
    db.ingest(&[batch(
        5,
        vec![
            report(5, 1, EventKind::InstallStarted, "2.0"),
            report(5, 2, EventKind::RolledBack, "2.0"),
        ],
    )])
    .await
    .unwrap();
    let outcomes = db.outcome_counts().await.unwrap();
    assert_eq!(outcomes, vec![("rolled_back".into(), String::new(), 1)]);
    let filter = Filter {
        device: Some(format!("{:016x}", 5)),
        class: Some("vm".into()),
        version: Some("2.0".into()),
        since_ms: Some(0),
        until_ms: Some(i64::MAX),
        limit: Some(1),
        ..Filter::default()
    };
    assert_eq!(db.event_reports(&filter).await.unwrap().len(), 1);
    let states = db
        .device_states(&Filter {
            state: Some("rolled_back".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(states.len(), 1, "{states:?}");
    assert!(states[0].rolled_back);
    assert_eq!(
        db.reported_audience(&DeviceId::new(5).unwrap())
            .await
            .unwrap()
            .as_deref(),
        Some("customer")
    );
    let rates = db.phase_rates(&"vm".parse().unwrap()).await.unwrap();
    assert!(rates.rates.is_empty());
    assert_eq!(db.fleet_summary().await.unwrap().devices, 1);
    let marked = db
        .mark_silent(chrono::Utc::now().timestamp_millis() + 10_000, 1)
        .await
        .unwrap();
    assert_eq!(marked, 0, "a rolled-back device is not mid-update");
    assert!(
        db.explain(&DeviceId::new(5).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.artifact_key_by_sha256(&"0".repeat(64)).await.unwrap(),
        None
    );
    assert!(db.releases("vm").await.unwrap().is_empty());

    // Releases, deltas, chunked payloads and the facts that read them.
    let root = RootHash([7; 32]);
    let release = |version: &str, seal_root| ReleaseRow {
        class: "vm".into(),
        version: version.parse().unwrap(),
        build_id: format!("b{version}"),
        audience: "customer".into(),
        kind: "full".into(),
        image_size: 1,
        image_sha256: Sha256::of(version.as_bytes()),
        payload_key: format!("p{version}"),
        payload_size: 2,
        payload_sha256: Sha256::of(format!("p{version}").as_bytes()),
        manifest_key: format!("m{version}"),
        manifest_size: 3,
        manifest_sha256: Sha256::of(format!("m{version}").as_bytes()),
        seal_root,
        created_at: "2026-01-01T00:00:00Z".into(),
    };
    db.insert_release(&release("2.0", Some(root)))
        .await
        .unwrap();
    db.insert_release(&release("1.0", None)).await.unwrap();
    let again = db.insert_release(&release("2.0", None)).await.unwrap_err();
    assert_eq!(ferry_types::Diagnose::code(&again), "DUPLICATE_VERSION");
    assert_eq!(db.releases_without_seal_root().await.unwrap().len(), 1);
    db.set_seal_root("vm", &"1.0".parse().unwrap(), &RootHash([1; 32]))
        .await
        .unwrap();
    assert!(db.releases_without_seal_root().await.unwrap().is_empty());
    let versions: Vec<String> = db
        .releases("vm")
        .await
        .unwrap()
        .iter()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(versions, ["2.0", "1.0"]);
    assert!(db.has_version("vm", &"2.0".parse().unwrap()).await.unwrap());
    db.insert_delta(&DeltaRow {
        class: "vm".into(),
        from: "1.0".parse().unwrap(),
        to: "2.0".parse().unwrap(),
        key: "d".into(),
        size: 4,
        sha256: Sha256::of(b"d"),
    })
    .await
    .unwrap();
    assert_eq!(db.deltas("vm").await.unwrap().len(), 1);
    db.insert_chunks(&ChunkRow {
        class: "vm".into(),
        version: "2.0".parse().unwrap(),
        payload_key: "cp".into(),
        payload_size: 5,
        payload_sha256: Sha256::of(b"cp"),
        index_key: "ci".into(),
        index_size: 6,
        index_sha256: Sha256::of(b"ci"),
        hints: "1.0".into(),
    })
    .await
    .unwrap();
    for (content, key) in [("d", "d"), ("ci", "ci"), ("cp", "cp"), ("m2.0", "m2.0")] {
        assert_eq!(
            db.artifact_key_by_sha256(&Sha256::of(content.as_bytes()).to_hex())
                .await
                .unwrap()
                .as_deref(),
            Some(key)
        );
    }
    let facts = db
        .device_facts(&DeviceId::new(5).unwrap(), "b2.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.published_roots, vec![root]);
    assert!(facts.window_open, "a published build is open by default");
    db.delete_release("vm", &"1.0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(db.releases("vm").await.unwrap().len(), 1);

    // A rollout of 2.0: its build, its hold, the explanation, silence counted against it.
    let rollout = db
        .create_rollout(&NewRollout {
            class: "vm".into(),
            version: "2.0".into(),
            ..NewRollout::default()
        })
        .await
        .unwrap();
    let of_build = db.rollout_of_build("vm", "b2.0").await.unwrap().unwrap();
    assert_eq!(of_build.id, rollout.id);
    let device = DeviceId::new(5).unwrap();
    assert!(
        db.rollout_hold(&device, "vm", "b2.0")
            .await
            .unwrap()
            .is_none()
    );
    let explained = db.explain(&device).await.unwrap();
    assert_eq!(explained.len(), 1);
    assert_eq!(explained[0].code, "OPEN");
    db.ingest(&[batch(
        6,
        vec![report(6, 1, EventKind::InstallStarted, "2.0")],
    )])
    .await
    .unwrap();
    let silent = db
        .mark_silent(chrono::Utc::now().timestamp_millis() + 10_000, 1)
        .await
        .unwrap();
    assert_eq!(silent, 1);
    let view = db.rollout_view(rollout.id).await.unwrap();
    assert_eq!(
        (view.wave_counts[0].attempts, view.wave_counts[0].failures),
        (1, 1),
        "silence counts against the rollout"
    );
    assert_eq!(
        db.backend(),
        match under {
            Under::Sqlite(_) => Backend::Sqlite,
            Under::Postgres(..) => Backend::Postgres,
        }
    );
}

/// Two replicas' claims on one lease: one leads; when it stops renewing (it died), the
/// other takes over within the lease's lifetime plus one renewal period.
async fn lease_moves(under: Under) {
    let ttl = Duration::from_millis(1500);
    let (a, b) = (under.replica().await, under.replica().await);
    let (la, lb) = (Leadership::new(a, ttl), Leadership::new(b, ttl));
    let task_a = tokio::spawn(la.clone().keep());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let task_b = tokio::spawn(lb.clone().keep());
    tokio::time::sleep(ttl).await;
    assert!(la.is_leader() && !lb.is_leader(), "one leader");
    // The leader dies: it neither renews nor releases.
    task_a.abort();
    let died = Instant::now();
    while !lb.is_leader() {
        assert!(
            died.elapsed() < ttl + ttl / 3 + Duration::from_millis(500),
            "no take-over within the bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = died.elapsed();
    eprintln!("take-over after {took:?} (bound {:?})", ttl + ttl / 3);
    assert!(
        !la.try_hold().await.unwrap(),
        "the old leader cannot take it back"
    );
    // A clean release hands it over at once.
    task_b.abort();
    lb.release().await.unwrap();
    assert!(la.try_hold().await.unwrap());
}
