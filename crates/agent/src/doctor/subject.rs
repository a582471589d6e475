//! What the doctor looks at: the device directory read as far as it can be, without its
//! lock (another process holding it is a finding, not a reason to stop), its identity
//! read even when all zero, its config even when half of it is wrong.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ferry_boot::{BootControl, Slot};
use ferry_types::Identity;
use serde::Serialize;

use crate::AgentError;
use crate::client::Client;
use crate::device::{Config, Device};
use crate::layout::Layout;

/// Who holds the device lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LockState {
    /// This process (the doctor runs inside a command that opened the device).
    Ours,
    /// Nobody.
    Free,
    /// Another process.
    Held {
        /// Its pid, from `/proc/locks`.
        pid: Option<u32>,
        /// Its command line.
        command: Option<String>,
    },
}

/// A file of the device directory that could not be read as what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The file.
    pub path: PathBuf,
    /// Which field or line, and what is wrong.
    pub reason: String,
}

impl Unreadable {
    /// The agent's error for it (`DEVICE_CORRUPT`).
    pub fn error(&self) -> AgentError {
        AgentError::DeviceCorrupt {
            path: self.path.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// The device directory as the doctor found it.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The directory.
    pub dir: PathBuf,
    /// `identity.json`, all-zero ids allowed (the identity check names them).
    pub identity: Result<Identity, Unreadable>,
    /// `config.toml`.
    pub config: Result<Config, Unreadable>,
    /// Who holds the device lock.
    pub lock: LockState,
}

impl Subject {
    /// Reads the device at `dir` without taking its lock.
    pub fn open(dir: &Path) -> Subject {
        let layout = Layout::new(dir);
        Subject {
            dir: dir.to_owned(),
            identity: read_identity(&layout.identity()),
            config: read_config(&layout.config()),
            lock: probe_lock(&layout.lock()),
        }
    }

    /// The device a command of this process opened (and whose lock it holds).
    pub fn of_device(device: &Device) -> Subject {
        Subject {
            dir: device.dir.clone(),
            identity: Ok(device.identity.clone()),
            config: Ok(device.config.clone()),
            lock: LockState::Ours,
        }
    }

    /// The paths of the device directory.
    pub fn layout(&self) -> Layout<'_> {
        Layout::new(&self.dir)
    }

    /// The config, when it could be read.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref().ok()
    }

    /// Whether another process holds the device.
    pub fn busy(&self) -> bool {
        matches!(self.lock, LockState::Held { .. })
    }

    /// Boot control, when the config names it.
    pub fn boot_control(&self) -> Option<Box<dyn BootControl>> {
        let config = self.config()?;
        Some(ferry_boot::open(&config.boot, &self.layout().boot_dir()))
    }

    /// A slot's image path, when the config names it.
    pub fn slot_path(&self, slot: Slot) -> Option<PathBuf> {
        let config = self.config()?;
        let stored = match slot {
            Slot::A => &config.slots.a,
            Slot::B => &config.slots.b,
        };
        Some(self.layout().resolve(stored))
    }

    /// The device's HTTP client, when the config can be read.
    pub fn client(&self) -> Result<Client, AgentError> {
        match &self.config {
            Ok(config) => Client::for_config(&self.layout(), config),
            Err(unreadable) => Err(unreadable.error()),
        }
    }
}

/// `identity.json`, all-zero ids allowed.
pub fn read_identity(path: &Path) -> Result<Identity, Unreadable> {
    let unreadable = |reason: String| Unreadable {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    Identity::deserialize_allowing_zero(&mut de).map_err(|e| unreadable(e.to_string()))
}

/// `config.toml`, with the line and key of what is wrong when it does not parse.
pub fn read_config(path: &Path) -> Result<Config, Unreadable> {
    let unreadable = |reason: String| Unreadable {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    toml::from_str::<Config>(&text).map_err(|e| {
        let at = e.span().map(|span| {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            let line_text = text.lines().nth(line - 1).unwrap_or_default().trim();
            format!("line {line} `{line_text}`: ")
        });
        unreadable(format!("{}{}", at.unwrap_or_default(), e.message()))
    })
}

/// Who holds the lock at `path`: a shared `flock` taken and dropped at once (it fails
/// while another process holds the exclusive lock), and the holder's pid from
/// `/proc/locks`.
fn probe_lock(path: &Path) -> LockState {
    let Ok(file) = File::open(path) else {
        return LockState::Free;
    };
    // SAFETY: flock on a valid, owned descriptor; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return LockState::Free;
    }
    let inode = file.metadata().map(|m| m.ino()).ok();
    let pid = inode.and_then(|inode| {
        std::fs::read_to_string("/proc/locks")
            .ok()
            .and_then(|locks| lock_holder(&locks, inode))
    });
    let command = pid.and_then(|pid| {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let parts: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    LockState::Held { pid, command }
}

/// The pid holding a `FLOCK` on `inode` in the text of `/proc/locks` (waiters, marked
/// `->`, are not holders).
fn lock_holder(locks: &str, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let file_inode = fields.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
        (file_inode == inode)
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_read_from_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 900 fd:01:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 5151 fd:01:1234 0 EOF\n";
        assert_eq!(lock_holder(locks, 1234), Some(4242));
        assert_eq!(
            lock_holder(locks, 77),
            None,
            "a POSIX lock is not the device lock"
        );
        assert_eq!(lock_holder(locks, 9), None);
    }

    #[test]
    fn a_config_error_names_its_line_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        std::fs::write(
            &path,
            "server = \"https://x\"\n[slots]\na = \"a\"\nb = \"b\"\ncapacity = \"big\"\n",
        )
        .unwrap();
        let e = read_config(&path).unwrap_err();
        assert!(
            e.reason.contains("line 5 `capacity = \"big\"`"),
            "{}",
            e.reason
        );
        let held = probe_lock(&tmp.path().join("none"));
        assert_eq!(held, LockState::Free);
    }
}
