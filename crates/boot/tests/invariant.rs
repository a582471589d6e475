//! The invariant: there is always one good bootable slot. The primary is
//! always good and is never overwritten, whatever sequence of transitions
//! runs and wherever the power is cut while a backend writes.
//!
//! A failure here means a device could be left with nothing good to boot.

mod common;

use std::fs;
use std::path::Path;

use common::{at, temp_dir, uboot_layout};
use ferry_boot::{BootControl, BootError, BootState, MAX_BOOT_TRIES, Slot, UbootBootControl};
use ferry_types::Diagnose;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Operation {
    SetTrial(Slot, u8),
    SelectForBoot,
    MarkGood(Slot),
    Abandon(Slot),
    /// Invalidate the slot, then (if allowed) overwrite it.
    Overwrite(Slot),
    /// The primary failed its verification at boot.
    FallBack,
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![Just(Slot::A), Just(Slot::B)]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (slot(), 0..=MAX_BOOT_TRIES + 1).prop_map(|(slot, tries)| Operation::SetTrial(slot, tries)),
        Just(Operation::SelectForBoot),
        Just(Operation::SelectForBoot),
        slot().prop_map(Operation::MarkGood),
        slot().prop_map(Operation::Abandon),
        slot().prop_map(Operation::Overwrite),
        Just(Operation::FallBack),
    ]
}

/// Applies one operation; returns the next state and the slot overwritten.
fn apply(state: &BootState, operation: &Operation) -> (Result<BootState, BootError>, Option<Slot>) {
    match *operation {
        Operation::SetTrial(slot, tries) => (state.set_trial(slot, tries), None),
        Operation::SelectForBoot => {
            let (booted, next) = state.select_for_boot(at());
            // The slot booted is the primary, or a trial that had a try left.
            let trial_with_tries = state
                .trial()
                .filter(|trial| trial.tries_left > 0)
                .map(|trial| trial.slot);
            assert!(
                booted == state.primary() || Some(booted) == trial_with_tries,
                "booted {booted} from {state:?}"
            );
            (Ok(next), None)
        }
        Operation::MarkGood(slot) => (state.mark_good(slot), None),
        Operation::Abandon(slot) => (state.abandon(slot, "TEST", "test abandon", at()), None),
        Operation::Overwrite(slot) => {
            let result = state.invalidate(slot);
            let overwritten = result.is_ok().then_some(slot);
            (result, overwritten)
        }
        Operation::FallBack => (state.fall_back("TEST", "test fall back", at()), None),
    }
}

fn check_invariant(state: &BootState, overwritten: Option<Slot>, before: &BootState) {
    assert!(
        state.is_good(state.primary()),
        "primary not good: {state:?}"
    );
    if let Some(trial) = state.trial() {
        assert_ne!(
            trial.slot,
            state.primary(),
            "trial on the primary: {state:?}"
        );
        assert!(
            !state.is_good(trial.slot),
            "trial slot marked good: {state:?}"
        );
    }
    if let Some(slot) = overwritten {
        assert_ne!(
            slot,
            before.primary(),
            "the primary was overwritten: {before:?}"
        );
        assert!(
            !state.is_good(slot),
            "an overwritten slot is still good: {state:?}"
        );
    }
    // Round-trips through the checked constructor.
    let rebuilt = BootState::from_parts(
        state.primary(),
        state.trial(),
        state.good(),
        state.last_failure().cloned(),
    );
    assert_eq!(rebuilt.ok().as_ref(), Some(state));
}

