//! Shared fixtures: a device identity, a ticket request and facts that let it through.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use ferry_personalize::{Component, Facts, Nonce, TicketRequest};
use ferry_types::{DeviceId, Identity, RootHash};

pub fn identity(device_id: u64) -> Identity {
    Identity {
        device_id: DeviceId::from_wire_allowing_zero(device_id),
        board_id: 0xa1,
        chip_id: 0x8103,
        hardware_uuid: "5b0c2f8e-8e0c-4a59-9a57-0d2b8b1f4a10".parse().unwrap(),
        device_class: "gateway".parse().unwrap(),
    }
}

pub fn component(name: &str, byte: u8) -> Component {
    Component {
        name: name.parse().unwrap(),
        root_hash: RootHash::from_bytes([byte; 32]),
    }
}

pub fn time(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub fn request(device_id: u64, now: DateTime<Utc>) -> TicketRequest {
    TicketRequest {
        identity: identity(device_id),
        nonce: Nonce::random(),
        build_id: "26.3 (25D125)".parse().unwrap(),
        components: vec![component("system", 0x11), component("recovery", 0x22)],
        device_time: now,
    }
}

/// Facts that let [`request`] through: the build published both of its components.
pub fn facts_ok() -> Facts {
    Facts::allowing(vec![component("system", 0x11), component("recovery", 0x22)])
}
