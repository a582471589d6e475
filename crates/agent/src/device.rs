//! The device directory of DESIGN §2: identity, config, slots, boot state, receipts.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ferry_boot::{BootBackend, BootControl, BootState, Slot};
use ferry_types::{DeviceClass, DeviceId, Identity, Sha256, Sha256Hasher, Version};
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::durable;

/// `identity.json`: who the device is.
pub const IDENTITY_FILE: &str = "identity.json";
/// `config.toml`: where it updates from and how.
pub const CONFIG_FILE: &str = "config.toml";
/// Slot images and their metadata (`a.img`, `a.json`, …).
pub const SLOTS_DIR: &str = "slots";
/// Boot-control state (file backend), tickets, nonces.
pub const BOOT_DIR: &str = "boot";
/// Downloads and install progress (purgeable).
pub const CACHE_DIR: &str = "cache";
/// One receipt per installed image.
pub const RECEIPTS_DIR: &str = "receipts";
/// State machine journal.
pub const JOURNAL_DIR: &str = "journal";
/// Event reports not yet delivered.
pub const EVENTS_DIR: &str = "events";

/// `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Base URL of the update server.
    pub server: String,
    /// Audience: customer, beta, …
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Minimum seconds between background scans.
    #[serde(default = "default_check_interval")]
    pub check_interval_secs: u64,
    /// Tries a newly installed slot gets before it is abandoned.
    #[serde(default = "default_tries")]
    pub boot_tries: u8,
    /// Slot paths and capacity.
    pub slots: SlotsConfig,
    /// Boot-control backend.
    #[serde(default)]
    pub boot: BootBackend,
    /// Health checks run at boot before a new slot is committed (`sh -c` each).
    #[serde(default)]
    pub health_checks: Vec<String>,
    /// The CA pin (PEM, relative to the device directory): the only CA the HTTP client
    /// trusts.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Seconds added to the system clock for personalization (`FERRY_CLOCK_OFFSET`
    /// overrides it), to stage or reproduce clock skew.
    #[serde(default)]
    pub clock_offset_secs: i64,
    /// Seconds a download may wait for a byte before it counts as stalled.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// A LAN content cache (`ferry cache`) to fetch payload bytes from first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
}

fn default_read_timeout() -> u64 {
    crate::client::DEFAULT_READ_TIMEOUT.as_secs()
}

impl Device {
    /// An HTTP client for the device's server, with its configured timeouts, its cache,
    /// and only its pinned CA trusted.
    pub fn client(&self) -> Result<crate::client::Client, AgentError> {
        crate::client::Client::for_device(self)
    }
}

/// Where the slots are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotsConfig {
    /// Slot A path (relative to the device directory, or absolute: a block device).
    pub a: PathBuf,
    /// Slot B path.
    pub b: PathBuf,
    /// Capacity of each slot in bytes.
    pub capacity: u64,
}

fn default_audience() -> String {
    "customer".into()
}
fn default_check_interval() -> u64 {
    6 * 3600
}
fn default_tries() -> u8 {
    ferry_boot::DEFAULT_BOOT_TRIES
}

/// What a slot holds: written once its image is complete and verified.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotInfo {
    /// Version of the image.
    pub version: Version,
    /// Build id.
    pub build_id: String,
    /// Image length in the slot.
    pub image_size: u64,
    /// SHA-256 of the image.
    pub image_sha256: Sha256,
    /// When it was written.
    pub installed_at: DateTime<Utc>,
    /// The receipt file for this install.
    pub receipt: String,
    /// Its dm-verity seal.
    #[serde(default)]
    pub seal: Option<crate::seal::SlotSeal>,
}

