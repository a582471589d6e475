use std::io::{Read, Write};

use ferry_types::{Sha256, Sha256Hasher, Version};
use rayon::prelude::*;

use crate::{FORMAT, Frame, Manifest, PayloadError, PayloadKind};

/// How to encode.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Decoded bytes per frame: the unit of parallelism, verification and resume.
    pub frame_size: u32,
    /// zstd level (1..=22).
    pub level: i32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        // 1 MiB frames: a crash re-downloads at most one frame; at level 9 the ratio
        // is within a few percent of one long stream on system images.
        EncodeOptions {
            frame_size: 1 << 20,
            level: 9,
        }
    }
}

/// Encodes `image` into `out` frame by frame, compressing frames in parallel, and
/// returns the manifest (with version `0` until the caller sets it).
///
/// Memory is bounded by a batch of `2 × threads` frames, whatever the image size.
pub fn encode<R: Read, W: Write>(
    mut image: R,
    mut out: W,
    opts: &EncodeOptions,
) -> Result<Manifest, PayloadError> {
    let io = |op| move |source| PayloadError::Io { op, source };
    let frame_size = opts.frame_size as usize;
    let batch = 2 * rayon::current_num_threads().max(1);
    let mut image_hash = Sha256Hasher::new();
    let mut payload_hash = Sha256Hasher::new();
    let mut frames = Vec::new();
    let mut image_size = 0u64;
    let mut offset = 0u64;
    loop {
        let mut chunks = Vec::with_capacity(batch);
        for _ in 0..batch {
            let chunk = read_full(&mut image, frame_size).map_err(io("reading the image"))?;
            if chunk.is_empty() {
                break;
            }
            let short = chunk.len() < frame_size;
            chunks.push(chunk);
            if short {
                break;
            }
        }
        if chunks.is_empty() {
            break;
        }
        let compressed: Vec<Result<(Vec<u8>, Sha256), PayloadError>> = chunks
            .par_iter()
            .map(|chunk| {
                let z =
                    zstd::bulk::compress(chunk, opts.level).map_err(io("compressing a frame"))?;
                Ok((z, Sha256::of(chunk)))
            })
            .collect();
        let last_batch = chunks.last().is_some_and(|c| c.len() < frame_size);
        for (chunk, result) in chunks.iter().zip(compressed) {
            let (z, digest) = result?;
            image_hash.update(chunk);
            payload_hash.update(&z);
            out.write_all(&z).map_err(io("writing the payload"))?;
            frames.push(Frame {
                offset,
                len: z.len() as u32,
                sha256: digest,
            });
            offset += z.len() as u64;
            image_size += chunk.len() as u64;
        }
        if last_batch {
            break;
        }
    }
    out.flush().map_err(io("writing the payload"))?;
    Ok(Manifest {
        format: FORMAT.to_owned(),
        version: "0"
            .parse::<Version>()
            .map_err(|e| PayloadError::ManifestInvalid(e.to_string()))?,
        kind: PayloadKind::Full,
        frame_size: opts.frame_size,
        image_size,
        image_sha256: image_hash.finish(),
        payload_size: offset,
        payload_sha256: payload_hash.finish(),
        frames,
        seal: None,
    })
}

/// Decodes frame `idx` from its compressed bytes into `out` (cleared first) and
/// checks its length and digest against the manifest.
pub fn decode_frame(
    manifest: &Manifest,
    idx: usize,
    compressed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PayloadError> {
    let expected_len = manifest.frame_len(idx);
    let frame = manifest
        .frames
        .get(idx)
        .ok_or_else(|| PayloadError::ManifestInvalid(format!("frame {idx} does not exist")))?;
    out.clear();
    // One extra byte of room: a frame that decodes to more than expected is caught as
    // too long instead of being cut silently.
    out.reserve(expected_len + 1);
    let n = zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(compressed, out))
        .map_err(|e| PayloadError::FrameCorrupt {
            frame: idx,
            reason: e.to_string(),
        })?;
    if n != expected_len {
        return Err(PayloadError::FrameCorrupt {
            frame: idx,
            reason: format!("decoded to {n} bytes instead of {expected_len}"),
        });
    }
    let actual = Sha256::of(out);
    if actual != frame.sha256 {
        return Err(PayloadError::DigestMismatch {
            frame: idx,
            expected: frame.sha256,
            actual,
        });
    }
    Ok(())
}

fn read_full<R: Read>(r: &mut R, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;
    use proptest::prelude::*;

    fn opts(frame_size: u32) -> EncodeOptions {
        EncodeOptions {
            frame_size,
            level: 3,
        }
    }

    fn decode_all(manifest: &Manifest, payload: &[u8]) -> Result<Vec<u8>, PayloadError> {
        let mut image = Vec::new();
        let mut buf = Vec::new();
        for (idx, f) in manifest.frames.iter().enumerate() {
            decode_frame(
                manifest,
                idx,
                &payload[f.offset as usize..][..f.len as usize],
                &mut buf,
            )?;
            image.extend_from_slice(&buf);
        }
        Ok(image)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn round_trip(image in proptest::collection::vec(any::<u8>(), 0..40_000), frame in 1u32..9000) {
            let mut payload = Vec::new();
            let m = encode(&image[..], &mut payload, &opts(frame)).unwrap();
            m.validate().unwrap();
            prop_assert_eq!(m.image_size, image.len() as u64);
            prop_assert_eq!(m.image_sha256, Sha256::of(&image));
            prop_assert_eq!(m.payload_sha256, Sha256::of(&payload));
            prop_assert_eq!(decode_all(&m, &payload).unwrap(), image.clone());
            // The payload is also one plain zstd stream (for any image publish accepts:
            // an empty image has no frames, and publish refuses it).
            if !image.is_empty() {
                prop_assert_eq!(zstd::decode_all(&payload[..]).unwrap(), image);
            }
        }
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let image: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut payload = Vec::new();
        let m = encode(&image[..], &mut payload, &opts(8192)).unwrap();
        for pos in (0..payload.len()).step_by(97) {
            let mut bad = payload.clone();
            bad[pos] ^= 0x40;
            let err = decode_all(&m, &bad).expect_err("a flipped byte must not decode cleanly");
            assert!(
                matches!(err.code(), "PAYLOAD_CORRUPT" | "DIGEST_MISMATCH"),
                "{err}"
            );
        }
    }

    #[test]
    fn manifest_inconsistencies_refused() {
        let image = vec![1u8; 10_000];
        let mut payload = Vec::new();
        let m = encode(&image[..], &mut payload, &opts(4096)).unwrap();
        let mut gap = m.clone();
        gap.frames[1].offset += 1;
        assert_eq!(gap.validate().unwrap_err().code(), "MANIFEST_INVALID");
        let mut short = m.clone();
        short.frames.pop();
        assert!(short.validate().is_err());
        let mut size = m.clone();
        size.payload_size += 1;
        assert!(size.validate().is_err());
        let json = m.to_json();
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
        assert!(Manifest::from_json(b"{\"format\":1}").is_err());
    }

    #[test]
    fn frame_of_wrong_size_is_corrupt_not_cut() {
        let a = vec![1u8; 4096];
        let b = vec![1u8; 8192];
        let mut pa = Vec::new();
        let ma = encode(&a[..], &mut pa, &opts(4096)).unwrap();
        let mut pb = Vec::new();
        encode(&b[..], &mut pb, &opts(8192)).unwrap();
        let mut out = Vec::new();
        let err = decode_frame(&ma, 0, &pb, &mut out).unwrap_err();
        assert_eq!(err.code(), "PAYLOAD_CORRUPT");
    }
}
