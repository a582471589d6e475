//! The personalization key set (`trust/personalization-keys.json`, a catalog target).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferry_personalize::KeySet::from_bytes(data);
    let _ = ferry_personalize::PublicKey::from_file_bytes(data);
});
