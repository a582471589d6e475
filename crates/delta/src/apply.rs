//! Applying a delta as it streams in, with bounded memory and verified output.

use std::io::{self, Read};

use zstd::zstd_safe::{DCtx, DParameter};

use crate::error::{Error, Result};
use crate::format::{
    BLOCK_SIZE, DELTA_FORMAT, DELTA_MAGIC, DeltaManifest, MAX_MANIFEST_BYTES, MAX_TABLES_BYTES, Op,
    Tables, hex,
};
use crate::{Reference, SlotSink};

/// Limits and trust anchors for [`apply_delta`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The digest the signed catalog pins ([`crate::pinned_digest`]: the manifest's blake3,
    /// and for an expanded delta its header's too); `None` trusts the stream's own digests
    /// (which still catch corruption, not substitution).
    pub expected_manifest_digest: Option<[u8; 32]>,
    /// Largest literal segment accepted, bytes.
    pub max_segment_bytes: u64,
    /// Largest per-segment reference accepted, bytes.
    pub max_reference_bytes: u64,
    /// Largest output verification window accepted, bytes.
    pub max_window_bytes: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            expected_manifest_digest: None,
            max_segment_bytes: 32 << 20,
            max_reference_bytes: 96 << 20,
            max_window_bytes: 16 << 20,
        }
    }
}

impl ApplyOptions {
    /// The most heap memory an apply under these limits holds in its buffers at once:
    /// tables + window + segment + compressed segment + reference.
    pub fn memory_bound(&self) -> u64 {
        MAX_TABLES_BYTES * 2
            + self.max_window_bytes
            + self.max_segment_bytes
            + zstd::zstd_safe::compress_bound(self.max_segment_bytes as usize) as u64
            + self.max_reference_bytes
    }
}

/// What [`apply_delta`] did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// The verified manifest.
    pub manifest: DeltaManifest,
    /// Bytes handed to the sink.
    pub bytes_written: u64,
    /// Bytes read from the reference (base check plus copies and references).
    pub reference_bytes_read: u64,
    /// Bytes consumed from the delta stream.
    pub delta_bytes_read: u64,
    /// Largest sum of the apply's data buffers alive at one time, bytes.
    pub peak_buffer_bytes: u64,
}

/// Rebuilds the new image from `reference` (the running slot, read with positioned reads)
/// and the delta stream, handing verified bytes to `sink` in increasing offset order.
///
/// Before the first write it checks the manifest digest, the tables digest, every limit,
/// and the digest of all base bytes the delta will read (`BASE_MISMATCH`). Each output window
/// is checked against its digest before it reaches the sink (`DIGEST_MISMATCH`).
pub fn apply_delta(
    reference: &impl Reference,
    delta: impl Read,
    sink: &mut impl SlotSink,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    apply_pinned(reference, delta, sink, opts, |digest| {
        check_pin(opts.expected_manifest_digest, *digest)
    })
}

/// Compares the digest the catalog pins (if any) with the one the delta carries.
pub(crate) fn check_pin(expected: Option<[u8; 32]>, found: [u8; 32]) -> Result<()> {
    match expected {
        Some(expected) if expected != found => Err(Error::ManifestMismatch {
            expected: hex(&expected),
            found: hex(&found),
        }),
        _ => Ok(()),
    }
}

