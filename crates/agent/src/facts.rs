//! What the device knows of its own power, network and storage: the preconditions of an
//! install (DESIGN §3 step 1), the fields of an event report (§6) and the doctor's space
//! check read them here, and nowhere else.
//!
//! A real device reads Linux: `/sys/class/power_supply` (batteries and mains),
//! `/sys/firmware/acpi/platform_profile` (low-power mode), NetworkManager's global
//! `Metered` property (through `busctl`, when NetworkManager runs) and `statvfs` of the
//! filesystems involved. A simulated device (tests, the demo) writes `facts.toml` in its
//! directory; power and network then come from that file, storage is always measured.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes kept free on the device directory's filesystem for the writes that keep the
/// device bootable (boot state, receipts, the journal): an install must fit beside it
/// (`crate::install::sizing`), and the cache writers (the spool, the chunk cache) stop
/// short of it.
pub const RESERVE_BYTES: u64 = 8 << 20;

/// `facts.toml`: the power and network of a simulated device. Every key is optional:
/// a missing battery means mains power, a missing `metered` means not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedFacts {
    /// Battery charge in percent (0–100); absent: the device has no battery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_level: Option<u8>,
    /// Whether the battery is charging.
    #[serde(default)]
    pub battery_charging: bool,
    /// Whether mains (AC) power is connected; absent: connected when there is no battery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_ac: Option<bool>,
    /// Whether the system runs in a low-power (power-saver) mode.
    #[serde(default)]
    pub low_power_mode: bool,
    /// Whether the network is metered (billed by the byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metered_network: Option<bool>,
}

/// Where a fact came from, so a report or the doctor can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Read from the running Linux system.
    System,
    /// Read from the device's `facts.toml` (a simulated device).
    Simulated,
}

/// Power as the install preconditions see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Power {
    /// Battery charge in percent; `None` without a battery.
    pub battery_level: Option<u8>,
    /// Whether a battery is charging (false without one).
    pub battery_charging: bool,
    /// Whether mains power is connected.
    pub on_ac: bool,
    /// Whether a low-power mode is on.
    pub low_power_mode: bool,
}

/// Capacity and free space of one filesystem (`statvfs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    /// A path on the filesystem (the one measured).
    pub path: PathBuf,
    /// Total bytes.
    pub capacity: u64,
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    pub free: u64,
    /// The filesystem's device number: two paths with the same one share their space.
    pub fs_id: u64,
}

/// Everything this module reads, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Where power and network came from.
    pub source: Source,
    /// Power.
    pub power: Power,
    /// Whether the network is metered; `None` when nothing says.
    pub metered_network: Option<bool>,
    /// The filesystem of the device directory (journal, cache, boot state).
    pub data_fs: Space,
    /// The filesystem (or block device's parent directory) of the slots.
    pub system_fs: Space,
}

/// One filesystem an update does not fit on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shortfall {
    /// A path on the filesystem (the first the update writes there).
    pub path: PathBuf,
    /// Bytes the update needs there.
    pub needed: u64,
    /// Bytes free there (`statvfs` `f_bavail`).
    pub free: u64,
    /// Bytes ferry could still purge there.
    pub purgeable: u64,
}

impl Shortfall {
    /// Bytes missing: what must be freed there.
    pub fn missing(&self) -> u64 {
        self.needed.saturating_sub(self.free)
    }

    /// The cause of `INSUFFICIENT_SPACE` for `filesystems`.
    pub fn describe_all(filesystems: &[Shortfall]) -> String {
        let each: Vec<String> = filesystems
            .iter()
            .map(|s| {
                format!(
                    "on the filesystem of {} it needs {} but {} {} free ({} purgeable)",
                    s.path.display(),
                    mib(s.needed),
                    mib(s.free),
                    if s.free == 1 { "is" } else { "are" },
                    mib(s.purgeable)
                )
            })
            .collect();
        format!("the update does not fit: {}", each.join("; "))
    }
}

/// `n` bytes for people: MiB with one decimal, and the exact count.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB ({n} bytes)", n as f64 / f64::from(1u32 << 20))
}