/// One receipt per installed image (`receipts/`): what, when, from which payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    /// Component (the system image).
    pub component: String,
    /// Version installed.
    pub version: Version,
    /// Build id.
    pub build_id: String,
    /// Slot it went into.
    pub slot: Slot,
    /// Image digest.
    pub image_sha256: Sha256,
    /// Image size.
    pub image_size: u64,
    /// Payload kind: `full`, `delta` or `chunks`.
    pub payload_kind: String,
    /// Payload digest.
    pub payload_sha256: Sha256,
    /// Payload size.
    pub payload_size: u64,
    /// Bytes fetched over the network for this install (resumes count once).
    pub bytes_downloaded: u64,
    /// Bytes of the running slot reused (a delta's copies, chunk reuse's extents).
    #[serde(default)]
    pub bytes_reused: u64,
    /// Why a tailored delta or chunk reuse was abandoned, if it was.
    #[serde(default)]
    pub fallback: Option<ferry_types::Report>,
    /// Which payload was abandoned (`delta` or `chunks`).
    #[serde(default)]
    pub fallback_from: Option<String>,
    /// When the install finished.
    pub installed_at: DateTime<Utc>,
    /// Version it updated from.
    pub from_version: Option<Version>,
    /// Update UUID.
    pub update_id: Option<uuid::Uuid>,
}

impl Receipt {
    /// The file name [`Device::write_receipt`] gives it.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}.json",
            self.installed_at.format("%Y%m%dT%H%M%S%.6fZ"),
            self.version
        )
    }
}

/// An open device directory. Holding it holds the device lock.
#[derive(Debug)]
pub struct Device {
    /// The directory.
    pub dir: PathBuf,
    /// Its identity.
    pub identity: Identity,
    /// Its config.
    pub config: Config,
    _lock: File,
}

