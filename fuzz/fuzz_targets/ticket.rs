//! The personalization ticket stored beside a slot (`boot/ticket-<slot>.json`), checked at
//! boot: the envelope, then the signature against a fixed trusted key.
#![no_main]
use std::sync::OnceLock;

use ferry_personalize::{PublicKey, SignedTicket, Signer, verify_signature};

fn trusted() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| Signer::generate().public_key())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedTicket::from_json(data) {
        let _ = verify_signature(&signed, std::slice::from_ref(trusted()));
        let _ = SignedTicket::from_json(&signed.to_json()).expect("a parsed ticket re-parses");
    }
});
