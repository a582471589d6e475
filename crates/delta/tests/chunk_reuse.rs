//! Chunk reuse: the planner finds what the running slot holds, the assembler rebuilds the
//! image from it plus downloaded ranges, resumes where it stopped, and refuses missing or
//! damaged downloads. A failure here means a device without a tailored delta downloads too
//! much or writes a wrong image.

mod common;

use std::io;

use common::{BLOCK, CheckingSink, image, temp_file};
use ferry_delta::{
    IndexOptions, PayloadIndex, PlanOptions, RangeFile, SlotSink, assemble, build_payload_bytes,
    plan_reuse,
};
use ferry_types::Diagnose;

struct Release {
    old: Vec<u8>,
    new: Vec<u8>,
    payload: Vec<u8>,
    index: PayloadIndex,
}

fn release(hinted: bool) -> Release {
    let old = image(31, 600);
    let mut new = old.clone();
    // Fresh data in three places, a moved run, a grown tail.
    new[40 * BLOCK..44 * BLOCK].copy_from_slice(&image(32, 4));
    new[300 * BLOCK..302 * BLOCK].copy_from_slice(&common::Rng(5).bytes(2 * BLOCK));
    let run: Vec<u8> = new.drain(100 * BLOCK..120 * BLOCK).collect();
    new.splice(500 * BLOCK..500 * BLOCK, run);
    new.extend_from_slice(&common::Rng(6).bytes(3 * BLOCK + 100));
    let hints = if hinted {
        vec![old.clone()]
    } else {
        Vec::new()
    };
    let mut payload = Vec::new();
    let opts = IndexOptions {
        level: 3,
        fresh_chunk_bytes: 16 << 10,
        max_extent_blocks: 16,
    };
    let index = build_payload_bytes(&new, &hints, &mut payload, &opts).unwrap();
    let index = PayloadIndex::from_bytes(&index.to_bytes()).unwrap();
    Release {
        old,
        new,
        payload,
        index,
    }
}

fn fetch(release: &Release, plan: &ferry_delta::ReusePlan) -> RangeFile {
    let mut fetched = RangeFile::default();
    for request in &plan.requests {
        assert!(request.len() <= PlanOptions::default().max_ranges_per_request);
        for range in request {
            fetched.insert(
                range.start,
                release.payload[range.start as usize..range.end as usize].to_vec(),
            );
        }
    }
    fetched
}

#[test]
fn plan_and_assemble_round_trip_downloading_only_fresh_data() {
    for hinted in [true, false] {
        let release = release(hinted);
        let slot = temp_file(&release.old);
        let plan = plan_reuse(&slot, &release.index, &PlanOptions::default()).unwrap();
        let mut fetched = fetch(&release, &plan);
        let mut out = Vec::new();
        let report = assemble(
            &slot,
            &release.index,
            &plan,
            &mut fetched,
            &[],
            &mut out,
            |_| {},
        )
        .unwrap();
        assert!(
            out == release.new,
            "assembled image differs (hinted: {hinted})"
        );
        assert!(
            report.bytes_reused > 400 * BLOCK as u64,
            "reused only {}",
            report.bytes_reused
        );
        if hinted {
            // Only the fresh blocks (9 blocks + tail) are downloaded, not the moved run.
            assert!(
                plan.download_bytes() < 12 * BLOCK as u64,
                "downloaded {} bytes",
                plan.download_bytes()
            );
        }
    }
}

#[test]
fn device_with_nothing_downloads_everything_and_still_assembles() {
    let release = release(true);
    let slot = temp_file(&image(99, 10));
    let plan = plan_reuse(&slot, &release.index, &PlanOptions::default()).unwrap();
    assert_eq!(plan.reused_chunks(), 0);
    let mut fetched = fetch(&release, &plan);
    let mut out = Vec::new();
    assemble(
        &slot,
        &release.index,
        &plan,
        &mut fetched,
        &[],
        &mut out,
        |_| {},
    )
    .unwrap();
    assert!(out == release.new);
}

