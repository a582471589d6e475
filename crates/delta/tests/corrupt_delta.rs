//! A corrupted delta byte, wherever it lands, ends in an error and never in wrong bytes at
//! the sink. A failure here means a damaged download could reach the slot unnoticed.

mod common;

use common::{BLOCK, CheckingSink, image, temp_file};
use ferry_delta::{ApplyOptions, EncodeOptions, apply_delta, encode_delta_bytes};
use ferry_types::Diagnose;
use proptest::prelude::*;

fn fixture() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let old = image(11, 128);
    let mut new = old.clone();
    new.splice(20 * BLOCK + 7..20 * BLOCK + 7, image(12, 8));
    new[90 * BLOCK..91 * BLOCK].fill(0x33);
    let mut delta = Vec::new();
    encode_delta_bytes(
        &old,
        &new,
        &mut delta,
        &EncodeOptions {
            level: 3,
            segment_bytes: 32 << 10,
            window_size: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    (old, new, delta)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_flipped_byte_is_caught_before_the_sink(position in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (old, new, mut delta) = fixture();
        let at = position.index(delta.len());
        delta[at] ^= flip;
        let mut sink = CheckingSink::new(&new);
        let result = apply_delta(&temp_file(&old), &delta[..], &mut sink, &ApplyOptions::default());
        prop_assert_eq!(sink.wrong_writes, 0, "corrupt bytes reached the sink (flip at {})", at);
        let err = result.expect_err("a corrupted delta applied cleanly");
        prop_assert!(
            ["DELTA_CORRUPT", "DIGEST_MISMATCH", "DELTA_LIMIT", "BASE_MISMATCH"].contains(&err.code()),
            "unexpected code {} for flip at {}", err.code(), at
        );
    }
}

#[test]
fn truncated_delta_is_corrupt() {
    let (old, new, delta) = fixture();
    for len in [0, 5, 20, delta.len() / 2, delta.len() - 1] {
        let mut sink = CheckingSink::new(&new);
        let err = apply_delta(
            &temp_file(&old),
            &delta[..len],
            &mut sink,
            &ApplyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "DELTA_CORRUPT", "len {len}: {err}");
        assert_eq!(sink.wrong_writes, 0);
    }
}
