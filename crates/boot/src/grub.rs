//! The GRUB backend: the 1024-byte environment block that `grub-editenv`,
//! `load_env` and `save_env` read and write.
//!
//! # Format
//!
//! The block starts with the signature `# GRUB Environment Block\n`, then one
//! `name=value\n` line per variable, then `#` up to 1024 bytes. In a value a
//! backslash and a newline are each written with a backslash before them; a
//! reader takes the byte after any backslash literally. Lines starting with
//! `#` are comments. This follows `grub-core/lib/envblk.c`; like
//! `grub-editenv`, [`write_env_block`] replaces the whole file (temporary
//! file, fsync, rename, fsync of the directory), so a crash leaves the old
//! block or the new one.
//!
//! # Variables
//!
//! | variable | meaning |
//! | --- | --- |
//! | `ORDER` | slots to try, first first: `"B A"` while B is on trial, else `"A"` (`"A B"` if B is also good) |
//! | `A_OK`, `B_OK` | `1` if the slot is good, else `0` |
//! | `A_TRY`, `B_TRY` | boot tries left for the slot on trial (`0` for the others); unlike RAUC's one-shot flag, a count |
//! | `FERRY_PRIMARY` | `A` or `B`: the committed slot |
//! | `FERRY_TRIAL` | `A`, `B`, or empty: the slot on trial |
//! | `FERRY_FAILED_SLOT`, `FERRY_FAILED_CODE`, `FERRY_FAILED_MESSAGE`, `FERRY_FAILED_AT` | the last abandoned slot, its code, message and RFC 3339 time; absent if none |
//!
//! Other variables (`saved_entry`, `next_entry`, …) are kept as they are.
//! A `grub.cfg` using them boots the first slot in `ORDER` that is good, or
//! that has tries left after counting one down (GRUB scripts have no
//! arithmetic, hence a table; tries are at most
//! [`MAX_BOOT_TRIES`](crate::MAX_BOOT_TRIES), one digit):
//!
//! ```text
//! load_env
//! for slot in $ORDER; do
//!   if [ "$slot" = A ]; then ok="$A_OK"; try="$A_TRY"; else ok="$B_OK"; try="$B_TRY"; fi
//!   if [ "$ok" = 1 ]; then boot_slot="$slot"; break; fi
//!   if [ "$try" = 0 -o -z "$try" ]; then continue; fi
//!   if [ "$try" = 9 ]; then try=8; elif [ "$try" = 8 ]; then try=7; elif … elif [ "$try" = 1 ]; then try=0; fi
//!   if [ "$slot" = A ]; then A_TRY="$try"; else B_TRY="$try"; fi
//!   save_env A_TRY B_TRY
//!   boot_slot="$slot"; break
//! done
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::BootControl;
use crate::error::BootError;
use crate::state::BootState;
use crate::vars::{self, EnvMap, GRUB_NAMES};

/// The first bytes of every GRUB environment block.
pub const GRUB_ENV_SIGNATURE: &[u8] = b"# GRUB Environment Block\n";

/// The size `grub-editenv create` gives a block, and the size written here.
pub const GRUB_ENV_SIZE: usize = 1024;

/// Parses a GRUB environment block read from `path`.
pub fn parse_env_block(bytes: &[u8], path: &Path) -> Result<EnvMap, BootError> {
    let corrupt = |reason: &str| BootError::EnvCorrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(body) = bytes.strip_prefix(GRUB_ENV_SIGNATURE) else {
        return Err(corrupt(
            "it does not start with the GRUB environment block signature",
        ));
    };
    let mut env = EnvMap::new();
    let mut position = 0;
    while position < body.len() {
        if body[position] == b'#' {
            position = next_line(body, position);
            continue;
        }
        let Some(name_len) = body[position..].iter().position(|&byte| byte == b'=') else {
            return Err(corrupt("a variable has no '='"));
        };
        let name = &body[position..position + name_len];
        let value_start = position + name_len + 1;
        let mut value = Vec::new();
        let mut cursor = value_start;
        loop {
            match body.get(cursor) {
                None => return Err(corrupt("the last variable has no end of line")),
                Some(b'\n') => break,
                Some(b'\\') => {
                    let Some(&escaped) = body.get(cursor + 1) else {
                        return Err(corrupt("the block ends inside an escape"));
                    };
                    value.push(escaped);
                    cursor += 2;
                }
                Some(&byte) => {
                    value.push(byte);
                    cursor += 1;
                }
            }
        }
        let name = utf8(name, path)?;
        let value = utf8(&value, path)?;
        env.insert(name, value);
        position = cursor + 1;
    }
    Ok(env)
}

/// Encodes `env` as a [`GRUB_ENV_SIZE`]-byte block meant for `path`.
pub fn encode_env_block(env: &EnvMap, path: &Path) -> Result<Vec<u8>, BootError> {
    let mut block = GRUB_ENV_SIGNATURE.to_vec();
    for (name, value) in env {
        check_name(name, path)?;
        if value.contains('\0') {
            return Err(BootError::EnvVarInvalid {
                path: path.to_owned(),
                name: name.clone(),
                reason: "the value contains a NUL byte".to_owned(),
            });
        }
        block.extend_from_slice(name.as_bytes());
        block.push(b'=');
        for &byte in value.as_bytes() {
            if byte == b'\\' || byte == b'\n' {
                block.push(b'\\');
            }
            block.push(byte);
        }
        block.push(b'\n');
    }
    if block.len() > GRUB_ENV_SIZE {
        return Err(BootError::EnvTooLarge {
            path: path.to_owned(),
            needed: block.len(),
            capacity: GRUB_ENV_SIZE,
        });
    }
    block.resize(GRUB_ENV_SIZE, b'#');
    Ok(block)
}

