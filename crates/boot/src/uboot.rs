//! The U-Boot backend: the binary environment that U-Boot and libubootenv's
//! `fw_printenv` / `fw_setenv` read and write.
//!
//! # Format
//!
//! Each copy of the environment is `size` bytes at an offset in a file or
//! device: a CRC-32 (little-endian, zlib polynomial) of the data area, then,
//! when there are two copies (a redundant environment), one flags byte, then
//! the data area: `name=value` strings each ended by NUL, one more NUL after
//! the last, and zero padding to the end. The CRC covers the whole data area,
//! padding included.
//!
//! With two copies, the valid one with the newer flags is active (flags
//! count up and wrap, `0x00` being newer than `0xff`: the incremental scheme
//! libubootenv uses for files, block devices, NAND and UBI; the boolean
//! scheme of raw NOR flash is not supported). A write goes to the inactive
//! copy with the active copy's flags plus one and is fsynced, so a power cut
//! mid-write leaves a copy with a bad CRC and the old copy still active. A
//! copy with a bad CRC is skipped; two bad copies are an error. A single
//! copy is rewritten in place and is not power-cut safe: configure two.
//!
//! Copies are configured as in libubootenv's `fw_env.config`: one line per
//! copy, `DEVICE OFFSET SIZE [SECTOR_SIZE [SECTORS]]`, offset as a C integer
//! (`0x` hex, leading-zero octal or decimal) and size in hex with or without
//! `0x`; `#` starts a comment line. Departures: a relative device path is
//! taken relative to the configuration file, and negative offsets (from the
//! end of a block device) are refused.
//!
//! # Variables
//!
//! | variable | meaning |
//! | --- | --- |
//! | `BOOT_ORDER` | slots to try, first first: `"B A"` while B is on trial, else `"A"` (`"A B"` if B is also good) |
//! | `BOOT_A_LEFT`, `BOOT_B_LEFT` | boot tries left for the slot on trial; the primary's is kept at [`DEFAULT_BOOT_TRIES`](crate::DEFAULT_BOOT_TRIES) and other slots' at 0, so RAUC-style scripts that count every slot keep booting the primary |
//! | `FERRY_A_OK`, `FERRY_B_OK` | `1` if the slot is good, else `0` |
//! | `FERRY_PRIMARY` | `A` or `B`: the committed slot |
//! | `FERRY_TRIAL` | `A`, `B`, or empty: the slot on trial |
//! | `FERRY_FAILED_SLOT`, `FERRY_FAILED_CODE`, `FERRY_FAILED_MESSAGE`, `FERRY_FAILED_AT` | the last abandoned slot, its code, message and RFC 3339 time; absent if none |
//!
//! Every other variable (`bootcmd`, `bootargs`, …) is kept. A boot script
//! takes the first slot in `BOOT_ORDER` whose `FERRY_x_OK` is 1, or whose
//! `BOOT_x_LEFT` is above 0 after `setexpr BOOT_x_LEFT ${BOOT_x_LEFT} - 1`
//! and `saveenv`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::BootControl;
use crate::error::BootError;
use crate::state::BootState;
use crate::vars::{self, EnvMap, UBOOT_NAMES};

/// One copy of the environment: where it is and how big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLocation {
    /// The file or device holding it.
    pub path: PathBuf,
    /// Byte offset of the copy.
    pub offset: u64,
    /// Size of the copy in bytes, header included.
    pub size: usize,
}

/// Where the environment's one or two copies are, as `fw_env.config` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootEnvConfig {
    copies: Vec<EnvLocation>,
}

/// The environment as read: its variables and which copy they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootEnv {
    /// The variables.
    pub vars: EnvMap,
    /// Index of the copy read (0 or 1).
    pub active_copy: usize,
    /// That copy's flags byte (`None` for a single-copy environment).
    pub flags: Option<u8>,
}

impl UbootEnvConfig {
    /// A configuration of one copy, or two (redundant) of the same size.
    pub fn new(copies: Vec<EnvLocation>) -> Result<UbootEnvConfig, BootError> {
        let invalid = |reason: &str| BootError::EnvConfigInvalid {
            path: PathBuf::new(),
            line_number: 0,
            reason: reason.to_owned(),
        };
        match copies.as_slice() {
            [] => return Err(invalid("no environment copy is configured")),
            [_] | [_, _] => {}
            _ => return Err(invalid("more than two environment copies are configured")),
        }
        if copies
            .iter()
            .any(|copy| copy.size <= REDUNDANT_HEADER_LEN + 1)
        {
            return Err(invalid(
                "an environment copy is too small to hold a header and data",
            ));
        }
        if copies.iter().any(|copy| copy.size != copies[0].size) {
            return Err(invalid("the two environment copies have different sizes"));
        }
        Ok(UbootEnvConfig { copies })
    }

