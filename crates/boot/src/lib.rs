//! Boot control for ferry: which of the two system slots boots, how many
//! tries a newly installed slot gets, and when it is committed or rolled
//! back, stored where the bootloader reads it.
//!
//! The state ([`BootState`]) and its transitions are pure: `set_trial`
//! before rebooting into a new slot, `select_for_boot` for what a bootloader
//! does at power-on (count a try down, or abandon a trial that has none
//! left), `mark_good` to commit, `abandon` to roll back, and `invalidate`
//! before overwriting a slot. Each refused transition is a named
//! [`BootError`]. They keep one invariant: the primary slot is good and is
//! never overwritten, so there is always a good slot to boot.
//!
//! A [`BootControl`] backend stores the state durably. Three formats, chosen
//! by [`BootBackend`] and opened with [`open`]:
//!
//! - [`file`](mod@file): JSON in the device's `boot/` directory (tests, the demo,
//!   `ferry reboot`);
//! - [`grub`]: the 1024-byte GRUB environment block of `grub-editenv`, with
//!   RAUC-style variables (`ORDER`, `A_OK`, `A_TRY`, …);
//! - [`uboot`]: the U-Boot environment of `fw_printenv` / `fw_setenv`,
//!   single or redundant, with RAUC-style variables (`BOOT_ORDER`,
//!   `BOOT_A_LEFT`, …).
//!
//! The module docs of `grub` and `uboot` give the exact format, where this
//! crate departs from it, and every variable. Only this crate knows
//! bootloader formats.
//!
//! # Example
//!
//! An update of slot B on a device running slot A:
//!
//! ```
//! use ferry_boot::{BootBackend, BootState, DEFAULT_BOOT_TRIES, Slot, open};
//!
//! let boot_dir = tempfile::tempdir()?;
//! let control = open(&BootBackend::Grub { path: "grubenv".into() }, boot_dir.path());
//! control.store(&BootState::new(Slot::A))?;
//!
//! // Install: invalidate the slot, write it, then try it on the next boot.
//! let state = control.load()?.invalidate(Slot::B)?;
//! control.store(&state)?;
//! let state = state.set_trial(Slot::B, DEFAULT_BOOT_TRIES)?;
//! control.store(&state)?;
//!
//! // Power-on: the bootloader counts one try down and boots B.
//! let (booted, state) = control.load()?.select_for_boot(chrono::Utc::now());
//! control.store(&state)?;
//! assert_eq!(booted, Slot::B);
//!
//! // Boot check passed: commit B.
//! control.store(&control.load()?.mark_good(Slot::B)?)?;
//! assert_eq!(control.load()?.primary(), Slot::B);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tests
//!
//! `cargo test` runs unit tests, every transition and refusal
//! (`tests/transitions.rs`), property tests of the invariant over random
//! sequences of transitions and power cuts (`tests/invariant.rs`) and of
//! the two formats (`tests/format_round_trips.rs`), backend round trips and
//! damage (`tests/backends.rs`), and checks against the real tools (`tests/grub_tools.rs`,
//! `tests/uboot_tools.rs`): `grub-editenv` from Debian's `grub-common` and
//! `fw_printenv` / `fw_setenv` from `libubootenv-tool` must be on `PATH`,
//! and those tests fail, naming the package, when they are not.
#![deny(missing_docs)]

pub mod error;
pub mod file;
pub mod grub;
pub mod slot;
pub mod state;
pub mod uboot;
pub mod vars;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::BootError;
pub use file::FileBootControl;
pub use grub::GrubBootControl;
pub use slot::Slot;
pub use state::{
    BOOT_TRIES_EXHAUSTED, BootFailure, BootState, DEFAULT_BOOT_TRIES, MAX_BOOT_TRIES, PerSlot,
    Transition, Trial,
};
pub use uboot::UbootBootControl;

/// Where the boot state lives: read by the bootloader, written by ferry.
pub trait BootControl: Send + Sync {
    /// Reads the stored state.
    fn load(&self) -> Result<BootState, BootError>;

    /// Stores `state` durably and atomically: after a crash, a later `load`
    /// gives either this state or the one stored before.
    fn store(&self, state: &BootState) -> Result<(), BootError>;

    /// One line naming the backend and where it stores, for status output.
    fn describe(&self) -> String;
}

