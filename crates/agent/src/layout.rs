//! Every path of the device directory (DESIGN §2), named once: no other module of the
//! agent spells a file or directory name. [`Layout`] gives a device's absolute paths;
//! the few paths stored inside device files (the default slot images and the CA pin in
//! `config.toml`, a slot's hash tree in its metadata) are relative to the directory and
//! come from the free functions here.
//!
//! ```text
//! DEVICE/
//!   identity.json               who the device is
//!   config.toml                 where it updates from and how
//!   .lock                       one ferry process per device (flock)
//!   slots/a.img, slots/b.img    the slot images (unless config names block devices)
//!   slots/<slot>.json           what a slot holds; <slot>.verity its dm-verity tree,
//!                               <slot>.manifest.json the manifest it was written from
//!   boot/                       boot control (ferry-boot names its files in here),
//!                               ticket-<slot>.json, nonce, nonce-<slot>
//!   cache/                      purgeable: install.json (the install record),
//!                               chunks.payload (chunk-reuse ranges), spool/,
//!                               phase-rates.json (the class's phase rates)
//!   receipts/                   one receipt per installed image
//!   journal/, state/            the state machines' journal and instance states (ferry-fsm)
//!   journal/repairs.jsonl       what the device repaired on its own (torn journal tail,
//!                               corrupt state file, damaged catalog file), for the doctor
//!   events/                     the outbox: event reports not yet acknowledged
//!                               (ferry-events names its files)
//!   trust/                      ca.pem, personalization-keys.json, credential
//!   tuf/                        root.json (the pinned root), last-scan.json, the metadata
//!   facts.toml                  a simulated device's power and network (tests, the demo)
//!   agent.sock                  the daemon's local API (HTTP/JSON, owner and group only)
//! ```
//!
//! Files inside `boot/`, `journal/`, `state/`, `events/`, `tuf/` (the metadata generations) and the
//! spool's segments are named by the crate or module that owns their format.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ferry_boot::Slot;
use ferry_types::Version;

/// `identity.json`: who the device is.
pub const IDENTITY_FILE: &str = "identity.json";
/// `config.toml`: where the device updates from and how.
pub const CONFIG_FILE: &str = "config.toml";
/// The device lock: one ferry process per device directory.
pub const LOCK_FILE: &str = ".lock";
/// Slot images (unless config names block devices) and what each slot holds.
pub const SLOTS_DIR: &str = "slots";
/// Boot-control state (file backend), tickets, nonces.
pub const BOOT_DIR: &str = "boot";
/// Downloads and the install record (purgeable).
pub const CACHE_DIR: &str = "cache";
/// One receipt per installed image.
pub const RECEIPTS_DIR: &str = "receipts";
/// The state machines' journal.
pub const JOURNAL_DIR: &str = "journal";
/// The state machines' instance state files.
pub const STATE_DIR: &str = "state";
/// Event reports not yet delivered.
pub const EVENTS_DIR: &str = "events";
/// Progress logs (one per update) and the measured rates of finished installs.
pub const PROGRESS_DIR: &str = "progress";
/// Trust material and the credential.
pub const TRUST_DIR: &str = "trust";
/// The catalog: the pinned root, the last good metadata, the last scan.
pub const TUF_DIR: &str = "tuf";

/// The directories every device has (made by `device init`, and again on open if gone).
pub const DIRS: [&str; 6] = [
    SLOTS_DIR,
    BOOT_DIR,
    CACHE_DIR,
    RECEIPTS_DIR,
    JOURNAL_DIR,
    EVENTS_DIR,
];

/// The pinned CA, relative to the device directory (as `config.toml` stores it): the
/// only CA the HTTP client trusts.
pub fn ca_pin() -> PathBuf {
    Path::new(TRUST_DIR).join("ca.pem")
}

/// The image file of `slot` that `device init` makes, relative to the device directory
/// (as `config.toml` stores it).
pub fn default_slot_image(slot: Slot) -> PathBuf {
    Path::new(SLOTS_DIR).join(format!("{slot}.img"))
}

/// The dm-verity tree of `slot`, relative to the device directory (as the slot's
/// metadata stores it).
pub fn slot_tree(slot: Slot) -> PathBuf {
    Path::new(SLOTS_DIR).join(format!("{slot}.verity"))
}

