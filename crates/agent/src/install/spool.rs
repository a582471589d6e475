//! The download spool: every payload byte the network hands over is appended to a
//! short-lived file in `cache/spool/` before it is cut into frames, so an agent killed
//! at any instant loses at most the one frame it was still receiving.
//!
//! Without it, frames queued for the decode workers live only in memory and a kill
//! costs them all (several MiB with one frame queued per core). The spool is not
//! synced: it protects against a killed process, whose written pages survive; after a
//! power cut the slot's once-a-second checkpoint is the resume point, and whatever the
//! spool then holds is checked frame by frame against the manifest before use. Segments
//! are dropped as soon as the frames they hold are in the slot, so the spool stays a few
//! MiB and is usually deleted before the kernel writes it back.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_payload::Manifest;

use crate::AgentError;

/// A segment is closed once it holds this much, so whole segments can be dropped.
const SEGMENT_BYTES: u64 = 4 << 20;

/// One spool file: the payload bytes `start..start + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: u64,
    len: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.start + self.len
    }

    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{:016x}.part", self.start))
    }
}

/// The writing side, owned by the download's network task.
#[derive(Debug)]
pub struct Spool {
    /// `None` once a write failed: the spool only saves bytes, so a full disk or an
    /// I/O error turns it off (with a warning) and the download goes on without it.
    dir: Option<PathBuf>,
    closed: Vec<Segment>,
    open: Option<(Segment, File)>,
}

impl Spool {
    /// A fresh spool in `dir`: segments left by an earlier run are removed (the resume
    /// already took what it could from them, see [`recover`]).
    pub fn create(dir: &Path) -> Spool {
        let mut spool = Spool {
            dir: Some(dir.to_owned()),
            closed: Vec::new(),
            open: None,
        };
        if let Err(e) = clear(dir).and_then(|()| fs::create_dir_all(dir)) {
            spool.disable(&e);
        }
        spool
    }

    /// Appends `bytes`, which start at payload offset `offset`.
    pub fn append(&mut self, offset: u64, bytes: &[u8]) {
        let Some(dir) = self.dir.clone() else { return };
        if self
            .open
            .as_ref()
            .is_some_and(|(s, _)| s.end() != offset || s.len >= SEGMENT_BYTES)
            && let Some((seg, _)) = self.open.take()
        {
            self.closed.push(seg);
        }
        let result = match &mut self.open {
            Some((seg, file)) => file
                .write_all(bytes)
                .map(|()| seg.len += bytes.len() as u64),
            None if !room_for_a_segment(&dir) => Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "a new segment would eat into the space reserved for boot state, receipts and the journal",
            )),
            None => {
                let seg = Segment {
                    start: offset,
                    len: bytes.len() as u64,
                };
                OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(seg.path(&dir))
                    .and_then(|mut f| f.write_all(bytes).map(|()| f))
                    .map(|f| self.open = Some((seg, f)))
            }
        };
        if let Err(e) = result {
            self.disable(&e);
        }
    }

    /// Drops the segments that end at or before `offset`: every frame they hold is in
    /// the slot.
    pub fn release_below(&mut self, offset: u64) {
        let Some(dir) = &self.dir else { return };
        let mut failed = None;
        self.closed.retain(|seg| {
            if seg.end() > offset {
                return true;
            }
            if let Err(e) = fs::remove_file(seg.path(dir))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                failed = Some(e);
            }
            false
        });
        if let Some(e) = failed {
            self.disable(&e);
        }
    }

    /// Removes the whole spool (the download finished).
    pub fn finish(mut self) {
        self.open = None;
        if let Some(dir) = self.dir.take()
            && let Err(e) = clear(&dir)
        {
            tracing::warn!(error = %e, dir = %dir.display(), "could not remove the download spool");
        }
    }

    fn disable(&mut self, e: &std::io::Error) {
        if let Some(dir) = self.dir.take() {
            tracing::warn!(
                error = %e,
                dir = %dir.display(),
                "the download spool is off: a crash now costs the frames in flight"
            );
            let _ = clear(&dir);
        }
        self.open = None;
        self.closed.clear();
    }
}

/// Whether the spool's filesystem has room for one more segment beside the reserve
/// ([`crate::facts::RESERVE_BYTES`]), which belongs to the writes that keep the device
/// bootable.
fn room_for_a_segment(dir: &Path) -> bool {
    crate::facts::space(dir)
        .is_ok_and(|space| space.free >= SEGMENT_BYTES + crate::facts::RESERVE_BYTES)
}

