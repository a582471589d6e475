//! An open device directory (DESIGN §2; every path in [`crate::layout`]): its identity,
//! config, what each slot holds, boot control, receipts, and the lock that keeps one
//! ferry process per device. Making a device is [`crate::provision`].

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_boot::{BootBackend, BootControl, BootState, Slot};
use ferry_events::{Outbox, OutboxLimits};
use ferry_seal::Salt;
use ferry_types::{Identity, RootHash, Sha256, Sha256Hasher, Version};
use serde::{Deserialize, Serialize};

use crate::AgentError;

use crate::layout::{self, Layout};

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
    /// How long after a commit the daemon keeps running `health_checks` (`"10m"`; unset: no
    /// watch): a failure inside it is reported as `health_failed` and counts against the
    /// release's rollout ([`crate::boot::watch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_commit_watch: Option<Span>,
    /// How often the checks run during the watch (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_commit_check_every: Option<Span>,
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
    /// The slowest average rate, in bytes per second, a payload, delta or range stream may
    /// run at: each stream gets `read_timeout_secs` plus its size at this rate as its overall
    /// deadline, so a link or LAN cache that trickles bytes cannot hold an install forever
    /// (the install resumes on the next run).
    #[serde(default = "default_stream_min_rate")]
    pub stream_min_rate: u64,
    /// How many times in a row a full-payload download that stalled past the read timeout
    /// or was cut is asked for again in the same run (from the byte it reached, after a
    /// back-off of 1, 2, 4… s), before the run ends and the next one resumes it; 0: never.
    #[serde(default = "default_download_retries")]
    pub download_retries: u32,
    /// A LAN content cache (`ferry cache`) to fetch payload bytes from first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What the device may do on its own, and the preconditions of a download and an
    /// install (`[policy]`, [`crate::policy`]).
    #[serde(default)]
    pub policy: crate::policy::Policy,
    /// Most event reports the outbox holds before it drops progress, then step reports
    /// (terminal ones never); default 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_max_reports: Option<usize>,
}

/// How long a download may wait for a byte, unless `config.toml` says otherwise.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn default_read_timeout() -> u64 {
    DEFAULT_READ_TIMEOUT.as_secs()
}

/// The slowest average stream rate accepted unless `config.toml` says otherwise: 32 KiB/s.
pub const DEFAULT_STREAM_MIN_RATE: u64 = 32 << 10;

pub(crate) fn default_stream_min_rate() -> u64 {
    DEFAULT_STREAM_MIN_RATE
}

/// Retries in a row of a cut download in one run unless `config.toml` says otherwise.
pub const DEFAULT_DOWNLOAD_RETRIES: u32 = 5;

pub(crate) fn default_download_retries() -> u32 {
    DEFAULT_DOWNLOAD_RETRIES
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
pub(crate) fn default_check_interval() -> u64 {
    6 * 3600
}
pub(crate) fn default_tries() -> u8 {
    ferry_boot::DEFAULT_BOOT_TRIES
}

/// A length of time in `config.toml`: `"90s"`, `"10m"`, `"2h"`, `"1d"`, or bare seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a length of time such as 30s, 10m, 2h or 1d"))?;
        let scale = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => return Err(format!("`{other}` is not a unit of time (s, m, h or d)")),
        };
        n.checked_mul(scale)
            .map(|secs| Span(Duration::from_secs(secs)))
            .ok_or_else(|| format!("`{text}` is too long"))
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", self.0.as_secs()))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(secs) => Ok(Span(Duration::from_secs(secs))),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
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
    pub seal: Option<SlotSeal>,
}

/// A slot's seal as the device records it (in `slots/<slot>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotSeal {
    /// Root hash of the slot's dm-verity tree.
    pub root_hash: RootHash,
    /// Salt of the tree.
    pub salt: Salt,
    /// Where the tree is (relative to the device directory, or absolute).
    pub tree: PathBuf,
    /// Offset of the tree in that file (veritysetup's `--hash-offset`).
    pub hash_offset: u64,
}

/// What wrote a slot (`factory`, `full`, `delta`, `chunks`): one type across ferry.
pub use ferry_types::PayloadKind;

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
    /// What wrote the slot.
    pub payload_kind: PayloadKind,
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
    pub fallback_from: Option<PayloadKind>,
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
        layout::receipt_name(self.installed_at, &self.version)
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
    /// The outbox of event reports (`events/`), shared by everything in this process
    /// that queues or delivers reports.
    pub outbox: Arc<Mutex<Outbox>>,
    _lock: File,
}

