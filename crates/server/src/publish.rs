//! `ferry publish`: encode an image into a payload, store it, register the release, and sign
//! it into the catalog.
//!
//! In the catalog a release is two targets with flat names: `<class>-<version>.payload.zst`
//! carries the [`ReleaseInfo`] devices select offers from, and `<class>-<version>.manifest.json`
//! (no custom metadata) the payload's per-frame digests. Devices find the manifest from the
//! payload's name ([`ferry_catalog::manifest_target_name`]). Unless `--no-chunks`, the
//! release's chunked form is two more targets: `<class>-<version>.chunks.zst` (release
//! metadata with [`PayloadKind::Chunks`]) and its index `<class>-<version>.chunks.index`.

use std::path::PathBuf;

use ferry_catalog::{
    NewTarget, PayloadKind, ReleaseInfo, chunk_index_target_name, chunks_target_name,
    manifest_target_name, payload_target_name, repo,
};
use ferry_payload::{EncodeOptions, Manifest};
use ferry_types::{Sha256, Version};

use crate::db::ReleaseRow;
use crate::tuf::{self, CatalogPaths};
use crate::{DataDir, ServerError};

/// The component every release installs today: the system image.
pub const SYSTEM_COMPONENT: &str = "system";

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The system image file.
    pub image: PathBuf,
    /// Its version.
    pub version: Version,
    /// Device class it is for.
    pub class: String,
    /// Audiences it opens to (at least one).
    pub audiences: Vec<String>,
    /// Offline keys directory (root, targets); default `DATA/keys-offline`.
    pub offline_keys: Option<PathBuf>,
    /// Build id; derived from the version and image digest when absent.
    pub build_id: Option<String>,
    /// zstd level.
    pub level: i32,
    /// Earlier versions to build tailored deltas from.
    pub delta_from: Vec<Version>,
    /// Also build the chunked payload (chunk reuse for devices with no tailored delta).
    pub chunks: bool,
}

/// Encodes the image (frames compressed on every core), stores payload and manifest,
/// registers the release, then signs its targets into the catalog (which must exist:
/// `ferry server init`). Artifacts first, row next, signatures last, so a crash leaves at most
/// unreferenced artifacts or a row devices cannot see, never a signed release without its
/// bytes.
pub async fn publish(data: &DataDir, req: PublishRequest) -> Result<ReleaseRow, ServerError> {
    // With a shared store: the catalog the replicas serve (each signing below is done on
    // top of the newest and given back under the catalog lock: `sign_targets`).
    crate::catalog_store::pull(data).await?;
    publish_signed(data, req).await
}

/// Signs `targets` into the catalog: with a shared store on top of its newest copy, given
/// back before another process may sign ([`crate::catalog_store::change`]).
async fn sign_targets(
    data: &DataDir,
    catalog: &CatalogPaths,
    targets: Vec<NewTarget>,
) -> Result<(), ServerError> {
    crate::catalog_store::change(data, async {
        repo::add_targets(
            &catalog.offline_keys,
            &catalog.online_keys,
            &catalog.metadata,
            targets,
            &repo::Expiries::default(),
        )
        .await?;
        Ok(())
    })
    .await
}

