//! External check against libubootenv's `fw_printenv` / `fw_setenv`
//! (Debian libubootenv-tool), on single and redundant environments kept in
//! plain files: they read what we write, and we read what they write.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{read, require_tool, run, temp_dir, uboot_layout, write};
use ferry_boot::uboot::{self, UbootEnvConfig};
use ferry_boot::vars::EnvMap;
use ferry_boot::{BootControl, BootError, BootState, Slot, UbootBootControl};

fn printenv() -> PathBuf {
    require_tool("fw_printenv", "libubootenv-tool")
}

fn setenv() -> PathBuf {
    require_tool("fw_setenv", "libubootenv-tool")
}

/// `fw_printenv -c CONFIG` as a map.
fn printed(config_path: &Path) -> BTreeMap<String, String> {
    let config = config_path.to_string_lossy().into_owned();
    run(&printenv(), &["-c", &config])
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn board_env() -> EnvMap {
    let mut env = EnvMap::new();
    env.insert("bootcmd".to_owned(), "run ferry_boot".to_owned());
    env.insert(
        "bootargs".to_owned(),
        "console=ttyS0,115200 root=/dev/mmcblk0p2".to_owned(),
    );
    env
}

#[test]
fn fw_printenv_reads_what_we_write_single_and_redundant() -> Result<(), BootError> {
    for n_copies in [1, 2] {
        let dir = temp_dir();
        let (config_path, _) = uboot_layout(dir.path(), n_copies, 0x2000);
        let config = UbootEnvConfig::read(&config_path)?;
        uboot::write_env(&config, &board_env())?;
        assert_eq!(printed(&config_path), board_env(), "{n_copies} copies");

        let control = UbootBootControl::new(&config_path);
        // Several stores, so the redundant copies alternate (and flags grow).
        let state = BootState::new(Slot::A);
        control.store(&state)?;
        let state = state.set_trial(Slot::B, 3)?;
        control.store(&state)?;
        let (_, state) = state.select_for_boot(common::at());
        control.store(&state)?;

        let vars = printed(&config_path);
        let get = |name: &str| vars.get(name).map(String::as_str);
        assert_eq!(get("bootcmd"), Some("run ferry_boot"), "{n_copies} copies");
        assert_eq!(get("BOOT_ORDER"), Some("B A"));
        assert_eq!(get("BOOT_A_LEFT"), Some("3"));
        assert_eq!(get("BOOT_B_LEFT"), Some("2"));
        assert_eq!(get("FERRY_PRIMARY"), Some("A"));
        assert_eq!(get("FERRY_TRIAL"), Some("B"));
        assert_eq!(get("FERRY_A_OK"), Some("1"));
        assert_eq!(get("FERRY_B_OK"), Some("0"));
    }
    Ok(())
}

#[test]
fn we_read_what_fw_setenv_writes_single_and_redundant() -> Result<(), BootError> {
    for n_copies in [1, 2] {
        let dir = temp_dir();
        let (config_path, _) = uboot_layout(dir.path(), n_copies, 0x2000);
        let config_text = config_path.to_string_lossy().into_owned();
        let config = UbootEnvConfig::read(&config_path)?;
        uboot::write_env(&config, &board_env())?;
        let control = UbootBootControl::new(&config_path);
        control.store(&BootState::new(Slot::A).set_trial(Slot::B, 3)?)?;

        // What a boot script's setexpr + saveenv does; twice, so fw_setenv
        // also writes after its own write.
        run(&setenv(), &["-c", &config_text, "BOOT_B_LEFT", "2"]);
        run(&setenv(), &["-c", &config_text, "BOOT_B_LEFT", "1"]);
        run(&setenv(), &["-c", &config_text, "extra", "a b=c"]);
        let state = control.load()?;
        assert_eq!(
            state.trial().map(|trial| trial.tries_left),
            Some(1),
            "{n_copies} copies"
        );
        let env = uboot::read_env(&config)?;
        assert_eq!(env.vars.get("extra").map(String::as_str), Some("a b=c"));
        assert_eq!(
            env.vars.get("bootcmd").map(String::as_str),
            Some("run ferry_boot")
        );

        // And we write after it: it sees our commit.
        control.store(&state.mark_good(Slot::B)?)?;
        let vars = printed(&config_path);
        assert_eq!(vars.get("FERRY_PRIMARY").map(String::as_str), Some("B"));
        assert_eq!(vars.get("extra").map(String::as_str), Some("a b=c"));
    }
    Ok(())
}

#[test]
fn a_torn_copy_is_skipped_by_us_and_by_fw_printenv() -> Result<(), BootError> {
    let size = 0x1000;
    let dir = temp_dir();
    let (config_path, env_path) = uboot_layout(dir.path(), 2, size);
    let config = UbootEnvConfig::read(&config_path)?;
    uboot::write_env(&config, &board_env())?;
    let control = UbootBootControl::new(&config_path);
    let older = BootState::new(Slot::A);
    control.store(&older)?;
    let before = read(&env_path);
    let newer = older.set_trial(Slot::B, 3)?;
    control.store(&newer)?;
    let active = uboot::read_env(&config)?.active_copy;

    // Power cut halfway through that write: the first half of the new copy
    // landed, the rest is still the old bytes.
    let mut torn = read(&env_path);
    let start = active * size;
    torn[start + size / 2..start + size].copy_from_slice(&before[start + size / 2..start + size]);
    // Make sure the tear really changed something the CRC covers.
    torn[start + size - 1] ^= 0x5a;
    write(&env_path, &torn);

    assert_eq!(control.load()?, older);
    let vars = printed(&config_path);
    assert_eq!(vars.get("FERRY_TRIAL").map(String::as_str), Some(""));
    assert_eq!(
        vars.get("bootcmd").map(String::as_str),
        Some("run ferry_boot")
    );
    Ok(())
}