/// [`apply_delta`] with the pin check supplied: `pin` sees the manifest's blake3 before
/// anything is written (an expanded delta pins its header with it).
pub(crate) fn apply_pinned(
    reference: &impl Reference,
    delta: impl Read,
    sink: &mut impl SlotSink,
    opts: &ApplyOptions,
    pin: impl FnOnce(&[u8; 32]) -> Result<()>,
) -> Result<ApplyReport> {
    let mut delta = CountingReader {
        inner: delta,
        count: 0,
    };
    let mut memory = MemoryGauge::default();

    // Header and manifest.
    let mut magic = [0u8; 8];
    read_delta(&mut delta, &mut magic, "header")?;
    if &magic != DELTA_MAGIC {
        return Err(Error::corrupt("header", "not a ferry delta (bad magic)"));
    }
    let mut len = [0u8; 4];
    read_delta(&mut delta, &mut len, "header")?;
    let manifest_len = u32::from_le_bytes(len);
    if manifest_len > MAX_MANIFEST_BYTES {
        return Err(Error::corrupt(
            "header",
            format!("manifest length {manifest_len} is implausible"),
        ));
    }
    let mut json = vec![0u8; manifest_len as usize];
    read_delta(&mut delta, &mut json, "manifest")?;
    let mut stored_digest = [0u8; 32];
    read_delta(&mut delta, &mut stored_digest, "manifest")?;
    let digest = *blake3::hash(&json).as_bytes();
    if digest != stored_digest {
        return Err(Error::corrupt("manifest", "manifest digest does not match"));
    }
    pin(&digest)?;
    let manifest: DeltaManifest =
        serde_json::from_slice(&json).map_err(|e| Error::corrupt("manifest", e.to_string()))?;
    check_manifest(&manifest, opts)?;

    // Tables.
    let mut tables_frame = vec![0u8; manifest.tables_len as usize];
    memory.add(tables_frame.len());
    read_delta(&mut delta, &mut tables_frame, "tables")?;
    if hex(blake3::hash(&tables_frame).as_bytes()) != manifest.tables_digest {
        return Err(Error::corrupt("tables", "tables digest does not match"));
    }
    let raw_tables = decompress(&tables_frame, &[], manifest.tables_raw_len as usize, 27)?;
    memory.add(raw_tables.len());
    memory.sub(tables_frame.len());
    drop(tables_frame);
    let tables = Tables::decode(&raw_tables)?;
    check_tables(&manifest, &tables)?;

    // The base: size, then the digest of every byte the delta reads. A slot is usually
    // larger than the image it holds (and a block device reports no length), so only a
    // regular file too short to hold the base is refused here; the digest decides.
    if let Some(reference_size) = reference
        .binding_size()
        .map_err(Error::io("stat reference"))?
        && reference_size < manifest.old_size
    {
        return Err(Error::BaseMismatch {
            what: "size",
            expected: manifest.old_size.to_string(),
            found: reference_size.to_string(),
        });
    }
    let mut reference_bytes_read = 0u64;
    {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        memory.add(buf.len());
        for &(offset, len) in &tables.base_extents {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                read_reference(reference, &mut buf[..n], offset + done)?;
                hasher.update(&buf[..n]);
                done += n as u64;
            }
            reference_bytes_read += len;
        }
        memory.sub(buf.len());
        let found = hasher.finalize().to_hex().to_string();
        if found != manifest.base_digest {
            return Err(Error::BaseMismatch {
                what: "digest of the base blocks the delta reads",
                expected: manifest.base_digest.clone(),
                found,
            });
        }
    }

    // The ops, in new-image order, through the verifying window.
    let mut window = Window {
        buf: Vec::with_capacity(manifest.window_size as usize),
        size: manifest.window_size as usize,
        index: 0,
        digests: &tables.window_digests,
        written: 0,
    };
    memory.add(window.buf.capacity());
    let new_size = manifest.new_size;
    let mut position = 0u64; // next new-image byte
    let mut segments = tables.segments.iter();
    let mut literal: Vec<u8> = Vec::new();
    let mut literal_pos = 0usize;
    for op in &tables.ops {
        match *op {
            Op::Copy { n, old_block } => {
                let len = (n * BLOCK_SIZE as u64).min(new_size - position);
                let source = old_block * BLOCK_SIZE as u64;
                window.fill(sink, len, |piece, at| {
                    read_reference(reference, piece, source + at)
                })?;
                reference_bytes_read += len;
                position += len;
            }
            Op::Zero { n } => {
                let len = (n * BLOCK_SIZE as u64).min(new_size - position);
                window.fill(sink, len, |_zeroed, _| Ok(()))?;
                position += len;
            }
            Op::Literal { n } => {
                let mut len = (n * BLOCK_SIZE as u64).min(new_size - position);
                while len > 0 {
                    if literal_pos == literal.len() {
                        let segment = segments.next().ok_or_else(|| {
                            Error::corrupt("ops", "literal past the last segment")
                        })?;
                        memory.sub(literal.capacity());
                        drop(std::mem::take(&mut literal));
                        literal_pos = 0;
                        let mut frame = vec![0u8; segment.compressed_len as usize];
                        memory.add(frame.len());
                        read_delta(&mut delta, &mut frame, "segment")?;
                        if blake3::hash(&frame).as_bytes() != &segment.digest {
                            return Err(Error::corrupt("segment", "segment digest does not match"));
                        }
                        let ref_len: u64 = segment.reference.iter().map(|e| e.1).sum();
                        let mut prefix = vec![0u8; ref_len as usize];
                        memory.add(prefix.len());
                        let mut at = 0usize;
                        for &(offset, len) in &segment.reference {
                            read_reference(reference, &mut prefix[at..at + len as usize], offset)?;
                            at += len as usize;
                        }
                        reference_bytes_read += ref_len;
                        memory.add(segment.raw_len as usize);
                        literal = decompress(&frame, &prefix, segment.raw_len as usize, 31)?;
                        memory.sub(frame.len() + prefix.len());
                        if literal.is_empty() {
                            return Err(Error::corrupt("segment", "empty literal segment"));
                        }
                    }
                    let take = window
                        .room()
                        .min(len as usize)
                        .min(literal.len() - literal_pos);
                    window
                        .buf
                        .extend_from_slice(&literal[literal_pos..literal_pos + take]);
                    literal_pos += take;
                    len -= take as u64;
                    position += take as u64;
                    window.flush_if_full(sink)?;
                }
            }
        }
    }
    if position != new_size || literal_pos != literal.len() || segments.next().is_some() {
        return Err(Error::corrupt(
            "ops",
            "ops and segments do not add up to the new image",
        ));
    }
    window.flush(sink)?;
    Ok(ApplyReport {
        bytes_written: window.written,
        manifest,
        reference_bytes_read,
        delta_bytes_read: delta.count,
        peak_buffer_bytes: memory.peak,
    })
}

