//! Enrollment credentials: round trip, tampering, other keys; one-time enrollment tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use ferry_personalize::{CredentialError, CredentialSigner, EnrollmentToken, verify_credential};
use ferry_types::{DeviceId, Diagnose};

#[test]
fn a_credential_round_trips() {
    let signer = CredentialSigner::generate();
    let now = Utc::now();
    let issued = signer.issue(DeviceId::new(0x4d2).unwrap(), now);
    let credential = verify_credential(&issued.token, &signer.public_key()).unwrap();
    assert_eq!(credential, issued.credential);
    assert_eq!(credential.device_id, DeviceId::new(0x4d2).unwrap());
    assert_eq!(credential.issued_at, now);
    let again = signer.issue(DeviceId::new(0x4d2).unwrap(), now);
    assert_ne!(
        again.credential.credential_id,
        issued.credential.credential_id
    );
    assert!(!format!("{issued:?}").contains(&issued.token));
}

#[test]
fn a_restored_key_checks_old_credentials() {
    let signer = CredentialSigner::generate();
    let issued = signer.issue(DeviceId::new(1).unwrap(), Utc::now());
    let restored = CredentialSigner::from_pkcs8(&signer.to_pkcs8()).unwrap();
    assert!(verify_credential(&issued.token, &restored.public_key()).is_ok());
}

#[test]
fn changed_claims_are_a_bad_signature() {
    let signer = CredentialSigner::generate();
    let issued = signer.issue(DeviceId::new(0x1111).unwrap(), Utc::now());
    let (claims, signature) = issued.token.split_once('.').unwrap();
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let forged_claims = claims.replace("0000000000001111", "0000000000002222");
    assert_ne!(forged_claims, claims);
    let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(forged_claims));
    let error = verify_credential(&forged, &signer.public_key()).unwrap_err();
    assert_eq!(error.code(), "CREDENTIAL_BAD_SIGNATURE");
}

#[test]
fn every_changed_character_is_refused() {
    let signer = CredentialSigner::generate();
    let issued = signer.issue(DeviceId::new(7).unwrap(), Utc::now());
    let alphabet = ['A', 'Q', 'g', 'w', '_', '-', '.', '='];
    for index in 0..issued.token.len() {
        for replacement in alphabet {
            let mut token = issued.token.clone().into_bytes();
            if token[index] == replacement as u8 {
                continue;
            }
            token[index] = replacement as u8;
            let token = String::from_utf8(token).unwrap();
            assert!(
                verify_credential(&token, &signer.public_key()).is_err(),
                "changed character {index} to {replacement} and it verified"
            );
        }
    }
}

#[test]
fn another_key_and_garbage_are_refused() {
    let signer = CredentialSigner::generate();
    let issued = signer.issue(DeviceId::new(7).unwrap(), Utc::now());
    let other = CredentialSigner::generate();
    assert!(matches!(
        verify_credential(&issued.token, &other.public_key()),
        Err(CredentialError::BadSignature { .. })
    ));
    for garbage in ["", ".", "abc", "a.b", &"x".repeat(5000)] {
        let error = verify_credential(garbage, &signer.public_key()).unwrap_err();
        assert_eq!(error.code(), "CREDENTIAL_MALFORMED", "{garbage:.20}");
    }
}

#[test]
fn a_ticket_signature_is_not_a_credential() {
    // Same key for both (which the server must not do): the `_type` still tells them apart.
    let pkcs8 = ferry_personalize::Signer::generate().to_pkcs8();
    let credential_signer = CredentialSigner::from_pkcs8(&pkcs8).unwrap();
    let issued = credential_signer.issue(DeviceId::new(7).unwrap(), Utc::now());
    let (claims, _) = issued.token.split_once('.').unwrap();
    let claims = URL_SAFE_NO_PAD.decode(claims).unwrap();
    let ticket: Result<ferry_personalize::Ticket, _> = serde_json::from_slice(&claims);
    assert!(ticket.is_err());
}

#[test]
fn enrollment_tokens_are_random_and_stored_as_hashes() {
    let token = EnrollmentToken::random();
    assert_eq!(token.as_str().len(), 43);
    assert_ne!(token, EnrollmentToken::random());
    let parsed: EnrollmentToken = token.as_str().parse().unwrap();
    assert_eq!(parsed.sha256(), token.sha256());
    assert!(!format!("{token:?}").contains(token.as_str()));
    assert!("too-short".parse::<EnrollmentToken>().is_err());
}
