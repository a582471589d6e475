//! The values a ticket is made of, each parsed once at the edge: hex on the wire, typed inside.
//! (The device's identity, its id, digests and root hashes are `ferry_types`'.)

use std::fmt;
use std::str::FromStr;

use ferry_types::{Diagnose, RootHash, Sha256};
use serde::{Deserialize, Serialize};

/// Why a value read from the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {reason}")]
pub struct ParseError {
    /// Which kind of value was being parsed (`"device id"`, `"root hash"`, …).
    pub what: &'static str,
    /// The text that was refused, cut to 80 characters.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ParseError {
    fn new(what: &'static str, value: &str, reason: &'static str) -> Self {
        let value = value.chars().take(80).collect();
        ParseError {
            what,
            value,
            reason,
        }
    }
}

impl Diagnose for ParseError {
    fn code(&self) -> &'static str {
        "BAD_VALUE"
    }

    fn fix(&self) -> String {
        "Send the value in the documented form (lowercase hex of the stated length, or text without control characters)".into()
    }
}

/// Decodes exactly `N` bytes of lowercase hex (one spelling per value, so a changed byte in
/// a signed envelope never parses to the same value).
pub(crate) fn parse_hex_array<const N: usize>(
    what: &'static str,
    text: &str,
) -> Result<[u8; N], ParseError> {
    if text.len() != 2 * N {
        return Err(ParseError::new(what, text, "wrong number of hex digits"));
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ParseError::new(what, text, "not lowercase hex"));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| ParseError::new(what, text, "not hexadecimal"))?;
    Ok(out)
}

/// Refuses empty text, text longer than `max_len` bytes and control characters, so every
/// string in a ticket is valid inside canonical JSON.
fn check_text(what: &'static str, text: &str, max_len: usize) -> Result<(), ParseError> {
    if text.is_empty() {
        return Err(ParseError::new(what, text, "empty"));
    }
    if text.len() > max_len {
        return Err(ParseError::new(what, text, "too long"));
    }
    if text.chars().any(char::is_control) {
        return Err(ParseError::new(what, text, "contains control characters"));
    }
    Ok(())
}

/// Implements Display, FromStr and serde as lowercase hex for a `[u8; N]` newtype.
macro_rules! hex_bytes_newtype {
    ($(#[$meta:meta])* $name:ident, $len:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The raw bytes.
            #[allow(dead_code)]
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::types::ParseError;
            fn from_str(text: &str) -> Result<Self, $crate::types::ParseError> {
                $crate::types::parse_hex_array::<$len>($what, text).map($name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    };
}
pub(crate) use hex_bytes_newtype;

hex_bytes_newtype!(
    /// A fresh random value the device makes for one personalization attempt and keeps until
    /// the installed slot has booted; the ticket carries only its SHA-256.
    Nonce,
    32,
    "nonce"
);

impl Nonce {
    /// Makes a nonce from the operating system's random source.
    pub fn random() -> Nonce {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        Nonce(bytes)
    }

    /// The SHA-256 of the nonce's 32 bytes, as a ticket carries it.
    pub fn sha256(&self) -> Sha256 {
        Sha256::of(&self.0)
    }
}

/// Implements a validated string newtype (FromStr, TryFrom<String>, serde through the check).
macro_rules! text_newtype {
    ($(#[$meta:meta])* $name:ident, $max:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(text: String) -> Result<Self, ParseError> {
                check_text($what, &text, $max)?;
                Ok($name(text))
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(text: &str) -> Result<Self, ParseError> {
                $name::try_from(text.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

text_newtype!(
    /// The build being installed, as the catalog names it (`"26.3 (25D125)"`): 1 to 128
    /// bytes, no control characters.
    BuildId,
    128,
    "build id"
);
text_newtype!(
    /// A component's name (`"system"`, `"recovery"`): 1 to 128 bytes, no control characters.
    ComponentName,
    128,
    "component name"
);

/// One component a ticket covers: its name and the seal root hash of its image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Component {
    /// Component name.
    pub name: ComponentName,
    /// Seal root hash of the component's image.
    pub root_hash: RootHash,
}
