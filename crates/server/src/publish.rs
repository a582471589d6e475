//! `ferry publish`: encode an image into a payload, store it, register the release.

use std::path::PathBuf;

use ferry_payload::{EncodeOptions, Manifest};
use ferry_types::{Sha256, Version};

use crate::db::ReleaseRow;
use crate::{DataDir, ServerError};

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The system image file.
    pub image: PathBuf,
    /// Its version.
    pub version: Version,
    /// Device class it is for.
    pub class: String,
    /// Audience it opens to.
    pub audience: String,
    /// Build id; derived from the version and image digest when absent.
    pub build_id: Option<String>,
    /// zstd level.
    pub level: i32,
    /// Earlier versions to build tailored deltas from.
    pub delta_from: Vec<Version>,
}

/// Encodes the image (frames compressed on every core), stores payload and manifest,
/// then registers the release. The row is written last, so a crash leaves at most
/// unreferenced artifacts, never a release without its bytes.
pub async fn publish(data: &DataDir, req: PublishRequest) -> Result<ReleaseRow, ServerError> {
    check_slug("device class", &req.class)?;
    check_slug("audience", &req.audience)?;
    if data.db.has_version(&req.class, &req.version).await? {
        return Err(ServerError::DuplicateVersion {
            class: req.class,
            version: req.version.to_string(),
        });
    }
    let meta = std::fs::metadata(&req.image).map_err(|source| ServerError::Io {
        op: "reading the image",
        source,
    })?;
    if meta.len() == 0 || meta.len() % 4096 != 0 {
        return Err(ServerError::ImageUnaligned { size: meta.len() });
    }

    let tmp_dir = data.path.join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(|source| ServerError::Io {
        op: "creating tmp/",
        source,
    })?;
    let payload_tmp =
        tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|source| ServerError::Io {
            op: "creating a temp file",
            source,
        })?;
    let image_path = req.image.clone();
    let level = req.level;
    let payload_path = payload_tmp.path().to_owned();
    let mut manifest: Manifest = tokio::task::spawn_blocking(move || {
        let image = std::fs::File::open(&image_path).map_err(|source| ServerError::Io {
            op: "opening the image",
            source,
        })?;
        let out = std::fs::File::create(&payload_path).map_err(|source| ServerError::Io {
            op: "creating the payload",
            source,
        })?;
        let opts = EncodeOptions {
            level,
            ..EncodeOptions::default()
        };
        let mut manifest = ferry_payload::encode(
            std::io::BufReader::with_capacity(1 << 20, &image),
            std::io::BufWriter::with_capacity(1 << 20, out),
            &opts,
        )?;
        // Seal: a dm-verity tree with a fresh salt; the tree itself is discarded (the
        // device rebuilds it), its root hash and salt travel in the manifest.
        let salt = ferry_seal::Salt::random();
        let tree = tempfile::tempfile().map_err(|source| ServerError::Io {
            op: "creating a temp file",
            source,
        })?;
        let (root_hash, _) = ferry_seal::build_tree(&image, manifest.image_size, salt, &tree, 0)
            .map_err(|e| ServerError::Seal(e.to_string()))?;
        manifest.seal = Some(ferry_payload::SealRef { root_hash, salt });
        Ok::<_, ServerError>(manifest)
    })
    .await
    .map_err(|e| ServerError::Io {
        op: "encoding the payload",
        source: std::io::Error::other(e),
    })??;
    manifest.version = req.version.clone();

    let build_id = req
        .build_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", req.version, &manifest.image_sha256.to_hex()[..8]));
    check_slug("build id", &build_id)?;
    let base = format!("releases/{}/{}", req.class, req.version);
    let payload_key = format!("{base}/{}.payload.zst", manifest.payload_sha256.to_hex());
    let manifest_key = format!("{base}/{}.manifest.json", manifest.payload_sha256.to_hex());
    let manifest_json = manifest.to_json();
    data.store
        .put_file(&payload_key, payload_tmp.path())
        .await?;
    let manifest_size = manifest_json.len() as u64;
    let manifest_sha256 = Sha256::of(&manifest_json);
    data.store.put_bytes(&manifest_key, manifest_json).await?;

    let row = ReleaseRow {
        class: req.class,
        version: req.version,
        build_id,
        audience: req.audience,
        kind: "full".into(),
        image_size: manifest.image_size,
        image_sha256: manifest.image_sha256,
        payload_key,
        payload_size: manifest.payload_size,
        payload_sha256: manifest.payload_sha256,
        manifest_key,
        manifest_size,
        manifest_sha256,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    data.db.insert_release(&row).await?;
    for from in &req.delta_from {
        let delta = crate::delta::publish_delta(data, from, &row, &req.image).await?;
        tracing::info!(from = %from, to = %row.version, size = delta.size, "delta published");
    }
    Ok(row)
}

/// Names that end up in URLs and object keys: `[a-z0-9._-]`, 1–64 characters.
fn check_slug(what: &'static str, value: &str) -> Result<(), ServerError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServerError::Invalid {
            what,
            value: value.to_owned(),
            why: "use 1-64 of a-z, 0-9, '.', '_', '-'".into(),
        })
    }
}