impl Device {
    /// Opens a device directory, taking its lock (one ferry process at a time).
    pub fn open(dir: &Path) -> Result<Device, AgentError> {
        if !dir.join(IDENTITY_FILE).is_file() {
            return Err(AgentError::DeviceMissing {
                dir: dir.to_owned(),
            });
        }
        let lock = lock(dir)?;
        let identity: Identity = read_json(&dir.join(IDENTITY_FILE))?;
        let config_path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&config_path)
            .map_err(AgentError::io("reading config.toml", &config_path))?;
        let config: Config = toml::from_str(&text).map_err(|e| AgentError::DeviceCorrupt {
            path: config_path,
            reason: e.to_string(),
        })?;
        for sub in [CACHE_DIR, RECEIPTS_DIR, EVENTS_DIR, JOURNAL_DIR] {
            fs::create_dir_all(dir.join(sub))
                .map_err(AgentError::io("creating a device directory", dir.join(sub)))?;
        }
        Ok(Device {
            dir: dir.to_owned(),
            identity,
            config,
            _lock: lock,
        })
    }

    /// Moves the device to `audience` (`customer`, `beta`, or a programme's name) durably:
    /// the next scan offers what is open to it.
    pub fn set_audience(&mut self, audience: &str) -> Result<(), AgentError> {
        let valid = !audience.is_empty()
            && audience.len() <= 64
            && audience
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !valid {
            return Err(AgentError::AudienceInvalid {
                audience: audience.to_owned(),
            });
        }
        let mut config = self.config.clone();
        config.audience = audience.to_owned();
        write_config(&self.dir.join(CONFIG_FILE), &config)?;
        self.config = config;
        Ok(())
    }

    /// Path of a slot's image (block device or file).
    pub fn slot_path(&self, slot: Slot) -> PathBuf {
        let p = match slot {
            Slot::A => &self.config.slots.a,
            Slot::B => &self.config.slots.b,
        };
        if p.is_absolute() {
            p.clone()
        } else {
            self.dir.join(p)
        }
    }

    fn slot_info_path(&self, slot: Slot) -> PathBuf {
        self.dir.join(SLOTS_DIR).join(format!("{slot}.json"))
    }

    /// What `slot` holds, if it holds a complete image.
    pub fn slot_info(&self, slot: Slot) -> Result<Option<SlotInfo>, AgentError> {
        let path = self.slot_info_path(slot);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Records what `slot` holds (`None`: nothing usable).
    pub fn set_slot_info(&self, slot: Slot, info: Option<&SlotInfo>) -> Result<(), AgentError> {
        let path = self.slot_info_path(slot);
        match info {
            Some(info) => durable::write_json(&path, info)
                .map_err(AgentError::io("writing slot metadata", &path)),
            None => durable::remove(&path).map_err(AgentError::io("removing slot metadata", &path)),
        }
    }

    /// The boot-control backend from config.
    pub fn boot_control(&self) -> Box<dyn BootControl> {
        ferry_boot::open(&self.config.boot, &self.dir.join(BOOT_DIR))
    }

    /// Current boot state.
    pub fn boot_state(&self) -> Result<BootState, AgentError> {
        Ok(self.boot_control().load()?)
    }

    /// The slot the device runs from (the committed primary).
    pub fn running_slot(&self) -> Result<Slot, AgentError> {
        Ok(self.boot_state()?.primary())
    }

    /// The version the device runs.
    pub fn running_version(&self) -> Result<Version, AgentError> {
        let slot = self.running_slot()?;
        let info = self
            .slot_info(slot)?
            .ok_or_else(|| AgentError::DeviceCorrupt {
                path: self.slot_info_path(slot),
                reason: "the running slot has no metadata".into(),
            })?;
        Ok(info.version)
    }

    /// Writes a receipt and returns its file name.
    pub fn write_receipt(&self, receipt: &Receipt) -> Result<String, AgentError> {
        let name = format!(
            "{}-{}.json",
            receipt.installed_at.format("%Y%m%dT%H%M%S%.6fZ"),
            receipt.version
        );
        let path = self.dir.join(RECEIPTS_DIR).join(&name);
        durable::write_json(&path, receipt).map_err(AgentError::io("writing a receipt", &path))?;
        Ok(name)
    }

    /// All receipts, oldest first.
    pub fn receipts(&self) -> Result<Vec<Receipt>, AgentError> {
        let dir = self.dir.join(RECEIPTS_DIR);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(AgentError::io("listing receipts", &dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        names.iter().map(|n| read_json(&dir.join(n))).collect()
    }
}

/// What `device init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Device class.
    pub class: String,
    /// Image for slot A.
    pub image: PathBuf,
    /// Its version.
    pub version: Version,
    /// Update server URL.
    pub server: String,
    /// Audience.
    pub audience: String,
    /// Slot capacity; default: twice the image, at least 64 MiB.
    pub slot_size: Option<u64>,
    /// Boot backend.
    pub boot: BootBackend,
    /// Health checks run at boot before a new slot is committed.
    pub health_checks: Vec<String>,
    /// The catalog's root metadata to pin (`tuf/root.json`): the device trusts only the
    /// catalog this root signs for.
    pub root: Vec<u8>,
    /// The server's CA certificate (PEM file) to pin, copied into `trust/ca.pem`.
    pub ca: Option<PathBuf>,
}

/// Makes a simulated device: identity, config, slots A (with the image) and B (empty),
/// boot state (A good and primary), and a receipt for the installed image.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<Identity, AgentError> {
    if dir.exists()
        && fs::read_dir(dir)
            .map_err(AgentError::io("reading", dir))?
            .next()
            .is_some()
    {
        return Err(AgentError::DeviceExists {
            dir: dir.to_owned(),
        });
    }
    let device_class: DeviceClass = opts.class.parse()?;
    let image_len = fs::metadata(&opts.image)
        .map_err(AgentError::io("reading the image", &opts.image))?
        .len();
    let capacity = opts
        .slot_size
        .unwrap_or_else(|| (image_len * 2).max(64 << 20).div_ceil(1 << 20) << 20);
    if image_len > capacity {
        return Err(AgentError::SlotTooSmall {
            slot: "a".into(),
            needed: image_len,
            capacity,
        });
    }
    for sub in [
        SLOTS_DIR,
        BOOT_DIR,
        CACHE_DIR,
        RECEIPTS_DIR,
        JOURNAL_DIR,
        EVENTS_DIR,
    ] {
        fs::create_dir_all(dir.join(sub)).map_err(AgentError::io(
            "creating the device directory",
            dir.join(sub),
        ))?;
    }
    let identity = Identity {
        device_id: DeviceId::random(),
        board_id: u32::from(rand::random::<u16>() | 1),
        chip_id: u32::from(0x8000 | rand::random::<u16>()),
        hardware_uuid: uuid::Uuid::new_v4(),
        device_class,
    };
    let config = Config {
        server: opts.server.trim_end_matches('/').to_owned(),
        audience: opts.audience.clone(),
        check_interval_secs: default_check_interval(),
        boot_tries: default_tries(),
        slots: SlotsConfig {
            a: "slots/a.img".into(),
            b: "slots/b.img".into(),
            capacity,
        },
        boot: opts.boot.clone(),
        health_checks: opts.health_checks.clone(),
        ca: opts.ca.as_ref().map(|_| {
            PathBuf::from(crate::personalize::TRUST_DIR).join(crate::personalize::CA_FILE)
        }),
        clock_offset_secs: 0,
        read_timeout_secs: default_read_timeout(),
        cache: None,
    };
    if let Some(ca) = &opts.ca {
        let pem = fs::read(ca).map_err(AgentError::io("reading the CA to pin", ca))?;
        let trust = dir.join(crate::personalize::TRUST_DIR);
        fs::create_dir_all(&trust).map_err(AgentError::io("creating trust/", &trust))?;
        let pinned = trust.join(crate::personalize::CA_FILE);
        durable::write_atomic(&pinned, &pem).map_err(AgentError::io("pinning the CA", &pinned))?;
    }
    let a = dir.join(SLOTS_DIR).join("a.img");
    let b = dir.join(SLOTS_DIR).join("b.img");
    let image_sha256 = copy_and_hash(&opts.image, &a)?;
    File::create(&b)
        .and_then(|f| f.set_len(capacity))
        .map_err(AgentError::io("creating slot b", &b))?;
    OpenOptions::new()
        .write(true)
        .open(&a)
        .and_then(|f| {
            f.set_len(capacity)?;
            f.sync_all()
        })
        .map_err(AgentError::io("sizing slot a", &a))?;

    let id_path = dir.join(IDENTITY_FILE);
    durable::write_json(&id_path, &identity)
        .map_err(AgentError::io("writing the identity", &id_path))?;
    crate::catalog::pin_root(dir, &opts.root)?;
    write_config(&dir.join(CONFIG_FILE), &config)?;
    let device = Device::open(dir)?;
    prepare_boot_backend(&device)?;
    device.boot_control().store(&BootState::new(Slot::A))?;
    let seal = crate::seal::seal_existing(&a, image_len, &dir.join(SLOTS_DIR).join("a.verity"))?;
    let seal = crate::seal::SlotSeal {
        tree: PathBuf::from(SLOTS_DIR).join("a.verity"),
        ..seal
    };
    let now = Utc::now();
    let build_id = format!("{}-{}", opts.version, &image_sha256.to_hex()[..8]);
    let receipt = Receipt {
        component: "system".into(),
        version: opts.version.clone(),
        build_id: build_id.clone(),
        slot: Slot::A,
        image_sha256,
        image_size: image_len,
        payload_kind: "factory".into(),
        payload_sha256: image_sha256,
        payload_size: image_len,
        bytes_downloaded: 0,
        bytes_reused: 0,
        fallback: None,
        fallback_from: None,
        installed_at: now,
        from_version: None,
        update_id: None,
    };
    let receipt_name = device.write_receipt(&receipt)?;
    device.set_slot_info(
        Slot::A,
        Some(&SlotInfo {
            version: opts.version.clone(),
            build_id,
            image_size: image_len,
            image_sha256,
            installed_at: now,
            receipt: receipt_name,
            seal: Some(seal),
        }),
    )?;
    Ok(identity)
}