/// The file name of the receipt of an install finished at `installed_at` of `version`:
/// names sort by time.
pub fn receipt_name(installed_at: DateTime<Utc>, version: &Version) -> String {
    format!(
        "{}-{version}.json",
        installed_at.format("%Y%m%dT%H%M%S%.6fZ")
    )
}

/// Whether `name`, in [`RECEIPTS_DIR`], is a receipt (not a temp file of a write).
pub fn is_receipt_name(name: &str) -> bool {
    name.ends_with(".json") && !name.starts_with('.')
}

/// The paths of one device directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout<'a> {
    dir: &'a Path,
}

impl<'a> Layout<'a> {
    /// The layout of the device directory `dir`.
    pub fn new(dir: &'a Path) -> Layout<'a> {
        Layout { dir }
    }

    /// The device directory.
    pub fn dir(&self) -> &'a Path {
        self.dir
    }

    /// A path stored relative to the device directory (an absolute one stays as it is).
    pub fn resolve(&self, stored: &Path) -> PathBuf {
        self.dir.join(stored)
    }

    /// `identity.json`.
    pub fn identity(&self) -> PathBuf {
        self.dir.join(IDENTITY_FILE)
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// `facts.toml`: the power and network of a simulated device ([`crate::facts`]).
    pub fn simulated_facts(&self) -> PathBuf {
        self.dir.join("facts.toml")
    }

    /// `agent.sock`: the daemon's local API (`ferry agent`), a Unix socket, mode 0660.
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// `.lock`.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// `slots/`.
    pub fn slots_dir(&self) -> PathBuf {
        self.dir.join(SLOTS_DIR)
    }

    /// `slots/<slot>.json`: what the slot holds, once complete and verified.
    pub fn slot_info(&self, slot: Slot) -> PathBuf {
        self.slots_dir().join(format!("{slot}.json"))
    }

    /// `slots/<slot>.manifest.json`: the manifest the slot was written from.
    pub fn slot_manifest(&self, slot: Slot) -> PathBuf {
        self.slots_dir().join(format!("{slot}.manifest.json"))
    }

    /// `boot/`: handed to ferry-boot, which names the boot-control files in it.
    pub fn boot_dir(&self) -> PathBuf {
        self.dir.join(BOOT_DIR)
    }

    /// `boot/ticket-<slot>.json`: the ticket of what the slot holds (written before Apply).
    pub fn ticket(&self, slot: Slot) -> PathBuf {
        self.boot_dir().join(format!("ticket-{slot}.json"))
    }

    /// `boot/nonce`: the nonce of the personalization attempt in progress (written
    /// before the request).
    pub fn nonce(&self) -> PathBuf {
        self.boot_dir().join("nonce")
    }

    /// `boot/nonce-<slot>`: the nonce the slot's ticket is bound to, once it booted good.
    pub fn slot_nonce(&self, slot: Slot) -> PathBuf {
        self.boot_dir().join(format!("nonce-{slot}"))
    }

    /// `cache/`.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join(CACHE_DIR)
    }

    /// `cache/install.json`: the record of the install in progress, for resuming it.
    pub fn install_record(&self) -> PathBuf {
        self.cache_dir().join("install.json")
    }

    /// `cache/chunks.payload`: the sparse file of chunk-reuse ranges, at payload offsets.
    pub fn chunk_cache(&self) -> PathBuf {
        self.cache_dir().join("chunks.payload")
    }

    /// `cache/spool/`: payload bytes received and not yet in the slot.
    pub fn spool_dir(&self) -> PathBuf {
        self.cache_dir().join("spool")
    }

    /// `cache/phase-rates.json`: the per-class phase rates the server learned from event
    /// reports, taken at each scan for the time-remaining estimate (derived: purgeable).
    pub fn phase_rates(&self) -> PathBuf {
        self.cache_dir().join("phase-rates.json")
    }

    /// `progress/`: progress logs and the rates history (made on first use).
    pub fn progress_dir(&self) -> PathBuf {
        self.dir.join(PROGRESS_DIR)
    }

    /// `progress/<uuid>.jsonl`: one update's progress samples, about one a second
    /// (bounded), for `ferry log chart`.
    pub fn progress_log(&self, update: uuid::Uuid) -> PathBuf {
        self.progress_dir().join(format!("{update}.jsonl"))
    }