/// Boots until no trial is pending: it always ends, on the good primary.
fn check_boots_to_primary(state: &BootState) {
    let mut state = state.clone();
    for _ in 0..=MAX_BOOT_TRIES + 1 {
        let (_, next) = state.select_for_boot(at());
        state = next;
    }
    assert_eq!(state.trial(), None);
    let (booted, _) = state.select_for_boot(at());
    assert_eq!(booted, state.primary());
    assert!(state.is_good(booted));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_sequence_keeps_a_good_primary(
        first in slot(),
        operations in proptest::collection::vec(operation(), 0..40),
    ) {
        let mut state = BootState::new(first);
        for operation in &operations {
            let (result, overwritten) = apply(&state, operation);
            match result {
                Ok(next) => {
                    check_invariant(&next, overwritten, &state);
                    state = next;
                }
                // A refused transition leaves the state as it was (it is
                // pure), and refusals only ever protect the primary,
                // name a missing trial or a bad count, or a fall-back with no
                // good slot to fall back to.
                Err(error) => prop_assert!(matches!(
                    error.code(),
                    "BOOT_SLOT_IS_PRIMARY"
                        | "BOOT_NO_TRIAL_PENDING"
                        | "BOOT_TRIES_OUT_OF_RANGE"
                        | "BOOT_REFLASH_REQUIRED"
                )),
            }
            check_boots_to_primary(&state);
        }
    }
}

/// Copies the U-Boot layout in `from` to `to` (same file names).
fn copy_layout(from: &Path, to: &Path) {
    for name in ["env.bin"] {
        if let Err(error) = fs::copy(from.join(name), to.join(name)) {
            panic!("cannot copy {name}: {error}");
        }
    }
}

const COPY_SIZE: usize = 0x400;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Each store to a redundant U-Boot environment may be cut after any
    /// prefix of the bytes written: the next load gives the state before or
    /// the state after, and the invariant holds on it.
    #[test]
    fn power_cuts_in_a_redundant_uboot_env_keep_a_good_primary(
        operations in proptest::collection::vec((operation(), proptest::option::of(prop_oneof![0..96usize, 0..COPY_SIZE])), 1..12),
    ) {
        let real_dir = temp_dir();
        let scratch_dir = temp_dir();
        let (real_config, real_env) = uboot_layout(real_dir.path(), 2, COPY_SIZE);
        let (scratch_config, scratch_env) = uboot_layout(scratch_dir.path(), 2, COPY_SIZE);
        let real = UbootBootControl::new(&real_config);
        let scratch = UbootBootControl::new(&scratch_config);
        // Board variables the store must keep.
        let mut board = ferry_boot::vars::EnvMap::new();
        board.insert("bootcmd".to_owned(), "run ferry_boot".to_owned());
        let Ok(config) = ferry_boot::uboot::UbootEnvConfig::read(&real_config) else {
            panic!("config")
        };
        prop_assert!(ferry_boot::uboot::write_env(&config, &board).is_ok());
        prop_assert!(real.store(&BootState::new(Slot::A)).is_ok());

        for (operation, cut_at) in &operations {
            let Ok(before) = real.load() else { panic!("load before {operation:?}") };
            let (result, overwritten) = apply(&before, operation);
            let Ok(after) = result else { continue };
            check_invariant(&after, overwritten, &before);

            // Write the full new image in the scratch copy, then replay a
            // prefix of the changed copy onto the real one.
            copy_layout(real_dir.path(), scratch_dir.path());
            prop_assert!(scratch.store(&after).is_ok());
            let old_bytes = common::read(&real_env);
            let new_bytes = common::read(&scratch_env);
            let changed: Vec<usize> = (0..2)
                .filter(|copy_idx| {
                    let range = copy_idx * COPY_SIZE..(copy_idx + 1) * COPY_SIZE;
                    old_bytes[range.clone()] != new_bytes[range]
                })
                .collect();
            prop_assert_eq!(changed.len(), 1, "a store writes exactly one copy");
            let start = changed[0] * COPY_SIZE;
            let written = cut_at.unwrap_or(COPY_SIZE);
            let mut torn = old_bytes.clone();
            torn[start..start + written].copy_from_slice(&new_bytes[start..start + written]);
            common::write(&real_env, &torn);

            let loaded = match real.load() {
                Ok(state) => state,
                Err(error) => panic!("no valid copy after a cut at {written}: {error}"),
            };
            prop_assert!(loaded == before || loaded == after, "loaded {:?}", loaded);
            if written == COPY_SIZE {
                prop_assert_eq!(&loaded, &after);
            }
            check_invariant(&loaded, None, &loaded);
            let Ok(env) = ferry_boot::uboot::read_env(&config) else { panic!("env") };
            prop_assert_eq!(env.vars.get("bootcmd").map(String::as_str), Some("run ferry_boot"));
        }
    }
}
