//! Chunk reuse at publish time: the release's image is cut into chunks (`ferry-delta`'s
//! [`ferry_delta::build_payload`]) with the images of earlier releases of the class as
//! hints, so runs of blocks devices already hold become small chunks of their own. The
//! chunk payload and its index are stored beside the release and signed as two targets.

use std::path::Path;

use ferry_types::{Sha256, Sha256Hasher};

use crate::db::{ChunkRow, ReleaseRow};
use crate::{DataDir, ServerError};

/// At most this many earlier releases (the newest) are hints: each one is rebuilt and
/// held in memory while the chunks are cut, so publish time and memory stay bounded.
pub const MAX_HINTS: usize = 4;

/// Builds, stores and records the chunked payload of `release`, whose image is the file
/// `image`, compressing each chunk at zstd `level`.
pub async fn publish_chunks(
    data: &DataDir,
    release: &ReleaseRow,
    image: &Path,
    level: i32,
) -> Result<ChunkRow, ServerError> {
    let io = |op| move |source| ServerError::Io { op, source };
    let earlier: Vec<ReleaseRow> = data
        .db
        .releases(&release.class)
        .await?
        .into_iter()
        .filter(|r| r.version < release.version)
        .take(MAX_HINTS)
        .collect();
    let mut hint_files = Vec::with_capacity(earlier.len());
    for hint in &earlier {
        hint_files.push(crate::delta::rebuild_image(data, hint).await?);
    }
    let tmp_dir = data.path.join("tmp");
    let payload_tmp =
        tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io("creating a temp file"))?;
    let payload_path = payload_tmp.path().to_owned();
    let hint_paths: Vec<_> = hint_files.iter().map(|f| f.path().to_owned()).collect();
    let image = image.to_owned();
    let (index_bytes, payload_sha256, payload_size) =
        tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, Sha256, u64), ServerError> {
            let new = std::fs::File::open(&image).map_err(io("opening the image"))?;
            let hints = hint_paths
                .iter()
                .map(std::fs::File::open)
                .collect::<Result<Vec<_>, _>>()
                .map_err(io("opening a hint image"))?;
            let mut out = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&payload_path).map_err(io("creating the chunk payload"))?,
            );
            let opts = ferry_delta::IndexOptions {
                level,
                ..Default::default()
            };
            let index = ferry_delta::build_payload(&new, &hints, &mut out, &opts)?;
            let file = out.into_inner().map_err(|e| ServerError::Io {
                op: "writing the chunk payload",
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io("writing the chunk payload"))?;
            let (sha256, size) = sha256_of_file(&payload_path)?;
            if size != index.payload_len() {
                return Err(ServerError::ChunkPayloadMismatch {
                    size,
                    index_len: index.payload_len(),
                });
            }
            Ok((index.to_bytes(), sha256, size))
        })
        .await
        .map_err(|e| ServerError::Io {
            op: "building the chunk payload",
            source: std::io::Error::other(e),
        })??;
    let base = format!("releases/{}/{}", release.class, release.version);
    let index_sha256 = Sha256::of(&index_bytes);
    let row = ChunkRow {
        class: release.class.clone(),
        version: release.version.clone(),
        payload_key: format!("{base}/{}.chunks.zst", payload_sha256.to_hex()),
        payload_size,
        payload_sha256,
        index_key: format!("{base}/{}.chunks.index", index_sha256.to_hex()),
        index_size: index_bytes.len() as u64,
        index_sha256,
        hints: earlier
            .iter()
            .map(|r| r.version.to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    data.store
        .put_file(&row.payload_key, payload_tmp.path())
        .await?;
    data.store.put_bytes(&row.index_key, index_bytes).await?;
    data.db.insert_chunks(&row).await?;
    Ok(row)
}

fn sha256_of_file(path: &Path) -> Result<(Sha256, u64), ServerError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| ServerError::Io {
        op: "reading the chunk payload",
        source,
    })?;
    let mut hasher = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|source| ServerError::Io {
            op: "reading the chunk payload",
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finish(), size))
}
