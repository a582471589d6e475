//! Each backend stores and loads every kind of state, keeps the variables
//! it does not own, and names damage with its code.

mod common;

use common::{at, read, temp_dir, uboot_layout, write};
use ferry_boot::uboot::{self, UbootEnvConfig};
use ferry_boot::vars::EnvMap;
use ferry_boot::{
    BootBackend, BootControl, BootError, BootState, GrubBootControl, Slot, UbootBootControl, grub,
    open,
};
use ferry_types::Diagnose;

/// States covering every field: idle, trial, failure, committed on B.
fn sample_states() -> Result<Vec<BootState>, BootError> {
    let idle = BootState::new(Slot::A);
    let trial = idle.set_trial(Slot::B, 3)?;
    let (_, booted) = trial.select_for_boot(at());
    let failed = booted.abandon(
        Slot::B,
        "SEAL_MISMATCH",
        "the seal of slot b (\"root\") does not match \\ =",
        at(),
    )?;
    let committed = failed.set_trial(Slot::B, 1)?.mark_good(Slot::B)?;
    let retrial = committed.set_trial(Slot::A, 9)?;
    Ok(vec![idle, trial, booted, failed, committed, retrial])
}

fn round_trip(control: &dyn BootControl) -> Result<(), BootError> {
    for state in sample_states()? {
        control.store(&state)?;
        assert_eq!(control.load()?, state, "{}", control.describe());
    }
    Ok(())
}

#[test]
fn file_backend_round_trips() -> Result<(), BootError> {
    let dir = temp_dir();
    round_trip(open(&BootBackend::File, dir.path()).as_ref())
}

#[test]
fn grub_backend_round_trips_and_keeps_other_variables() -> Result<(), BootError> {
    let dir = temp_dir();
    let path = dir.path().join("grubenv");
    let mut env = EnvMap::new();
    env.insert("saved_entry".to_owned(), "gnulinux-advanced".to_owned());
    grub::write_env_block(&path, &env)?;
    let control = open(
        &BootBackend::Grub {
            path: "grubenv".into(),
        },
        dir.path(),
    );
    round_trip(control.as_ref())?;
    let env = grub::read_env_block(&path)?;
    assert_eq!(
        env.get("saved_entry").map(String::as_str),
        Some("gnulinux-advanced")
    );
    assert_eq!(read(&path).len(), grub::GRUB_ENV_SIZE);
    Ok(())
}

#[test]
fn grub_variables_follow_the_documented_mapping() -> Result<(), BootError> {
    let dir = temp_dir();
    let control = GrubBootControl::new(dir.path().join("grubenv"));
    control.store(&BootState::new(Slot::A).set_trial(Slot::B, 3)?)?;
    let env = grub::read_env_block(control.path())?;
    let get = |name: &str| {
        env.get(name)
            .cloned()
            .unwrap_or_else(|| format!("<no {name}>"))
    };
    assert_eq!(get("ORDER"), "B A");
    assert_eq!((get("A_OK"), get("B_OK")), ("1".into(), "0".into()));
    assert_eq!((get("A_TRY"), get("B_TRY")), ("0".into(), "3".into()));
    assert_eq!(
        (get("FERRY_PRIMARY"), get("FERRY_TRIAL")),
        ("A".into(), "B".into())
    );
    assert!(!env.contains_key("FERRY_FAILED_CODE"));

    let state = control.load()?.mark_good(Slot::B)?;
    control.store(&state)?;
    let env = grub::read_env_block(control.path())?;
    assert_eq!(env.get("ORDER").map(String::as_str), Some("B A"));
    assert_eq!(env.get("FERRY_TRIAL").map(String::as_str), Some(""));
    Ok(())
}

