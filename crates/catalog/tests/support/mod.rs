//! A tiny static file server for the catalog (127.0.0.1, port 0) and a fixture that builds a
//! repository with the public API, the way `ferry server` and `ferry publish` will.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use ferry_catalog::repo::{self, Expiries, RepoSettings};
use ferry_catalog::{NewTarget, PayloadKind, ReleaseInfo};
use ferry_types::{RootHash, Sha256, Version};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tempfile::TempDir;
use url::Url;

/// Serves `dir/metadata` under `/tuf/metadata/` and `dir/targets` under `/tuf/targets/`.
pub struct TestServer {
    pub address: std::net::SocketAddr,
    endless: Arc<Mutex<HashSet<String>>>,
    unavailable: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ServerState {
    root: PathBuf,
    endless: Arc<Mutex<HashSet<String>>>,
    unavailable: Arc<Mutex<HashSet<String>>>,
}

impl TestServer {
    pub async fn start(root: &Path) -> Self {
        let endless = Arc::new(Mutex::new(HashSet::new()));
        let unavailable = Arc::new(Mutex::new(HashSet::new()));
        let state = ServerState {
            root: root.to_owned(),
            endless: endless.clone(),
            unavailable: unavailable.clone(),
        };
        let app = Router::new()
            .route("/tuf/{kind}/{file}", get(serve))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            address,
            endless,
            unavailable,
            task,
        }
    }

    pub fn metadata_url(&self) -> Url {
        Url::parse(&format!("http://{}/tuf/metadata/", self.address)).expect("url")
    }

    pub fn targets_url(&self) -> Url {
        Url::parse(&format!("http://{}/tuf/targets/", self.address)).expect("url")
    }

    /// From now on, `/tuf/metadata/<file>` answers with an endless body.
    pub fn make_endless(&self, file: &str) {
        self.endless.lock().expect("lock").insert(file.to_owned());
    }

    /// From now on, `/tuf/metadata/<file>` answers 503.
    pub fn make_unavailable(&self, file: &str) {
        self.unavailable
            .lock()
            .expect("lock")
            .insert(file.to_owned());
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn serve(
    State(state): State<ServerState>,
    UrlPath((kind, file)): UrlPath<(String, String)>,
) -> Response {
    if kind != "metadata" && kind != "targets" || file.contains("..") || file.contains('/') {
        return StatusCode::NOT_FOUND.into_response();
    }
    if kind == "metadata" && state.unavailable.lock().expect("lock").contains(&file) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if kind == "metadata" && state.endless.lock().expect("lock").contains(&file) {
        let chunk = Bytes::from(vec![b' '; 64 * 1024]);
        let stream =
            futures_util::stream::repeat_with(move || Ok::<Bytes, std::io::Error>(chunk.clone()));
        return Body::from_stream(stream).into_response();
    }
    match tokio::fs::read(state.root.join(&kind).join(&file)).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A catalog on disk, served, and a device datastore.
pub struct Fixture {
    pub dir: TempDir,
    pub server: TestServer,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_settings(RepoSettings::default()).await
    }

    pub async fn with_settings(settings: RepoSettings) -> Self {
        let dir = TempDir::new().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("server/targets")).expect("mkdir");
        repo::init(
            &dir.path().join("keys"),
            &dir.path().join("online-keys"),
            &dir.path().join("server/metadata"),
            &settings,
        )
        .await
        .expect("init");
        let server = TestServer::start(&dir.path().join("server")).await;
        Self { dir, server }
    }

    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }
    pub fn online_keys(&self) -> PathBuf {
        self.dir.path().join("online-keys")
    }
    pub fn metadata(&self) -> PathBuf {
        self.dir.path().join("server/metadata")
    }
    pub fn targets(&self) -> PathBuf {
        self.dir.path().join("server/targets")
    }
    pub fn datastore(&self) -> PathBuf {
        self.dir.path().join("device/catalog")
    }
    pub fn pinned_root(&self) -> Vec<u8> {
        std::fs::read(self.metadata().join("1.root.json")).expect("root")
    }

    /// Publishes targets: the file goes where the server serves it, the entry into the catalog.
    pub async fn publish(&self, files: &[(&str, Vec<u8>, serde_json::Value)]) {
        self.publish_with(files, &Expiries::default()).await;
    }

    pub async fn publish_with(
        &self,
        files: &[(&str, Vec<u8>, serde_json::Value)],
        expiries: &Expiries,
    ) {
        let mut new_targets = Vec::new();
        for (name, bytes, custom) in files {
            let sha256 = Sha256::of(bytes);
            std::fs::write(
                self.targets().join(repo::target_file_name(name, &sha256)),
                bytes,
            )
            .expect("write target");
            new_targets.push(NewTarget {
                name: (*name).to_owned(),
                length: bytes.len() as u64,
                sha256,
                custom: custom.clone(),
            });
        }
        self.sign_targets(&self.keys(), &self.metadata(), new_targets, expiries)
            .await
            .expect("add targets");
    }

