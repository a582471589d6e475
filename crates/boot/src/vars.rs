//! How a [`BootState`] maps onto bootloader environment variables, shared by
//! the GRUB and U-Boot backends (which differ only in the names of the
//! order, good and tries variables).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::BootError;
use crate::slot::Slot;
use crate::state::{BootFailure, BootState, DEFAULT_BOOT_TRIES, PerSlot, Trial};

/// A bootloader environment: variable name to value.
pub type EnvMap = BTreeMap<String, String>;

/// `A` or `B`: the committed, known-good slot.
pub const FERRY_PRIMARY: &str = "FERRY_PRIMARY";
/// `A`, `B`, or empty: the slot on trial.
pub const FERRY_TRIAL: &str = "FERRY_TRIAL";
/// `A` or `B`: the slot last abandoned (absent when none was).
pub const FERRY_FAILED_SLOT: &str = "FERRY_FAILED_SLOT";
/// Error code of the last abandoned slot.
pub const FERRY_FAILED_CODE: &str = "FERRY_FAILED_CODE";
/// One-sentence message of the last abandoned slot.
pub const FERRY_FAILED_MESSAGE: &str = "FERRY_FAILED_MESSAGE";
/// RFC 3339 UTC time the last slot was abandoned.
pub const FERRY_FAILED_AT: &str = "FERRY_FAILED_AT";

/// The bootloader-specific variable names.
pub(crate) struct Names {
    /// Space-separated slot letters, the slot to try first first.
    pub order: &'static str,
    /// `1` when the slot is good, else `0`, per slot (A, B).
    pub good: [&'static str; 2],
    /// Boot tries left, decimal, per slot (A, B).
    pub tries: [&'static str; 2],
    /// What the bootloader should find in the primary slot's tries variable.
    pub primary_tries: u8,
}

impl Names {
    fn good_of(&self, slot: Slot) -> &'static str {
        self.good[slot_idx(slot)]
    }

    fn tries_of(&self, slot: Slot) -> &'static str {
        self.tries[slot_idx(slot)]
    }
}

fn slot_idx(slot: Slot) -> usize {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

/// The names the GRUB backend uses.
pub(crate) const GRUB_NAMES: Names = Names {
    order: "ORDER",
    good: ["A_OK", "B_OK"],
    tries: ["A_TRY", "B_TRY"],
    primary_tries: 0,
};

/// The names the U-Boot backend uses.
pub(crate) const UBOOT_NAMES: Names = Names {
    order: "BOOT_ORDER",
    good: ["FERRY_A_OK", "FERRY_B_OK"],
    tries: ["BOOT_A_LEFT", "BOOT_B_LEFT"],
    primary_tries: DEFAULT_BOOT_TRIES,
};

/// The boot order: the trial slot (if any), the primary, then the other slot
/// if it is good.
pub(crate) fn boot_order(state: &BootState) -> Vec<Slot> {
    let mut order = Vec::with_capacity(2);
    if let Some(trial) = state.trial() {
        order.push(trial.slot);
    }
    order.push(state.primary());
    let other = !state.primary();
    if state.is_good(other) && !order.contains(&other) {
        order.push(other);
    }
    order
}

/// Writes `state` into `env`, keeping every variable it does not own.
pub(crate) fn write_state(env: &mut EnvMap, names: &Names, state: &BootState) {
    let mut set = |name: &str, value: String| {
        env.insert(name.to_owned(), value);
    };
    let order: Vec<&str> = boot_order(state).into_iter().map(Slot::letter).collect();
    set(names.order, order.join(" "));
    for slot in Slot::ALL {
        set(names.good_of(slot), flag(state.is_good(slot)));
        let tries = match state.trial() {
            Some(trial) if trial.slot == slot => trial.tries_left,
            _ if slot == state.primary() => names.primary_tries,
            _ => 0,
        };
        set(names.tries_of(slot), tries.to_string());
    }
    set(FERRY_PRIMARY, state.primary().letter().to_owned());
    set(
        FERRY_TRIAL,
        state
            .trial()
            .map(|trial| trial.slot.letter().to_owned())
            .unwrap_or_default(),
    );
    match state.last_failure() {
        Some(failure) => {
            set(FERRY_FAILED_SLOT, failure.slot.letter().to_owned());
            set(FERRY_FAILED_CODE, one_line(&failure.code));
            set(FERRY_FAILED_MESSAGE, one_line(&failure.message));
            set(
                FERRY_FAILED_AT,
                failure.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            );
        }
        None => {
            for name in [
                FERRY_FAILED_SLOT,
                FERRY_FAILED_CODE,
                FERRY_FAILED_MESSAGE,
                FERRY_FAILED_AT,
            ] {
                env.remove(name);
            }
        }
    }
}

/// Reads the state back from `env`, read from `path`.
///
/// An environment without [`FERRY_PRIMARY`] has never been initialized by
/// ferry and gives [`BootError::StateMissing`].
pub(crate) fn read_state(env: &EnvMap, names: &Names, path: &Path) -> Result<BootState, BootError> {
    let Some(primary) = env.get(FERRY_PRIMARY) else {
        return Err(BootError::StateMissing {
            path: path.to_owned(),
        });
    };
    let primary = parse_letter(path, FERRY_PRIMARY, primary)?;
    let mut good = PerSlot::default();
    for slot in Slot::ALL {
        let name = names.good_of(slot);
        let is_good = match env.get(name).map(String::as_str) {
            Some("1") => true,
            Some("0") | None => false,
            Some(other) => return Err(invalid(path, name, other, "expected 1 or 0")),
        };
        match slot {
            Slot::A => good.a = is_good,
            Slot::B => good.b = is_good,
        }
    }
    let trial = match env.get(FERRY_TRIAL).map(String::as_str) {
        None | Some("") => None,
        Some(letter) => {
            let slot = parse_letter(path, FERRY_TRIAL, letter)?;
            let name = names.tries_of(slot);
            let text = env.get(name).map(String::as_str).unwrap_or("0");
            let tries_left = text
                .parse::<u8>()
                .map_err(|_| invalid(path, name, text, "expected a count of boot tries"))?;
            Some(Trial { slot, tries_left })
        }
    };
    let last_failure = match env.get(FERRY_FAILED_SLOT) {
        None => None,
        Some(letter) => {
            let slot = parse_letter(path, FERRY_FAILED_SLOT, letter)?;
            let text = |name: &str| env.get(name).cloned().unwrap_or_default();
            let at_text = text(FERRY_FAILED_AT);
            let at = DateTime::parse_from_rfc3339(&at_text)
                .map_err(|_| invalid(path, FERRY_FAILED_AT, &at_text, "expected an RFC 3339 time"))?
                .with_timezone(&Utc);
            Some(BootFailure {
                slot,
                code: text(FERRY_FAILED_CODE),
                message: text(FERRY_FAILED_MESSAGE),
                at,
            })
        }
    };
    BootState::from_parts(primary, trial, good, last_failure).map_err(|error| match error {
        BootError::StateInvalid { reason, .. } => BootError::StateInvalid {
            path: Some(path.to_owned()),
            reason,
        },
        other => other,
    })
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

/// Control characters (NUL above all, which U-Boot cannot store) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn parse_letter(path: &Path, name: &str, value: &str) -> Result<Slot, BootError> {
    Slot::from_letter(value).ok_or_else(|| invalid(path, name, value, "expected A or B"))
}

fn invalid(path: &Path, name: &str, value: &str, expected: &str) -> BootError {
    BootError::EnvVarInvalid {
        path: path.to_owned(),
        name: name.to_owned(),
        reason: format!("value {value:?}: {expected}"),
    }
}
