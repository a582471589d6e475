//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

use ferry_types::Diagnose;
use thiserror::Error;

use crate::slot::Slot;
use crate::state::Transition;

/// Everything that can go wrong in boot control.
///
/// `Display` gives the cause in one sentence; [`Diagnose`] a stable slug for
/// scripts and reports ([`Diagnose::code`]) and what to do about it
/// ([`Diagnose::fix`]).
#[derive(Debug, Error)]
pub enum BootError {
    /// Text that should name a slot names none.
    #[error("{input:?} is not a slot name (expected a or b)")]
    SlotInvalid {
        /// The text given.
        input: String,
    },

    /// A boot state breaks a rule (the primary is not good, the trial is the
    /// primary, …).
    #[error("the boot state{} breaks a rule: {reason}", at_path(.path.as_deref()))]
    StateInvalid {
        /// Where the state was read from, if it was read.
        path: Option<PathBuf>,
        /// The rule broken.
        reason: String,
    },

    /// A transition was asked of the primary slot, which it must never touch.
    #[error("cannot {transition} slot {slot} because it is the primary slot")]
    SlotIsPrimary {
        /// The slot asked for.
        slot: Slot,
        /// The transition refused.
        transition: Transition,
    },

    /// `mark_good` or `abandon` was asked of a slot that is not on trial.
    #[error("cannot {transition} slot {slot} because it is not on trial")]
    NoTrialPending {
        /// The slot asked for.
        slot: Slot,
        /// The transition refused.
        transition: Transition,
    },

    /// The primary failed and the other slot is not good: nothing can boot.
    #[error("cannot {transition} slot {slot} because slot {other} is not good either")]
    NoGoodFallback {
        /// The primary that failed.
        slot: Slot,
        /// The other slot.
        other: Slot,
        /// The transition refused.
        transition: Transition,
    },

    /// A trial was asked with no tries or too many.
    #[error("{tries} boot tries is outside the allowed range 1 to {max}")]
    TriesOutOfRange {
        /// The count asked for.
        tries: u8,
        /// The largest count allowed.
        max: u8,
    },

    /// An operating-system call on a path failed.
    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        /// What was being done: `read`, `write`, `rename`, …
        action: &'static str,
        /// The file, directory or device.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// No boot state has been stored yet.
    #[error("no boot state is stored at {}", .path.display())]
    StateMissing {
        /// Where it was looked for.
        path: PathBuf,
    },

    /// The file backend's JSON could not be parsed.
    #[error("the boot state file {} is corrupt: {reason}", .path.display())]
    StateCorrupt {
        /// The state file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// An environment (GRUB block or one U-Boot copy) is malformed.
    #[error("the bootloader environment {} is corrupt: {reason}", .path.display())]
    EnvCorrupt {
        /// The environment file or device.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A U-Boot environment copy's CRC does not match its data.
    #[error(
        "U-Boot environment copy {copy_idx} at {}+{offset:#x} has CRC {found:#010x} but its data gives {expected:#010x}",
        .path.display()
    )]
    EnvCrcMismatch {
        /// The file or device holding the copy.
        path: PathBuf,
        /// Byte offset of the copy.
        offset: u64,
        /// Which copy: 0 or 1.
        copy_idx: usize,
        /// The CRC stored in the copy's header.
        found: u32,
        /// The CRC computed over the copy's data.
        expected: u32,
    },

    /// Both copies of a redundant U-Boot environment are corrupt.
    #[error("both U-Boot environment copies are corrupt: {first}; {second}")]
    EnvNoValidCopy {
        /// Why copy 0 was refused.
        first: Box<BootError>,
        /// Why copy 1 was refused.
        second: Box<BootError>,
    },

    /// The variables do not fit in the environment.
    #[error(
        "the bootloader environment {} needs {needed} bytes but holds only {capacity}",
        .path.display()
    )]
    EnvTooLarge {
        /// The environment file or device.
        path: PathBuf,
        /// Bytes the variables need.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },

    /// A variable name or value cannot be stored in, or was not understood
    /// from, an environment.
    #[error("variable {name:?} in {} is invalid: {reason}", .path.display())]
    EnvVarInvalid {
        /// The environment file or device.
        path: PathBuf,
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A `fw_env.config` file could not be understood.
    #[error("line {line_number} of {} is invalid: {reason}", .path.display())]
    EnvConfigInvalid {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line number (0 for the file as a whole).
        line_number: usize,
        /// What is wrong with it.
        reason: String,
    },
}

fn at_path(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!(" at {}", path.display()),
        None => String::new(),
    }
}

