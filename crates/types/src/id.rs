//! Device identity values.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A device's 64-bit id (like an ECID), 16 hex digits on the wire. Never zero: an
/// all-zero id means the hardware could not be read, and is refused at parse time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(u64);

/// A device id that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// Not 16 hex digits.
    #[error("{0:?} is not a device id (16 hex digits)")]
    Malformed(String),
    /// All zero: unreadable hardware.
    #[error("the device id is all zero, which means the hardware id could not be read")]
    AllZero,
}

impl DeviceId {
    /// From a raw value; zero is refused.
    pub fn new(raw: u64) -> Result<Self, IdError> {
        if raw == 0 {
            Err(IdError::AllZero)
        } else {
            Ok(DeviceId(raw))
        }
    }
    /// A random, non-zero id (for simulated devices).
    pub fn random() -> Self {
        loop {
            let raw: u64 = rand::random();
            if raw != 0 {
                return DeviceId(raw);
            }
        }
    }
    /// The raw value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl std::str::FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdError::Malformed(s.to_owned()));
        }
        let raw = u64::from_str_radix(s, 16).map_err(|_| IdError::Malformed(s.to_owned()))?;
        DeviceId::new(raw)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules() {
        let id: DeviceId = "00000000deadbeef".parse().unwrap();
        assert_eq!(id.to_string(), "00000000deadbeef");
        assert_eq!(
            "0000000000000000".parse::<DeviceId>(),
            Err(IdError::AllZero)
        );
        assert!("nothex".parse::<DeviceId>().is_err());
        assert!("1234567890abcdef0".parse::<DeviceId>().is_err());
        let json = serde_json_like(&id);
        assert_eq!(json, "\"00000000deadbeef\"");
    }

    fn serde_json_like(id: &DeviceId) -> String {
        format!("\"{id}\"")
    }
}