#[test]
fn grub_missing_and_foreign_blocks_are_named() -> Result<(), BootError> {
    let dir = temp_dir();
    let control = GrubBootControl::new(dir.path().join("grubenv"));
    assert_eq!(
        control.load().map_err(|e| e.code()).err(),
        Some("BOOT_STATE_MISSING")
    );
    // A block GRUB made, without ferry's variables yet.
    grub::write_env_block(control.path(), &EnvMap::new())?;
    assert_eq!(
        control.load().map_err(|e| e.code()).err(),
        Some("BOOT_STATE_MISSING")
    );
    write(control.path(), b"not an environment block");
    assert_eq!(
        control.load().map_err(|e| e.code()).err(),
        Some("BOOT_ENV_CORRUPT")
    );
    // A bootloader-side edit that breaks a rule.
    control.store(&BootState::new(Slot::A))?;
    let mut env = grub::read_env_block(control.path())?;
    env.insert("A_OK".to_owned(), "0".to_owned());
    grub::write_env_block(control.path(), &env)?;
    assert_eq!(
        control.load().map_err(|e| e.code()).err(),
        Some("BOOT_STATE_INVALID")
    );
    env.insert("A_OK".to_owned(), "yes".to_owned());
    grub::write_env_block(control.path(), &env)?;
    assert_eq!(
        control.load().map_err(|e| e.code()).err(),
        Some("BOOT_ENV_VAR_INVALID")
    );
    Ok(())
}

fn board_env() -> EnvMap {
    let mut env = EnvMap::new();
    env.insert("bootcmd".to_owned(), "run distro_bootcmd".to_owned());
    env.insert("bootdelay".to_owned(), "2".to_owned());
    env
}

#[test]
fn uboot_single_and_redundant_round_trip_and_keep_board_variables() -> Result<(), BootError> {
    for n_copies in [1, 2] {
        let dir = temp_dir();
        let (config_path, _) = uboot_layout(dir.path(), n_copies, 0x2000);
        let config = UbootEnvConfig::read(&config_path)?;
        assert_eq!(config.is_redundant(), n_copies == 2);
        uboot::write_env(&config, &board_env())?;
        let control = UbootBootControl::new(&config_path);
        round_trip(&control)?;
        let env = uboot::read_env(&config)?;
        assert_eq!(
            env.vars.get("bootcmd").map(String::as_str),
            Some("run distro_bootcmd")
        );
        assert_eq!(env.vars.get("BOOT_ORDER").map(String::as_str), Some("A B"));
        assert_eq!(env.vars.get("BOOT_A_LEFT").map(String::as_str), Some("9"));
        assert_eq!(env.vars.get("BOOT_B_LEFT").map(String::as_str), Some("3"));
        assert_eq!(env.vars.get("FERRY_TRIAL").map(String::as_str), Some("A"));
    }
    Ok(())
}

#[test]
fn uboot_redundant_writes_alternate_copies_with_newer_flags() -> Result<(), BootError> {
    let dir = temp_dir();
    let (config_path, _) = uboot_layout(dir.path(), 2, 0x1000);
    let config = UbootEnvConfig::read(&config_path)?;
    uboot::write_env(&config, &board_env())?;
    let first = uboot::read_env(&config)?;
    let control = UbootBootControl::new(&config_path);
    control.store(&BootState::new(Slot::A))?;
    let second = uboot::read_env(&config)?;
    assert_ne!(first.active_copy, second.active_copy);
    assert_eq!(second.flags, first.flags.map(|flags| flags.wrapping_add(1)));
    Ok(())
}

