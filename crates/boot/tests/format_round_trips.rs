//! Property tests of the two environment formats: any environment encodes
//! and decodes to itself, and any single flipped byte in a U-Boot copy is
//! caught by its CRC.

use std::path::{Path, PathBuf};

use ferry_boot::grub;
use ferry_boot::uboot::{self, EnvLocation};
use ferry_boot::vars::EnvMap;
use ferry_types::Diagnose;
use proptest::prelude::*;

fn env_map() -> impl Strategy<Value = EnvMap> {
    proptest::collection::btree_map(
        "[A-Za-z_][A-Za-z0-9_.]{0,12}",
        // Any text without NUL: backslashes, newlines, '=', non-ASCII.
        "[^\u{0}]{0,24}",
        0..8,
    )
}

fn location(size: usize) -> EnvLocation {
    EnvLocation {
        path: PathBuf::from("env.bin"),
        offset: 0,
        size,
    }
}

proptest! {
    #[test]
    fn grub_blocks_round_trip(env in env_map()) {
        let path = Path::new("grubenv");
        match grub::encode_env_block(&env, path) {
            Ok(block) => {
                prop_assert_eq!(block.len(), grub::GRUB_ENV_SIZE);
                prop_assert_eq!(grub::parse_env_block(&block, path).ok(), Some(env));
            }
            Err(error) => prop_assert_eq!(error.code(), "BOOT_ENV_TOO_LARGE"),
        }
    }

    #[test]
    fn uboot_copies_round_trip(env in env_map(), flags in proptest::option::of(any::<u8>())) {
        let size = 0x400;
        let copy = uboot::encode_copy(&env, size, flags, Path::new("env.bin"));
        let Ok(copy) = copy else { panic!("{copy:?}") };
        prop_assert_eq!(copy.len(), size);
        let decoded = uboot::decode_copy(&copy, flags.is_some(), &location(size), 0);
        prop_assert_eq!(decoded.ok(), Some((flags, env)));
    }

    #[test]
    fn any_flipped_byte_in_a_uboot_copy_is_caught(
        env in env_map(),
        byte_idx in 0usize..0x400,
        flip in 1u8..=255,
    ) {
        let size = 0x400;
        let copy = uboot::encode_copy(&env, size, None, Path::new("env.bin"));
        let Ok(mut copy) = copy else { panic!("{copy:?}") };
        copy[byte_idx] ^= flip;
        let decoded = uboot::decode_copy(&copy, false, &location(size), 0);
        prop_assert_eq!(decoded.map_err(|error| error.code()).err(), Some("BOOT_ENV_CRC_MISMATCH"));
    }
}
