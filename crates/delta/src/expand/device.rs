//! The device side of an expanded delta: the running slot seen decompressed
//! ([`ExpandedView`]) and the new image re-compressed as it is rebuilt ([`Recompressor`]).

use std::io;
use std::sync::Mutex;

use rayon::prelude::*;
use zstd::zstd_safe;

use super::{Layout, Piece};
use crate::error::{Error, Result};
use crate::{Reference, SlotSink};

/// A reference seen expanded: frames decompressed on demand, the last few kept.
pub struct ExpandedView<'a, R> {
    inner: &'a R,
    pieces: Vec<Piece>,
    cache: Mutex<Vec<(usize, Vec<u8>)>>,
}

/// Decompressed frames kept by a view (at most 1 MiB each).
const VIEW_CACHE: usize = 8;

impl<'a, R: Reference> ExpandedView<'a, R> {
    /// A view of `inner` with `layout`'s frames decompressed.
    pub fn new(inner: &'a R, layout: &Layout) -> Result<Self> {
        Ok(ExpandedView {
            inner,
            pieces: layout.pieces()?,
            cache: Mutex::new(Vec::with_capacity(VIEW_CACHE)),
        })
    }

    fn frame(&self, idx: usize, out: &mut [u8], from: usize) -> io::Result<()> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| io::Error::other("view cache poisoned"))?;
        if let Some(pos) = cache.iter().position(|(i, _)| *i == idx) {
            let (_, data) = &cache[pos];
            out.copy_from_slice(&data[from..from + out.len()]);
            return Ok(());
        }
        let p = self.pieces[idx];
        let mut comp = vec![0u8; p.image_len as usize];
        self.inner.read_exact_at(&mut comp, p.image_offset)?;
        let raw_len = p.raw_len.unwrap_or(0) as usize;
        let mut data = Vec::with_capacity(raw_len);
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the block at {} of the running slot does not decompress to {raw_len} bytes",
                    p.image_offset
                ),
            )
        };
        let n = zstd_safe::DCtx::create()
            .decompress(&mut data, &comp)
            .map_err(|_| bad())?;
        if n != raw_len {
            return Err(bad());
        }
        out.copy_from_slice(&data[from..from + out.len()]);
        if cache.len() == VIEW_CACHE {
            cache.remove(0);
        }
        cache.push((idx, data));
        Ok(())
    }
}

impl<R: Reference> Reference for ExpandedView<'_, R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let idx = self
                .pieces
                .partition_point(|p| p.expanded_offset <= at)
                .saturating_sub(1);
            let Some(p) = self.pieces.get(idx) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the view",
                ));
            };
            let within = at - p.expanded_offset;
            let piece_end = p.expanded_offset + p.expanded_len();
            let next_start = self
                .pieces
                .get(idx + 1)
                .map_or(piece_end, |n| n.expanded_offset);
            let n = if at < piece_end {
                let n = ((piece_end - at) as usize).min(buf.len() - done);
                let dst = &mut buf[done..done + n];
                match p.raw_len {
                    None => self.inner.read_exact_at(dst, p.image_offset + within)?,
                    Some(_) => self.frame(idx, dst, within as usize)?,
                }
                n
            } else if at < next_start {
                // Alignment padding reads as zeros.
                let n = ((next_start - at) as usize).min(buf.len() - done);
                buf[done..done + n].fill(0);
                n
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the view",
                ));
            };
            done += n;
        }
        Ok(())
    }

    fn binding_size(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

/// A sink taking the expanded new image in order and writing the real one: raw pieces
/// as they are; each frame copied from the reference when it is an unchanged old frame
/// (the same compressed bytes, checked by decompressing them), else re-compressed and
/// checked against its length.
pub struct Recompressor<'a, S, R> {
    sink: &'a mut S,
    pieces: Vec<Piece>,
    level: i32,
    next: usize,
    position: u64,
    frame: Vec<u8>,
    reference: &'a R,
    /// New frame number → the old compressed frame (offset, length) with its bytes.
    same: std::collections::HashMap<u32, (u64, u64)>,
    frame_no: u32,
    /// Writes waiting for the batch's frames to be re-compressed on every core.
    queue: Vec<Pending>,
    /// Bytes held by `queue` (raw pieces and frames to re-compress).
    queued_raw: usize,
}

/// Re-compressed together, in parallel (bounds the apply's extra memory to about twice this).
const BATCH_BYTES: usize = 8 << 20;

