//! The chunk index of a chunked payload (checked against its signed digest before it is
//! parsed on a device, but parsed by `publish` and the cache from disk too).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferry_delta::PayloadIndex::from_bytes(data);
});
