//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, TimeZone, Utc};

/// A fixed time, so failures compare equal after a round trip.
pub fn at() -> DateTime<Utc> {
    match Utc.with_ymd_and_hms(2026, 3, 20, 18, 51, 32).single() {
        Some(at) => at,
        None => panic!("the fixed test time is invalid"),
    }
}

/// A temporary directory, or a test failure saying why not.
pub fn temp_dir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary directory: {error}"),
    }
}

/// The path of `tool` on PATH; fails the test (never skips it) when missing.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for directory in std::env::split_paths(&path) {
        let candidate = directory.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{tool} is not on PATH, so this external check cannot run: install Debian's {package} package (apt-get install {package})"
    );
}

/// Runs `program args…`, failing the test with its output if it fails.
pub fn run(program: &Path, args: &[&str]) -> String {
    let output = run_raw(program, args);
    if !output.status.success() {
        panic!(
            "{} {:?} failed with {}: stdout {:?} stderr {:?}",
            program.display(),
            args,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `program args…` and returns whatever happened.
pub fn run_raw(program: &Path, args: &[&str]) -> Output {
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(error) => panic!("cannot run {}: {error}", program.display()),
    }
}

/// Writes `bytes` to `path` or fails the test.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Err(error) = std::fs::write(path, bytes) {
        panic!("cannot write {}: {error}", path.display());
    }
}

/// Reads `path` or fails the test.
pub fn read(path: &Path) -> Vec<u8> {
    match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    }
}

/// Lays out a U-Boot environment in `dir`: `env.bin` of `n_copies` copies of
/// `size` bytes (one after the other), zero-filled, and `fw_env.config`
/// naming them by absolute path. Returns the config path and env path.
pub fn uboot_layout(dir: &Path, n_copies: usize, size: usize) -> (PathBuf, PathBuf) {
    let env_path = dir.join("env.bin");
    write(&env_path, &vec![0u8; size * n_copies]);
    let mut config = String::from("# device offset size\n");
    for copy_idx in 0..n_copies {
        config.push_str(&format!(
            "{} {:#x} {:#x}\n",
            env_path.display(),
            copy_idx * size,
            size
        ));
    }
    let config_path = dir.join("fw_env.config");
    write(&config_path, config.as_bytes());
    (config_path, env_path)
}
