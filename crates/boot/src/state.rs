//! The boot state and its pure transitions.
//!
//! Nothing here reads a clock or touches a disk: every transition takes the
//! state by reference and returns the next one, and a backend stores it
//! (see [`BootControl`](crate::BootControl)). Each refused transition is a named
//! [`BootError`] variant.
//!
//! The invariant every constructor and transition keeps: the primary slot is
//! good, and no transition lets the primary slot be overwritten, so there is
//! always one good bootable slot.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::BootError;
use crate::slot::Slot;

/// How many boots a newly installed slot gets before it is abandoned.
pub const DEFAULT_BOOT_TRIES: u8 = 3;

/// The most boot tries a trial may have: one decimal digit, so a GRUB script
/// (which has no arithmetic) can count down with a fixed table of cases.
pub const MAX_BOOT_TRIES: u8 = 9;

/// Failure code recorded when a trial slot ran out of boot tries.
pub const BOOT_TRIES_EXHAUSTED: &str = "BOOT_TRIES_EXHAUSTED";

/// A newly installed slot being tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The slot being tried; never the primary slot.
    pub slot: Slot,
    /// Boots it may still start before it is abandoned.
    pub tries_left: u8,
}

/// Why and when a slot was abandoned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFailure {
    /// The slot that was abandoned.
    pub slot: Slot,
    /// Stable error code, for example [`BOOT_TRIES_EXHAUSTED`].
    pub code: String,
    /// One sentence saying what went wrong.
    pub message: String,
    /// When the slot was abandoned.
    pub at: DateTime<Utc>,
}

/// One flag per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PerSlot {
    /// Slot A's flag.
    pub a: bool,
    /// Slot B's flag.
    pub b: bool,
}

impl PerSlot {
    /// The flag of `slot`.
    pub fn get(self, slot: Slot) -> bool {
        match slot {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    fn with(mut self, slot: Slot, value: bool) -> PerSlot {
        match slot {
            Slot::A => self.a = value,
            Slot::B => self.b = value,
        }
        self
    }
}

/// A transition on [`BootState`], named in precondition errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// [`BootState::set_trial`].
    SetTrial,
    /// [`BootState::mark_good`].
    MarkGood,
    /// [`BootState::abandon`].
    Abandon,
    /// [`BootState::invalidate`].
    Invalidate,
    /// [`BootState::fall_back`].
    FallBack,
}

impl fmt::Display for Transition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Transition::SetTrial => "set a trial on",
            Transition::MarkGood => "mark good",
            Transition::Abandon => "abandon",
            Transition::Invalidate => "invalidate",
            Transition::FallBack => "fall back from",
        })
    }
}

/// Which slot boots, which slot is on trial, which slots are good, and the
/// last boot failure.
///
/// Build one with [`BootState::new`] (a fresh device) or
/// [`BootState::from_parts`] (checked), and move it on with the transitions.
/// Deserializing checks the same rules as `from_parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBootState")]
pub struct BootState {
    primary: Slot,
    trial: Option<Trial>,
    good: PerSlot,
    last_failure: Option<BootFailure>,
}

/// The unchecked serialized form of [`BootState`].
#[derive(Deserialize)]
struct RawBootState {
    primary: Slot,
    trial: Option<Trial>,
    good: PerSlot,
    last_failure: Option<BootFailure>,
}

impl TryFrom<RawBootState> for BootState {
    type Error = BootError;

    fn try_from(raw: RawBootState) -> Result<BootState, BootError> {
        BootState::from_parts(raw.primary, raw.trial, raw.good, raw.last_failure)
    }
}

impl BootState {
    /// A device that boots `primary`, which is good; the other slot is not
    /// good and nothing is on trial.
    pub fn new(primary: Slot) -> BootState {
        BootState {
            primary,
            trial: None,
            good: PerSlot::default().with(primary, true),
            last_failure: None,
        }
    }

    /// Builds a state from its parts, refusing one that breaks the rules:
    /// the primary is good, a trial is on the other slot, that slot is not
    /// good yet, and it has at most [`MAX_BOOT_TRIES`] tries left.
    pub fn from_parts(
        primary: Slot,
        trial: Option<Trial>,
        good: PerSlot,
        last_failure: Option<BootFailure>,
    ) -> Result<BootState, BootError> {
        let invalid = |reason: String| Err(BootError::StateInvalid { path: None, reason });
        if !good.get(primary) {
            return invalid(format!("the primary slot {primary} is not marked good"));
        }
        if let Some(trial) = trial {
            if trial.slot == primary {
                return invalid(format!("the trial slot {} is the primary slot", trial.slot));
            }
            if good.get(trial.slot) {
                return invalid(format!(
                    "the trial slot {} is already marked good",
                    trial.slot
                ));
            }
            if trial.tries_left > MAX_BOOT_TRIES {
                return invalid(format!(
                    "the trial slot {} has {} tries left, more than {MAX_BOOT_TRIES}",
                    trial.slot, trial.tries_left
                ));
            }
        }
        Ok(BootState {
            primary,
            trial,
            good,
            last_failure,
        })
    }

    /// The committed, known-good slot that boots when no trial is pending.
    pub fn primary(&self) -> Slot {
        self.primary
    }

    /// The slot being tried, if any.
    pub fn trial(&self) -> Option<Trial> {
        self.trial
    }

    /// Whether `slot` is known good.
    pub fn is_good(&self, slot: Slot) -> bool {
        self.good.get(slot)
    }

    /// The good flag of both slots.
    pub fn good(&self) -> PerSlot {
        self.good
    }

