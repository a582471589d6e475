//! TUF metadata as a server or a proxy serves it (timestamp, snapshot, targets with
//! delegations, root), and the delegation path patterns targets carry.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_catalog::fuzzing::parse_metadata(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Some((path, pattern)) = text.split_once('\n')
    {
        let _ = ferry_catalog::fuzzing::path_matches(path, pattern);
    }
});