/// A write of the real image, in order.
enum Pending {
    /// Bytes as they are (raw pieces, copied frames).
    Ready { offset: u64, bytes: Vec<u8> },
    /// A frame to re-compress, and the length it must have.
    Compress { offset: u64, len: u64, raw: Vec<u8> },
}

impl<'a, S: SlotSink, R: Reference> Recompressor<'a, S, R> {
    /// A recompressor writing `layout`'s image into `sink`.
    pub(super) fn new(
        sink: &'a mut S,
        layout: &Layout,
        reference: &'a R,
        same: std::collections::HashMap<u32, (u64, u64)>,
    ) -> Result<Self> {
        Ok(Recompressor {
            sink,
            pieces: layout.pieces()?,
            level: layout.level,
            next: 0,
            position: 0,
            frame: Vec::new(),
            reference,
            same,
            frame_no: 0,
            queue: Vec::new(),
            queued_raw: 0,
        })
    }

    /// Re-compresses the queued frames on every core and writes the queue in order.
    fn flush(&mut self) -> io::Result<()> {
        let level = self.level;
        let done: Vec<io::Result<(u64, Vec<u8>)>> = std::mem::take(&mut self.queue)
            .into_par_iter()
            .map(|pending| match pending {
                Pending::Ready { offset, bytes } => Ok((offset, bytes)),
                Pending::Compress { offset, len, raw } => {
                    let comp = zstd::bulk::compress(&raw, level)?;
                    if comp.len() as u64 != len {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the block at {offset} re-compresses to {} bytes, not {len}",
                                comp.len()
                            ),
                        ));
                    }
                    Ok((offset, comp))
                }
            })
            .collect();
        self.queued_raw = 0;
        for write in done {
            let (offset, bytes) = write?;
            self.sink.write_at(offset, &bytes)?;
        }
        Ok(())
    }

    /// The write for the frame just completed: the old compressed frame when it holds
    /// the same bytes, else the frame queued for re-compression.
    fn complete_frame(&mut self, p: &Piece) -> io::Result<Pending> {
        let raw = std::mem::take(&mut self.frame);
        if let Some(&(offset, len)) = self.same.get(&self.frame_no)
            && len == p.image_len
        {
            let mut comp = vec![0u8; len as usize];
            self.reference.read_exact_at(&mut comp, offset)?;
            let mut check = Vec::with_capacity(raw.len());
            if zstd_safe::DCtx::create()
                .decompress(&mut check, &comp)
                .is_ok()
                && check == raw
            {
                return Ok(Pending::Ready {
                    offset: p.image_offset,
                    bytes: comp,
                });
            }
        }
        self.queued_raw += raw.len();
        Ok(Pending::Compress {
            offset: p.image_offset,
            len: p.image_len,
            raw,
        })
    }

    /// Checks that every piece was written.
    pub fn finish(mut self) -> Result<()> {
        self.flush().map_err(Error::io("write sink"))?;
        if self.next < self.pieces.len() {
            return Err(Error::corrupt(
                "layout",
                "the expanded image ended before its last block",
            ));
        }
        Ok(())
    }
}

impl<S: SlotSink, R: Reference> SlotSink for Recompressor<'_, S, R> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.position {
            return Err(io::Error::other("expanded bytes out of order"));
        }
        self.position += data.len() as u64;
        let mut data = data;
        let mut at = offset;
        while !data.is_empty() {
            let Some(p) = self.pieces.get(self.next).copied() else {
                // Padding after the last piece.
                return Ok(());
            };
            if at < p.expanded_offset {
                let skip = ((p.expanded_offset - at) as usize).min(data.len());
                data = &data[skip..];
                at += skip as u64;
                continue;
            }
            let within = at - p.expanded_offset;
            let take = ((p.expanded_len() - within) as usize).min(data.len());
            match p.raw_len {
                None => {
                    self.queued_raw += take;
                    self.queue.push(Pending::Ready {
                        offset: p.image_offset + within,
                        bytes: data[..take].to_vec(),
                    });
                }
                Some(raw_len) => {
                    self.frame.extend_from_slice(&data[..take]);
                    if self.frame.len() as u64 == raw_len {
                        let write = self.complete_frame(&p)?;
                        self.queue.push(write);
                        self.frame_no += 1;
                    }
                }
            }
            if self.queued_raw >= BATCH_BYTES {
                self.flush()?;
            }
            data = &data[take..];
            at += take as u64;
            if within + take as u64 == p.expanded_len() {
                self.next += 1;
            }
        }
        Ok(())
    }
}
