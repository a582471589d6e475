//! The delta stream's layout: header, JSON manifest, binary tables, varints.
//!
//! ```text
//! "FERRYDL1"                      8 bytes magic
//! u32 LE manifest_len
//! manifest (JSON, manifest_len bytes)
//! blake3(manifest)                32 bytes
//! tables (zstd frame, manifest.tables_len bytes; blake3 = manifest.tables_digest)
//! segment frames                  one zstd frame per literal segment, in order of use
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Magic bytes opening every delta stream.
pub const DELTA_MAGIC: &[u8; 8] = b"FERRYDL1";
/// The format name written into every manifest.
pub const DELTA_FORMAT: &str = "ferry-delta-2";
/// Block size of the block map: 4 KiB, the ext4 and dm-verity block.
pub const BLOCK_SIZE: usize = 4096;
/// Largest manifest JSON accepted by `apply_delta`.
pub const MAX_MANIFEST_BYTES: u32 = 1 << 20;
/// Largest decompressed tables section accepted by `apply_delta`.
pub const MAX_TABLES_BYTES: u64 = 16 << 20;

/// What a delta describes, written as JSON at the head of the stream and returned by
/// `encode_delta`. Its blake3 digest ([`DeltaManifest::digest`]) is what a catalog pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaManifest {
    /// Always [`DELTA_FORMAT`].
    pub format: String,
    /// Block size of the block map, 4096.
    pub block_size: u32,
    /// Size of the base (old) image in bytes.
    pub old_size: u64,
    /// Size of the image the delta rebuilds.
    pub new_size: u64,
    /// blake3 (hex) of the whole new image.
    pub new_digest: String,
    /// blake3 (hex) of the base bytes the delta reads, concatenated in the order of the
    /// tables' base extents; checked before anything is written.
    pub base_digest: String,
    /// Number of base bytes the delta reads.
    pub base_bytes: u64,
    /// Output is verified in windows of this many bytes, each with its own digest.
    pub window_size: u32,
    /// Compressed length of the tables section.
    pub tables_len: u64,
    /// Decompressed length of the tables section.
    pub tables_raw_len: u64,
    /// blake3 (hex) of the compressed tables section.
    pub tables_digest: String,
    /// Number of literal segments (zstd frames) after the tables.
    pub n_segments: u64,
    /// Largest decompressed literal segment, bytes.
    pub max_segment_bytes: u64,
    /// Largest reference (sum of a segment's base extents), bytes.
    pub max_reference_bytes: u64,
    /// Blocks copied from the base.
    pub copy_blocks: u64,
    /// Blocks that are all zero.
    pub zero_blocks: u64,
    /// Blocks carried as compressed literals.
    pub literal_blocks: u64,
    /// Sum of the compressed segment frames, bytes.
    pub literal_compressed_bytes: u64,
}

impl DeltaManifest {
    /// blake3 of the manifest as serialized in the stream: pin this in the catalog and pass
    /// it to `apply_delta` as [`crate::ApplyOptions::expected_manifest_digest`].
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.to_json()).as_bytes()
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serializes")
    }
}

/// One block-map operation over consecutive new blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `n` blocks copied from base block `old_block` onwards.
    Copy { n: u64, old_block: u64 },
    /// `n` zero blocks.
    Zero { n: u64 },
    /// `n` blocks taken from the literal segment stream.
    Literal { n: u64 },
}

/// A compressed literal segment and the base extents that form its zstd reference prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Segment {
    pub raw_len: u64,
    pub compressed_len: u64,
    /// blake3 of the compressed frame: checked before it is decompressed, because a zstd
    /// frame has bits the decoder ignores, and a changed delta byte should never pass.
    pub digest: [u8; 32],
    pub reference: Vec<(u64, u64)>,
}

/// The binary tables section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Tables {
    /// Sorted, disjoint (offset, len) base extents whose bytes `base_digest` covers.
    pub base_extents: Vec<(u64, u64)>,
    /// Digest of each output window.
    pub window_digests: Vec<[u8; 32]>,
    pub ops: Vec<Op>,
    pub segments: Vec<Segment>,
}

