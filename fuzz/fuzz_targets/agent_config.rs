//! The device's `config.toml`: any bytes are a configuration or `CONFIG_INVALID`.
#![no_main]
use ferry_types::Diagnose;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = ferry_agent::device::Config::from_bytes(data, std::path::Path::new("config.toml")) {
        assert_eq!(e.code(), "CONFIG_INVALID");
    }
});
