//! Reports and batches as the server checks them: the format version, the device, text
//! bounds; and that the JSON keeps the articles' field names.

mod common;

use common::{progress, report};
use ferry_events::{EventBatch, EventKind, OutboxHealth, UpdateType};
use ferry_types::{DeviceId, Diagnose};

fn batch(reports: Vec<ferry_events::EventReport>) -> EventBatch {
    EventBatch {
        device_id: common::DEVICE.parse().unwrap(),
        outbox: OutboxHealth::default(),
        reports,
    }
}

fn sequenced(mut r: ferry_events::EventReport, sequence: u64) -> ferry_events::EventReport {
    r.sequence = sequence;
    r
}

#[test]
fn the_json_has_the_articles_field_names() {
    let v = serde_json::to_value(sequenced(report(EventKind::Installed), 1)).unwrap();
    for field in [
        "uuid",
        "audience_type",
        "battery_is_charging",
        "battery_level",
        "current_base_os_version",
        "current_os_type",
        "current_os_version",
        "data_fs_capacity",
        "data_fs_free",
        "device_class",
        "device_model",
        "event",
        "event_time",
        "low_power_mode",
        "platform",
        "mandatory_update_eligible",
        "mandatory_update_optional",
        "pre_staging_enabled",
        "pre_staging_max_size",
        "pre_staging_optional_size",
        "pre_staging_required_size",
        "preferred_type",
        "ramp_enabled",
        "rapid_security_response_installed",
        "rapid_security_response_semi_splat",
        "report_version",
        "result",
        "storage_capacity",
        "core_version",
        "system_fs_capacity",
        "system_fs_free",
        "target_os_version",
        "total_required_free_space",
        "update_type",
        "phases",
        "error",
    ] {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    assert_eq!(v["event"], "installed");
    assert_eq!(v["report_version"], 1);
    let back: ferry_events::EventReport = serde_json::from_value(v).unwrap();
    assert_eq!(back.event, EventKind::Installed);
}

#[test]
fn a_valid_batch_passes_and_each_defect_has_its_code() {
    let me: DeviceId = common::DEVICE.parse().unwrap();
    let good = batch(vec![
        sequenced(report(EventKind::InstallStarted), 1),
        sequenced(progress("DOWNLOADING_UPDATE", 30.0), 2),
    ]);
    good.validate(me).unwrap();

    let other: DeviceId = "00000000000004d3".parse().unwrap();
    assert_eq!(
        good.validate(other).unwrap_err().code(),
        "REPORT_OTHER_DEVICE"
    );
    let mut foreign = good.clone();
    foreign.reports[1].device_id = other;
    assert_eq!(
        foreign.validate(me).unwrap_err().code(),
        "REPORT_OTHER_DEVICE"
    );

    let mut future = good.clone();
    future.reports[0].report_version = 2;
    assert_eq!(
        future.validate(me).unwrap_err().code(),
        "REPORT_VERSION_UNSUPPORTED"
    );
    let mut twice = good.clone();
    twice.reports[1].sequence = 1;
    assert_eq!(twice.validate(me).unwrap_err().code(), "REPORT_INVALID");
    let mut zero = good.clone();
    zero.reports[0].sequence = 0;
    assert_eq!(zero.validate(me).unwrap_err().code(), "REPORT_INVALID");
    let mut percent = good.clone();
    percent.reports[1].progress.as_mut().unwrap().percent = 101.0;
    assert_eq!(percent.validate(me).unwrap_err().code(), "REPORT_INVALID");
    let mut long = good.clone();
    long.reports[0].audience_type = "a".repeat(65);
    assert_eq!(long.validate(me).unwrap_err().code(), "REPORT_INVALID");
    assert_eq!(
        batch(vec![]).validate(me).unwrap_err().code(),
        "REPORT_INVALID"
    );
}

#[test]
fn unknown_fields_are_refused() {
    let mut v = serde_json::to_value(sequenced(report(EventKind::Installed), 1)).unwrap();
    v["serial_number"] = "personal".into();
    assert!(serde_json::from_value::<ferry_events::EventReport>(v).is_err());
}

#[test]
fn update_types() {
    let v = |s: &str| s.parse::<ferry_types::Version>().unwrap();
    assert_eq!(UpdateType::between(&v("1.0"), &v("2.0")), UpdateType::Major);
    assert_eq!(UpdateType::between(&v("1.0"), &v("1.1")), UpdateType::Minor);
    assert_eq!(
        UpdateType::between(&v("1.0"), &v("1.0.0")),
        UpdateType::Reinstall
    );
    assert_eq!(
        UpdateType::between(&v("2.0"), &v("1.9")),
        UpdateType::Downgrade
    );
}