    /// `progress/history.json`: the measured rates of this device's finished installs,
    /// the estimator's first source of expected durations.
    pub fn progress_history(&self) -> PathBuf {
        self.progress_dir().join("history.json")
    }

    /// `events/`: the outbox of event reports (`ferry_events::Outbox` names its files).
    pub fn events_dir(&self) -> PathBuf {
        self.dir.join(EVENTS_DIR)
    }

    /// `receipts/`.
    pub fn receipts_dir(&self) -> PathBuf {
        self.dir.join(RECEIPTS_DIR)
    }

    /// `receipts/<name>`.
    pub fn receipt(&self, name: &str) -> PathBuf {
        self.receipts_dir().join(name)
    }

    /// `journal/`.
    pub fn journal_dir(&self) -> PathBuf {
        self.dir.join(JOURNAL_DIR)
    }

    /// `journal/repairs.jsonl`: one JSON line per repair the device made on its own (a torn
    /// journal tail cut off, a corrupt state file given up, a damaged catalog or key set file
    /// fetched again), kept for `ferry doctor` ([`crate::journal::repairs`]). ferry-fsm reads
    /// only `journal*.jsonl` and `blobs/` there.
    pub fn journal_repairs(&self) -> PathBuf {
        self.journal_dir().join("repairs.jsonl")
    }

    /// `state/`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE_DIR)
    }

    /// `trust/`.
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.join(TRUST_DIR)
    }

    /// The director's last verified decision (`trust/decision.json`).
    pub fn decision(&self) -> PathBuf {
        self.trust_dir().join("decision.json")
    }

    /// `trust/personalization-keys.json`: the key set tickets may be signed with, taken
    /// from the catalog at each scan.
    pub fn key_set(&self) -> PathBuf {
        self.trust_dir().join("personalization-keys.json")
    }

    /// `trust/credential`: the bearer credential from enrollment (0600).
    pub fn credential(&self) -> PathBuf {
        self.trust_dir().join("credential")
    }

    /// `tuf/`: handed to ferry-catalog as its datastore.
    pub fn tuf_dir(&self) -> PathBuf {
        self.dir.join(TUF_DIR)
    }

    /// `tuf/root.json`: the pinned root (written by `device init`, never by a scan).
    pub fn pinned_root(&self) -> PathBuf {
        self.tuf_dir().join("root.json")
    }

    /// The directories ferry writes files into through ferry-durable (where a write a
    /// crash interrupted can leave a temp file): the device directory itself and each of
    /// its own subdirectories.
    pub fn writable_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.dir.to_owned()];
        dirs.extend(
            [
                SLOTS_DIR,
                BOOT_DIR,
                CACHE_DIR,
                RECEIPTS_DIR,
                EVENTS_DIR,
                TRUST_DIR,
                TUF_DIR,
                STATE_DIR,
                PROGRESS_DIR,
            ]
            .iter()
            .map(|d| self.dir.join(d)),
        );
        dirs
    }

    /// `tuf/last-scan.json`: when the last scan ran and what it found.
    pub fn last_scan(&self) -> PathBuf {
        self.tuf_dir().join("last-scan.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_paths_resolve_inside_the_device_directory() {
        let layout = Layout::new(Path::new("/dev-root"));
        assert_eq!(
            layout.resolve(&slot_tree(Slot::B)),
            Path::new("/dev-root/slots/b.verity")
        );
        assert_eq!(
            layout.resolve(&ca_pin()),
            Path::new("/dev-root/trust/ca.pem")
        );
        assert_eq!(
            layout.resolve(Path::new("/dev/mmcblk0p2")),
            Path::new("/dev/mmcblk0p2"),
            "a block device stays where it is"
        );
    }

    #[test]
    fn receipt_names_sort_by_time() {
        let version: Version = "2.0".parse().unwrap();
        let early = DateTime::from_timestamp(1_774_000_000, 0).unwrap();
        let late = DateTime::from_timestamp(1_774_000_001, 0).unwrap();
        let (a, b) = (receipt_name(early, &version), receipt_name(late, &version));
        assert!(a < b, "{a} {b}");
        assert!(is_receipt_name(&a));
        assert!(!is_receipt_name(".x.json"), "a temp file of a write");
    }
}