/// Reads the GRUB environment block at `path`.
pub fn read_env_block(path: &Path) -> Result<EnvMap, BootError> {
    let bytes = fs::read(path).map_err(|error| BootError::io("read", path, error))?;
    parse_env_block(&bytes, path)
}

/// Replaces the GRUB environment block at `path` with `env`, crash-safely.
pub fn write_env_block(path: &Path, env: &EnvMap) -> Result<(), BootError> {
    let block = encode_env_block(env, path)?;
    ferry_durable::write_atomic(path, &block).map_err(|error| BootError::io("write", path, error))
}

/// Boot control in a GRUB environment block (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct GrubBootControl {
    path: PathBuf,
}

impl GrubBootControl {
    /// Boot control in the block at `path` (often `/boot/grub/grubenv`).
    pub fn new(path: impl Into<PathBuf>) -> GrubBootControl {
        GrubBootControl { path: path.into() }
    }

    /// The environment block file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BootControl for GrubBootControl {
    fn load(&self) -> Result<BootState, BootError> {
        let bytes = crate::error::read_state_bytes(&self.path)?;
        let env = parse_env_block(&bytes, &self.path)?;
        vars::read_state(&env, &GRUB_NAMES, &self.path)
    }

    fn store(&self, state: &BootState) -> Result<(), BootError> {
        // Keep the variables we don't own; a missing or unreadable block
        // has none worth keeping.
        let mut env = match fs::read(&self.path) {
            Ok(bytes) => parse_env_block(&bytes, &self.path).unwrap_or_default(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => EnvMap::new(),
            Err(error) => return Err(BootError::io("read", &self.path, error)),
        };
        vars::write_state(&mut env, &GRUB_NAMES, state);
        write_env_block(&self.path, &env)
    }

    fn describe(&self) -> String {
        format!("GRUB environment block {}", self.path.display())
    }
}

fn next_line(body: &[u8], mut position: usize) -> usize {
    while position < body.len() {
        match body[position] {
            b'\\' => position += 2,
            b'\n' => break,
            _ => position += 1,
        }
    }
    position + 1
}

fn utf8(bytes: &[u8], path: &Path) -> Result<String, BootError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| BootError::EnvCorrupt {
        path: path.to_owned(),
        reason: "a variable is not UTF-8".to_owned(),
    })
}

fn check_name(name: &str, path: &Path) -> Result<(), BootError> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name.starts_with('#') {
        "the name starts with '#', which GRUB reads as a comment"
    } else if name.contains(['=', '\n', '\\', '\0']) {
        "the name contains '=', a backslash, a newline or NUL"
    } else {
        return Ok(());
    };
    Err(BootError::EnvVarInvalid {
        path: path.to_owned(),
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn encodes_the_exact_layout() -> Result<(), BootError> {
        let block = encode_env_block(&env(&[("a", "x\\y\nz"), ("b", "")]), Path::new("grubenv"))?;
        assert_eq!(block.len(), GRUB_ENV_SIZE);
        let text = b"# GRUB Environment Block\na=x\\\\y\\\nz\nb=\n";
        assert_eq!(&block[..text.len()], text);
        assert!(block[text.len()..].iter().all(|&byte| byte == b'#'));
        Ok(())
    }

    #[test]
    fn round_trips_escapes_and_skips_comments() -> Result<(), BootError> {
        let original = env(&[("ORDER", "B A"), ("odd", "back\\slash\nnew line=")]);
        let block = encode_env_block(&original, Path::new("grubenv"))?;
        assert_eq!(parse_env_block(&block, Path::new("grubenv"))?, original);

        let mut with_comment = GRUB_ENV_SIGNATURE.to_vec();
        with_comment.extend_from_slice(b"# a comment\nk=v\n####");
        assert_eq!(
            parse_env_block(&with_comment, Path::new("g"))?,
            env(&[("k", "v")])
        );
        Ok(())
    }

    #[test]
    fn refuses_damage_and_overflow() {
        let path = Path::new("grubenv");
        let no_signature = parse_env_block(b"# GRUB Environment Blok\n", path);
        assert_eq!(
            no_signature.map_err(|e| e.code()).err(),
            Some("BOOT_ENV_CORRUPT")
        );
        let mut torn = GRUB_ENV_SIGNATURE.to_vec();
        torn.extend_from_slice(b"k=unterminated");
        assert_eq!(
            parse_env_block(&torn, path).map_err(|e| e.code()).err(),
            Some("BOOT_ENV_CORRUPT")
        );

        let big = env(&[("big", &"x".repeat(GRUB_ENV_SIZE))]);
        let error = encode_env_block(&big, path).expect_err("too large");
        assert_eq!(error.code(), "BOOT_ENV_TOO_LARGE");
        assert!(matches!(
            error,
            BootError::EnvTooLarge {
                capacity: GRUB_ENV_SIZE,
                ..
            }
        ));

        for name in ["", "#x", "a=b", "a\nb"] {
            let error = encode_env_block(&env(&[(name, "v")]), path).expect_err(name);
            assert_eq!(error.code(), "BOOT_ENV_VAR_INVALID");
        }
    }
}
