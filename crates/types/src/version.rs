//! Release versions: dotted numbers, compared numerically.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A release version such as `26.3` or `1.0.2`: one to four dot-separated decimal
/// numbers, compared numerically part by part (`1.10 > 1.9`), missing parts as zero
/// (`1.0 == 1.0.0` compares equal, but the text keeps its spelling).
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
    /// The numeric parts.
    pub fn parts(&self) -> &[u64] {
        &self.parts
    }
    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    fn cmp_key(&self) -> [u64; 4] {
        let mut key = [0u64; 4];
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
            text: s.to_owned(),
            why,
        };
        if s.is_empty() {
            return Err(err("it is empty"));
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
        if parts.len() > 4 {
            return Err(err("at most four parts are allowed"));
        }
        Ok(Version {
            parts,
            text: s.to_owned(),
        })
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
        assert_eq!(v("26.3").to_string(), "26.3");
    }

    #[test]
    fn malformed_refused() {
        for bad in ["", "1..2", "v1", "1.2.3.4.5", "1.a", "01.2", "-1", "1.2 "] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} should be refused");
        }
    }
}
