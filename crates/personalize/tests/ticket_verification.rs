//! Device-side ticket checks: a ticket moved between devices, an old nonce, another image, any
//! changed byte; canonical JSON; the public-key file.

mod common;

use chrono::Utc;
use common::{component, facts_ok, identity, request};
use ferry_personalize::{
    Expectation, KeyError, Nonce, Policy, PublicKey, SignedTicket, Signer, TicketError,
    TicketRequest, verify,
};
use ferry_types::{DeviceId, Diagnose, RootHash};
use proptest::prelude::*;

struct Issued {
    signer: Signer,
    request: TicketRequest,
    signed: SignedTicket,
}

fn issue(device_id: u64) -> Issued {
    let signer = Signer::generate();
    let request = request(device_id, Utc::now());
    let approved = Policy::default()
        .decide(&request, Utc::now(), &facts_ok())
        .unwrap();
    let signed = signer.sign(&approved);
    Issued {
        signer,
        request,
        signed,
    }
}

fn expectation(request: &TicketRequest) -> Expectation {
    Expectation {
        identity: request.identity.clone(),
        nonce: request.nonce,
        build_id: request.build_id.clone(),
        components: request.components.clone(),
    }
}

#[test]
fn a_good_ticket_verifies_after_a_trip_through_its_file() {
    let issued = issue(0x4d2);
    let file = issued.signed.to_json();
    let read_back = SignedTicket::from_json(&file).unwrap();
    assert_eq!(read_back, issued.signed);
    let ticket = verify(
        &read_back,
        &[issued.signer.public_key()],
        &expectation(&issued.request),
    )
    .unwrap();
    assert_eq!(ticket.identity, issued.request.identity);
    assert_eq!(ticket.key_id, issued.signer.key_id());
    assert_eq!(ticket.nonce_sha256, issued.request.nonce.sha256());
}

#[test]
fn a_ticket_moved_to_another_device_names_both_devices() {
    let issued = issue(0x1111); // device X
    let mut expect = expectation(&issued.request);
    expect.identity = identity(0x2222); // device Y
    let error = verify(&issued.signed, &[issued.signer.public_key()], &expect).unwrap_err();
    assert_eq!(
        error,
        TicketError::OtherDevice {
            ticket_device_id: DeviceId::new(0x1111).unwrap(),
            this_device_id: DeviceId::new(0x2222).unwrap(),
            field: "device_id",
        }
    );
    assert_eq!(error.code(), "TICKET_OTHER_DEVICE");
    let message = error.to_string();
    assert!(
        message.contains("0000000000001111") && message.contains("0000000000002222"),
        "{message}"
    );
}

#[test]
fn same_device_id_on_another_chip_is_another_device() {
    let issued = issue(0x1111);
    let mut expect = expectation(&issued.request);
    expect.identity.chip_id = 0x8112;
    assert!(matches!(
        verify(&issued.signed, &[issued.signer.public_key()], &expect),
        Err(TicketError::OtherDevice {
            field: "chip_id",
            ..
        })
    ));
}

#[test]
fn a_ticket_for_another_nonce_is_refused() {
    let issued = issue(0x4d2);
    let mut expect = expectation(&issued.request);
    expect.nonce = Nonce::random();
    let error = verify(&issued.signed, &[issued.signer.public_key()], &expect).unwrap_err();
    assert_eq!(error.code(), "TICKET_OTHER_NONCE");
    assert_eq!(
        error,
        TicketError::OtherNonce {
            ticket_nonce_sha256: issued.request.nonce.sha256(),
            stored_nonce_sha256: expect.nonce.sha256(),
        }
    );
}

/// A ticket signed for another build (an open build's name over the same root hashes) is not
/// the one the device was offered: refused, naming both builds.
#[test]
fn a_ticket_for_another_build_is_refused() {
    let issued = issue(0x4d2);
    let mut expect = expectation(&issued.request);
    expect.build_id = "25.1 (24A100)".parse().unwrap();
    let error = verify(&issued.signed, &[issued.signer.public_key()], &expect).unwrap_err();
    assert_eq!(error.code(), "TICKET_OTHER_BUILD");
    assert_eq!(
        error,
        TicketError::OtherBuild {
            ticket_build_id: issued.request.build_id.clone(),
            expected_build_id: expect.build_id.clone(),
        }
    );
    assert!(error.to_string().contains("25.1 (24A100)"), "{error}");
}

#[test]
fn another_image_names_the_component() {
    let issued = issue(0x4d2);
    let mut expect = expectation(&issued.request);
    expect.components[1].root_hash = RootHash::from_bytes([0x99; 32]);
    let error = verify(&issued.signed, &[issued.signer.public_key()], &expect).unwrap_err();
    assert_eq!(error.code(), "TICKET_ROOT_HASH_MISMATCH");
    assert!(
        error
            .to_string()
            .starts_with("component recovery has root hash 9999"),
        "{error}"
    );

    let mut extra = expectation(&issued.request);
    extra.components.push(component("firmware", 0x44));
    let error = verify(&issued.signed, &[issued.signer.public_key()], &extra).unwrap_err();
    assert_eq!(error.code(), "TICKET_COMPONENT_MISSING");
}