/// Which backend a device uses, as its `config.toml` says.
///
/// Serialized with a `kind` tag: `{kind = "file"}`,
/// `{kind = "grub", path = "/boot/grub/grubenv"}`,
/// `{kind = "uboot", config = "/etc/fw_env.config"}`. A relative path is
/// taken relative to the device's `boot/` directory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BootBackend {
    /// JSON in the device's `boot/` directory ([`FileBootControl`]).
    #[default]
    File,
    /// A GRUB environment block ([`GrubBootControl`]).
    Grub {
        /// The block, often `/boot/grub/grubenv`.
        path: PathBuf,
    },
    /// A U-Boot environment ([`UbootBootControl`]).
    Uboot {
        /// The `fw_env.config`-style file naming the copies.
        config: PathBuf,
    },
}

/// Opens the backend `backend` for the device whose `boot/` directory is
/// `device_boot_dir`. Nothing is read until [`BootControl::load`].
pub fn open(backend: &BootBackend, device_boot_dir: &Path) -> Box<dyn BootControl> {
    match backend {
        BootBackend::File => Box::new(FileBootControl::in_boot_dir(device_boot_dir)),
        BootBackend::Grub { path } => Box::new(GrubBootControl::new(device_boot_dir.join(path))),
        BootBackend::Uboot { config } => {
            Box::new(UbootBootControl::new(device_boot_dir.join(config)))
        }
    }
}

/// Gives the backend's store its first content where the bootloader needs one before
/// boot state can be stored: for a U-Boot backend whose configuration does not exist
/// yet, a redundant environment in `device_boot_dir` ([`uboot::prepare_env`]). The file
/// and GRUB backends need nothing. Safe to call again: existing content is left alone.
pub fn prepare(backend: &BootBackend, device_boot_dir: &Path) -> Result<(), BootError> {
    match backend {
        BootBackend::Uboot { config } => uboot::prepare_env(
            &device_boot_dir.join(config),
            &device_boot_dir.join(uboot::PREPARED_ENV_FILE),
        )
        .map(|_| ()),
        BootBackend::File | BootBackend::Grub { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_config_is_tagged_by_kind() -> Result<(), serde_json::Error> {
        let grub: BootBackend =
            serde_json::from_str(r#"{"kind":"grub","path":"/boot/grub/grubenv"}"#)?;
        assert_eq!(
            grub,
            BootBackend::Grub {
                path: "/boot/grub/grubenv".into()
            }
        );
        let uboot: BootBackend =
            serde_json::from_str(r#"{"kind":"uboot","config":"fw_env.config"}"#)?;
        assert_eq!(
            uboot,
            BootBackend::Uboot {
                config: "fw_env.config".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&BootBackend::File)?,
            r#"{"kind":"file"}"#
        );
        assert!(serde_json::from_str::<BootBackend>(r#"{"kind":"efi"}"#).is_err());
        Ok(())
    }

    #[test]
    fn open_resolves_relative_paths_in_the_boot_dir() {
        let boot_dir = Path::new("/dev-root/boot");
        let grub = open(
            &BootBackend::Grub {
                path: "grubenv".into(),
            },
            boot_dir,
        );
        assert!(
            grub.describe().contains("/dev-root/boot/grubenv"),
            "{}",
            grub.describe()
        );
        let absolute = open(
            &BootBackend::Grub {
                path: "/boot/grub/grubenv".into(),
            },
            boot_dir,
        );
        assert!(absolute.describe().contains(" /boot/grub/grubenv"));
        let file = open(&BootBackend::File, boot_dir);
        assert!(file.describe().contains("/dev-root/boot/boot-state.json"));
    }

    #[test]
    fn prepare_gives_a_new_uboot_environment_two_copies_and_keeps_an_existing_one()
    -> Result<(), BootError> {
        let dir = tempfile::tempdir().map_err(|e| BootError::io("tempdir", Path::new("."), e))?;
        let backend = BootBackend::Uboot {
            config: "fw_env.config".into(),
        };
        prepare(&backend, dir.path())?;
        let config = uboot::UbootEnvConfig::read(&dir.path().join("fw_env.config"))?;
        assert!(config.is_redundant());
        let env = uboot::read_env(&config)?;
        assert_eq!(
            env.vars.get("bootcmd").map(String::as_str),
            Some("run ferry_boot")
        );
        let control = open(&backend, dir.path());
        control.store(&BootState::new(Slot::A))?;
        prepare(&backend, dir.path())?;
        assert_eq!(control.load()?.primary(), Slot::A, "prepare kept the state");
        prepare(&BootBackend::File, dir.path())?;
        Ok(())
    }
}
