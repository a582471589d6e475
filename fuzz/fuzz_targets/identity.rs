//! `identity.json` and the version grammar, as read from a device directory or a request.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ferry_types::Identity>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(version) = ferry_types::Version::parse(text) {
            assert_eq!(ferry_types::Version::parse(&version.to_string()).ok(), Some(version));
        }
    }
});
