//! The outbox's promises: durable sequence numbers never reused, progress coalesced per
//! update and phase, bounded by dropping progress then steps but never terminal reports,
//! reports forgotten only when acknowledged, all of it surviving a reopen.

mod common;

use common::{progress, report};
use ferry_events::{EventKind, Outbox, OutboxLimits};

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "outbox.json")
        .collect();
    names.sort();
    names
}

#[test]
fn sequences_survive_reopen_and_acknowledged_reports_are_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("events");
    let mut outbox = Outbox::open(&dir, OutboxLimits::default()).unwrap();
    assert_eq!(outbox.append(report(EventKind::InstallStarted)).unwrap(), 1);
    assert_eq!(outbox.append(report(EventKind::Personalized)).unwrap(), 2);
    assert_eq!(outbox.append(report(EventKind::Installed)).unwrap(), 3);
    drop(outbox);

    let mut outbox = Outbox::open(&dir, OutboxLimits::default()).unwrap();
    let batch = outbox.batch(50, 1 << 20).unwrap();
    assert_eq!(
        batch.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(batch[2].event, EventKind::Installed);
    // Everything acknowledged: the files go, the sequence does not restart.
    assert_eq!(outbox.acknowledge(&[1, 2, 3, 99]).unwrap(), 3);
    assert!(files(&dir).is_empty());
    drop(outbox);
    let mut outbox = Outbox::open(&dir, OutboxLimits::default()).unwrap();
    assert_eq!(outbox.append(report(EventKind::Committed)).unwrap(), 4);
    assert_eq!(outbox.state().delivery.delivered, 3);
}

#[test]
fn a_batch_is_bounded_by_count_and_bytes_but_holds_at_least_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    for _ in 0..7 {
        outbox.append(report(EventKind::DownloadStarted)).unwrap();
    }
    assert_eq!(outbox.batch(5, 1 << 20).unwrap().len(), 5);
    assert_eq!(outbox.batch(50, 1).unwrap().len(), 1);
}

#[test]
fn progress_is_coalesced_per_update_and_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    outbox.append(progress("DOWNLOADING_UPDATE", 20.0)).unwrap();
    outbox.append(report(EventKind::Downloaded)).unwrap();
    outbox.append(progress("DOWNLOADING_UPDATE", 40.0)).unwrap();
    outbox.append(progress("PREPARING_UPDATE", 70.0)).unwrap();
    let mut other_update = progress("DOWNLOADING_UPDATE", 5.0);
    other_update.uuid = Some(uuid::Uuid::from_u128(8));
    outbox.append(other_update).unwrap();
    let kept: Vec<(u64, Option<f64>)> = outbox
        .batch(50, 1 << 20)
        .unwrap()
        .iter()
        .map(|r| (r.sequence, r.progress.as_ref().map(|p| p.percent)))
        .collect();
    assert_eq!(
        kept,
        [(2, None), (3, Some(40.0)), (4, Some(70.0)), (5, Some(5.0))]
    );
    // Coalescing is not loss.
    assert_eq!(outbox.health().dropped_progress, 0);
    // Reopened, the coalescing key is read back from the files.
    drop(outbox);
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    outbox.append(progress("PREPARING_UPDATE", 90.0)).unwrap();
    assert_eq!(outbox.len(), 4);
}

#[test]
fn when_full_progress_goes_first_then_steps_and_terminal_reports_never() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = OutboxLimits {
        max_reports: 4,
        max_bytes: 1 << 30,
    };
    let mut outbox = Outbox::open(tmp.path(), limits).unwrap();
    outbox.append(progress("DOWNLOADING_UPDATE", 20.0)).unwrap(); // 1
    outbox.append(report(EventKind::InstallStarted)).unwrap(); // 2
    outbox.append(report(EventKind::Failed)).unwrap(); // 3
    outbox.append(report(EventKind::Personalized)).unwrap(); // 4
    assert!(!outbox.health().full);
    outbox.append(report(EventKind::Installed)).unwrap(); // 5: progress 1 dropped
    assert_eq!(outbox.health().dropped_progress, 1);
    assert!(outbox.health().full);
    outbox.append(report(EventKind::Committed)).unwrap(); // 6: step 2 dropped
    outbox.append(report(EventKind::RolledBack)).unwrap(); // 7: step 4 dropped
    for _ in 0..3 {
        outbox.append(report(EventKind::DoctorResult)).unwrap(); // over the limit: kept
    }
    let health = outbox.health();
    assert_eq!((health.dropped_progress, health.dropped_steps), (1, 2));
    let kept: Vec<u64> = outbox
        .batch(50, 1 << 20)
        .unwrap()
        .iter()
        .map(|r| r.sequence)
        .collect();
    assert_eq!(kept, [3, 5, 6, 7, 8, 9, 10], "every terminal report stays");
    let status = outbox.status();
    assert_eq!((status.queued, status.terminal), (7, 7));
    // Drained below the limits: no longer full, and the drops stay counted.
    outbox.acknowledge(&kept).unwrap();
    assert!(!outbox.health().full);
    assert_eq!(outbox.health().dropped_steps, 2);
}

#[test]
fn an_unreadable_state_file_moves_sequences_past_any_used_before() {
    let tmp = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    outbox.append(report(EventKind::Installed)).unwrap();
    outbox.acknowledge(&[1]).unwrap();
    drop(outbox);
    std::fs::write(tmp.path().join("outbox.json"), b"{garbage").unwrap();
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    assert!(outbox.state_recovered());
    let next = outbox.append(report(EventKind::Committed)).unwrap();
    assert!(next > 1_000_000_000_000, "{next}");
}

#[test]
fn a_corrupt_queued_report_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    outbox.append(report(EventKind::Installed)).unwrap();
    std::fs::write(tmp.path().join("00000000000000000001.t.json"), b"nope").unwrap();
    let e = outbox.batch(50, 1 << 20).unwrap_err();
    assert_eq!(ferry_types::Diagnose::code(&e), "OUTBOX_CORRUPT");
    assert!(e.to_string().contains("00000000000000000001.t.json"), "{e}");
}

#[test]
fn failed_attempts_back_off_with_jitter_and_a_success_resets() {
    let tmp = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    let now = chrono::Utc::now();
    let down = ferry_types::Report {
        code: "SERVER_UNREACHABLE".into(),
        cause: "c".into(),
        fix: "f".into(),
    };
    for _ in 0..3 {
        outbox.record_attempt(now, Err(down.clone()), 1.0).unwrap();
    }
    assert!(!outbox.due(now));
    assert!(outbox.due(now + chrono::Duration::seconds(4)));
    assert!(!outbox.due(now + chrono::Duration::milliseconds(3900)));
    drop(outbox);
    let mut outbox = Outbox::open(tmp.path(), OutboxLimits::default()).unwrap();
    assert_eq!(outbox.state().delivery.failures, 3);
    assert_eq!(
        outbox.state().delivery.last_error.as_ref().unwrap().code,
        "SERVER_UNREACHABLE"
    );
    outbox.record_attempt(now, Ok(()), 0.0).unwrap();
    assert!(outbox.due(now));
    assert_eq!(outbox.state().delivery.failures, 0);
}