#[test]
fn a_key_the_device_does_not_trust_is_key_not_trusted_and_a_forgery_a_bad_signature() {
    let issued = issue(0x4d2);
    let stranger = Signer::generate();
    let error = verify(
        &issued.signed,
        &[stranger.public_key()],
        &expectation(&issued.request),
    )
    .unwrap_err();
    assert_eq!(error.code(), "TICKET_KEY_NOT_TRUSTED");
    assert_eq!(
        error,
        TicketError::KeyNotTrusted {
            key_id: issued.signer.key_id(),
            trusted: vec![stranger.key_id()],
        }
    );
    // The message names the key that signed and the ones trusted.
    let message = error.to_string();
    assert!(
        message.contains(&issued.signer.key_id().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&stranger.key_id().to_string()),
        "{message}"
    );

    // Re-signed by the stranger under the trusted key's id: the signature fails.
    let forged = SignedTicket::from_parts(
        issued.signed.ticket_bytes().to_vec(),
        stranger
            .sign(
                &Policy::default()
                    .decide(&issued.request, Utc::now(), &facts_ok())
                    .unwrap(),
            )
            .signature,
        issued.signer.key_id(),
    );
    let error = verify(
        &forged,
        &[issued.signer.public_key()],
        &expectation(&issued.request),
    )
    .unwrap_err();
    assert!(matches!(
        error,
        TicketError::BadSignature {
            reason: "signature mismatch",
            ..
        }
    ));
}

#[test]
fn a_swapped_identity_in_the_json_breaks_the_signature() {
    let issued = issue(0x1111);
    let file = String::from_utf8(issued.signed.to_json()).unwrap();
    let edited = file.replace("0000000000001111", "0000000000002222");
    assert_ne!(edited, file);
    let signed = SignedTicket::from_json(edited.as_bytes()).unwrap();
    let mut expect = expectation(&issued.request);
    expect.identity = identity(0x2222);
    let error = verify(&signed, &[issued.signer.public_key()], &expect).unwrap_err();
    assert_eq!(error.code(), "TICKET_BAD_SIGNATURE");
}

#[test]
fn a_damaged_file_is_malformed() {
    let error = SignedTicket::from_json(b"{\"key_id\":").unwrap_err();
    assert_eq!(error.code(), "TICKET_MALFORMED");
}

#[test]
fn canonical_json_does_not_depend_on_field_order() {
    let issued = issue(0x4d2);
    let canonical = issued.signed.ticket_bytes().to_vec();
    // Re-serialise the ticket object with its keys reversed and pretty-printed.
    let value: serde_json::Value = serde_json::from_slice(&canonical).unwrap();
    let object = value.as_object().unwrap();
    let mut reversed = String::from("{\n");
    let entries: Vec<_> = object.iter().rev().collect();
    for (index, (key, value)) in entries.iter().enumerate() {
        let comma = if index + 1 < entries.len() { "," } else { "" };
        reversed.push_str(&format!(
            "  {}: {}{}\n",
            serde_json::to_string(key).unwrap(),
            value,
            comma
        ));
    }
    reversed.push('}');
    let ticket: ferry_personalize::Ticket = serde_json::from_str(&reversed).unwrap();
    assert_eq!(ticket.canonical_bytes(), canonical);
    // Keys sorted, no whitespace outside strings, `_type` first.
    let text = String::from_utf8(canonical).unwrap();
    assert!(
        text.starts_with(
            r#"{"_type":"ferry-ticket/1","build_id":"26.3 (25D125)","components":[{"name":"system""#
        ),
        "{text}"
    );
}

#[test]
fn the_public_key_file_round_trips_and_checks_its_key_id() {
    let signer = Signer::generate();
    let key = signer.public_key();
    let file = key.to_file_bytes();
    assert_eq!(PublicKey::from_file_bytes(&file).unwrap(), key);
    assert_eq!(
        PublicKey::from_file_bytes(key.to_pem().as_bytes()).unwrap(),
        key
    );
    let other = Signer::generate().public_key();
    let mixed = String::from_utf8(file)
        .unwrap()
        .replace(&other.key_id().to_string(), "x")
        .replace(&key.key_id().to_string(), &other.key_id().to_string());
    assert!(matches!(
        PublicKey::from_file_bytes(mixed.as_bytes()),
        Err(KeyError::KeyIdMismatch { .. })
    ));
    let restored = Signer::from_pkcs8(&signer.to_pkcs8()).unwrap();
    assert_eq!(restored.public_key(), key);
    assert_eq!(
        Signer::from_pkcs8(b"not a key").unwrap_err().code(),
        "KEY_MALFORMED"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any change to any byte of the signed ticket fails as a bad signature, before parsing:
    /// a failure means some byte of the ticket is not covered by the signature.
    #[test]
    fn any_changed_ticket_byte_is_a_bad_signature(index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let issued = issue(0x4d2);
        let mut bytes = issued.signed.ticket_bytes().to_vec();
        let position = index.index(bytes.len());
        bytes[position] ^= flip;
        let tampered = SignedTicket::from_parts(bytes, issued.signed.signature, issued.signed.key_id);
        let error = verify(&tampered, &[issued.signer.public_key()], &expectation(&issued.request)).unwrap_err();
        prop_assert_eq!(error.code(), "TICKET_BAD_SIGNATURE");
    }

    /// Any change to any byte of the stored ticket file is refused (bad signature, a key id
    /// no longer trusted, or malformed when the file no longer parses); a failure means a
    /// damaged file verified.
    #[test]
    fn any_changed_file_byte_is_refused(index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let issued = issue(0x4d2);
        let mut file = issued.signed.to_json();
        let position = index.index(file.len());
        file[position] ^= flip;
        let verdict = SignedTicket::from_json(&file)
            .and_then(|signed| verify(&signed, &[issued.signer.public_key()], &expectation(&issued.request)));
        let error = verdict.unwrap_err();
        prop_assert!(
            matches!(error.code(), "TICKET_BAD_SIGNATURE" | "TICKET_KEY_NOT_TRUSTED" | "TICKET_MALFORMED"),
            "{}",
            error
        );
    }
}
