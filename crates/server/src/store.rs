//! Artifacts behind the `object_store` interface: a local directory by default, or an
//! S3-compatible bucket (`--store s3://BUCKET?endpoint=…`) shared by every replica, with no
//! change to the callers. Reads are by range (a download, a resumed download and each part of
//! a multi-range answer fetch only their bytes) and stream in bounded memory.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
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

fn invalid(spec: &str, why: String) -> ServerError {
    ServerError::StoreUrl {
        url: redact(spec),
        why,
    }
}

/// `spec` with the values of secret query keys replaced by `…`.
fn redact(spec: &str) -> String {
    let Ok(mut url) = url::Url::parse(spec) else {
        return spec.split('?').next().unwrap_or_default().to_owned();
    };
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let secret = SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str());
            (
                k.into_owned(),
                if secret { "…".into() } else { v.into_owned() },
            )
        })
        .collect();
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
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
    /// Shared with other servers (S3): the catalog is served from it too ([`crate::catalog_store`]).
    shared: bool,
    /// What to call it in logs (no credentials).
    name: String,
}

/// Query keys of an `s3://` URL that hold secrets: never logged.
const SECRET_KEYS: [&str; 4] = [
    "secret_access_key",
    "aws_secret_access_key",
    "token",
    "aws_session_token",
];

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
            shared: false,
            name: root.display().to_string(),
        })
    }

    /// The store `spec` names: `s3://BUCKET[/PREFIX]?endpoint=URL&region=R[&KEY=VALUE…]`
    /// ([`Store::s3`]) or a local directory.
    pub fn open(spec: &str) -> Result<Store, ServerError> {
        if spec.starts_with("s3://") {
            Store::s3(spec)
        } else if spec.contains("://") && !spec.starts_with("file://") {
            Err(invalid(
                spec,
                "only s3:// and local directories are supported".into(),
            ))
        } else {
            Store::local(Path::new(spec.strip_prefix("file://").unwrap_or(spec)))
        }
    }

    /// An S3-compatible bucket. The query's keys are `object_store`'s S3 settings (`endpoint`,
    /// `region`, `access_key_id`, `secret_access_key`, `token`, …); what the query leaves out
    /// comes from the standard `AWS_*` variables. An `http://` endpoint is allowed (a store on
    /// the same host or network); requests are path-style unless the query says otherwise.
    pub fn s3(spec: &str) -> Result<Store, ServerError> {
        let url = url::Url::parse(spec).map_err(|e| invalid(spec, e.to_string()))?;
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid(spec, "it names no bucket".into()))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut endpoint = None;
        for (key, value) in url.query_pairs() {
            let config: AmazonS3ConfigKey = key
                .parse()
                .map_err(|_| invalid(spec, format!("{key:?} is not an S3 setting")))?;
            if matches!(config, AmazonS3ConfigKey::Endpoint) {
                endpoint = Some(value.to_string());
            }
            builder = builder.with_config(config, value.to_string());
        }
        let endpoint = endpoint.or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        let s3 = builder.build().map_err(|e| invalid(spec, e.to_string()))?;
        let prefix = url.path().trim_matches('/');
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Store {
            inner,
            shared: true,
            name: redact(spec),
        })
    }

    /// Whether other servers share this store (S3): the catalog is then served from it.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The store's name for logs and messages (no credentials).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, ServerError> {
        match self.inner.head(&Key::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The keys under `prefix` (a folder, without its trailing `/`), in no particular order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ServerError> {
        let mut listing = self.inner.list(Some(&Key::from(prefix)));
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            keys.push(meta?.location.to_string());
        }
        Ok(keys)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_their_secrets_stay_out_of_messages() {
        let store = Store::open(
            "s3://fleet/prod?endpoint=http://127.0.0.1:9&region=eu-1&access_key_id=AK&secret_access_key=SECRET",
        )
        .unwrap();
        assert!(store.is_shared());
        assert!(!store.name().contains("SECRET"), "{}", store.name());
        assert!(store.name().contains("access_key_id=AK"));
        let bad = Store::open("s3://fleet?colour=blue").err().unwrap();
        assert_eq!(ferry_types::Diagnose::code(&bad), "STORE_URL_INVALID");
        assert!(bad.to_string().contains("colour"), "{bad}");
        let other = Store::open("gs://fleet").err().unwrap();
        assert_eq!(ferry_types::Diagnose::code(&other), "STORE_URL_INVALID");
        let no_bucket = Store::open("s3:///x?secret_access_key=S").err().unwrap();
        assert!(!no_bucket.to_string().contains("=S"), "{no_bucket}");
        let dir = tempfile::tempdir().unwrap();
        let local = Store::open(dir.path().join("a").to_str().unwrap()).unwrap();
        assert!(!local.is_shared());
    }
}