    /// Parses `fw_env.config` text read from `config_path`.
    pub fn parse(text: &str, config_path: &Path) -> Result<UbootEnvConfig, BootError> {
        let base = config_path.parent().unwrap_or(Path::new(""));
        let mut copies = Vec::new();
        for (line_idx, line) in text.lines().enumerate() {
            let invalid = |reason: String| BootError::EnvConfigInvalid {
                path: config_path.to_owned(),
                line_number: line_idx + 1,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [device, offset, size, ..] = fields.as_slice() else {
                return Err(invalid("expected DEVICE OFFSET SIZE".to_owned()));
            };
            let offset = parse_c_integer(offset)
                .ok_or_else(|| invalid(format!("offset {offset:?} is not an integer")))?;
            let offset = u64::try_from(offset)
                .map_err(|_| invalid("negative offsets are not supported".to_owned()))?;
            let size = parse_hex(size)
                .filter(|&size| size > 0)
                .ok_or_else(|| invalid(format!("size {size:?} is not a non-zero hex number")))?;
            if copies.len() == 2 {
                return Err(invalid(
                    "more than two environment copies are configured".to_owned(),
                ));
            }
            copies.push(EnvLocation {
                path: base.join(device),
                offset,
                size,
            });
        }
        UbootEnvConfig::new(copies).map_err(|error| match error {
            BootError::EnvConfigInvalid {
                line_number,
                reason,
                ..
            } => BootError::EnvConfigInvalid {
                path: config_path.to_owned(),
                line_number,
                reason,
            },
            other => other,
        })
    }

    /// Reads and parses the `fw_env.config` file at `path`.
    pub fn read(path: &Path) -> Result<UbootEnvConfig, BootError> {
        let text = fs::read_to_string(path).map_err(|error| BootError::io("read", path, error))?;
        UbootEnvConfig::parse(&text, path)
    }

    /// The configured copies.
    pub fn copies(&self) -> &[EnvLocation] {
        &self.copies
    }

    /// Whether there are two copies.
    pub fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }
}

const SINGLE_HEADER_LEN: usize = 4;
const REDUNDANT_HEADER_LEN: usize = 5;

/// Encodes one copy: header (CRC, and `flags` if given) and data area,
/// `size` bytes in all.
pub fn encode_copy(
    vars: &EnvMap,
    size: usize,
    flags: Option<u8>,
    path: &Path,
) -> Result<Vec<u8>, BootError> {
    let header_len = if flags.is_some() {
        REDUNDANT_HEADER_LEN
    } else {
        SINGLE_HEADER_LEN
    };
    let mut data = Vec::with_capacity(size);
    for (name, value) in vars {
        let reason = if name.is_empty() {
            Some("the name is empty")
        } else if name.contains(['=', '\0']) {
            Some("the name contains '=' or NUL")
        } else if value.contains('\0') {
            Some("the value contains NUL")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(BootError::EnvVarInvalid {
                path: path.to_owned(),
                name: name.clone(),
                reason: reason.to_owned(),
            });
        }
        data.extend_from_slice(name.as_bytes());
        data.push(b'=');
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    data.push(0);
    let capacity = size.saturating_sub(header_len);
    if data.len() > capacity {
        return Err(BootError::EnvTooLarge {
            path: path.to_owned(),
            needed: data.len(),
            capacity,
        });
    }
    data.resize(capacity, 0);
    let mut copy = crc32fast::hash(&data).to_le_bytes().to_vec();
    copy.extend(flags);
    copy.extend_from_slice(&data);
    Ok(copy)
}

/// Decodes one copy read from `location` (copy number `copy_idx`); `Ok` only
/// if its CRC matches. Returns its flags byte (if `redundant`) and variables.
pub fn decode_copy(
    bytes: &[u8],
    redundant: bool,
    location: &EnvLocation,
    copy_idx: usize,
) -> Result<(Option<u8>, EnvMap), BootError> {
    let corrupt = |reason: &str| BootError::EnvCorrupt {
        path: location.path.clone(),
        reason: format!("copy {copy_idx} at offset {:#x}: {reason}", location.offset),
    };
    let header_len = if redundant {
        REDUNDANT_HEADER_LEN
    } else {
        SINGLE_HEADER_LEN
    };
    if bytes.len() <= header_len {
        return Err(corrupt("it is shorter than its header"));
    }
    let found = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let flags = redundant.then_some(bytes[4]);
    let data = &bytes[header_len..];
    let expected = crc32fast::hash(data);
    if found != expected {
        return Err(BootError::EnvCrcMismatch {
            path: location.path.clone(),
            offset: location.offset,
            copy_idx,
            found,
            expected,
        });
    }
    let mut vars = EnvMap::new();
    let mut position = 0;
    while position < data.len() && data[position] != 0 {
        let Some(len) = data[position..].iter().position(|&byte| byte == 0) else {
            return Err(corrupt("the last variable has no NUL"));
        };
        let entry = &data[position..position + len];
        position += len + 1;
        // Like libubootenv, skip an entry without '='.
        let Some(equals) = entry.iter().position(|&byte| byte == b'=') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            std::str::from_utf8(&entry[..equals]),
            std::str::from_utf8(&entry[equals + 1..]),
        ) else {
            return Err(corrupt("a variable is not UTF-8"));
        };
        vars.insert(name.to_owned(), value.to_owned());
    }
    Ok((flags, vars))
}