impl Device {
    /// Opens a device directory, taking its lock (one ferry process at a time).
    pub fn open(dir: &Path) -> Result<Device, AgentError> {
        let layout = Layout::new(dir);
        if !layout.identity().is_file() {
            return Err(AgentError::DeviceMissing {
                dir: dir.to_owned(),
            });
        }
        let lock = lock(&layout)?;
        let identity = read_identity(&layout.identity())?;
        let config = read_config(&layout.config())?;
        for sub in layout::DIRS {
            let path = layout.resolve(Path::new(sub));
            fs::create_dir_all(&path)
                .map_err(AgentError::io("creating a device directory", path))?;
        }
        let mut limits = OutboxLimits::default();
        if let Some(max) = config.outbox_max_reports {
            limits.max_reports = max.max(1);
        }
        let outbox = Outbox::open(&layout.events_dir(), limits)?;
        if outbox.state_recovered() {
            tracing::warn!(
                dir = %layout.events_dir().display(),
                "the event outbox's state was unreadable: sequence numbers continue from the clock"
            );
        }
        Ok(Device {
            dir: dir.to_owned(),
            identity,
            config,
            outbox: Arc::new(Mutex::new(outbox)),
            _lock: lock,
        })
    }

    /// This device with `config.toml` read again (the daemon's reload), holding the same
    /// lock through a duplicate of its descriptor; `self` is unchanged, so a file that does
    /// not parse leaves the running config as it was.
    pub fn reloaded(&self) -> Result<Device, AgentError> {
        let config = read_config(&self.layout().config())?;
        let lock = self._lock.try_clone().map_err(AgentError::io(
            "sharing the device lock",
            self.layout().lock(),
        ))?;
        Ok(Device {
            dir: self.dir.clone(),
            identity: self.identity.clone(),
            config,
            outbox: self.outbox.clone(),
            _lock: lock,
        })
    }

    /// Moves the device to `audience` (`customer`, `beta`, or a programme's name) durably:
    /// the next scan offers what is open to it.
    pub fn set_audience(&mut self, audience: &str) -> Result<(), AgentError> {
        if !valid_audience(audience) {
            return Err(AgentError::AudienceInvalid {
                audience: audience.to_owned(),
            });
        }
        let mut config = self.config.clone();
        config.audience = audience.to_owned();
        write_config(&self.layout().config(), &config)?;
        self.config = config;
        Ok(())
    }

    /// The device's power, network and space now ([`crate::facts`]): from Linux, or from
    /// `facts.toml` on a simulated device.
    pub fn facts(&self) -> Result<crate::facts::Facts, AgentError> {
        Ok(crate::facts::read(
            &self.dir,
            &self.slot_path(Slot::A),
            &self.layout().simulated_facts(),
        )?)
    }

    /// The outbox, locked (a poisoned lock is taken over: the outbox's files are the
    /// truth, not the memory of a thread that panicked).
    pub fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The paths of the device directory.
    pub fn layout(&self) -> Layout<'_> {
        Layout::new(&self.dir)
    }

    /// Path of a slot's image (block device or file).
    pub fn slot_path(&self, slot: Slot) -> PathBuf {
        let p = match slot {
            Slot::A => &self.config.slots.a,
            Slot::B => &self.config.slots.b,
        };
        self.layout().resolve(p)
    }

    /// What `slot` holds, if it holds a complete image.
    pub fn slot_info(&self, slot: Slot) -> Result<Option<SlotInfo>, AgentError> {
        let path = self.layout().slot_info(slot);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Records what `slot` holds (`None`: nothing usable).
    pub fn set_slot_info(&self, slot: Slot, info: Option<&SlotInfo>) -> Result<(), AgentError> {
        let path = self.layout().slot_info(slot);
        match info {
            Some(info) => ferry_durable::write_json(&path, info)
                .map_err(AgentError::io("writing slot metadata", &path)),
            None => ferry_durable::remove(&path)
                .map_err(AgentError::io("removing slot metadata", &path)),
        }
    }

    /// The boot-control backend from config.
    pub fn boot_control(&self) -> Box<dyn BootControl> {
        ferry_boot::open(&self.config.boot, &self.layout().boot_dir())
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
                path: self.layout().slot_info(slot),
                reason: "the running slot has no metadata".into(),
            })?;
        Ok(info.version)
    }

    /// Writes a receipt and returns its file name.
    pub fn write_receipt(&self, receipt: &Receipt) -> Result<String, AgentError> {
        let name = receipt.file_name();
        let path = self.layout().receipt(&name);
        ferry_durable::write_json(&path, receipt)
            .map_err(AgentError::io("writing a receipt", &path))?;
        Ok(name)
    }

    /// All receipts, oldest first.
    pub fn receipts(&self) -> Result<Vec<Receipt>, AgentError> {
        let dir = self.layout().receipts_dir();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(AgentError::io("listing receipts", &dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| layout::is_receipt_name(n))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| read_json(&self.layout().receipt(n)))
            .collect()
    }
}

