//! The TUF root a device pins (`device init --root`, `ferry tuf`): metadata parsing, the
//! role and key checks of `check_root`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferry_catalog::check_root(data);
});
