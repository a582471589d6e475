//! The device credential the server checks on every personalization and event batch.
#![no_main]
use std::sync::OnceLock;

use ferry_personalize::{CredentialSigner, PublicKey, verify_credential};

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| CredentialSigner::generate().public_key())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = verify_credential(token, key());
    }
});
