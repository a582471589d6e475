//! A report to vary in tests.
#![allow(dead_code)]

use ferry_events::{EventKind, EventReport, EventResult, ProgressReport, REPORT_VERSION};

pub const DEVICE: &str = "00000000000004d2";

pub fn report(event: EventKind) -> EventReport {
    EventReport {
        report_version: REPORT_VERSION,
        sequence: 0,
        device_id: DEVICE.parse().unwrap(),
        uuid: Some(uuid::Uuid::from_u128(7)),
        event,
        event_time: chrono::Utc::now(),
        result: EventResult::InProgress,
        transition: None,
        audience_type: "customer".into(),
        device_class: "vm".parse().unwrap(),
        device_model: "000000a1-00008103".into(),
        platform: "linux-x86_64".into(),
        core_version: "0.1.0".into(),
        current_os_type: "system".into(),
        current_os_version: Some("1.0".parse().unwrap()),
        current_base_os_version: Some("1.0".parse().unwrap()),
        current_slot: Some(ferry_boot::Slot::A),
        target_os_version: Some("2.0".parse().unwrap()),
        update_type: None,
        preferred_type: None,
        battery_level: Some(80),
        battery_is_charging: true,
        on_ac_power: true,
        low_power_mode: false,
        metered_network: None,
        data_fs_capacity: 1 << 30,
        data_fs_free: 1 << 29,
        system_fs_capacity: 1 << 30,
        system_fs_free: 1 << 29,
        storage_capacity: 1 << 30,
        total_required_free_space: None,
        mandatory_update_eligible: false,
        mandatory_update_optional: true,
        pre_staging_enabled: false,
        pre_staging_max_size: None,
        pre_staging_optional_size: None,
        pre_staging_required_size: None,
        ramp_enabled: false,
        rapid_security_response_installed: false,
        rapid_security_response_semi_splat: false,
        facts_error: None,
        phases: Vec::new(),
        payload: None,
        progress: None,
        error: None,
        fallback: None,
        boot_counter_rolled_back: None,
    }
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
