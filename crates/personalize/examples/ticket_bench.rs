//! Tickets signed and verified per second on one core.
//!
//! Run with `cargo run --release -p ferry-personalize --example ticket_bench [seconds]`.

use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_personalize::{
    Component, Expectation, Facts, Nonce, Policy, Signer, TicketRequest, verify,
};
use ferry_types::{DeviceId, Identity, RootHash};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(3);
    let budget = Duration::from_secs(seconds);
    let signer = Signer::generate();
    let keys = [signer.public_key()];
    let request = TicketRequest {
        identity: Identity {
            device_id: DeviceId::new(0x0123_4567_89ab_cdef).unwrap(),
            board_id: 0xa1,
            chip_id: 0x8103,
            hardware_uuid: uuid::Uuid::from_u128(0x5b0c_2f8e_8e0c_4a59_9a57_0d2b_8b1f_4a10),
            device_class: "gateway".parse().expect("valid class"),
        },
        nonce: Nonce::random(),
        build_id: "26.3 (25D125)".parse().expect("valid build id"),
        components: vec![
            Component {
                name: "system".parse().expect("valid name"),
                root_hash: RootHash::from_bytes([0x11; 32]),
            },
            Component {
                name: "recovery".parse().expect("valid name"),
                root_hash: RootHash::from_bytes([0x22; 32]),
            },
        ],
        device_time: Utc::now(),
    };
    let facts = Facts::allowing(request.components.clone());
    let policy = Policy::default();

    // Decide + sign, as the server does per request.
    let start = Instant::now();
    let mut n_signed = 0u64;
    let mut last = None;
    while start.elapsed() < budget {
        let approved = policy
            .decide(&request, Utc::now(), &facts)
            .expect("approved");
        last = Some(signer.sign(&approved));
        n_signed += 1;
    }
    let signed_per_second = n_signed as f64 / start.elapsed().as_secs_f64();
    let signed = last.expect("signed at least once");

    // Parse the ticket file + verify, as the device does at boot.
    let file = signed.to_json();
    let expect = Expectation {
        identity: request.identity.clone(),
        nonce: request.nonce,
        build_id: request.build_id.clone(),
        components: request.components.clone(),
    };
    let start = Instant::now();
    let mut n_verified = 0u64;
    while start.elapsed() < budget {
        let signed = ferry_personalize::SignedTicket::from_json(&file).expect("parses");
        verify(&signed, &keys, &expect).expect("verifies");
        n_verified += 1;
    }
    let verified_per_second = n_verified as f64 / start.elapsed().as_secs_f64();

    println!(
        "ticket size: {} bytes (file {} bytes)",
        signed.ticket_bytes().len(),
        file.len()
    );
    println!(
        "signed:   {signed_per_second:>9.0} tickets/s (decide + canonical JSON + Ed25519), one core"
    );
    println!(
        "verified: {verified_per_second:>9.0} tickets/s (parse file + Ed25519 verify_strict + checks), one core"
    );
}