/// Whether `audience` is a valid audience name: `customer`, `beta` or a programme, 1 to
/// 64 of `a-z`, `0-9`, `.`, `_`, `-`.
pub fn valid_audience(audience: &str) -> bool {
    !audience.is_empty()
        && audience.len() <= 64
        && audience
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Reads `identity.json`. An all-zero device id is not a damaged file but a hardware id
/// that could not be read (`DEVICE_ID_ZERO`, with the hardware fix), told apart from a
/// file that does not parse (`DEVICE_CORRUPT`).
fn read_identity(path: &Path) -> Result<Identity, AgentError> {
    let bytes = fs::read(path).map_err(AgentError::io("reading identity.json", path))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let identity = Identity::deserialize_allowing_zero(&mut deserializer)
        .and_then(|identity| deserializer.end().map(|()| identity))
        .map_err(|e| AgentError::DeviceCorrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if identity.device_id.is_zero() {
        return Err(AgentError::IdentityUnread {
            path: path.to_owned(),
            zero_fields: identity.zero_fields().join(", "),
        });
    }
    Ok(identity)
}

/// Reads `config.toml`: bytes that are not UTF-8 or not the configuration's TOML are
/// `CONFIG_INVALID`, with a fix about the file (never an I/O error).
fn read_config(path: &Path) -> Result<Config, AgentError> {
    let bytes = fs::read(path).map_err(AgentError::io("reading config.toml", path))?;
    Config::from_bytes(&bytes, path)
}

impl Config {
    /// The configuration in `bytes` (read from `path`, which the error names): bytes that
    /// are not UTF-8 or not the configuration's TOML are `CONFIG_INVALID`.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Config, AgentError> {
        let invalid = |reason: String| AgentError::ConfigInvalid {
            path: path.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            invalid(format!(
                "it is not UTF-8 text (the byte at offset {} is not)",
                e.valid_up_to()
            ))
        })?;
        toml::from_str(text).map_err(|e: toml::de::Error| match e.span() {
            Some(span) => invalid(format!(
                "{} (bytes {}..{})",
                e.message(),
                span.start,
                span.end
            )),
            None => invalid(e.message().to_owned()),
        })
    }
}

/// Writes `config.toml` durably.
pub(crate) fn write_config(path: &Path, config: &Config) -> Result<(), AgentError> {
    let text = toml::to_string_pretty(config).map_err(|e| AgentError::DeviceCorrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    ferry_durable::write_atomic(path, text.as_bytes())
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

fn lock(layout: &Layout) -> Result<File, AgentError> {
    let path = layout.lock();
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
            dir: layout.dir().to_owned(),
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_kinds_keep_their_lowercase_names_on_disk() {
        // A receipt as ferry wrote it when the kinds were strings.
        let old = r#"{"component":"system","version":"2.0","build_id":"2.0-1a2b3c4d","slot":"b",
            "image_sha256":"0000000000000000000000000000000000000000000000000000000000000000",
            "image_size":4194304,"payload_kind":"full",
            "payload_sha256":"0000000000000000000000000000000000000000000000000000000000000000",
            "payload_size":1000,"bytes_downloaded":1000,"bytes_reused":0,
            "fallback":{"code":"BASE_MISMATCH","cause":"c","fix":"f"},"fallback_from":"delta",
            "installed_at":"2026-03-20T18:51:32.924688Z","from_version":"1.0","update_id":null}"#;
        let receipt: Receipt = serde_json::from_str(old).unwrap();
        assert_eq!(receipt.payload_kind, PayloadKind::Full);
        assert_eq!(receipt.fallback_from, Some(PayloadKind::Delta));
        let again = serde_json::to_value(&receipt).unwrap();
        assert_eq!(again["payload_kind"], "full");
        assert_eq!(again["fallback_from"], "delta");
        for kind in [
            PayloadKind::Factory,
            PayloadKind::Full,
            PayloadKind::Delta,
            PayloadKind::Chunks,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(format!("{kind:<7}|"), format!("{:<7}|", kind.as_str()));
        }
        assert!(serde_json::from_str::<PayloadKind>("\"FULL\"").is_err());
    }
}