/// Which of two valid copies is active, by their flags (incremental scheme).
pub fn active_copy(flags_0: u8, flags_1: u8) -> usize {
    match (flags_0, flags_1) {
        (0xff, 0x00) => 1,
        (0x00, 0xff) => 0,
        (flags_0, flags_1) if flags_1 > flags_0 => 1,
        _ => 0,
    }
}

/// Reads the environment: the active copy's variables.
pub fn read_env(config: &UbootEnvConfig) -> Result<UbootEnv, BootError> {
    let redundant = config.is_redundant();
    let mut decoded = Vec::with_capacity(2);
    for (copy_idx, location) in config.copies.iter().enumerate() {
        let result = read_copy(location, copy_idx)
            .and_then(|bytes| decode_copy(&bytes, redundant, location, copy_idx));
        decoded.push(result);
    }
    let mut decoded = decoded.into_iter();
    let (first, second) = (decoded.next(), decoded.next());
    let pick = |copy_idx: usize, (flags, vars): (Option<u8>, EnvMap)| UbootEnv {
        vars,
        active_copy: copy_idx,
        flags,
    };
    match (first, second) {
        (Some(first), None) => first.map(|copy| pick(0, copy)),
        (Some(Ok(first)), Some(Ok(second))) => {
            let flags = (first.0.unwrap_or(0), second.0.unwrap_or(0));
            if active_copy(flags.0, flags.1) == 1 {
                Ok(pick(1, second))
            } else {
                Ok(pick(0, first))
            }
        }
        (Some(Ok(first)), Some(Err(_))) => Ok(pick(0, first)),
        (Some(Err(_)), Some(Ok(second))) => Ok(pick(1, second)),
        (Some(Err(first)), Some(Err(second))) => Err(BootError::EnvNoValidCopy {
            first: Box::new(first),
            second: Box::new(second),
        }),
        (None, _) => Err(BootError::EnvConfigInvalid {
            path: PathBuf::new(),
            line_number: 0,
            reason: "no environment copy is configured".to_owned(),
        }),
    }
}

/// Writes `vars` as the new environment. With two copies it goes to the
/// inactive copy with newer flags (to copy 0 if neither copy is valid); with
/// one copy, in place.
pub fn write_env(config: &UbootEnvConfig, vars: &EnvMap) -> Result<(), BootError> {
    let (copy_idx, flags) = if config.is_redundant() {
        match read_env(config) {
            Ok(current) => (
                1 - current.active_copy,
                Some(current.flags.unwrap_or(0).wrapping_add(1)),
            ),
            Err(_) => (0, Some(1)),
        }
    } else {
        (0, None)
    };
    let location = &config.copies[copy_idx];
    let bytes = encode_copy(vars, location.size, flags, &location.path)?;
    write_copy(location, &bytes)
}

/// The environment file [`prepare_env`] makes when it writes a fresh configuration.
pub const PREPARED_ENV_FILE: &str = "uboot.env";

/// Size of each of the two copies [`prepare_env`] lays out (16 KiB, a common
/// `CONFIG_ENV_SIZE`).
const PREPARED_COPY_SIZE: usize = 0x4000;

