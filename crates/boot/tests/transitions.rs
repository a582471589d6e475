//! Every transition of `BootState`, and every precondition it refuses.

mod common;

use common::at;
use ferry_boot::{
    BOOT_TRIES_EXHAUSTED, BootError, BootFailure, BootState, DEFAULT_BOOT_TRIES, MAX_BOOT_TRIES,
    PerSlot, Slot, Transition, Trial,
};
use ferry_types::Diagnose;

type Result = std::result::Result<(), BootError>;

#[test]
fn a_new_device_boots_its_primary_and_only_it_is_good() {
    let state = BootState::new(Slot::A);
    assert_eq!(state.primary(), Slot::A);
    assert!(state.is_good(Slot::A));
    assert!(!state.is_good(Slot::B));
    assert_eq!(state.trial(), None);
    assert_eq!(state.next_boot(), Slot::A);
    assert_eq!(state.last_failure(), None);
    assert_eq!(DEFAULT_BOOT_TRIES, 3);
}

#[test]
fn set_trial_makes_the_new_slot_boot_next_and_not_good() -> Result {
    let committed = BootState::new(Slot::A)
        .set_trial(Slot::B, 2)?
        .mark_good(Slot::B)?;
    assert!(committed.is_good(Slot::A));
    // A new trial of A (now the secondary) makes it not good.
    let state = committed.set_trial(Slot::A, DEFAULT_BOOT_TRIES)?;
    assert_eq!(
        state.trial(),
        Some(Trial {
            slot: Slot::A,
            tries_left: DEFAULT_BOOT_TRIES
        })
    );
    assert!(!state.is_good(Slot::A));
    assert!(state.is_good(Slot::B));
    assert_eq!(state.next_boot(), Slot::A);
    assert_eq!(state.primary(), Slot::B);
    Ok(())
}

#[test]
fn set_trial_refuses_the_primary_and_bad_counts() {
    let state = BootState::new(Slot::A);
    let error = state.set_trial(Slot::A, 3).expect_err("primary");
    assert!(matches!(
        error,
        BootError::SlotIsPrimary {
            slot: Slot::A,
            transition: Transition::SetTrial
        }
    ));
    assert_eq!(error.code(), "BOOT_SLOT_IS_PRIMARY");
    for tries in [0, MAX_BOOT_TRIES + 1, u8::MAX] {
        let error = state.set_trial(Slot::B, tries).expect_err("bad count");
        assert_eq!(error.code(), "BOOT_TRIES_OUT_OF_RANGE");
    }
    assert!(state.set_trial(Slot::B, MAX_BOOT_TRIES).is_ok());
    assert!(state.set_trial(Slot::B, 1).is_ok());
}

#[test]
fn select_for_boot_counts_tries_down_then_abandons_the_trial() -> Result {
    let mut state = BootState::new(Slot::A).set_trial(Slot::B, 3)?;
    for expected_left in [2, 1, 0] {
        let (booted, next) = state.select_for_boot(at());
        assert_eq!(booted, Slot::B);
        assert_eq!(
            next.trial().map(|trial| trial.tries_left),
            Some(expected_left)
        );
        state = next;
    }
    let (booted, state) = state.select_for_boot(at());
    assert_eq!(booted, Slot::A);
    assert_eq!(state.trial(), None);
    assert_eq!(state.primary(), Slot::A);
    assert!(!state.is_good(Slot::B));
    let failure = state.last_failure().cloned();
    let Some(failure) = failure else {
        panic!("no failure recorded")
    };
    assert_eq!(failure.slot, Slot::B);
    assert_eq!(failure.code, BOOT_TRIES_EXHAUSTED);
    assert_eq!(failure.at, at());
    assert!(failure.message.contains("slot b"), "{}", failure.message);
    // With nothing pending, power-on boots the primary and changes nothing.
    let (booted, again) = state.select_for_boot(at());
    assert_eq!(booted, Slot::A);
    assert_eq!(again, state);
    Ok(())
}

#[test]
fn mark_good_commits_the_trial_and_keeps_the_old_primary_good() -> Result {
    let (_, state) = BootState::new(Slot::A)
        .set_trial(Slot::B, 3)?
        .select_for_boot(at());
    let state = state.mark_good(Slot::B)?;
    assert_eq!(state.primary(), Slot::B);
    assert!(state.is_good(Slot::B));
    assert!(state.is_good(Slot::A));
    assert_eq!(state.trial(), None);
    assert_eq!(state.next_boot(), Slot::B);
    Ok(())
}

#[test]
fn mark_good_works_on_the_last_try() -> Result {
    let mut state = BootState::new(Slot::A).set_trial(Slot::B, 1)?;
    let booted;
    (booted, state) = state.select_for_boot(at());
    assert_eq!(booted, Slot::B);
    assert_eq!(state.trial().map(|trial| trial.tries_left), Some(0));
    assert_eq!(state.mark_good(Slot::B)?.primary(), Slot::B);
    Ok(())
}

#[test]
fn mark_good_and_abandon_refuse_the_primary_and_slots_not_on_trial() {
    let idle = BootState::new(Slot::A);
    for (result, transition) in [
        (idle.mark_good(Slot::A), Transition::MarkGood),
        (idle.abandon(Slot::A, "X", "x", at()), Transition::Abandon),
    ] {
        let error = result.expect_err("primary");
        assert!(
            matches!(error, BootError::SlotIsPrimary { slot: Slot::A, transition: t } if t == transition),
            "{error:?}"
        );
    }
    for (result, transition) in [
        (idle.mark_good(Slot::B), Transition::MarkGood),
        (idle.abandon(Slot::B, "X", "x", at()), Transition::Abandon),
    ] {
        let error = result.expect_err("no trial");
        assert!(
            matches!(error, BootError::NoTrialPending { slot: Slot::B, transition: t } if t == transition),
            "{error:?}"
        );
        assert_eq!(error.code(), "BOOT_NO_TRIAL_PENDING");
    }
}