impl Tables {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, self.base_extents.len() as u64);
        let mut prev_end = 0u64;
        for &(offset, len) in &self.base_extents {
            put_varint(&mut out, offset - prev_end);
            put_varint(&mut out, len);
            prev_end = offset + len;
        }
        put_varint(&mut out, self.window_digests.len() as u64);
        for digest in &self.window_digests {
            out.extend_from_slice(digest);
        }
        put_varint(&mut out, self.ops.len() as u64);
        let mut expected_old = 0u64;
        for op in &self.ops {
            match *op {
                Op::Copy { n, old_block } => {
                    out.push(0);
                    put_varint(&mut out, n);
                    put_varint(&mut out, zigzag(old_block as i64 - expected_old as i64));
                    expected_old = old_block + n;
                }
                Op::Zero { n } => {
                    out.push(1);
                    put_varint(&mut out, n);
                }
                Op::Literal { n } => {
                    out.push(2);
                    put_varint(&mut out, n);
                }
            }
        }
        put_varint(&mut out, self.segments.len() as u64);
        let mut prev = 0u64;
        for segment in &self.segments {
            put_varint(&mut out, segment.raw_len);
            put_varint(&mut out, segment.compressed_len);
            out.extend_from_slice(&segment.digest);
            put_varint(&mut out, segment.reference.len() as u64);
            for &(offset, len) in &segment.reference {
                put_varint(&mut out, zigzag(offset as i64 - prev as i64));
                put_varint(&mut out, len);
                prev = offset + len;
            }
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Tables> {
        let mut reader = Reader { bytes, pos: 0 };
        let mut tables = Tables::default();
        let n = reader.count("base extents", 2)?;
        let mut prev_end = 0u64;
        for _ in 0..n {
            let offset = prev_end
                .checked_add(reader.varint()?)
                .ok_or_else(|| Error::corrupt("tables", "base extent offset overflows"))?;
            let len = reader.varint()?;
            prev_end = offset
                .checked_add(len)
                .ok_or_else(|| Error::corrupt("tables", "base extent overflows"))?;
            tables.base_extents.push((offset, len));
        }
        let n = reader.count("window digests", 32)?;
        for _ in 0..n {
            tables.window_digests.push(reader.array()?);
        }
        let n = reader.count("ops", 2)?;
        let mut expected_old = 0u64;
        for _ in 0..n {
            let tag = reader.byte()?;
            let count = reader.varint()?;
            let op = match tag {
                0 => {
                    let old_block = (expected_old as i64).wrapping_add(unzigzag(reader.varint()?));
                    let old_block = u64::try_from(old_block)
                        .map_err(|_| Error::corrupt("tables", "negative copy source"))?;
                    expected_old = old_block.saturating_add(count);
                    Op::Copy {
                        n: count,
                        old_block,
                    }
                }
                1 => Op::Zero { n: count },
                2 => Op::Literal { n: count },
                other => return Err(Error::corrupt("tables", format!("unknown op tag {other}"))),
            };
            tables.ops.push(op);
        }
        let n = reader.count("segments", 35)?;
        let mut prev = 0u64;
        for _ in 0..n {
            let raw_len = reader.varint()?;
            let compressed_len = reader.varint()?;
            let digest = reader.array()?;
            let n_ref = reader.count("reference extents", 2)?;
            let mut reference = Vec::with_capacity(n_ref);
            for _ in 0..n_ref {
                let offset = (prev as i64).wrapping_add(unzigzag(reader.varint()?));
                let offset = u64::try_from(offset)
                    .map_err(|_| Error::corrupt("tables", "negative reference offset"))?;
                let len = reader.varint()?;
                prev = offset.saturating_add(len);
                reference.push((offset, len));
            }
            tables.segments.push(Segment {
                raw_len,
                compressed_len,
                digest,
                reference,
            });
        }
        if reader.pos != bytes.len() {
            return Err(Error::corrupt("tables", "trailing bytes"));
        }
        Ok(tables)
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A bounds-checked cursor over a binary section.
pub(crate) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub pos: usize,
}

impl Reader<'_> {
    pub(crate) fn byte(&mut self) -> Result<u8> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| Error::corrupt("tables", "truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::corrupt("tables", "varint too long"))
    }

    /// A count of items each at least `min_item_bytes` long, checked against what is left.
    pub(crate) fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes as u64) > left {
            return Err(Error::corrupt(
                "tables",
                format!("{n} {what} cannot fit in {left} bytes"),
            ));
        }
        Ok(n as usize)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos + N;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| Error::corrupt("tables", "truncated"))?;
        self.pos = end;
        Ok(slice.try_into().expect("length checked"))
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    #[test]
    fn tables_round_trip() {
        let tables = Tables {
            base_extents: vec![(0, 4096), (8192, 100)],
            window_digests: vec![[7; 32]],
            ops: vec![
                Op::Copy { n: 3, old_block: 9 },
                Op::Zero { n: 1 },
                Op::Copy { n: 1, old_block: 2 },
                Op::Literal { n: 5 },
            ],
            segments: vec![Segment {
                raw_len: 5 * 4096,
                compressed_len: 77,
                digest: [9; 32],
                reference: vec![(4096, 4096), (0, 10)],
            }],
        };
        assert_eq!(Tables::decode(&tables.encode()).unwrap(), tables);
    }

    #[test]
    fn truncated_tables_are_corrupt() {
        let tables = Tables {
            ops: vec![Op::Literal { n: 5 }],
            ..Tables::default()
        };
        let bytes = tables.encode();
        let err = Tables::decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(err.code(), "DELTA_CORRUPT");
    }
}