/// Gives a bootloader environment its first content: a U-Boot environment must exist
/// (with two copies) before boot state can be stored in it.
fn prepare_boot_backend(device: &Device) -> Result<(), AgentError> {
    if let BootBackend::Uboot { config } = &device.config.boot {
        let boot_dir = device.dir.join(BOOT_DIR);
        let config_path = if config.is_absolute() {
            config.clone()
        } else {
            boot_dir.join(config)
        };
        if !config_path.exists() {
            let env = boot_dir.join("uboot.env");
            let text = format!(
                "# ferry: redundant U-Boot environment (fw_env.config format)\n{} 0x0000 0x4000\n{} 0x4000 0x4000\n",
                env.display(),
                env.display()
            );
            durable::write_atomic(&config_path, text.as_bytes())
                .map_err(AgentError::io("writing fw_env.config", &config_path))?;
            File::create(&env)
                .and_then(|f| f.set_len(0x8000))
                .map_err(AgentError::io("creating the U-Boot environment", &env))?;
            let uboot_config = ferry_boot::uboot::UbootEnvConfig::read(&config_path)?;
            let mut vars = ferry_boot::vars::EnvMap::new();
            vars.insert("bootcmd".into(), "run ferry_boot".into());
            ferry_boot::uboot::write_env(&uboot_config, &vars)?;
        }
    }
    Ok(())
}