/// Gives a U-Boot environment its first content, where none is configured yet: when
/// `config_path` does not exist, writes it (`fw_env.config` format) naming two
/// redundant copies in `env_path`, and stores an environment holding only
/// `bootcmd=run ferry_boot`. Returns whether it did; an existing configuration (a real
/// board's) is left alone.
pub fn prepare_env(config_path: &Path, env_path: &Path) -> Result<bool, BootError> {
    if config_path.exists() {
        return Ok(false);
    }
    let file =
        fs::File::create(env_path).map_err(|error| BootError::io("create", env_path, error))?;
    file.set_len(2 * PREPARED_COPY_SIZE as u64)
        .and_then(|()| file.sync_all())
        .map_err(|error| BootError::io("size", env_path, error))?;
    let text = format!(
        "# ferry: redundant U-Boot environment (fw_env.config format)\n\
         {env} 0x0000 {size:#06x}\n{env} {size:#06x} {size:#06x}\n",
        env = env_path.display(),
        size = PREPARED_COPY_SIZE,
    );
    ferry_durable::write_atomic(config_path, text.as_bytes())
        .map_err(|error| BootError::io("write", config_path, error))?;
    let config = UbootEnvConfig::read(config_path)?;
    let mut vars = EnvMap::new();
    vars.insert("bootcmd".into(), "run ferry_boot".into());
    write_env(&config, &vars)?;
    Ok(true)
}

/// Boot control in a U-Boot environment (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct UbootBootControl {
    config_path: PathBuf,
}

impl UbootBootControl {
    /// Boot control in the environment that the `fw_env.config`-style file at
    /// `config_path` describes (read again at each load and store).
    pub fn new(config_path: impl Into<PathBuf>) -> UbootBootControl {
        UbootBootControl {
            config_path: config_path.into(),
        }
    }
}

impl BootControl for UbootBootControl {
    fn load(&self) -> Result<BootState, BootError> {
        let config = UbootEnvConfig::read(&self.config_path)?;
        let env = read_env(&config)?;
        let path = &config.copies[env.active_copy].path;
        vars::read_state(&env.vars, &UBOOT_NAMES, path)
    }

    fn store(&self, state: &BootState) -> Result<(), BootError> {
        let config = UbootEnvConfig::read(&self.config_path)?;
        // Never replace an unreadable environment: it holds bootcmd and the
        // rest of the board's variables, which we could not restore.
        let mut env = read_env(&config)?.vars;
        vars::write_state(&mut env, &UBOOT_NAMES, state);
        write_env(&config, &env)
    }

    fn describe(&self) -> String {
        format!(
            "U-Boot environment configured by {}",
            self.config_path.display()
        )
    }
}

fn read_copy(location: &EnvLocation, copy_idx: usize) -> Result<Vec<u8>, BootError> {
    let path = &location.path;
    let mut file = fs::File::open(path).map_err(|error| BootError::io("open", path, error))?;
    file.seek(SeekFrom::Start(location.offset))
        .map_err(|error| BootError::io("seek in", path, error))?;
    let mut bytes = vec![0; location.size];
    match file.read_exact(&mut bytes) {
        Ok(()) => Ok(bytes),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Err(BootError::EnvCorrupt {
            path: path.clone(),
            reason: format!(
                "copy {copy_idx} at offset {:#x} is cut short before its {} bytes",
                location.offset, location.size
            ),
        }),
        Err(error) => Err(BootError::io("read", path, error)),
    }
}

fn write_copy(location: &EnvLocation, bytes: &[u8]) -> Result<(), BootError> {
    let path = &location.path;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|error| BootError::io("open for writing", path, error))?;
    file.seek(SeekFrom::Start(location.offset))
        .map_err(|error| BootError::io("seek in", path, error))?;
    file.write_all(bytes)
        .map_err(|error| BootError::io("write", path, error))?;
    file.sync_all()
        .map_err(|error| BootError::io("fsync", path, error))
}

/// An integer as C's `strtoll(text, _, 0)` reads it.
fn parse_c_integer(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i128::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<i128>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// A size as C's `%zx` reads it: hex, `0x` optional.
fn parse_hex(text: &str) -> Option<usize> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    usize::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_numbers_read_as_libubootenv_reads_them() {
        assert_eq!(parse_c_integer("0x4000"), Some(0x4000));
        assert_eq!(parse_c_integer("010"), Some(8));
        assert_eq!(parse_c_integer("16384"), Some(16384));
        assert_eq!(parse_c_integer("0"), Some(0));
        assert_eq!(parse_c_integer("-0x2000"), Some(-0x2000));
        assert_eq!(parse_hex("4000"), Some(0x4000));
        assert_eq!(parse_hex("0x4000"), Some(0x4000));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn flags_pick_the_newer_copy_across_wraparound() {
        assert_eq!(active_copy(1, 2), 1);
        assert_eq!(active_copy(2, 1), 0);
        assert_eq!(active_copy(0xff, 0x00), 1);
        assert_eq!(active_copy(0x00, 0xff), 0);
        assert_eq!(active_copy(7, 7), 0);
    }
}