impl Diagnose for BootError {
    fn code(&self) -> &'static str {
        match self {
            BootError::SlotInvalid { .. } => "BOOT_SLOT_INVALID",
            BootError::StateInvalid { .. } => "BOOT_STATE_INVALID",
            BootError::SlotIsPrimary { .. } => "BOOT_SLOT_IS_PRIMARY",
            BootError::NoTrialPending { .. } => "BOOT_NO_TRIAL_PENDING",
            BootError::NoGoodFallback { .. } => "BOOT_REFLASH_REQUIRED",
            BootError::TriesOutOfRange { .. } => "BOOT_TRIES_OUT_OF_RANGE",
            BootError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                "DISK_FULL"
            }
            BootError::Io { .. } => "BOOT_IO",
            BootError::StateMissing { .. } => "BOOT_STATE_MISSING",
            BootError::StateCorrupt { .. } => "BOOT_STATE_CORRUPT",
            BootError::EnvCorrupt { .. } => "BOOT_ENV_CORRUPT",
            BootError::EnvCrcMismatch { .. } => "BOOT_ENV_CRC_MISMATCH",
            BootError::EnvNoValidCopy { .. } => "BOOT_ENV_NO_VALID_COPY",
            BootError::EnvTooLarge { .. } => "BOOT_ENV_TOO_LARGE",
            BootError::EnvVarInvalid { .. } => "BOOT_ENV_VAR_INVALID",
            BootError::EnvConfigInvalid { .. } => "BOOT_ENV_CONFIG_INVALID",
        }
    }

    fn fix(&self) -> String {
        match self {
            BootError::SlotInvalid { .. } => "Name the slot as a or b".to_owned(),
            BootError::StateInvalid { .. } => {
                "Re-initialize boot control from the slot that is running now (ferry doctor --fix)"
                    .to_owned()
            }
            BootError::SlotIsPrimary { slot, .. } => format!(
                "Install to and act on slot {} instead (slot {slot} is the running known-good slot)",
                !*slot
            ),
            BootError::NoTrialPending { slot, .. } => format!(
                "Set slot {slot} as the next boot with a trial (install an update) before marking or abandoning it"
            ),
            BootError::NoGoodFallback { .. } => {
                "Reflash the device with a signed system image from recovery media: neither slot can boot".to_owned()
            }
            BootError::TriesOutOfRange { max, .. } => {
                format!("Give the trial between 1 and {max} boot tries")
            }
            BootError::Io { path, .. } => format!(
                "Check that {} exists, is writable and its filesystem is mounted read-write and not full",
                path.display()
            ),
            BootError::StateMissing { .. } => {
                "Initialize the device's boot control (ferry device init) before using it"
                    .to_owned()
            }
            BootError::StateCorrupt { path, .. } => format!(
                "Remove {} and re-initialize boot control from the slot that is running now",
                path.display()
            ),
            BootError::EnvCorrupt { path, .. } => format!(
                "Recreate {} (grub-editenv create, or fw_setenv from a known environment) and re-initialize boot control",
                path.display()
            ),
            BootError::EnvCrcMismatch { .. } => {
                "Rewrite the environment (fw_setenv or ferry doctor --fix); configure a redundant copy so one damaged copy is survivable"
                    .to_owned()
            }
            BootError::EnvNoValidCopy { .. } => {
                "Restore the U-Boot environment from a known-good image, then re-initialize boot control"
                    .to_owned()
            }
            BootError::EnvTooLarge { .. } => {
                "Remove unneeded variables or configure a larger environment".to_owned()
            }
            BootError::EnvVarInvalid { .. } => {
                "Use names without '=', NUL or newline, and values the bootloader can store"
                    .to_owned()
            }
            BootError::EnvConfigInvalid { .. } => {
                "Write each line as: DEVICE OFFSET SIZE, with at most two lines and equal sizes"
                    .to_owned()
            }
        }
    }
}

impl BootError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> BootError {
        BootError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// The bytes of the boot state at `path`: a missing file is [`BootError::StateMissing`].
pub(crate) fn read_state_bytes(path: &Path) -> Result<Vec<u8>, BootError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(BootError::StateMissing {
            path: path.to_owned(),
        }),
        Err(error) => Err(BootError::io("read", path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_sentence_without_a_trailing_period() {
        let errors = [
            BootError::SlotIsPrimary {
                slot: Slot::A,
                transition: Transition::Invalidate,
            },
            BootError::NoGoodFallback {
                slot: Slot::A,
                other: Slot::B,
                transition: Transition::FallBack,
            },
            BootError::EnvCrcMismatch {
                path: PathBuf::from("/dev/mmcblk0"),
                offset: 0x4000,
                copy_idx: 1,
                found: 1,
                expected: 2,
            },
            BootError::StateInvalid {
                path: None,
                reason: "the primary slot a is not marked good".to_owned(),
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(!text.contains('\n'), "{text}");
            assert!(!error.fix().ends_with('.'), "{}", error.fix());
            assert!(
                error
                    .code()
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
            );
        }
    }

    #[test]
    fn crc_mismatch_names_both_values() {
        let error = BootError::EnvCrcMismatch {
            path: PathBuf::from("/env"),
            offset: 0x4000,
            copy_idx: 1,
            found: 0xdead_beef,
            expected: 0x0000_0001,
        };
        let text = error.to_string();
        assert!(text.contains("0xdeadbeef"), "{text}");
        assert!(text.contains("0x00000001"), "{text}");
        assert!(text.contains("/env+0x4000"), "{text}");
    }
}
