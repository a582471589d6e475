//! Artifacts behind the `object_store` interface: a local directory today, S3 (or any
//! store the crate speaks) by configuration, with no change to the callers.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::ServerError;

/// Longest artifact key: what S3 holds (1,024 bytes).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest part of a key between `/`: what a local file system holds in one name
/// (`NAME_MAX`, 255 bytes).
pub const MAX_KEY_PART_BYTES: usize = 255;

/// Whether some store could hold an object under `key`: one that cannot names no artifact,
/// so asking for it is a 404, never a store error (a local file system answers
/// `ENAMETOOLONG`).
pub fn is_storable(key: &str) -> bool {
    key.len() <= MAX_KEY_BYTES && key.split('/').all(|part| part.len() <= MAX_KEY_PART_BYTES)
}

fn not_found(key: &str) -> ServerError {
    ServerError::NotFound(format!("artifact {:?}", truncate(key)))
}

/// The start of a key for messages (a 300-byte name is not repeated whole).
fn truncate(key: &str) -> String {
    match key.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &key[..at]),
        None => key.to_owned(),
    }
}

/// The artifact store.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
}

impl Store {
    /// A store on a local directory (created if missing).
    pub fn local(root: &Path) -> Result<Store, ServerError> {
        std::fs::create_dir_all(root).map_err(|source| ServerError::Io {
            op: "creating the artifact directory",
            source,
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)?;
        Ok(Store {
            inner: Arc::new(fs),
        })
    }

    /// Stores small bytes under `key`.
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), ServerError> {
        self.inner
            .put(&Key::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Streams a local file into the store under `key` (multipart, bounded memory).
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), ServerError> {
        let io = |op| move |source| ServerError::Io { op, source };
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(io("opening the payload"))?;
        let upload = self.inner.put_multipart(&Key::from(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.map_err(io("reading the payload"))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// Size of the object at `key`.
    pub async fn size(&self, key: &str) -> Result<u64, ServerError> {
        if !is_storable(key) {
            return Err(not_found(key));
        }
        Ok(self.inner.head(&Key::from(key)).await?.size)
    }

    /// Streams bytes `range` (or all) of the object at `key`.
    pub async fn get_stream(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<BoxStream<'static, object_store::Result<Bytes>>, ServerError> {
        if !is_storable(key) {
            return Err(not_found(key));
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        Ok(self
            .inner
            .get_opts(&Key::from(key), options)
            .await?
            .into_stream())
    }

    /// Reads a whole (small) object.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, ServerError> {
        if !is_storable(key) {
            return Err(not_found(key));
        }
        Ok(self.inner.get(&Key::from(key)).await?.bytes().await?)
    }
}
