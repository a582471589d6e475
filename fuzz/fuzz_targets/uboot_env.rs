//! The U-Boot environment: `fw_env.config` (text) and one copy of the environment (CRC32,
//! optional flags byte, NUL-separated `name=value` pairs).
#![no_main]
use std::path::PathBuf;

use ferry_boot::uboot::{EnvLocation, UbootEnvConfig, decode_copy};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = UbootEnvConfig::parse(text, std::path::Path::new("/boot/fw_env.config"));
        }
        return;
    }
    let location = EnvLocation {
        path: PathBuf::from("uboot.env"),
        offset: 0,
        size: rest.len(),
    };
    let _ = decode_copy(rest, selector & 2 != 0, &location, 0);
});