/// Facts that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// `facts.toml` exists but does not parse.
    #[error("the simulated facts file {} is not valid: {reason}", path.display())]
    SimulatedCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `statvfs` failed on a path the device uses.
    #[error("the free space of {} could not be measured: {source}", path.display())]
    Statvfs {
        /// The path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl ferry_types::Diagnose for FactsError {
    fn code(&self) -> &'static str {
        match self {
            FactsError::SimulatedCorrupt { .. } => "FACTS_CORRUPT",
            FactsError::Statvfs { .. } => "FACTS_IO",
        }
    }
    fn fix(&self) -> String {
        match self {
            FactsError::SimulatedCorrupt { path, .. } => format!(
                "correct or delete {} (keys: battery_level, battery_charging, on_ac, low_power_mode, metered_network)",
                path.display()
            ),
            FactsError::Statvfs { path, .. } => format!(
                "check that {} exists and that its filesystem is mounted",
                path.display()
            ),
        }
    }
}

/// Reads the facts of the device at `device_dir` whose slots live at `slot_path`.
impl Facts {
    /// Simulated facts: a battery at `battery` percent (`None`: none), AC power, a metered
    /// network or not (`None`: unknown), and one 1 TiB filesystem with `free` bytes free
    /// for data and system. For the tests of what reads facts (the install policy, the
    /// agent's schedule).
    pub fn simulated(battery: Option<u8>, on_ac: bool, metered: Option<bool>, free: u64) -> Facts {
        let space = Space {
            path: "/".into(),
            capacity: 1 << 40,
            free,
            fs_id: 1,
        };
        Facts {
            source: Source::Simulated,
            power: Power {
                battery_level: battery,
                battery_charging: false,
                on_ac,
                low_power_mode: false,
            },
            metered_network: metered,
            data_fs: space.clone(),
            system_fs: space,
        }
    }
}

