//! The file backend: the boot state as JSON in the device's `boot/`
//! directory, for tests, the demo and `ferry reboot`'s simulated bootloader.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BootControl;
use crate::error::BootError;
use crate::state::BootState;

/// Name of the state file inside the device's `boot/` directory.
pub const STATE_FILE_NAME: &str = "boot-state.json";

/// Version of the JSON layout written by [`FileBootControl`].
pub const STATE_FILE_FORMAT: u32 = 1;

/// Boot control kept in a JSON file, written atomically.
///
/// Layout: `{"format": 1, "state": {"primary": "a", "trial": {"slot": "b",
/// "tries_left": 3}, "good": {"a": true, "b": false}, "last_failure": null}}`.
#[derive(Debug, Clone)]
pub struct FileBootControl {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    state: BootState,
}

impl FileBootControl {
    /// Boot control in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileBootControl {
        FileBootControl { path: path.into() }
    }

    /// Boot control in [`STATE_FILE_NAME`] inside a device's `boot/` directory.
    pub fn in_boot_dir(device_boot_dir: &Path) -> FileBootControl {
        FileBootControl::new(device_boot_dir.join(STATE_FILE_NAME))
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BootControl for FileBootControl {
    fn load(&self) -> Result<BootState, BootError> {
        let bytes = crate::error::read_state_bytes(&self.path)?;
        let file: StateFile =
            serde_json::from_slice(&bytes).map_err(|error| BootError::StateCorrupt {
                path: self.path.clone(),
                reason: error.to_string(),
            })?;
        if file.format != STATE_FILE_FORMAT {
            return Err(BootError::StateCorrupt {
                path: self.path.clone(),
                reason: format!(
                    "format {} is not the supported format {STATE_FILE_FORMAT}",
                    file.format
                ),
            });
        }
        Ok(file.state)
    }

    fn store(&self, state: &BootState) -> Result<(), BootError> {
        let file = StateFile {
            format: STATE_FILE_FORMAT,
            state: state.clone(),
        };
        let mut bytes =
            serde_json::to_vec_pretty(&file).map_err(|error| BootError::StateCorrupt {
                path: self.path.clone(),
                reason: error.to_string(),
            })?;
        bytes.push(b'\n');
        ferry_durable::write_atomic(&self.path, &bytes)
            .map_err(|error| BootError::io("write", &self.path, error))
    }

    fn describe(&self) -> String {
        format!("ferry boot state file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::Slot;
    use chrono::{TimeZone, Utc};
    use ferry_types::Diagnose;
    use std::fs;

    #[test]
    fn round_trips_and_leaves_no_temporary_files() -> Result<(), BootError> {
        let directory =
            tempfile::tempdir().map_err(|e| BootError::io("create", Path::new("/tmp"), e))?;
        let control = FileBootControl::in_boot_dir(directory.path());
        let at = Utc.with_ymd_and_hms(2026, 3, 20, 18, 51, 32).single();
        let Some(at) = at else {
            panic!("bad test date")
        };
        let state = BootState::new(Slot::A)
            .set_trial(Slot::B, 3)?
            .abandon(
                Slot::B,
                "SEAL_MISMATCH",
                "the seal of slot b does not match",
                at,
            )?
            .set_trial(Slot::B, 2)?;
        control.store(&state)?;
        assert_eq!(control.load()?, state);
        let names: Vec<_> = fs::read_dir(directory.path())
            .map_err(|e| BootError::io("list", directory.path(), e))?
            .filter_map(|entry| entry.ok().map(|entry| entry.file_name()))
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE_NAME)]);
        Ok(())
    }

    #[test]
    fn missing_and_corrupt_files_have_their_codes() {
        let Ok(directory) = tempfile::tempdir() else {
            panic!("no temp dir")
        };
        let control = FileBootControl::in_boot_dir(directory.path());
        let missing = control.load().expect_err("nothing stored yet");
        assert_eq!(missing.code(), "BOOT_STATE_MISSING");

        let written = fs::write(control.path(), b"{\"format\":1,\"state\":");
        assert!(written.is_ok());
        let corrupt = control.load().expect_err("truncated JSON");
        assert_eq!(corrupt.code(), "BOOT_STATE_CORRUPT");

        // Valid JSON that breaks a rule: the primary is not good.
        let rule_broken = r#"{"format":1,"state":{"primary":"a","trial":null,"good":{"a":false,"b":true},"last_failure":null}}"#;
        assert!(fs::write(control.path(), rule_broken).is_ok());
        let error = control.load().expect_err("primary not good");
        assert_eq!(error.code(), "BOOT_STATE_CORRUPT");
        assert!(error.to_string().contains("not marked good"), "{error}");
    }
}
