//! The GRUB environment block (`grubenv`), read at every boot decision.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("grubenv");
    if let Ok(env) = ferry_boot::grub::parse_env_block(data, path) {
        // What parses must encode to a block that parses to the same variables (when it
        // fits in one).
        if let Ok(block) = ferry_boot::grub::encode_env_block(&env, path) {
            let again = ferry_boot::grub::parse_env_block(&block, path).expect("re-parse");
            assert_eq!(env, again);
        }
    }
});