/// A sink that fails after a number of writes, like a power cut.
struct FailingSink<'a> {
    inner: &'a mut Vec<u8>,
    writes_left: usize,
}

impl SlotSink for FailingSink<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.writes_left == 0 {
            return Err(io::Error::other("power cut"));
        }
        self.writes_left -= 1;
        self.inner.write_at(offset, data)
    }
}

#[test]
fn interrupted_assembly_resumes_from_done_chunks() {
    let release = release(true);
    let slot = temp_file(&release.old);
    let plan = plan_reuse(&slot, &release.index, &PlanOptions::default()).unwrap();
    let mut fetched = fetch(&release, &plan);
    let mut out = Vec::new();
    let mut done = Vec::new();
    let err = assemble(
        &slot,
        &release.index,
        &plan,
        &mut fetched,
        &[],
        &mut FailingSink {
            inner: &mut out,
            writes_left: 25,
        },
        |chunk| done.push(chunk),
    )
    .unwrap_err();
    assert_eq!(err.code(), "DELTA_IO");
    assert!(!done.is_empty() && done.len() < release.index.chunks.len());
    // Resume: done chunks are not written again, the rest is.
    let mut resumed_sink = Vec::new();
    let report = assemble(
        &slot,
        &release.index,
        &plan,
        &mut fetched,
        &done,
        &mut resumed_sink,
        |chunk| assert!(!done.contains(&chunk)),
    )
    .unwrap();
    assert_eq!(report.chunks_skipped, done.len());
    // The first run's writes plus the resumed run's rebuild the image.
    out.resize(release.new.len(), 0);
    for extent in &release.index.extents {
        let range = extent.offset as usize..(extent.offset + extent.len) as usize;
        if !extent.chunk.is_some_and(|c| done.contains(&c)) {
            out[range.clone()].copy_from_slice(&resumed_sink[range]);
        }
    }
    assert!(out == release.new);
}

#[test]
fn missing_and_damaged_downloads_are_refused_before_the_sink() {
    let release = release(true);
    let slot = temp_file(&release.old);
    let plan = plan_reuse(&slot, &release.index, &PlanOptions::default()).unwrap();
    assert!(!plan.missing.is_empty());
    let mut sink = CheckingSink::new(&release.new);
    let err = assemble(
        &slot,
        &release.index,
        &plan,
        &mut RangeFile::default(),
        &[],
        &mut sink,
        |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code(), "CHUNK_MISSING");
    assert_eq!(sink.wrong_writes, 0);

    let mut damaged = release.payload.clone();
    let chunk = &release.index.chunks[plan.missing[0]];
    damaged[(chunk.payload_offset + chunk.compressed_len / 2) as usize] ^= 1;
    let mut fetched = RangeFile::default();
    fetched.insert(0, damaged);
    let mut sink = CheckingSink::new(&release.new);
    let err = assemble(
        &slot,
        &release.index,
        &plan,
        &mut fetched,
        &[],
        &mut sink,
        |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code(), "DIGEST_MISMATCH");
    assert_eq!(sink.wrong_writes, 0);
}

#[test]
fn ranges_are_merged_and_batched() {
    let release = release(false);
    let slot = temp_file(&image(98, 3));
    let opts = PlanOptions {
        merge_gap: 0,
        max_ranges_per_request: 2,
    };
    let plan = plan_reuse(&slot, &release.index, &opts).unwrap();
    // Chunks are adjacent in the payload: with nothing reused they merge into one range.
    assert_eq!(plan.requests.len(), 1);
    assert_eq!(plan.download_bytes(), release.payload.len() as u64);
}

#[test]
fn damaged_index_is_refused() {
    let release = release(true);
    let mut bytes = release.index.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(
        PayloadIndex::from_bytes(&bytes).unwrap_err().code(),
        "INDEX_INVALID"
    );
}
