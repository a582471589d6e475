//! The journal as found on disk after anything (a torn tail, a flipped byte): reading it
//! must never panic, only report.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(ferry_fsm::CURRENT_FILE), data).expect("write");
    let _ = ferry_fsm::read_journal(dir.path());
});
