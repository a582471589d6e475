//! A delta applied to the wrong base fails with BASE_MISMATCH before any byte reaches the
//! sink. A failure here means a device could write a corrupt slot from a mismatched delta.

mod common;

use common::{BLOCK, CheckingSink, image, temp_file};
use ferry_delta::{ApplyOptions, EncodeOptions, apply_delta, encode_delta_bytes};
use ferry_types::Diagnose;

fn delta_for(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut delta = Vec::new();
    encode_delta_bytes(
        old,
        new,
        &mut delta,
        &EncodeOptions {
            level: 3,
            ..Default::default()
        },
    )
    .unwrap();
    delta
}

#[test]
fn one_changed_base_block_is_base_mismatch_with_nothing_written() {
    let old = image(1, 256);
    let mut new = old.clone();
    new[10 * BLOCK] ^= 1;
    new.extend_from_slice(&image(2, 4));
    let delta = delta_for(&old, &new);
    // The device runs a slightly different image: one block late in the base differs.
    let mut other = old.clone();
    let last_nonzero = (0..256)
        .rev()
        .find(|&b| old[b * BLOCK..(b + 1) * BLOCK].iter().any(|&x| x != 0))
        .unwrap();
    other[last_nonzero * BLOCK + 5] ^= 0xff;
    let mut sink = CheckingSink::new(&new);
    let err = apply_delta(
        &temp_file(&other),
        &delta[..],
        &mut sink,
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "BASE_MISMATCH", "{err}");
    assert_eq!(
        sink.writes, 0,
        "bytes reached the sink before the base was checked"
    );
    assert!(!err.fix().is_empty());
}

#[test]
fn base_of_another_size_is_base_mismatch() {
    let old = image(3, 64);
    let new = image(4, 64);
    let delta = delta_for(&old, &new);
    let mut sink = CheckingSink::new(&new);
    let err = apply_delta(
        &temp_file(&old[..old.len() - 1]),
        &delta[..],
        &mut sink,
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "BASE_MISMATCH");
    assert_eq!(sink.writes, 0);
}

#[test]
fn unexpected_manifest_is_refused() {
    let old = image(5, 16);
    let new = image(6, 16);
    let delta = delta_for(&old, &new);
    let opts = ApplyOptions {
        expected_manifest_digest: Some([9; 32]),
        ..Default::default()
    };
    let mut sink = CheckingSink::new(&new);
    let err = apply_delta(&temp_file(&old), &delta[..], &mut sink, &opts).unwrap_err();
    assert_eq!(err.code(), "MANIFEST_MISMATCH");
    assert_eq!(sink.writes, 0);
}