/// [`publish`] on the local catalog.
async fn publish_signed(data: &DataDir, req: PublishRequest) -> Result<ReleaseRow, ServerError> {
    check_slug("device class", &req.class)?;
    if req.audiences.is_empty() {
        return Err(ServerError::Invalid {
            what: "audience",
            value: String::new(),
            why: "give at least one audience".into(),
        });
    }
    for audience in &req.audiences {
        check_slug("audience", audience)?;
    }
    let catalog = CatalogPaths::new(&data.path, req.offline_keys.as_deref());
    tuf::require_initialised(&catalog)?;
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
            .map_err(ServerError::Seal)?;
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
        class: req.class.clone(),
        version: req.version.clone(),
        build_id: build_id.clone(),
        audience: req.audiences.join(","),
        kind: "full".into(),
        image_size: manifest.image_size,
        image_sha256: manifest.image_sha256,
        payload_key,
        payload_size: manifest.payload_size,
        payload_sha256: manifest.payload_sha256,
        manifest_key,
        manifest_size,
        manifest_sha256,
        seal_root: manifest.seal.as_ref().map(|seal| seal.root_hash),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    data.db.insert_release(&row).await?;

    let payload_target = payload_target_name(&req.class, req.version.as_str());
    let manifest_target = manifest_target_name(&payload_target).unwrap_or_default();
    let info = ReleaseInfo {
        device_class: req.class.clone(),
        version: req.version.clone(),
        build_id,
        audiences: req.audiences.clone(),
        component: SYSTEM_COMPONENT.into(),
        payload: PayloadKind::Full,
        download_size: manifest.payload_size,
        unarchived_size: manifest.image_size,
        image_sha256: manifest.image_sha256,
        seal_root_hash: manifest.seal.as_ref().map(|seal| seal.root_hash),
        delta_manifest_digest: None,
    };
    let targets = vec![
        NewTarget {
            name: payload_target,
            length: manifest.payload_size,
            sha256: manifest.payload_sha256,
            custom: info.to_custom(),
        },
        NewTarget {
            name: manifest_target,
            length: manifest_size,
            sha256: manifest_sha256,
            custom: serde_json::Value::Null,
        },
    ];
    let signed = sign_targets(data, &catalog, targets).await;
    if let Err(error) = signed {
        // Devices never saw the release: take the row back so it can be published again.
        if let Err(db_error) = data.db.delete_release(&row.class, &row.version).await {
            tracing::error!(%db_error, "could not remove the release row after signing failed");
        }
        return Err(error);
    }
    // Tailored deltas: each stored, then signed as its own target whose release
    // metadata says which version it applies to.
    for from in &req.delta_from {
        let (delta, pin) = crate::delta::publish_delta(data, from, &row, &req.image).await?;
        let mut delta_info = info.clone();
        delta_info.payload = PayloadKind::Delta { from: from.clone() };
        delta_info.download_size = delta.size;
        // Signed with the release: the device checks the delta's head against it before a
        // byte reaches the slot.
        delta_info.delta_manifest_digest = Some(pin);
        let target = NewTarget {
            name: format!("{}-{}.delta-from-{from}.ferrydelta", req.class, req.version),
            length: delta.size,
            sha256: delta.sha256,
            custom: delta_info.to_custom(),
        };
        sign_targets(data, &catalog, vec![target]).await?;
        tracing::info!(from = %from, to = %row.version, size = delta.size, "delta published");
    }
    // Chunk reuse: the chunk payload and its index, hinted by earlier releases.
    if req.chunks {
        let chunks = crate::chunks::publish_chunks(data, &row, &req.image, req.level).await?;
        let mut chunks_info = info.clone();
        chunks_info.payload = PayloadKind::Chunks;
        chunks_info.download_size = chunks.payload_size;
        let chunks_target = chunks_target_name(&req.class, req.version.as_str());
        let index_target = chunk_index_target_name(&chunks_target).unwrap_or_default();
        let targets = vec![
            NewTarget {
                name: chunks_target,
                length: chunks.payload_size,
                sha256: chunks.payload_sha256,
                custom: chunks_info.to_custom(),
            },
            NewTarget {
                name: index_target,
                length: chunks.index_size,
                sha256: chunks.index_sha256,
                custom: serde_json::Value::Null,
            },
        ];
        sign_targets(data, &catalog, targets).await?;
        tracing::info!(
            version = %row.version,
            size = chunks.payload_size,
            index = chunks.index_size,
            hints = %chunks.hints,
            "chunked payload published"
        );
    }
    Ok(row)
}

/// Fills in the seal root of releases stored before the `releases.seal_root` column existed
/// (migration 0005), from each release's stored manifest, so their builds stay signable. A
/// release whose manifest cannot be read or names no seal keeps no root and is never signed
/// (logged).
pub(crate) async fn fill_missing_seal_roots(data: &DataDir) -> Result<(), ServerError> {
    for row in data.db.releases_without_seal_root().await? {
        let root = match data.store.get_bytes(&row.manifest_key).await {
            Ok(bytes) if Sha256::of(&bytes) == row.manifest_sha256 => Manifest::from_json(&bytes)
                .ok()
                .and_then(|manifest| manifest.seal.map(|seal| seal.root_hash)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, key = %row.manifest_key, "could not read a release's manifest");
                None
            }
        };
        match root {
            Some(root) => {
                data.db
                    .set_seal_root(&row.class, &row.version, &root)
                    .await?
            }
            None => tracing::warn!(
                class = %row.class,
                version = %row.version,
                "the release's manifest names no seal root: the signing service will not sign its build"
            ),
        }
    }
    Ok(())
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