#[test]
fn abandon_drops_the_trial_records_why_and_keeps_the_primary() -> Result {
    let state = BootState::new(Slot::B).set_trial(Slot::A, 3)?;
    let state = state.abandon(
        Slot::A,
        "SEAL_MISMATCH",
        "the seal of slot a does not match",
        at(),
    )?;
    assert_eq!(state.primary(), Slot::B);
    assert_eq!(state.trial(), None);
    assert!(!state.is_good(Slot::A));
    assert_eq!(
        state.last_failure(),
        Some(&BootFailure {
            slot: Slot::A,
            code: "SEAL_MISMATCH".to_owned(),
            message: "the seal of slot a does not match".to_owned(),
            at: at(),
        })
    );
    assert_eq!(state.next_boot(), Slot::B);
    Ok(())
}

/// A committed slot whose bytes changed fails at boot: the device falls back to the other
/// slot when it is good, and says so; with no good slot to fall back to it refuses, naming
/// the recovery.
#[test]
fn fall_back_moves_the_primary_to_the_other_good_slot_or_refuses() -> Result {
    let updated = BootState::new(Slot::A)
        .set_trial(Slot::B, 3)?
        .mark_good(Slot::B)?;
    let state = updated.fall_back("SEAL_MISMATCH", "slot b changed", at())?;
    assert_eq!(state.primary(), Slot::A);
    assert!(state.is_good(Slot::A));
    assert!(!state.is_good(Slot::B), "the failed slot is no longer good");
    assert_eq!(state.trial(), None);
    assert_eq!(state.next_boot(), Slot::A);
    assert_eq!(
        state.last_failure().map(|f| (f.slot, f.code.as_str())),
        Some((Slot::B, "SEAL_MISMATCH"))
    );
    // The failed slot is the one the next install writes.
    state.invalidate(Slot::B)?;

    // A trial on the other slot is not good yet: nothing to fall back to.
    let on_trial = BootState::new(Slot::A).set_trial(Slot::B, 3)?;
    for state in [BootState::new(Slot::A), on_trial, state] {
        let error = state
            .fall_back("SEAL_MISMATCH", "slot changed", at())
            .expect_err("no good slot to fall back to");
        assert_eq!(error.code(), "BOOT_REFLASH_REQUIRED");
        assert!(error.fix().contains("Reflash"), "{}", error.fix());
    }
    Ok(())
}

#[test]
fn invalidate_refuses_the_primary_and_ends_a_trial_of_the_slot() -> Result {
    let state = BootState::new(Slot::A)
        .set_trial(Slot::B, 3)?
        .mark_good(Slot::B)?;
    let error = state.invalidate(Slot::B).expect_err("B is primary now");
    assert!(matches!(
        error,
        BootError::SlotIsPrimary {
            slot: Slot::B,
            transition: Transition::Invalidate
        }
    ));
    let state = state.invalidate(Slot::A)?;
    assert!(!state.is_good(Slot::A));
    assert!(state.is_good(Slot::B));
    // Idempotent: a retried install may invalidate again.
    assert_eq!(state.invalidate(Slot::A)?, state);
    let trying = state.set_trial(Slot::A, 3)?;
    let invalidated = trying.invalidate(Slot::A)?;
    assert_eq!(invalidated.trial(), None);
    assert_eq!(invalidated.next_boot(), Slot::B);
    Ok(())
}

#[test]
fn from_parts_refuses_each_broken_rule() {
    let good_a = PerSlot { a: true, b: false };
    let trial_b = |tries_left| {
        Some(Trial {
            slot: Slot::B,
            tries_left,
        })
    };
    let cases = [
        (Slot::A, None, PerSlot { a: false, b: true }),
        (
            Slot::A,
            Some(Trial {
                slot: Slot::A,
                tries_left: 1,
            }),
            good_a,
        ),
        (Slot::A, trial_b(1), PerSlot { a: true, b: true }),
        (Slot::A, trial_b(MAX_BOOT_TRIES + 1), good_a),
    ];
    for (primary, trial, good) in cases {
        let error = BootState::from_parts(primary, trial, good, None).expect_err("rule broken");
        assert_eq!(error.code(), "BOOT_STATE_INVALID", "{error}");
    }
    assert!(BootState::from_parts(Slot::A, trial_b(0), good_a, None).is_ok());
}

#[test]
fn json_round_trips_and_is_checked_on_the_way_in() -> std::result::Result<(), serde_json::Error> {
    let Ok(state) = BootState::new(Slot::A)
        .set_trial(Slot::B, 3)
        .and_then(|state| state.abandon(Slot::B, "X", "failed", at()))
    else {
        panic!("transitions failed")
    };
    let text = serde_json::to_string(&state)?;
    assert_eq!(serde_json::from_str::<BootState>(&text)?, state);
    let broken = r#"{"primary":"a","trial":{"slot":"a","tries_left":1},"good":{"a":true,"b":false},"last_failure":null}"#;
    let error = serde_json::from_str::<BootState>(broken).expect_err("trial on primary");
    assert!(error.to_string().contains("primary"), "{error}");
    Ok(())
}