fn check_manifest(manifest: &DeltaManifest, opts: &ApplyOptions) -> Result<()> {
    if manifest.format != DELTA_FORMAT || manifest.block_size as usize != BLOCK_SIZE {
        return Err(Error::corrupt(
            "manifest",
            format!(
                "unsupported format {} with block size {}",
                manifest.format, manifest.block_size
            ),
        ));
    }
    let window = u64::from(manifest.window_size);
    if window == 0 || window % BLOCK_SIZE as u64 != 0 {
        return Err(Error::corrupt("manifest", "bad window size"));
    }
    for (what, needed, limit) in [
        ("output window", window, opts.max_window_bytes),
        (
            "literal segment",
            manifest.max_segment_bytes,
            opts.max_segment_bytes,
        ),
        (
            "segment reference",
            manifest.max_reference_bytes,
            opts.max_reference_bytes,
        ),
        ("tables", manifest.tables_raw_len, MAX_TABLES_BYTES),
        ("compressed tables", manifest.tables_len, MAX_TABLES_BYTES),
    ] {
        if needed > limit {
            return Err(Error::LimitExceeded {
                what,
                needed,
                limit,
            });
        }
    }
    Ok(())
}

/// Checks the tables against the manifest: sizes, counts, and that every base byte read
/// lies inside the base extents covered by `base_digest`.
fn check_tables(manifest: &DeltaManifest, tables: &Tables) -> Result<()> {
    let n_windows = manifest.new_size.div_ceil(u64::from(manifest.window_size));
    if tables.window_digests.len() as u64 != n_windows {
        return Err(Error::corrupt("tables", "window digest count is wrong"));
    }
    let mut blocks = 0u64;
    let covered = |offset: u64, len: u64| -> Result<()> {
        let idx = tables.base_extents.partition_point(|e| e.0 + e.1 <= offset);
        match tables.base_extents.get(idx) {
            Some(&(start, extent_len))
                if start <= offset && offset.saturating_add(len) <= start + extent_len =>
            {
                Ok(())
            }
            _ => Err(Error::corrupt(
                "tables",
                format!("base read at {offset}+{len} is not covered by the base digest"),
            )),
        }
    };
    for op in &tables.ops {
        match *op {
            Op::Copy { n, old_block } => {
                let offset = old_block
                    .checked_mul(BLOCK_SIZE as u64)
                    .ok_or_else(|| Error::corrupt("tables", "copy source overflows"))?;
                covered(offset, n.saturating_mul(BLOCK_SIZE as u64))?;
                blocks = blocks.saturating_add(n);
            }
            Op::Zero { n } | Op::Literal { n } => blocks = blocks.saturating_add(n),
        }
    }
    if blocks != manifest.new_size.div_ceil(BLOCK_SIZE as u64) {
        return Err(Error::corrupt("tables", "ops do not cover the new image"));
    }
    for segment in &tables.segments {
        if segment.raw_len > manifest.max_segment_bytes {
            return Err(Error::corrupt("tables", "segment larger than declared"));
        }
        if segment.compressed_len > zstd::zstd_safe::compress_bound(segment.raw_len as usize) as u64
        {
            return Err(Error::corrupt(
                "tables",
                "segment frame larger than its bound",
            ));
        }
        let mut ref_len = 0u64;
        for &(offset, len) in &segment.reference {
            covered(offset, len)?;
            ref_len += len;
        }
        if ref_len > manifest.max_reference_bytes {
            return Err(Error::corrupt("tables", "reference larger than declared"));
        }
    }
    let base_total: u64 = tables.base_extents.iter().map(|e| e.1).sum();
    match tables.base_extents.last() {
        Some(&(offset, len)) if offset + len > manifest.old_size => Err(Error::corrupt(
            "tables",
            "base extent beyond the base image",
        )),
        _ if base_total != manifest.base_bytes => {
            Err(Error::corrupt("tables", "base extents do not add up"))
        }
        _ => Ok(()),
    }
}

