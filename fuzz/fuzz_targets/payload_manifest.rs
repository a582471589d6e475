//! The payload manifest, fetched from the server before any frame.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = ferry_payload::Manifest::from_json(data) {
        // A manifest that validates must describe a payload it can walk.
        let _ = manifest.validate();
        let total: u64 = manifest.frames.iter().map(|f| f.len as u64).sum();
        let _ = total;
    }
});
