//! Tampering is caught: any flipped byte in a sealed image is found and
//! named by its block; any flipped byte in the tree that the format covers
//! is refused; a tree of another release is refused.
//!
//! A failure here means `verify` accepted data it must refuse, or blamed
//! the wrong block.

mod common;

use std::os::unix::fs::FileExt;

use common::{BLOCK, file_with, mixed_data};
use ferry_seal::{Salt, SealError, build_tree, verify};
use ferry_types::{Diagnose, RootHash};
use proptest::prelude::*;

/// A sealed image: the image file, its tree file and the root hash.
fn sealed(n_blocks: usize, seed: u64) -> (std::fs::File, std::fs::File, RootHash, u64) {
    let data = mixed_data(n_blocks * BLOCK, seed);
    let image = file_with(&data);
    let tree = tempfile::tempfile().expect("temp file");
    let (root, _) = build_tree(&image, data.len() as u64, Salt::random(), &tree, 0).expect("build");
    (image, tree, root, data.len() as u64)
}

fn flip(file: &std::fs::File, offset: u64, mask: u8) {
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    file.write_all_at(&[byte[0] ^ mask], offset)
        .expect("write byte");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any single flipped byte in the image is caught, and the reported
    /// block is the one flipped. Sizes span zero, one and two tree levels.
    #[test]
    fn any_flipped_image_byte_is_caught_at_its_block(
        n_blocks in prop_oneof![Just(1usize), 2usize..=128, 129usize..=700],
        position_fraction in 0.0f64..1.0,
        mask in 1u8..=255,
        seed in any::<u64>(),
    ) {
        let (image, tree, root, data_size) = sealed(n_blocks, seed);
        let position = ((data_size as f64 * position_fraction) as u64).min(data_size - 1);
        flip(&image, position, mask);
        match verify(&image, data_size, &tree, 0, &root) {
            Err(SealError::Mismatch { first_bad_block, offset }) => {
                prop_assert_eq!(first_bad_block, position / 4096);
                prop_assert_eq!(offset, first_bad_block * 4096);
            }
            other => prop_assert!(false, "flipped byte {} gave {:?}", position, other),
        }
    }

    /// Any flipped byte of the tree is caught, except the superblock's UUID
    /// and the unused rest of the superblock's block, which dm-verity does
    /// not cover either.
    #[test]
    fn any_flipped_tree_byte_is_caught(
        n_blocks in prop_oneof![Just(1usize), 2usize..=128, 129usize..=700],
        position_fraction in 0.0f64..1.0,
        mask in 1u8..=255,
        seed in any::<u64>(),
    ) {
        let (image, tree, root, data_size) = sealed(n_blocks, seed);
        let tree_size = tree.metadata().expect("metadata").len();
        let covered: Vec<u64> = (0..16).chain(32..512).chain(4096..tree_size).collect();
        let position = covered[((covered.len() as f64 * position_fraction) as usize).min(covered.len() - 1)];
        flip(&tree, position, mask);
        let result = verify(&image, data_size, &tree, 0, &root);
        prop_assert!(result.is_err(), "flipped tree byte {} was accepted", position);
        if let Err(error) = result {
            let code = error.code();
            if position >= 4096 {
                prop_assert!(
                    matches!(code, "SEAL_HASH_BLOCK_CORRUPT" | "SEAL_ROOT_MISMATCH"),
                    "flipped tree byte {} gave {}", position, error
                );
            }
        }
    }
}

#[test]
fn the_untouched_image_verifies() {
    let (image, tree, root, data_size) = sealed(300, 1);
    verify(&image, data_size, &tree, 0, &root).expect("clean image");
}

#[test]
fn the_first_of_several_bad_blocks_is_named() {
    let (image, tree, root, data_size) = sealed(40 * 128, 2);
    for block in [4000u64, 1500, 3000, 1501] {
        flip(&image, block * 4096 + 17, 0x80);
    }
    let error = verify(&image, data_size, &tree, 0, &root).expect_err("bad blocks");
    assert!(
        matches!(
            error,
            SealError::Mismatch {
                first_bad_block: 1500,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_wrong_root_is_refused() {
    let (image, tree, root, data_size) = sealed(300, 3);
    let mut bytes = *root.as_bytes();
    bytes[31] ^= 1;
    let error =
        verify(&image, data_size, &tree, 0, &RootHash::from_bytes(bytes)).expect_err("wrong root");
    assert_eq!(error.code(), "SEAL_ROOT_MISMATCH", "{error}");
    assert!(matches!(error, SealError::RootMismatch { found, .. } if found == root));
}

#[test]
fn a_tree_of_another_release_is_refused() {
    // Same image, new salt: a rebuild for another release.
    let (image, tree, root, data_size) = sealed(300, 4);
    let other_tree = tempfile::tempfile().expect("temp file");
    build_tree(&image, data_size, Salt::random(), &other_tree, 0).expect("build");
    let error = verify(&image, data_size, &other_tree, 0, &root).expect_err("other salt");
    assert_eq!(error.code(), "SEAL_ROOT_MISMATCH", "{error}");

    // A tree for an image of another size.
    let (_, shorter_tree, _, _) = sealed(299, 4);
    let error = verify(&image, data_size, &shorter_tree, 0, &root).expect_err("other size");
    assert!(
        matches!(
            error,
            SealError::SuperblockMismatch {
                expected: 300,
                found: 299
            }
        ),
        "{error:?}"
    );

    // Not a tree at all.
    let error = verify(&image, data_size, &image, 0, &root).expect_err("not a tree");
    assert_eq!(error.code(), "SEAL_SUPERBLOCK_INVALID", "{error}");
    verify(&image, data_size, &tree, 0, &root).expect("the right tree still verifies");
}

#[test]
fn every_error_has_a_code_a_cause_and_a_fix() {
    let (image, tree, root, data_size) = sealed(2, 5);
    let errors = [
        verify(&image, data_size + 1, &tree, 0, &root),
        verify(&image, 0, &tree, 0, &root),
        verify(&image, data_size, &tree, 1, &root),
        verify(&image, data_size * 2, &tree, 0, &root),
        verify(&image, data_size, &image, 0, &root),
        verify(&image, data_size, &tree, 0, &RootHash::from_bytes([0; 32])),
    ];
    for error in errors {
        let error = error.expect_err("each call is wrong");
        let (code, cause, fix) = (error.code(), error.to_string(), error.fix());
        assert!(
            code.starts_with("SEAL_") && code.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        );
        assert!(!cause.ends_with('.') && !cause.is_empty(), "{cause}");
        assert!(!fix.ends_with('.') && !fix.is_empty(), "{fix}");
    }
}