/// Removes every segment in `dir` (a missing directory is fine).
pub fn clear(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// After a crash: how many frames from `frames_done` on are in the slot, taking each
/// either from the slot (written but not yet checkpointed) or, decoded and checked
/// against the manifest, from the spool. Stops at the first frame found in neither.
/// Frames taken from the spool are written and synced before this returns.
pub fn recover(
    dir: &Path,
    slot: &Path,
    manifest: &Manifest,
    frames_done: usize,
) -> Result<Recovered, AgentError> {
    let segments = segments(dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(slot)
        .map_err(AgentError::io("opening the inactive slot", slot))?;
    let mut buf = vec![0u8; manifest.frame_size as usize];
    let mut out = Vec::with_capacity(manifest.frame_size as usize + 1);
    let mut found = Recovered {
        frames_done,
        ..Default::default()
    };
    while let Some(frame) = manifest.frames.get(found.frames_done) {
        let idx = found.frames_done;
        let len = manifest.frame_len(idx);
        let at = manifest.frame_image_offset(idx);
        if file.read_exact_at(&mut buf[..len], at).is_ok()
            && ferry_types::Sha256::of(&buf[..len]) == frame.sha256
        {
            found.frames_done += 1;
            continue;
        }
        let Some(compressed) = read_range(dir, &segments, frame.offset, frame.len as u64) else {
            break;
        };
        if ferry_payload::decode_frame(manifest, idx, &compressed, &mut out).is_err() {
            break; // torn by a power cut: download it again
        }
        file.write_all_at(&out, at)
            .map_err(AgentError::io("writing the inactive slot", slot))?;
        found.from_spool += 1;
        found.frames_done += 1;
    }
    if found.from_spool > 0 {
        file.sync_data()
            .map_err(AgentError::io("syncing the slot", slot))?;
    }
    Ok(found)
}

/// The spool checked against the manifest, changing nothing ([`verify`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspected {
    /// Segment files.
    pub segments: usize,
    /// Bytes they hold.
    pub bytes: u64,
    /// Frames found whole and checked against their digests.
    pub frames_checked: usize,
}

/// A spooled frame that is not what the payload holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    /// The frame.
    pub frame: usize,
    /// The segment holding its start.
    pub segment: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// Zstd's frame magic: every payload frame begins with it.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Checks every frame the spool in `dir` holds against `manifest` without writing
/// anything: a frame held whole must decode to its digest, a frame cut short must at
/// least begin as a zstd frame. The first that fails is the error.
pub fn verify(dir: &Path, manifest: &Manifest) -> Result<Inspected, BadFrame> {
    let segments = segments(dir);
    let mut found = Inspected {
        segments: segments.len(),
        bytes: segments.iter().map(|s| s.len).sum(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(manifest.frame_size as usize + 1);
    for seg in &segments {
        let bad = |frame: usize, reason: String| BadFrame {
            frame,
            segment: seg.path(dir),
            reason,
        };
        for (idx, frame) in manifest.frames.iter().enumerate() {
            if frame.offset < seg.start || frame.offset >= seg.end() {
                continue;
            }
            match read_range(dir, &segments, frame.offset, frame.len as u64) {
                Some(compressed) => {
                    ferry_payload::decode_frame(manifest, idx, &compressed, &mut out)
                        .map_err(|e| bad(idx, e.to_string()))?;
                    found.frames_checked += 1;
                }
                None => {
                    let held = (seg.end() - frame.offset).min(ZSTD_MAGIC.len() as u64);
                    let head = read_range(dir, &segments, frame.offset, held)
                        .ok_or_else(|| bad(idx, "its first bytes cannot be read".into()))?;
                    if head[..] != ZSTD_MAGIC[..head.len()] {
                        return Err(bad(
                            idx,
                            format!("it begins with {head:02x?}, not a zstd frame"),
                        ));
                    }
                }
            }
        }
    }
    Ok(found)
}

/// What [`recover`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Frames in the slot, in order, from the start.
    pub frames_done: usize,
    /// How many of them came from the spool.
    pub from_spool: usize,
}

/// The segments in `dir`, by start offset; files that are not segments are ignored.
fn segments(dir: &Path) -> Vec<Segment> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Segment> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let start = u64::from_str_radix(name.to_str()?.strip_suffix(".part")?, 16).ok()?;
            Some(Segment {
                start,
                len: e.metadata().ok()?.len(),
            })
        })
        .collect();
    found.sort_by_key(|s| s.start);
    found
}

