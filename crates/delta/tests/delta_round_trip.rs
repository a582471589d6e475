//! Round trips: whatever the edit, applying the delta to its base rebuilds the new image
//! exactly, and deltas stay small when little changed. A failure here means a delta that
//! rebuilds the wrong image or wastes bytes.

mod common;

use common::{BLOCK, CheckingSink, Rng, image, temp_file};
use ferry_delta::{ApplyOptions, EncodeOptions, apply_delta, encode_delta_bytes};
use proptest::prelude::*;

fn round_trip(old: &[u8], new: &[u8], opts: &EncodeOptions) -> usize {
    let mut delta = Vec::new();
    let manifest = encode_delta_bytes(old, new, &mut delta, opts).unwrap();
    let reference = temp_file(old);
    let mut out = Vec::new();
    let report = apply_delta(&reference, &delta[..], &mut out, &ApplyOptions::default()).unwrap();
    assert_eq!(out.len(), new.len());
    assert!(out == new, "applied delta differs from the new image");
    assert_eq!(report.bytes_written, new.len() as u64);
    assert_eq!(report.manifest, manifest);
    delta.len()
}

#[derive(Debug, Clone)]
enum Edit {
    Insert { at: usize, len: usize },
    Move { from: usize, len: usize, to: usize },
    FlipBlock { block: usize },
    FlipByte { at: usize },
    Truncate { len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..5000).prop_map(|(at, len)| Edit::Insert { at, len }),
        (any::<usize>(), 1usize..40_000, any::<usize>()).prop_map(|(from, len, to)| Edit::Move {
            from,
            len,
            to
        }),
        any::<usize>().prop_map(|block| Edit::FlipBlock { block }),
        any::<usize>().prop_map(|at| Edit::FlipByte { at }),
        any::<usize>().prop_map(|len| Edit::Truncate { len }),
    ]
}

fn apply_edits(old: &[u8], edits: &[Edit], seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut new = old.to_vec();
    for edit in edits {
        if new.is_empty() {
            new.push(1);
        }
        match *edit {
            Edit::Insert { at, len } => {
                let at = at % new.len();
                let bytes = rng.bytes(len);
                new.splice(at..at, bytes);
            }
            Edit::Move { from, len, to } => {
                let from = from % new.len();
                let len = len.min(new.len() - from);
                let run: Vec<u8> = new.drain(from..from + len).collect();
                let to = to % (new.len() + 1);
                new.splice(to..to, run);
            }
            Edit::FlipBlock { block } => {
                let start = (block % new.len().div_ceil(BLOCK)) * BLOCK;
                let end = (start + BLOCK).min(new.len());
                new[start..end].copy_from_slice(&rng.bytes(end - start));
            }
            Edit::FlipByte { at } => {
                let at = at % new.len();
                new[at] ^= 0x5a;
            }
            Edit::Truncate { len } => {
                let len = new.len() - len % (new.len() / 4 + 1);
                new.truncate(len);
            }
        }
    }
    new
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_edits_round_trip(seed in any::<u64>(), n_blocks in 1usize..64, edits in prop::collection::vec(edit(), 0..6)) {
        let old = image(seed, n_blocks);
        let new = apply_edits(&old, &edits, seed ^ 0xabcdef);
        let opts = EncodeOptions { level: 3, segment_bytes: 64 << 10, ..EncodeOptions::default() };
        round_trip(&old, &new, &opts);
    }

    #[test]
    fn unrelated_images_round_trip(seed in any::<u64>(), a in 0usize..20, b in 0usize..20, tail in 0usize..4096) {
        let old = image(seed, a);
        let mut new = image(seed.wrapping_add(1), b);
        new.extend(Rng(seed | 1).bytes(tail));
        round_trip(&old, &new, &EncodeOptions { level: 1, ..EncodeOptions::default() });
    }
}

#[test]
fn small_change_gives_small_delta() {
    // 16 MiB of incompressible data with one block rewritten and a 100-byte insertion: the
    // delta must carry roughly the changed bytes, not the image.
    let old = Rng(7).bytes(16 << 20);
    let mut new = old.clone();
    new[5 * BLOCK..6 * BLOCK].copy_from_slice(&Rng(9).bytes(BLOCK));
    new.splice(9_000_000..9_000_000, Rng(11).bytes(100));
    let size = round_trip(
        &old,
        &new,
        &EncodeOptions {
            level: 3,
            ..EncodeOptions::default()
        },
    );
    assert!(size < 64 << 10, "delta for a small change is {size} bytes");
}

#[test]
fn moved_and_shifted_blocks_are_copied_or_referenced() {
    // Moved 4 KiB-aligned runs are copies; unaligned shifts are matched through the
    // reference: both cost little.
    let old = image(3, 512);
    let mut new = old[256 * BLOCK..].to_vec();
    new.extend_from_slice(&old[..256 * BLOCK]);
    new.splice(100_000..100_000, [1, 2, 3]);
    let size = round_trip(
        &old,
        &new,
        &EncodeOptions {
            level: 3,
            ..EncodeOptions::default()
        },
    );
    assert!(size < 48 << 10, "delta for moved data is {size} bytes");
}

#[test]
fn apply_writes_in_order_and_within_the_memory_bound() {
    // 32 MiB image, small segments: the largest buffer set the apply holds must stay under
    // its stated bound and far below the image size.
    let old = image(21, 8192);
    let new = apply_edits(
        &old,
        &[
            Edit::Insert {
                at: 1_000_000,
                len: 777,
            },
            Edit::FlipBlock { block: 4000 },
        ],
        5,
    );
    let opts = EncodeOptions {
        level: 1,
        segment_bytes: 1 << 20,
        max_reference_bytes: 2 << 20,
        ..EncodeOptions::default()
    };
    let mut delta = Vec::new();
    encode_delta_bytes(&old, &new, &mut delta, &opts).unwrap();
    let apply_opts = ApplyOptions {
        max_segment_bytes: 1 << 20,
        max_reference_bytes: 2 << 20,
        ..ApplyOptions::default()
    };
    let mut sink = CheckingSink::new(&new);
    let report = apply_delta(&temp_file(&old), &delta[..], &mut sink, &apply_opts).unwrap();
    assert_eq!(sink.wrong_writes, 0);
    assert_eq!(sink.bytes, new.len() as u64);
    let bound = (1u64 << 20) + (1 << 20) + (2 << 20) + (1 << 20) * 2 + delta.len() as u64;
    assert!(
        report.peak_buffer_bytes <= bound,
        "peak buffers {} above {bound}",
        report.peak_buffer_bytes
    );
    assert!(report.peak_buffer_bytes < new.len() as u64 / 4);
    assert!(report.peak_buffer_bytes <= apply_opts.memory_bound());
}
