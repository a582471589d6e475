//! Prints one of each wire format: request, signed ticket, refusal, credential, key file.
//!
//! Run with `cargo run --example wire`.

use chrono::{TimeZone, Utc};
use ferry_personalize::{CredentialSigner, Facts, Policy, Refusal, Signer, TicketRequest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Utc
        .with_ymd_and_hms(2026, 3, 20, 18, 51, 32)
        .single()
        .ok_or("time")?;
    let request: TicketRequest = serde_json::from_value(serde_json::json!({
        "identity": {
            "device_id": "0123456789abcdef", "board_id": "000000a1", "chip_id": "00008103",
            "hardware_uuid": "5b0c2f8e-8e0c-4a59-9a57-0d2b8b1f4a10", "device_class": "gateway"
        },
        "nonce": "6a09e667f3bcc908b2fb1366ea957d3e3adec17512775099da2f590b0667322a",
        "build_id": "26.3 (25D125)",
        "components": [{ "name": "system",
            "root_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }],
        "device_time": "2026-03-20T18:51:30Z"
    }))?;
    println!("request:\n{}\n", serde_json::to_string_pretty(&request)?);
    let facts = Facts::allowing(request.components.clone());
    let signer = Signer::generate();
    let signed = signer.sign(&Policy::default().decide(&request, now, &facts)?);
    println!("signed ticket:\n{}\n", String::from_utf8(signed.to_json())?);
    let mut skewed = request.clone();
    skewed.device_time = Utc
        .with_ymd_and_hms(2026, 3, 20, 18, 49, 2)
        .single()
        .ok_or("time")?;
    let refusal: Refusal = Policy::default()
        .decide(&skewed, now, &facts)
        .err()
        .ok_or("refused")?;
    println!("refusal:\n{}\n", serde_json::to_string_pretty(&refusal)?);
    let issued = CredentialSigner::generate().issue(request.identity.device_id, now);
    println!(
        "credential claims:\n{}\ntoken:\n{}\n",
        serde_json::to_string(&issued.credential)?,
        issued.token
    );
    println!(
        "{}:\n{}",
        ferry_personalize::KEY_SET_TARGET,
        String::from_utf8(ferry_personalize::KeySet::first(signer.public_key()).to_bytes())?
    );
    Ok(())
}
