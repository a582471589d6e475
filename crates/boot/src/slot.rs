//! The two system slots, A and B.

use std::fmt;
use std::ops::Not;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::BootError;

/// One of the two system slots.
///
/// The other slot is `!slot`. Text forms are `a` and `b` (parsing also takes
/// `A` and `B`, the spelling bootloader variables use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The upper-case letter bootloader variables use: `"A"` or `"B"`.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// Parses the upper-case letter bootloader variables use.
    pub fn from_letter(letter: &str) -> Option<Slot> {
        match letter {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl Not for Slot {
    type Output = Slot;

    fn not(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Slot::A => "a",
            Slot::B => "b",
        })
    }
}

impl FromStr for Slot {
    type Err = BootError;

    fn from_str(input: &str) -> Result<Slot, BootError> {
        match input {
            "a" | "A" => Ok(Slot::A),
            "b" | "B" => Ok(Slot::B),
            _ => Err(BootError::SlotInvalid {
                input: input.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    #[test]
    fn not_gives_the_other_slot() {
        assert_eq!(!Slot::A, Slot::B);
        assert_eq!(!Slot::B, Slot::A);
        assert_eq!(!!Slot::A, Slot::A);
    }

    #[test]
    fn text_round_trips() {
        for slot in Slot::ALL {
            assert_eq!(slot.to_string().parse::<Slot>().ok(), Some(slot));
            assert_eq!(Slot::from_letter(slot.letter()), Some(slot));
        }
        assert_eq!(Slot::A.to_string(), "a");
        assert_eq!(Slot::B.to_string(), "b");
    }

    #[test]
    fn bad_text_is_refused_with_its_code() {
        let error = "c".parse::<Slot>().expect_err("c is not a slot");
        assert_eq!(error.code(), "BOOT_SLOT_INVALID");
        assert!("".parse::<Slot>().is_err());
        assert!("ab".parse::<Slot>().is_err());
    }

    #[test]
    fn serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&Slot::B).ok().as_deref(),
            Some("\"b\"")
        );
        assert_eq!(serde_json::from_str::<Slot>("\"a\"").ok(), Some(Slot::A));
        assert!(serde_json::from_str::<Slot>("\"A\"").is_err());
    }
}