/// The verifying output window: filled in order, checked against its digest, then written.
struct Window<'a> {
    buf: Vec<u8>,
    size: usize,
    index: usize,
    digests: &'a [[u8; 32]],
    written: u64,
}

impl Window<'_> {
    fn room(&self) -> usize {
        self.size - self.buf.len()
    }

    /// Appends `len` bytes: each piece (at most the room left) is zeroed, then `fill`
    /// writes it, given its offset from the first; the window is flushed as it fills.
    fn fill(
        &mut self,
        sink: &mut impl SlotSink,
        len: u64,
        mut fill: impl FnMut(&mut [u8], u64) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0u64;
        while done < len {
            let room = self.room().min((len - done) as usize);
            let start = self.buf.len();
            self.buf.resize(start + room, 0);
            fill(&mut self.buf[start..], done)?;
            done += room as u64;
            self.flush_if_full(sink)?;
        }
        Ok(())
    }

    fn flush_if_full(&mut self, sink: &mut impl SlotSink) -> Result<()> {
        if self.buf.len() == self.size {
            self.flush(sink)?;
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut impl SlotSink) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let offset = (self.index * self.size) as u64;
        let found = blake3::hash(&self.buf);
        let expected = &self.digests[self.index];
        if found.as_bytes() != expected {
            return Err(Error::DigestMismatch {
                what: "output window",
                offset,
                expected: hex(expected),
                found: found.to_hex().to_string(),
            });
        }
        sink.write_at(offset, &self.buf)
            .map_err(Error::io("write sink"))?;
        self.written += self.buf.len() as u64;
        self.index += 1;
        self.buf.clear();
        Ok(())
    }
}

#[derive(Default)]
struct MemoryGauge {
    now: u64,
    peak: u64,
}

impl MemoryGauge {
    fn add(&mut self, bytes: usize) {
        self.now += bytes as u64;
        self.peak = self.peak.max(self.now);
    }
    fn sub(&mut self, bytes: usize) {
        self.now = self.now.saturating_sub(bytes as u64);
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn read_delta(delta: &mut impl Read, buf: &mut [u8], section: &'static str) -> Result<()> {
    delta.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::corrupt(section, "the delta stream ends early"),
        _ => Error::Io {
            operation: "read delta",
            source: e,
        },
    })
}

fn read_reference(reference: &impl Reference, buf: &mut [u8], offset: u64) -> Result<()> {
    reference
        .read_exact_at(buf, offset)
        .map_err(Error::io("read reference"))
}

/// One-shot zstd decompression of a frame of known size, with an optional reference prefix.
pub(crate) fn decompress(
    frame: &[u8],
    prefix: &[u8],
    raw_len: usize,
    window_log_max: u32,
) -> Result<Vec<u8>> {
    let zstd_err = |code: usize| Error::corrupt("segment", zstd::zstd_safe::get_error_name(code));
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(window_log_max))
        .map_err(zstd_err)?;
    if !prefix.is_empty() {
        dctx.ref_prefix(prefix).map_err(zstd_err)?;
    }
    let mut out = Vec::with_capacity(raw_len);
    let n = dctx.decompress(&mut out, frame).map_err(zstd_err)?;
    if n != raw_len {
        return Err(Error::corrupt(
            "segment",
            format!("decompressed {n} bytes, expected {raw_len}"),
        ));
    }
    Ok(out)
}
