//! The device id.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Diagnose;

/// A device's 64-bit id (like an ECID), 16 lowercase hex digits on the wire (parsing also
/// takes 1 to 16 digits of either case, with an optional `0x`).
///
/// Zero is refused at parse time: an all-zero id means the hardware could not be read. The
/// one exception is the personalization service, which must see such an id to answer
/// `BAD_IDENTITY` naming the hardware fault instead of a parse error: it reads the ticket
/// and enrollment requests (and the refusal that answers them) through
/// [`DeviceId::deserialize_allowing_zero`], and nothing else does.
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
    /// Whether this is the all-zero id, which only
    /// [`DeviceId::from_wire_allowing_zero`] and [`DeviceId::deserialize_allowing_zero`] make.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    /// From a raw value read off the wire, zero included: only for the ticket and
    /// enrollment requests and their refusal, where an all-zero id is answered with
    /// `BAD_IDENTITY`.
    pub fn from_wire_allowing_zero(raw: u64) -> Self {
        DeviceId(raw)
    }
    /// serde `deserialize_with` for the ticket and enrollment requests and their refusal: the
    /// wire form, zero included (see [`DeviceId::from_wire_allowing_zero`]).
    pub fn deserialize_allowing_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_raw(&text)
            .map(DeviceId)
            .map_err(serde::de::Error::custom)
    }
}

impl Diagnose for IdError {
    fn code(&self) -> &'static str {
        match self {
            IdError::Malformed(_) => "DEVICE_ID_INVALID",
            IdError::AllZero => "DEVICE_ID_ZERO",
        }
    }
    fn fix(&self) -> String {
        match self {
            IdError::Malformed(_) => {
                "Give the device id as 16 hex digits, as `ferry status` prints it".into()
            }
            IdError::AllZero => {
                "Have the device's hardware checked: its id registers could not be read".into()
            }
        }
    }
}

/// 1 to 16 hex digits, optional `0x`; zero passes.
fn parse_raw(s: &str) -> Result<u64, IdError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IdError::Malformed(s.chars().take(80).collect()));
    }
    u64::from_str_radix(digits, 16).map_err(|_| IdError::Malformed(s.to_owned()))
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
        DeviceId::new(parse_raw(s)?)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <std::borrow::Cow<'de, str>>::deserialize(d)?
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
        assert_eq!("0xDEADBEEF".parse::<DeviceId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000deadbeef\"");
        assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);
    }

    #[test]
    fn zero_only_through_the_named_constructors() {
        let zero = "\"0000000000000000\"";
        assert!(serde_json::from_str::<DeviceId>(zero).is_err());
        let mut de = serde_json::Deserializer::from_str(zero);
        let id = DeviceId::deserialize_allowing_zero(&mut de).unwrap();
        assert!(id.is_zero());
        assert_eq!(id, DeviceId::from_wire_allowing_zero(0));
        assert_eq!(id.to_string(), "0000000000000000");
        let mut de = serde_json::Deserializer::from_str("\"zz\"");
        assert!(DeviceId::deserialize_allowing_zero(&mut de).is_err());
        assert_eq!(IdError::AllZero.code(), "DEVICE_ID_ZERO");
    }
}
