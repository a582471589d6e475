//! A device's batch of event reports as the server reads it (`POST /v1/events`): parsed,
//! then checked against the credential's device; nothing panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = serde_json::from_slice::<ferry_events::EventBatch>(data) {
        let id = ferry_types::DeviceId::new(0x4d2).expect("a non-zero id");
        let _ = batch.validate(id);
    }
});
