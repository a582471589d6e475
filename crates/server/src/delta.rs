//! Tailored deltas at publish time: the earlier release's image is rebuilt from its own
//! stored payload (and checked against its digest), then `ferry-delta` encodes the
//! delta to the new image, which is stored beside the release.

use std::path::Path;

use ferry_types::{Sha256, Sha256Hasher, Version};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::db::{DeltaRow, ReleaseRow};
use crate::{DataDir, ServerError};

/// Builds, stores and records the delta from `from` to the release `to`, whose image
/// is the file `new_image`.
pub async fn publish_delta(
    data: &DataDir,
    from: &Version,
    to: &ReleaseRow,
    new_image: &Path,
) -> Result<DeltaRow, ServerError> {
    let io = |op| move |source| ServerError::Io { op, source };
    let old = data
        .db
        .releases(&to.class)
        .await?
        .into_iter()
        .find(|r| &r.version == from)
        .ok_or_else(|| {
            ServerError::NotFound(format!(
                "release {from} of class {} (the delta's base)",
                to.class
            ))
        })?;
    let tmp_dir = data.path.join("tmp");
    let payload = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("creating a temp file"))?;
    {
        let mut out = tokio::fs::File::create(payload.path())
            .await
            .map_err(io("writing a temp file"))?;
        let mut stream = data.store.get_stream(&old.payload_key, None).await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)
                .await
                .map_err(io("writing a temp file"))?;
        }
        out.flush().await.map_err(io("writing a temp file"))?;
    }
    let old_image =
        tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("creating a temp file"))?;
    let delta_file =
        tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("creating a temp file"))?;
    let (payload_path, old_path, delta_path, new_path) = (
        payload.path().to_owned(),
        old_image.path().to_owned(),
        delta_file.path().to_owned(),
        new_image.to_owned(),
    );
    let expected_old = old.image_sha256;
    let (sha256, size) =
        tokio::task::spawn_blocking(move || -> Result<(Sha256, u64), ServerError> {
            // The payload is one zstd stream: decode it back into the old image.
            let mut decoder = zstd::stream::read::Decoder::new(
                std::fs::File::open(&payload_path).map_err(io("opening the payload"))?,
            )
            .map_err(io("decoding the base payload"))?;
            let mut image =
                std::fs::File::create(&old_path).map_err(io("rebuilding the base image"))?;
            let mut hasher = Sha256Hasher::new();
            let mut tee = Tee {
                a: &mut image,
                b: &mut hasher,
            };
            std::io::copy(&mut decoder, &mut tee).map_err(io("rebuilding the base image"))?;
            if hasher.finish() != expected_old {
                return Err(ServerError::Seal(
                    "the base release's stored payload does not rebuild its image".into(),
                ));
            }
            let old_image = std::fs::read(&old_path).map_err(io("reading the base image"))?;
            let new_image = std::fs::read(&new_path).map_err(io("reading the image"))?;
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&delta_path).map_err(io("creating the delta"))?,
            );
            // A compressed filesystem (squashfs with zstd) is diffed below its compression.
            let (_, expanded) = ferry_delta::encode_expanded(
                &old_image,
                &new_image,
                &mut out,
                &ferry_delta::EncodeOptions::default(),
            )
            .map_err(|e| ServerError::Seal(format!("encoding the delta failed: {e}")))?;
            tracing::info!(expanded, "delta encoded");
            std::io::Write::flush(&mut out).map_err(io("writing the delta"))?;
            drop(out);
            let bytes = std::fs::read(&delta_path).map_err(io("reading the delta"))?;
            Ok((Sha256::of(&bytes), bytes.len() as u64))
        })
        .await
        .map_err(|e| ServerError::Io {
            op: "encoding the delta",
            source: std::io::Error::other(e),
        })??;
    let key = format!(
        "releases/{}/{}/{}.delta-from-{from}.ferrydelta",
        to.class,
        to.version,
        sha256.to_hex()
    );
    data.store.put_file(&key, delta_file.path()).await?;
    let row = DeltaRow {
        class: to.class.clone(),
        from: from.clone(),
        to: to.version.clone(),
        key,
        size,
        sha256,
    };
    data.db.insert_delta(&row).await?;
    Ok(row)
}

struct Tee<'a> {
    a: &'a mut std::fs::File,
    b: &'a mut Sha256Hasher,
}

impl std::io::Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.a.write_all(buf)?;
        self.b.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.a.flush()
    }
}
