//! Tailored deltas at publish time: the earlier release's image is rebuilt from its own
//! stored payload (and checked against its digest, [`rebuild_image`]), then `ferry-delta` encodes the
//! delta to the new image, which is stored beside the release.

use std::path::Path;

use ferry_types::{DeltaDigest, Sha256, Sha256Hasher, Version};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::db::{DeltaRow, ReleaseRow};
use crate::{DataDir, ServerError};

/// Builds, stores and records the delta from `from` to the release `to`, whose image
/// is the file `new_image`. Returns its row and the pin of its manifest
/// (`ferry_delta::pinned_digest`), which the catalog signs into the delta's release metadata.
pub async fn publish_delta(
    data: &DataDir,
    from: &Version,
    to: &ReleaseRow,
    new_image: &Path,
) -> Result<(DeltaRow, DeltaDigest), ServerError> {
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
    let old_image = rebuild_image(data, &old).await?;
    let delta_file =
        tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("creating a temp file"))?;
    let (old_path, delta_path, new_path) = (
        old_image.path().to_owned(),
        delta_file.path().to_owned(),
        new_image.to_owned(),
    );
    let (sha256, size, pin) =
        tokio::task::spawn_blocking(move || -> Result<(Sha256, u64, DeltaDigest), ServerError> {
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
            .map_err(ServerError::DeltaEncode)?;
            tracing::info!(expanded, "delta encoded");
            std::io::Write::flush(&mut out).map_err(io("writing the delta"))?;
            drop(out);
            let bytes = std::fs::read(&delta_path).map_err(io("reading the delta"))?;
            let pin = ferry_delta::pinned_digest(&bytes[..]).map_err(ServerError::DeltaEncode)?;
            Ok((Sha256::of(&bytes), bytes.len() as u64, DeltaDigest(pin)))
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
    Ok((row, pin))
}

/// Rebuilds the image of the stored release `release` from its own payload (one zstd
/// stream) into a temp file under `DATA/tmp`, checked against the release's image digest.
pub async fn rebuild_image(
    data: &DataDir,
    release: &ReleaseRow,
) -> Result<tempfile::NamedTempFile, ServerError> {
    let io = |op| move |source| ServerError::Io { op, source };
    let tmp_dir = data.path.join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(io("creating tmp/"))?;
    let payload = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("creating a temp file"))?;
    {
        let mut out = tokio::fs::File::create(payload.path())
            .await
            .map_err(io("writing a temp file"))?;
        let mut stream = data.store.get_stream(&release.payload_key, None).await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)
                .await
                .map_err(io("writing a temp file"))?;
        }
        out.flush().await.map_err(io("writing a temp file"))?;
    }
    let image = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("creating a temp file"))?;
    let (payload_path, image_path) = (payload.path().to_owned(), image.path().to_owned());
    let expected = release.image_sha256;
    let version = release.version.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ServerError> {
        let mut decoder = zstd::stream::read::Decoder::new(
            std::fs::File::open(&payload_path).map_err(io("opening the payload"))?,
        )
        .map_err(io("decoding a stored payload"))?;
        let mut out = std::fs::File::create(&image_path).map_err(io("rebuilding an image"))?;
        let mut hasher = Sha256Hasher::new();
        let mut tee = Tee {
            a: &mut out,
            b: &mut hasher,
        };
        std::io::copy(&mut decoder, &mut tee).map_err(io("rebuilding an image"))?;
        if hasher.finish() != expected {
            return Err(ServerError::StoredImageMismatch { version });
        }
        Ok(())
    })
    .await
    .map_err(|e| ServerError::Io {
        op: "rebuilding an image",
        source: std::io::Error::other(e),
    })??;
    Ok(image)
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