    /// Signs `targets` into the repository at `metadata` with the offline keys in `keys` and
    /// this fixture's online keys (an attacker's stolen copy as well as the real one).
    pub async fn sign_targets(
        &self,
        keys: &Path,
        metadata: &Path,
        targets: Vec<NewTarget>,
        expiries: &Expiries,
    ) -> Result<repo::RepoVersions, ferry_catalog::CatalogError> {
        repo::add_targets(keys, &self.online_keys(), metadata, targets, expiries).await
    }

    /// Retires the targets key for a new one (a new root lists it).
    pub async fn rotate_targets_key(&self) {
        repo::rotate_targets_key(
            &self.keys(),
            &self.online_keys(),
            &self.metadata(),
            &Expiries::default(),
        )
        .await
        .expect("rotate targets key");
    }

    pub async fn refresh(&self) -> Result<ferry_catalog::Catalog, ferry_catalog::CatalogError> {
        self.refresh_into(&self.datastore(), &ferry_catalog::RefreshOptions::default())
            .await
    }

    /// A refresh of a device whose datastore is `datastore`, from the pinned root 1.
    pub async fn refresh_into(
        &self,
        datastore: &Path,
        options: &ferry_catalog::RefreshOptions,
    ) -> Result<ferry_catalog::Catalog, ferry_catalog::CatalogError> {
        ferry_catalog::Catalog::refresh_with(
            datastore,
            &self.pinned_root(),
            &self.server.metadata_url(),
            &self.server.targets_url(),
            options,
        )
        .await
    }

    /// `signed.version` of a role in the device's trusted metadata.
    pub fn trusted_version(&self, file: &str) -> u64 {
        let dir = ferry_catalog::trusted_metadata_dir(&self.datastore()).expect("trusted metadata");
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(file)).expect("read")).expect("json");
        value["signed"]["version"].as_u64().expect("version")
    }
}

pub fn release(
    class: &str,
    version: &str,
    audiences: &[&str],
    from: Option<&str>,
    payload: &[u8],
) -> serde_json::Value {
    ReleaseInfo {
        device_class: class.into(),
        version: Version::parse(version).expect("version"),
        build_id: format!("B{version}"),
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        component: "system".into(),
        payload: from.map_or(PayloadKind::Full, |from| PayloadKind::Delta {
            from: Version::parse(from).expect("version"),
        }),
        download_size: payload.len() as u64,
        unarchived_size: payload.len() as u64 * 3,
        image_sha256: Sha256::of(version.as_bytes()),
        seal_root_hash: Some(RootHash(Sha256::of(b"seal").0)),
        delta_manifest_digest: None,
    }
    .to_custom()
}

/// A gateway catalog: 1.9 and 1.10 for everyone (with a 1.9→1.10 delta), 1.11 for beta only.
pub async fn publish_gateway_releases(fixture: &Fixture) {
    fixture
        .publish(&[
            (
                "gw-1.9.full",
                b"full image 1.9".to_vec(),
                release("gw", "1.9", &["customer", "beta"], None, b"full image 1.9"),
            ),
            (
                "gw-1.10.full",
                b"full image 1.10".to_vec(),
                release(
                    "gw",
                    "1.10",
                    &["customer", "beta"],
                    None,
                    b"full image 1.10",
                ),
            ),
            (
                "gw-1.9-1.10.delta",
                b"delta 1.9 to 1.10".to_vec(),
                release(
                    "gw",
                    "1.10",
                    &["customer", "beta"],
                    Some("1.9"),
                    b"delta 1.9 to 1.10",
                ),
            ),
            (
                "gw-1.11.full",
                b"full image 1.11 beta".to_vec(),
                release("gw", "1.11", &["beta"], None, b"full image 1.11 beta"),
            ),
            (
                "gw-1.10.manifest",
                br#"{"chunks":3}"#.to_vec(),
                serde_json::json!({}),
            ),
        ])
        .await;
}

