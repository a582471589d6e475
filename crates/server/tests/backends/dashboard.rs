//! The dashboard's reads and hourly counts on both backends.

use super::*;

/// An error as a failure report carries it, with only its code meaningful here.
fn error_report(code: &str) -> ferry_events::ErrorReport {
    ferry_events::ErrorReport {
        code: code.into(),
        cause: "c".into(),
        fix: "f".into(),
        machine: None,
        state: None,
    }
}

/// The dashboard on both backends: outcomes sent to two replicas at once (each batch to
/// both) are counted once in their hour, and every read the pages make runs.
pub(super) async fn dashboard(under: Under) {
    let (a, b) = (under.replica().await, under.replica().await);
    let outcomes = |device| {
        vec![
            report(device, 1, EventKind::InstallStarted, "2.0"),
            report(device, 2, EventKind::Installed, "2.0"),
            report(device, 3, EventKind::Committed, "2.0"),
        ]
    };
    let mut tasks = Vec::new();
    for device in 30..40u64 {
        for db in [a.clone(), b.clone()] {
            tasks.push(tokio::spawn(async move {
                db.ingest(&[batch(device, outcomes(device))]).await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut failed = report(40, 1, EventKind::Failed, "2.0");
    failed.error = Some(error_report("PAYLOAD_TRUNCATED"));
    a.ingest(&[batch(40, vec![failed])]).await.unwrap();
    // A device whose health watch failed after its commit: its own status, its own card.
    let mut unhealthy = report(41, 4, EventKind::HealthFailed, "2.0");
    unhealthy.error = Some(error_report("HEALTH_WATCH_FAILED"));
    b.ingest(&[batch(41, [outcomes(41), vec![unhealthy]].concat())])
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let hourly = b
        .dashboard_outcomes_per_hour(now - 24 * 3_600_000)
        .await
        .unwrap();
    let total = |event: &str| -> i64 {
        hourly
            .iter()
            .filter(|(_, e, _)| e == event)
            .map(|(_, _, n)| n)
            .sum()
    };
    assert_eq!(
        (total("installed"), total("committed"), total("failed")),
        (11, 11, 1),
        "{hourly:?}"
    );
    assert!(
        b.dashboard_outcomes_per_hour(now + 3_600_000)
            .await
            .unwrap()
            .is_empty()
    );
    // Every read the pages make.
    let overview = a.dashboard_overview(now).await.unwrap();
    assert_eq!(overview.devices, 12);
    assert_eq!(overview.last_hour.get("installed"), Some(&11));
    assert_eq!(overview.by_status.get("unhealthy"), Some(&1));
    let devices = a.dashboard_devices(Some("failed"), 0).await.unwrap();
    assert_eq!(devices.rows.len(), 1);
    let unhealthy = a.dashboard_devices(Some("unhealthy"), 0).await.unwrap();
    assert_eq!(unhealthy.rows.len(), 1);
    assert_eq!(a.dashboard_devices(None, 0).await.unwrap().rows.len(), 12);
    let device = format!("{:016x}", 30);
    assert_eq!(
        a.dashboard_timeline(&device, 0).await.unwrap().rows.len(),
        3
    );
    assert!(
        a.dashboard_latest(&device, Some("committed"))
            .await
            .unwrap()
            .is_some()
    );
    let failed_device = format!("{:016x}", 40);
    assert!(
        a.dashboard_latest(&failed_device, None)
            .await
            .unwrap()
            .is_some()
    );
    let failures = a.dashboard_failures(0).await.unwrap();
    let sample = |code: &str| {
        failures
            .rows
            .iter()
            .find(|r| r.code == code)
            .map(|r| r.sample.clone())
    };
    assert_eq!(
        sample("PAYLOAD_TRUNCATED"),
        Some(vec![failed_device.clone()])
    );
    assert_eq!(
        sample("HEALTH_WATCH_FAILED"),
        Some(vec![format!("{:016x}", 41)])
    );
    assert!(
        !a.dashboard_funnel_rows("vm", "2.0")
            .await
            .unwrap()
            .is_empty()
    );
    a.dashboard_phase_means(0).await.unwrap();
    a.dashboard_progress(&device, "u").await.unwrap();
    assert_eq!(a.dashboard_device_class(&device).await.unwrap(), None);
    let rollout = a
        .create_rollout(
            &serde_json::from_value::<NewRollout>(
                serde_json::json!({"class": "vm", "version": "2.0"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    a.dashboard_attempts(rollout.id, rollout.epoch)
        .await
        .unwrap();
    a.dashboard_wave_devices(rollout.id, rollout.epoch, 0, 20)
        .await
        .unwrap();
    let halted = a
        .act_on_rollout_by(rollout.id, Action::Halt, "vera")
        .await
        .unwrap();
    assert_eq!(halted.state, RolloutState::Halted);
    let view = b.rollout_view(rollout.id).await.unwrap();
    assert_eq!(view.changes.last().map(|c| c.by.as_str()), Some("vera"));
}