    /// The last abandoned slot and why, if any.
    pub fn last_failure(&self) -> Option<&BootFailure> {
        self.last_failure.as_ref()
    }

    /// The slot the next power-on boots, without changing anything.
    pub fn next_boot(&self) -> Slot {
        match self.trial {
            Some(trial) if trial.tries_left > 0 => trial.slot,
            _ => self.primary,
        }
    }

    /// Makes `slot` (a newly installed one) boot next, with `tries` boots
    /// before it is abandoned; it is not good until [`mark_good`](Self::mark_good).
    ///
    /// Refuses the primary slot ([`BootError::SlotIsPrimary`]) and a count
    /// outside `1..=MAX_BOOT_TRIES` ([`BootError::TriesOutOfRange`]).
    pub fn set_trial(&self, slot: Slot, tries: u8) -> Result<BootState, BootError> {
        self.refuse_primary(slot, Transition::SetTrial)?;
        if tries == 0 || tries > MAX_BOOT_TRIES {
            return Err(BootError::TriesOutOfRange {
                tries,
                max: MAX_BOOT_TRIES,
            });
        }
        Ok(BootState {
            trial: Some(Trial {
                slot,
                tries_left: tries,
            }),
            good: self.good.with(slot, false),
            ..self.clone()
        })
    }

    /// What a bootloader does at power-on: a trial with tries left loses one
    /// and boots; a trial with none left is abandoned (failure code
    /// [`BOOT_TRIES_EXHAUSTED`], at `now`) and the primary boots.
    pub fn select_for_boot(&self, now: DateTime<Utc>) -> (Slot, BootState) {
        match self.trial {
            Some(trial) if trial.tries_left > 0 => {
                let next = BootState {
                    trial: Some(Trial {
                        slot: trial.slot,
                        tries_left: trial.tries_left - 1,
                    }),
                    ..self.clone()
                };
                (trial.slot, next)
            }
            Some(trial) => {
                let next = BootState {
                    trial: None,
                    last_failure: Some(BootFailure {
                        slot: trial.slot,
                        code: BOOT_TRIES_EXHAUSTED.to_owned(),
                        message: format!(
                            "slot {} used all its boot tries without being marked good",
                            trial.slot
                        ),
                        at: now,
                    }),
                    ..self.clone()
                };
                (self.primary, next)
            }
            None => (self.primary, self.clone()),
        }
    }

    /// Commits the trial slot: it becomes the primary and good, and the trial
    /// ends. The old primary stays good and intact as the fallback.
    ///
    /// Refuses the primary slot ([`BootError::SlotIsPrimary`]) and a slot
    /// that is not on trial ([`BootError::NoTrialPending`]).
    pub fn mark_good(&self, slot: Slot) -> Result<BootState, BootError> {
        self.require_trial(slot, Transition::MarkGood)?;
        Ok(BootState {
            primary: slot,
            trial: None,
            good: self.good.with(slot, true),
            last_failure: self.last_failure.clone(),
        })
    }

    /// Drops the trial of `slot` and records why; the primary is unchanged.
    ///
    /// Refuses the primary slot ([`BootError::SlotIsPrimary`]) and a slot
    /// that is not on trial ([`BootError::NoTrialPending`]).
    pub fn abandon(
        &self,
        slot: Slot,
        code: &str,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<BootState, BootError> {
        self.require_trial(slot, Transition::Abandon)?;
        Ok(BootState {
            trial: None,
            last_failure: Some(BootFailure {
                slot,
                code: code.to_owned(),
                message: message.to_owned(),
                at,
            }),
            ..self.clone()
        })
    }

    /// What the boot does when the primary slot fails its verification (its bytes changed:
    /// a dm-verity read error): the other slot, which must be good, becomes the primary; the
    /// failed one is no longer good (the next install rewrites it), any trial ends, and why
    /// is recorded (`code`, `message`, at `at`).
    ///
    /// Refuses when the other slot is not good ([`BootError::NoGoodFallback`]): then no slot
    /// can boot and the device needs recovery.
    pub fn fall_back(
        &self,
        code: &str,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<BootState, BootError> {
        let failed = self.primary;
        let other = !failed;
        if !self.good.get(other) {
            return Err(BootError::NoGoodFallback {
                slot: failed,
                other,
                transition: Transition::FallBack,
            });
        }
        Ok(BootState {
            primary: other,
            trial: None,
            good: self.good.with(failed, false),
            last_failure: Some(BootFailure {
                slot: failed,
                code: code.to_owned(),
                message: message.to_owned(),
                at,
            }),
        })
    }

    /// Marks `slot` not good (and ends its trial, if any) before it is
    /// overwritten. Refuses the primary slot ([`BootError::SlotIsPrimary`]),
    /// which is never overwritten.
    pub fn invalidate(&self, slot: Slot) -> Result<BootState, BootError> {
        self.refuse_primary(slot, Transition::Invalidate)?;
        Ok(BootState {
            trial: self.trial.filter(|trial| trial.slot != slot),
            good: self.good.with(slot, false),
            ..self.clone()
        })
    }

    fn refuse_primary(&self, slot: Slot, transition: Transition) -> Result<(), BootError> {
        if slot == self.primary {
            return Err(BootError::SlotIsPrimary { slot, transition });
        }
        Ok(())
    }

    fn require_trial(&self, slot: Slot, transition: Transition) -> Result<(), BootError> {
        self.refuse_primary(slot, transition)?;
        match self.trial {
            Some(trial) if trial.slot == slot => Ok(()),
            _ => Err(BootError::NoTrialPending { slot, transition }),
        }
    }
}