/// The payload bytes `offset..offset + len`, if the segments hold all of them.
fn read_range(dir: &Path, segments: &[Segment], offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len as usize);
    let end = offset + len;
    for seg in segments {
        let at = offset + out.len() as u64;
        if at == end {
            break;
        }
        if seg.start > at || seg.end() <= at {
            continue;
        }
        let take = (end.min(seg.end()) - at) as usize;
        let mut part = vec![0u8; take];
        File::open(seg.path(dir))
            .and_then(|f| f.read_exact_at(&mut part, at - seg.start))
            .ok()?;
        out.extend_from_slice(&part);
    }
    (out.len() as u64 == len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_read_across_segments_and_a_gap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(dir.path());
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        spool.append(100, &payload[100..4000]);
        spool.append(4000, &payload[4000..9000]);
        // A jump starts a new segment.
        spool.append(9500, &payload[9500..10_000]);
        let segs = segments(dir.path());
        assert_eq!(
            segs.iter().map(|s| (s.start, s.len)).collect::<Vec<_>>(),
            [(100, 8900), (9500, 500)]
        );
        assert_eq!(
            read_range(dir.path(), &segs, 3000, 2000).as_deref(),
            Some(&payload[3000..5000])
        );
        assert_eq!(
            read_range(dir.path(), &segs, 8000, 2000),
            None,
            "gap at 9000"
        );
        assert_eq!(
            read_range(dir.path(), &segs, 50, 100),
            None,
            "before the spool"
        );
        spool.finish();
        assert!(!dir.path().exists());
    }

    #[test]
    fn released_segments_are_deleted_and_the_open_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::create(&spool_dir);
        let chunk = vec![7u8; 1 << 20];
        for i in 0..10u64 {
            spool.append(i << 20, &chunk);
        }
        // 4 MiB segments: [0,4) [4,8) closed, [8,10) open.
        spool.release_below(5 << 20);
        let left: Vec<u64> = segments(&spool_dir).iter().map(|s| s.start).collect();
        assert_eq!(left, [4 << 20, 8 << 20]);
        spool.release_below(10 << 20);
        let left: Vec<u64> = segments(&spool_dir).iter().map(|s| s.start).collect();
        assert_eq!(left, [8 << 20], "the open segment stays");
    }

    #[test]
    fn recovery_takes_frames_from_the_slot_then_the_spool_and_stops_at_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let image: Vec<u8> = (0..(6u32 << 16) + 777)
            .map(|i| (i * 31 % 253) as u8)
            .collect();
        let mut payload = Vec::new();
        let opts = ferry_payload::EncodeOptions {
            frame_size: 1 << 16,
            level: 3,
        };
        let manifest = ferry_payload::encode(&image[..], &mut payload, &opts).unwrap();
        assert_eq!(manifest.frames.len(), 7);
        let slot = dir.path().join("b.img");
        let mut written = vec![0u8; image.len()];
        // Frames 0-1 checkpointed, frame 3 written out of order, frames 2 and 4 only in
        // the spool, frame 5 half received, frame 6 never.
        let f = |i: usize| {
            manifest.frame_image_offset(i) as usize
                ..(manifest.frame_image_offset(i) as usize + manifest.frame_len(i))
        };
        for i in [0, 1, 3] {
            written[f(i)].copy_from_slice(&image[f(i)]);
        }
        std::fs::write(&slot, &written).unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::create(&spool_dir);
        let p = |i: usize| manifest.frames[i].offset as usize;
        spool.append(p(2) as u64, &payload[p(2)..p(5) + 10]);
        drop(spool);

        let found = recover(&spool_dir, &slot, &manifest, 2).unwrap();
        assert_eq!(
            found,
            Recovered {
                frames_done: 5,
                from_spool: 2
            }
        );
        let now = std::fs::read(&slot).unwrap();
        assert_eq!(&now[..f(4).end], &image[..f(4).end]);

        // A torn spool frame is not used.
        let mut spool = Spool::create(&spool_dir);
        let mut torn = payload[p(5)..p(6)].to_vec();
        torn[40] ^= 0xff;
        spool.append(p(5) as u64, &torn);
        drop(spool);
        assert_eq!(
            recover(&spool_dir, &slot, &manifest, 5)
                .unwrap()
                .frames_done,
            5
        );
    }

    #[test]
    fn verify_checks_whole_frames_and_the_start_of_a_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let image: Vec<u8> = (0..(3u32 << 16)).map(|i| (i * 7 % 251) as u8).collect();
        let mut payload = Vec::new();
        let opts = ferry_payload::EncodeOptions {
            frame_size: 1 << 16,
            level: 3,
        };
        let manifest = ferry_payload::encode(&image[..], &mut payload, &opts).unwrap();
        let spool_dir = dir.path().join("spool");
        let p = |i: usize| manifest.frames[i].offset as usize;
        let mut spool = Spool::create(&spool_dir);
        spool.append(0, &payload[..p(2) + 10]);
        drop(spool);
        let found = verify(&spool_dir, &manifest).unwrap();
        assert_eq!((found.segments, found.frames_checked), (1, 2));

        // Random bytes in place of what arrived.
        let segment = std::fs::read_dir(&spool_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[p(1) + 30] ^= 0x55;
        std::fs::write(&segment, &bytes).unwrap();
        let bad = verify(&spool_dir, &manifest).unwrap_err();
        assert_eq!(bad.frame, 1, "{bad:?}");
        // A partial frame that is not a zstd frame.
        std::fs::write(&segment, [&payload[..p(2)], &b"garbage!"[..]].concat()).unwrap();
        let bad = verify(&spool_dir, &manifest).unwrap_err();
        assert_eq!(bad.frame, 2, "{bad:?}");
        assert!(bad.reason.contains("not a zstd frame"), "{bad:?}");
    }

    #[test]
    fn a_failed_write_turns_the_spool_off_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let mut spool = Spool::create(&not_a_dir.join("spool"));
        spool.append(0, b"abc");
        assert!(spool.dir.is_none());
        spool.release_below(10);
        spool.finish();
    }
}