/// Signs `role` with the key in `key_file` as the repository editor does.
async fn editor_sign<T: tough::schema::Role + serde::Serialize>(
    role: T,
    holder: &tough::schema::KeyHolder,
    key_file: PathBuf,
) -> tough::editor::signed::SignedRole<T> {
    let keys: Vec<Box<dyn tough::key_source::KeySource>> =
        vec![Box::new(tough::key_source::LocalKeySource {
            path: key_file,
        })];
    tough::editor::signed::SignedRole::new(
        role,
        holder,
        &keys,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .await
    .expect("sign")
}

fn editor_metafile<T: tough::schema::Role + serde::Serialize>(
    role: &tough::editor::signed::SignedRole<T>,
) -> tough::schema::Metafile {
    tough::schema::Metafile {
        length: Some(*role.length()),
        hashes: Some(tough::schema::Hashes {
            sha256: role.sha256().to_vec().into(),
            _extra: std::collections::HashMap::new(),
        }),
        version: role.signed().signed.version(),
        _extra: std::collections::HashMap::new(),
    }
}

fn read_signed<T: serde::de::DeserializeOwned>(path: &Path) -> tough::schema::Signed<T> {
    serde_json::from_slice(&std::fs::read(path).expect("read metadata")).expect("parse metadata")
}

impl Fixture {
    fn latest_root(&self) -> tough::schema::Signed<tough::schema::Root> {
        read_signed(&repo::latest_root_path(&self.metadata()).expect("root"))
    }

    fn current_timestamp(&self) -> tough::schema::Signed<tough::schema::Timestamp> {
        read_signed(&self.metadata().join("timestamp.json"))
    }

    /// Re-signs the current timestamp under its own version after `edit` (a repository that
    /// changes a published timestamp without bumping it).
    pub async fn resign_timestamp_same_version(
        &self,
        edit: impl FnOnce(&mut tough::schema::Timestamp),
    ) {
        let mut timestamp = self.current_timestamp().signed;
        edit(&mut timestamp);
        let holder = tough::schema::KeyHolder::Root(self.latest_root().signed);
        let signed =
            editor_sign(timestamp, &holder, self.online_keys().join("timestamp.pk8")).await;
        std::fs::write(self.metadata().join("timestamp.json"), signed.buffer()).expect("write");
    }

    /// Edits the targets role `role` (`targets` or a hashed bin) with the repository editor and
    /// publishes it as the next version, with a new snapshot and timestamp.
    pub async fn resign_targets_role(
        &self,
        role: &str,
        edit: impl FnOnce(&mut tough::schema::Targets),
    ) {
        let root = self.latest_root().signed;
        let mut timestamp = self.current_timestamp().signed;
        let snapshot_version = timestamp.meta["snapshot.json"].version;
        let mut snapshot: tough::schema::Snapshot = read_signed(
            &self
                .metadata()
                .join(format!("{snapshot_version}.snapshot.json")),
        )
        .signed;
        let role_version = snapshot.meta[&format!("{role}.json")].version;
        let mut targets: tough::schema::Targets =
            read_signed(&self.metadata().join(format!("{role_version}.{role}.json"))).signed;
        edit(&mut targets);
        targets.version = role_version.checked_add(1).expect("version");
        let targets_key = self.keys().join("targets.pk8");
        let (bytes, meta) = if role == "targets" {
            let holder = tough::schema::KeyHolder::Root(root.clone());
            let signed = editor_sign(targets, &holder, targets_key).await;
            (signed.buffer().clone(), editor_metafile(&signed))
        } else {
            let top_version = snapshot.meta["targets.json"].version;
            let top: tough::schema::Targets =
                read_signed(&self.metadata().join(format!("{top_version}.targets.json"))).signed;
            let holder =
                tough::schema::KeyHolder::Delegations(top.delegations.expect("delegations"));
            let bin = tough::schema::DelegatedTargets {
                name: role.to_owned(),
                targets,
            };
            let signed = editor_sign(bin, &holder, targets_key).await;
            (signed.buffer().clone(), editor_metafile(&signed))
        };
        std::fs::write(
            self.metadata()
                .join(format!("{}.{role}.json", meta.version)),
            bytes,
        )
        .expect("write role");
        snapshot.meta.insert(format!("{role}.json"), meta);
        snapshot.version = snapshot_version.checked_add(1).expect("version");
        let holder = tough::schema::KeyHolder::Root(root);
        let signed_snapshot =
            editor_sign(snapshot, &holder, self.online_keys().join("snapshot.pk8")).await;
        std::fs::write(
            self.metadata().join(format!(
                "{}.snapshot.json",
                signed_snapshot.signed().signed.version
            )),
            signed_snapshot.buffer(),
        )
        .expect("write snapshot");
        timestamp
            .meta
            .insert("snapshot.json".into(), editor_metafile(&signed_snapshot));
        timestamp.version = timestamp.version.checked_add(1).expect("version");
        let signed =
            editor_sign(timestamp, &holder, self.online_keys().join("timestamp.pk8")).await;
        std::fs::write(self.metadata().join("timestamp.json"), signed.buffer()).expect("write");
    }
}
