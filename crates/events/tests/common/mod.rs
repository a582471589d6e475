//! A report to vary in tests.
#![allow(dead_code)]

use ferry_events::{EventKind, EventReport, EventResult, ProgressReport};

pub const DEVICE: &str = "00000000000004d2";

pub fn report(event: EventKind) -> EventReport {
    let identity = ferry_types::Identity {
        device_id: DEVICE.parse().unwrap(),
        board_id: 0xa1,
        chip_id: 0x8103,
        hardware_uuid: uuid::Uuid::from_u128(1),
        device_class: "vm".parse().unwrap(),
    };
    let mut r = EventReport::new(&identity, event, EventResult::InProgress);
    r.uuid = Some(uuid::Uuid::from_u128(7));
    r.current_os_version = Some("1.0".parse().unwrap());
    r.current_base_os_version = Some("1.0".parse().unwrap());
    r.current_slot = Some(ferry_boot::Slot::A);
    r.target_os_version = Some("2.0".parse().unwrap());
    r.battery_level = Some(80);
    r.battery_is_charging = true;
    r.on_ac_power = true;
    r.data_fs_capacity = 1 << 30;
    r.data_fs_free = 1 << 29;
    r.system_fs_capacity = 1 << 30;
    r.system_fs_free = 1 << 29;
    r.storage_capacity = 1 << 30;
    r
}

pub fn progress(phase: &str, percent: f64) -> EventReport {
    let mut r = report(EventKind::Progress);
    r.progress = Some(ProgressReport {
        phase: phase.into(),
        percent,
        done: 1,
        total: 2,
        rate_bytes_per_sec: 10.0,
        eta_secs: Some(1.0),
    });
    r
}