#[test]
fn uboot_bad_crc_in_one_copy_falls_back_to_the_other() -> Result<(), BootError> {
    let dir = temp_dir();
    let size = 0x1000;
    let (config_path, env_path) = uboot_layout(dir.path(), 2, size);
    let config = UbootEnvConfig::read(&config_path)?;
    uboot::write_env(&config, &board_env())?;
    let control = UbootBootControl::new(&config_path);
    let older = BootState::new(Slot::A);
    control.store(&older)?;
    let newer = older.set_trial(Slot::B, 3)?;
    control.store(&newer)?;
    let active = uboot::read_env(&config)?.active_copy;

    // Flip one data byte of the active copy: its CRC no longer matches.
    let mut bytes = read(&env_path);
    bytes[active * size + 20] ^= 0x01;
    write(&env_path, &bytes);
    assert_eq!(control.load()?, older);
    assert_eq!(uboot::read_env(&config)?.active_copy, 1 - active);

    // The next store repairs by writing over the damaged copy.
    control.store(&newer)?;
    assert_eq!(control.load()?, newer);

    // Both damaged: an error naming both, and a store refuses to guess.
    let mut bytes = read(&env_path);
    bytes[10] ^= 0xff;
    bytes[size + 10] ^= 0xff;
    write(&env_path, &bytes);
    let error = control.load().expect_err("both copies bad");
    assert_eq!(error.code(), "BOOT_ENV_NO_VALID_COPY");
    let BootError::EnvNoValidCopy { first, second } = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(**first, BootError::EnvCrcMismatch { copy_idx: 0, .. }),
        "{first:?}"
    );
    assert!(
        matches!(
            **second,
            BootError::EnvCrcMismatch {
                copy_idx: 1,
                offset: 0x1000,
                ..
            }
        ),
        "{second:?}"
    );
    let error = control.store(&newer).expect_err("refuses to overwrite");
    assert_eq!(error.code(), "BOOT_ENV_NO_VALID_COPY");
    assert_eq!(read(&env_path), bytes, "nothing was written");
    Ok(())
}

#[test]
fn uboot_single_copy_crc_mismatch_names_crc_values() -> Result<(), BootError> {
    let dir = temp_dir();
    let (config_path, env_path) = uboot_layout(dir.path(), 1, 0x1000);
    let config = UbootEnvConfig::read(&config_path)?;
    uboot::write_env(&config, &board_env())?;
    let mut bytes = read(&env_path);
    bytes[0] ^= 0x01;
    write(&env_path, &bytes);
    let error = uboot::read_env(&config).expect_err("bad crc");
    assert_eq!(error.code(), "BOOT_ENV_CRC_MISMATCH");
    let BootError::EnvCrcMismatch {
        found, expected, ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(found ^ expected, 0x01);
    Ok(())
}

#[test]
fn uboot_too_large_and_bad_names_are_refused() -> Result<(), BootError> {
    let dir = temp_dir();
    let (config_path, _) = uboot_layout(dir.path(), 2, 0x100);
    let config = UbootEnvConfig::read(&config_path)?;
    let mut env = EnvMap::new();
    env.insert("big".to_owned(), "x".repeat(0x100));
    assert_eq!(
        uboot::write_env(&config, &env).map_err(|e| e.code()).err(),
        Some("BOOT_ENV_TOO_LARGE")
    );
    let mut env = EnvMap::new();
    env.insert("a=b".to_owned(), "x".to_owned());
    assert_eq!(
        uboot::write_env(&config, &env).map_err(|e| e.code()).err(),
        Some("BOOT_ENV_VAR_INVALID")
    );
    Ok(())
}

#[test]
fn fw_env_config_errors_name_the_line() {
    let config_path = std::path::Path::new("/etc/fw_env.config");
    let cases = [
        ("/dev/mmcblk0 0x4000\n", 1),
        ("# c\n/dev/x 0x0 0x4000\n/dev/x 0x4000 0x2000\n", 0),
        ("/dev/x 0x0 zz\n", 1),
        ("/dev/x -0x4000 0x4000\n", 1),
        ("/a 0 1000\n/b 0 1000\n/c 0 1000\n", 3),
        ("# only comments\n", 0),
    ];
    for (text, line_number) in cases {
        let error = UbootEnvConfig::parse(text, config_path).expect_err(text);
        assert_eq!(error.code(), "BOOT_ENV_CONFIG_INVALID");
        assert!(
            matches!(&error, BootError::EnvConfigInvalid { line_number: n, .. } if *n == line_number),
            "{text:?}: {error}"
        );
    }
    let Ok(config) = UbootEnvConfig::parse("env.bin 0x4000 2000 1000 2\n", config_path) else {
        panic!("valid line refused")
    };
    assert_eq!(
        config.copies()[0].path,
        std::path::Path::new("/etc/env.bin")
    );
    assert_eq!(
        (config.copies()[0].offset, config.copies()[0].size),
        (0x4000, 0x2000)
    );
}