fn write_config(path: &Path, config: &Config) -> Result<(), AgentError> {
    let text = toml::to_string_pretty(config).map_err(|e| AgentError::DeviceCorrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    durable::write_atomic(path, text.as_bytes())
        .map_err(AgentError::io("writing config.toml", path))
}

/// SHA-256 of the first `len` bytes of `path` (a slot), read in 1 MiB blocks.
pub fn hash_prefix(path: &Path, len: u64) -> Result<Sha256, AgentError> {
    let f = File::open(path).map_err(AgentError::io("opening a slot", path))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f).take(len);
    let mut h = Sha256Hasher::new();
    let n = std::io::copy(&mut r, &mut h).map_err(AgentError::io("reading a slot", path))?;
    if n != len {
        return Err(AgentError::DeviceCorrupt {
            path: path.to_owned(),
            reason: format!("slot holds {n} bytes, {len} expected"),
        });
    }
    Ok(h.finish())
}

fn copy_and_hash(from: &Path, to: &Path) -> Result<Sha256, AgentError> {
    let mut src = File::open(from).map_err(AgentError::io("opening the image", from))?;
    let mut dst = File::create(to).map_err(AgentError::io("creating slot a", to))?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(AgentError::io("reading the image", from))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        std::io::Write::write_all(&mut dst, &buf[..n])
            .map_err(AgentError::io("writing slot a", to))?;
    }
    dst.sync_all()
        .map_err(AgentError::io("syncing slot a", to))?;
    Ok(h.finish())
}

/// Reads a JSON device file; a parse failure is [`AgentError::DeviceCorrupt`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AgentError> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AgentError::DeviceCorrupt {
            path: path.to_owned(),
            reason: "it is missing".into(),
        },
        _ => AgentError::Io {
            op: "reading a device file",
            path: path.to_owned(),
            source: e,
        },
    })?;
    serde_json::from_slice(&bytes).map_err(|e| AgentError::DeviceCorrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn lock(dir: &Path) -> Result<File, AgentError> {
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(AgentError::io("opening the device lock", &path))?;
    // SAFETY: flock on a valid, owned descriptor; no memory is shared.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(AgentError::DeviceBusy {
            dir: dir.to_owned(),
        });
    }
    Ok(f)
}
