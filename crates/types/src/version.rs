//! Release versions: dotted numbers, compared numerically. The one version grammar of the
//! product: the CLI, the server, the catalog and the device all parse through [`Version`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Diagnose;

/// Most dot-separated parts a version may have.
pub const MAX_VERSION_PARTS: usize = 4;
/// Longest version text, in bytes (it is part of catalog target names).
pub const MAX_VERSION_LEN: usize = 64;

/// A release version such as `26.3` or `1.0.2`: one to [`MAX_VERSION_PARTS`] dot-separated
/// decimal numbers without leading zeros (so `01.2` is refused: one number, one spelling), at
/// most [`MAX_VERSION_LEN`] bytes, compared numerically part by part (`1.10 > 1.9`), missing
/// parts as zero (`1.0 == 1.0.0` compares equal, but the text keeps its spelling).
#[derive(Clone, Debug)]
pub struct Version {
    parts: Vec<u64>,
    text: String,
}

/// A version string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not a version: {why}")]
pub struct VersionError {
    text: String,
    why: &'static str,
}

impl Version {
    /// Parses `text` (the same as `text.parse()`).
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        text.parse()
    }
    /// The numeric parts.
    pub fn parts(&self) -> &[u64] {
        &self.parts
    }
    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    fn cmp_key(&self) -> [u64; MAX_VERSION_PARTS] {
        let mut key = [0u64; MAX_VERSION_PARTS];
        for (slot, part) in key.iter_mut().zip(&self.parts) {
            *slot = *part;
        }
        key
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| VersionError {
            text: s.chars().take(80).collect(),
            why,
        };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > MAX_VERSION_LEN {
            return Err(err("it is longer than 64 bytes"));
        }
        let mut parts = Vec::new();
        for piece in s.split('.') {
            if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    "each dot-separated part must be a decimal number, e.g. 26.3 or 1.0.2",
                ));
            }
            if piece.len() > 1 && piece.starts_with('0') {
                return Err(err("parts must not have leading zeros"));
            }
            parts.push(piece.parse().map_err(|_| err("a part is too large"))?);
        }
        if parts.len() > MAX_VERSION_PARTS {
            return Err(err("at most four parts are allowed"));
        }
        Ok(Version {
            parts,
            text: s.to_owned(),
        })
    }
}

impl Diagnose for VersionError {
    fn code(&self) -> &'static str {
        "VERSION_INVALID"
    }
    fn fix(&self) -> String {
        "Write the version as one to four dot-separated numbers without leading zeros, such as 26.3 or 1.10.2".into()
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_key() == other.cmp_key()
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp_key().cmp(&other.cmp_key())
    }
}
impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.cmp_key().hash(state);
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn numeric_order() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99.99"));
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert!(v("1.2.1") > v("1.2"));
        assert_eq!(v("26.3").to_string(), "26.3");
    }

    #[test]
    fn malformed_refused() {
        let too_long = format!("1.{}", "1".repeat(63));
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1..2",
            "v1",
            "1.2.3.4.5",
            "1.a",
            "01.2",
            "1.02",
            "-1",
            "1.-2",
            " 1",
            "1.2 ",
            "99999999999999999999",
            &too_long,
        ] {
            let error = bad.parse::<Version>().expect_err(bad);
            assert_eq!(error.code(), "VERSION_INVALID", "{bad:?}");
        }
        assert_eq!(v("0").parts(), [0]);
        assert_eq!(v("1.0.10").parts(), [1, 0, 10]);
    }
}