/// `simulated` is the device's `facts.toml`: used when it exists.
pub fn read(device_dir: &Path, slot_path: &Path, simulated: &Path) -> Result<Facts, FactsError> {
    let data_fs = space(device_dir)?;
    // A slot that is a block device measures its parent directory's filesystem: what
    // matters there is where its side files (hash tree, metadata) go.
    let system_fs = space(slot_path.parent().unwrap_or(slot_path))?;
    match std::fs::read_to_string(simulated) {
        Ok(text) => {
            let sim: SimulatedFacts =
                toml::from_str(&text).map_err(|e| FactsError::SimulatedCorrupt {
                    path: simulated.to_owned(),
                    reason: e.message().to_owned(),
                })?;
            if sim.battery_level.is_some_and(|l| l > 100) {
                return Err(FactsError::SimulatedCorrupt {
                    path: simulated.to_owned(),
                    reason: "battery_level is a percentage (0 to 100)".into(),
                });
            }
            Ok(Facts {
                source: Source::Simulated,
                power: Power {
                    battery_level: sim.battery_level,
                    battery_charging: sim.battery_level.is_some() && sim.battery_charging,
                    on_ac: sim.on_ac.unwrap_or(sim.battery_level.is_none()),
                    low_power_mode: sim.low_power_mode,
                },
                metered_network: sim.metered_network,
                data_fs,
                system_fs,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Facts {
            source: Source::System,
            power: linux_power(Path::new(POWER_SUPPLY_DIR), Path::new(PLATFORM_PROFILE)),
            metered_network: networkmanager_metered(),
            data_fs,
            system_fs,
        }),
        Err(e) => Err(FactsError::SimulatedCorrupt {
            path: simulated.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Where Linux lists power supplies.
pub const POWER_SUPPLY_DIR: &str = "/sys/class/power_supply";
/// The ACPI platform profile (`low-power` is the power-saver mode).
pub const PLATFORM_PROFILE: &str = "/sys/firmware/acpi/platform_profile";

/// Power from `/sys/class/power_supply` (each supply a directory with `type`, and
/// `capacity`/`status` for a battery or `online` for mains). No supply at all reads as
/// a machine on mains without a battery, as a VM or a server is.
pub fn linux_power(supplies: &Path, platform_profile: &Path) -> Power {
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let mut battery: Option<(u8, bool)> = None;
    let mut mains: Option<bool> = None;
    if let Ok(entries) = std::fs::read_dir(supplies) {
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            match read(&dir, "type").as_deref() {
                Some("Battery") if battery.is_none() => {
                    // A battery that does not say its charge is not one we can judge by.
                    if let Some(level) = read(&dir, "capacity").and_then(|c| c.parse::<u8>().ok()) {
                        let charging = read(&dir, "status").as_deref() == Some("Charging");
                        battery = Some((level.min(100), charging));
                    }
                }
                Some("Mains" | "USB") => {
                    let online = read(&dir, "online").as_deref() == Some("1");
                    mains = Some(mains.unwrap_or(false) || online);
                }
                _ => {}
            }
        }
    }
    let low_power_mode = std::fs::read_to_string(platform_profile)
        .is_ok_and(|profile| profile.trim() == "low-power");
    Power {
        battery_level: battery.map(|(level, _)| level),
        battery_charging: battery.is_some_and(|(_, charging)| charging),
        on_ac: mains.unwrap_or(battery.is_none()),
        low_power_mode,
    }
}

/// NetworkManager's global metered state (`NMMetered`: 1 yes, 3 guessed yes, 2 no, 4
/// guessed no, 0 unknown), read with `busctl` so no D-Bus library is linked in. `None`
/// when NetworkManager or busctl is absent.
fn networkmanager_metered() -> Option<bool> {
    let out = std::process::Command::new("busctl")
        .args([
            "get-property",
            "org.freedesktop.NetworkManager",
            "/org/freedesktop/NetworkManager",
            "org.freedesktop.NetworkManager",
            "Metered",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_busctl_metered(&String::from_utf8_lossy(&out.stdout))
}

/// `u 3` → metered (guessed yes).
fn parse_busctl_metered(text: &str) -> Option<bool> {
    match text.trim().strip_prefix("u ")?.trim() {
        "1" | "3" => Some(true),
        "2" | "4" => Some(false),
        _ => None,
    }
}

/// Capacity and free space of the filesystem holding `path`.
pub fn space(path: &Path) -> Result<Space, FactsError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let err = |source| FactsError::Statvfs {
        path: path.to_owned(),
        source,
    };
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and st a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let fs_id = std::fs::metadata(path).map_err(err)?.dev();
    let frsize = st.f_frsize as u64;
    Ok(Space {
        path: path.to_owned(),
        capacity: (st.f_blocks as u64).saturating_mul(frsize),
        free: (st.f_bavail as u64).saturating_mul(frsize),
        fs_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(root: &Path, name: &str, files: &[(&str, &str)]) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), format!("{text}\n")).unwrap();
        }
    }

    #[test]
    fn a_laptop_on_battery_and_a_vm_without_supplies() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("power_supply");
        supply(&root, "AC", &[("type", "Mains"), ("online", "0")]);
        supply(
            &root,
            "BAT0",
            &[
                ("type", "Battery"),
                ("capacity", "5"),
                ("status", "Discharging"),
            ],
        );
        let profile = tmp.path().join("platform_profile");
        std::fs::write(&profile, "low-power\n").unwrap();
        let power = linux_power(&root, &profile);
        assert_eq!(
            power,
            Power {
                battery_level: Some(5),
                battery_charging: false,
                on_ac: false,
                low_power_mode: true,
            }
        );

        supply(&root, "AC", &[("online", "1")]);
        supply(&root, "BAT0", &[("status", "Charging")]);
        let power = linux_power(&root, &tmp.path().join("absent"));
        assert!(power.on_ac && power.battery_charging && !power.low_power_mode);

        let vm = linux_power(&tmp.path().join("none"), &tmp.path().join("absent"));
        assert_eq!(vm.battery_level, None);
        assert!(vm.on_ac);
    }

    #[test]
    fn simulated_facts_and_their_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("facts.toml");
        std::fs::write(&file, "battery_level = 5\nbattery_charging = false\n").unwrap();
        let facts = read(tmp.path(), &tmp.path().join("a.img"), &file).unwrap();
        assert_eq!(facts.source, Source::Simulated);
        assert_eq!(facts.power.battery_level, Some(5));
        assert!(!facts.power.on_ac);
        assert!(facts.data_fs.capacity > 0 && facts.data_fs.free <= facts.data_fs.capacity);
        assert_eq!(facts.data_fs.fs_id, facts.system_fs.fs_id);

        std::fs::write(&file, "battery_level = 150\n").unwrap();
        let e = read(tmp.path(), &tmp.path().join("a.img"), &file).unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&e), "FACTS_CORRUPT");
        std::fs::write(&file, "batery_level = 50\n").unwrap();
        assert!(read(tmp.path(), &tmp.path().join("a.img"), &file).is_err());
    }

    #[test]
    fn busctl_answers() {
        assert_eq!(parse_busctl_metered("u 1\n"), Some(true));
        assert_eq!(parse_busctl_metered("u 3"), Some(true));
        assert_eq!(parse_busctl_metered("u 4"), Some(false));
        assert_eq!(parse_busctl_metered("u 0"), None);
        assert_eq!(parse_busctl_metered("garbage"), None);
    }

    #[test]
    fn space_of_a_missing_path_is_an_error() {
        let e = space(Path::new("/nonexistent/ferry")).unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&e), "FACTS_IO");
    }
}
