//! The signing rules: each refusal with its data, the documented order, and the wire shape the
//! device reads back into the same variant.

mod common;

use std::time::Duration;

use common::{component, facts_ok, request, time};
use ferry_personalize::{DeviceStatus, Facts, Policy, REFUSAL_CODES, Refusal, RolloutHold};
use ferry_types::{DeviceId, Diagnose};

const NOW: &str = "2026-03-20T18:51:32Z";

fn decide(request: &ferry_personalize::TicketRequest, facts: &Facts) -> Result<(), Refusal> {
    Policy::default()
        .decide(request, time(NOW), facts)
        .map(|_| ())
}

#[test]
fn approves_a_good_request_with_the_nonce_hash_and_time() {
    let request = request(0x4d2, time(NOW));
    let approved = Policy::default()
        .decide(&request, time(NOW), &facts_ok())
        .unwrap();
    assert_eq!(approved.identity, request.identity);
    assert_eq!(approved.nonce_sha256, request.nonce.sha256());
    assert_eq!(approved.components, request.components);
    assert_eq!(approved.issued_at, time(NOW));
}

#[test]
fn all_zero_ids_are_a_hardware_fault_naming_each_field() {
    let mut request = request(0, time(NOW));
    request.identity.chip_id = 0;
    request.identity.hardware_uuid = uuid::Uuid::nil();
    let refusal = decide(&request, &facts_ok()).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::BadIdentity {
            device_id: DeviceId::from_wire_allowing_zero(0),
            zero_fields: vec!["device_id".into(), "chip_id".into(), "hardware_uuid".into()],
        }
    );
    assert_eq!(refusal.code(), "BAD_IDENTITY");
    assert!(refusal.to_string().contains("hardware fault"), "{refusal}");
}

#[test]
fn zero_board_id_alone_is_refused() {
    let mut request = request(7, time(NOW));
    request.identity.board_id = 0;
    assert!(matches!(
        decide(&request, &facts_ok()),
        Err(Refusal::BadIdentity { zero_fields, .. }) if zero_fields == ["board_id"]
    ));
}

#[test]
fn enrollment_refusals_name_the_device() {
    let request = request(0x4d2, time(NOW));
    let unknown = Facts {
        device: DeviceStatus::Unknown,
        ..facts_ok()
    };
    assert_eq!(
        decide(&request, &unknown),
        Err(Refusal::UnknownDevice {
            device_id: DeviceId::new(0x4d2).unwrap()
        })
    );
    let revoked = Facts {
        device: DeviceStatus::Revoked,
        ..facts_ok()
    };
    assert_eq!(
        decide(&request, &revoked),
        Err(Refusal::RevokedDevice {
            device_id: DeviceId::new(0x4d2).unwrap()
        })
    );
    let limited = Facts {
        rate_limited: true,
        ..facts_ok()
    };
    assert_eq!(
        decide(&request, &limited),
        Err(Refusal::RateLimited {
            device_id: DeviceId::new(0x4d2).unwrap()
        })
    );
}

#[test]
fn clock_skew_carries_both_times_and_the_limit() {
    let device_time = time("2026-03-20T18:53:33Z"); // 121 s ahead
    let request = request(0x4d2, device_time);
    let refusal = decide(&request, &facts_ok()).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::ClockSkew {
            device_time,
            server_time: time(NOW),
            skew_seconds: 121,
            limit_seconds: 60,
        }
    );
    let data = refusal.data();
    assert_eq!(data["device_time"], "2026-03-20T18:53:33Z");
    assert_eq!(data["server_time"], "2026-03-20T18:51:32Z");
    assert_eq!(data["limit_seconds"], 60);
}

#[test]
fn clock_skew_limit_is_inclusive_and_applies_both_ways() {
    let at_limit = request(1, time("2026-03-20T18:50:32Z")); // exactly 60 s behind
    assert_eq!(decide(&at_limit, &facts_ok()), Ok(()));
    let behind = request(1, time("2026-03-20T18:50:31Z"));
    assert!(matches!(
        decide(&behind, &facts_ok()),
        Err(Refusal::ClockSkew {
            skew_seconds: -61,
            ..
        })
    ));
    let strict = Policy {
        clock_skew_limit: Duration::from_secs(5),
        ..Policy::default()
    };
    let ten_ahead = request(1, time("2026-03-20T18:51:42Z"));
    assert!(strict.decide(&ten_ahead, time(NOW), &facts_ok()).is_err());
}

#[test]
fn closed_window_names_build_and_class() {
    let request = request(0x4d2, time(NOW));
    let closed = Facts {
        window_open: false,
        ..facts_ok()
    };
    assert_eq!(
        decide(&request, &closed),
        Err(Refusal::NotSigned {
            build_id: "26.3 (25D125)".parse().unwrap(),
            device_class: "gateway".parse().unwrap(),
        })
    );
}

/// An open build's name does not make another image signable: a root hash the build did
/// not publish (an older, withdrawn image, or a made-up one) is refused, naming it.
#[test]
fn a_root_hash_the_build_did_not_publish_is_refused() {
    let mut request = request(0x4d2, time(NOW));
    request.components[1] = component("recovery", 0x99);
    let refusal = decide(&request, &facts_ok()).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::ImageNotPublished {
            build_id: "26.3 (25D125)".parse().unwrap(),
            device_class: "gateway".parse().unwrap(),
            component: "recovery".parse().unwrap(),
            root_hash: ferry_types::RootHash::from_bytes([0x99; 32]),
        }
    );
    assert_eq!(refusal.code(), "IMAGE_NOT_PUBLISHED");
    // The right root hash under another component's name is not published either.
    let mut swapped = request.clone();
    swapped.components = vec![component("recovery", 0x11)];
    assert!(matches!(
        decide(&swapped, &facts_ok()),
        Err(Refusal::ImageNotPublished { .. })
    ));
    // A build that published nothing for the class signs nothing.
    let nothing = Facts {
        published: Vec::new(),
        ..facts_ok()
    };
    let good = common::request(0x4d2, time(NOW));
    assert!(matches!(
        decide(&good, &nothing),
        Err(Refusal::ImageNotPublished { .. })
    ));
}

#[test]
fn reused_nonce_names_its_hash() {
    let request = request(0x4d2, time(NOW));
    let seen = Facts {
        nonce_seen: true,
        ..facts_ok()
    };
    assert_eq!(
        decide(&request, &seen),
        Err(Refusal::NonceReused {
            nonce_sha256: request.nonce.sha256()
        })
    );
}

#[test]
fn bad_requests_are_refused_first() {
    let mut empty = request(0, time(NOW));
    empty.components.clear();
    assert!(matches!(
        decide(&empty, &facts_ok()),
        Err(Refusal::BadRequest { .. })
    ));
    let mut twice = request(1, time(NOW));
    twice.components.push(common::component("system", 0x33));
    let refusal = decide(&twice, &facts_ok()).unwrap_err();
    assert!(
        refusal.to_string().contains("system is named twice"),
        "{refusal}"
    );
}

#[test]
fn checks_run_in_the_documented_order() {
    // Everything wrong at once: each fix reveals the next refusal, in the documented order.
    let mut request = request(0, time("2020-01-01T00:00:00Z"));
    let mut facts = Facts {
        device: DeviceStatus::Unknown,
        window_open: false,
        published: Vec::new(),
        nonce_seen: true,
        rate_limited: true,
        rollout: Some(RolloutHold::NotEntitled),
    };
    let mut codes = Vec::new();
    loop {
        match decide(&request, &facts) {
            Ok(()) => break,
            Err(refusal) => {
                codes.push(refusal.code());
                match refusal {
                    Refusal::BadIdentity { .. } => {
                        request.identity.device_id = DeviceId::new(9).unwrap()
                    }
                    Refusal::UnknownDevice { .. } => facts.device = DeviceStatus::Revoked,
                    Refusal::RevokedDevice { .. } => facts.device = DeviceStatus::Enrolled,
                    Refusal::RateLimited { .. } => facts.rate_limited = false,
                    Refusal::ClockSkew { .. } => request.device_time = time(NOW),
                    Refusal::NotSigned { .. } => facts.window_open = true,
                    Refusal::ImageNotPublished { .. } => facts.published = facts_ok().published,
                    Refusal::NotEntitled { .. } => {
                        facts.rollout = Some(RolloutHold::NotInCohort {
                            rollout_id: 7,
                            cohort: "tag:beta".into(),
                        })
                    }
                    Refusal::RolloutNotInCohort { .. } => {
                        facts.rollout = Some(RolloutHold::Halted { rollout_id: 7 })
                    }
                    Refusal::RolloutHalted { .. } => {
                        facts.rollout = Some(RolloutHold::Paused { rollout_id: 7 })
                    }
                    Refusal::RolloutPaused { .. } => {
                        facts.rollout = Some(RolloutHold::NotYet {
                            rollout_id: 7,
                            wave: 1,
                            opens_at: time(NOW),
                        })
                    }
                    Refusal::RolloutNotYet { .. } => facts.rollout = None,
                    Refusal::NonceReused { .. } => facts.nonce_seen = false,
                    Refusal::BadRequest { .. } => unreachable!(),
                }
            }
        }
    }
    assert_eq!(
        codes,
        [
            "BAD_IDENTITY",
            "UNKNOWN_DEVICE",
            "REVOKED_DEVICE",
            "RATE_LIMITED",
            "CLOCK_SKEW",
            "NOT_SIGNED",
            "IMAGE_NOT_PUBLISHED",
            "NOT_ENTITLED",
            "ROLLOUT_NOT_IN_COHORT",
            "ROLLOUT_HALTED",
            "ROLLOUT_PAUSED",
            "ROLLOUT_NOT_YET",
            "NONCE_REUSED"
        ]
    );
    assert_eq!(&REFUSAL_CODES[1..], codes.as_slice());
}

fn every_refusal() -> Vec<Refusal> {
    let request = request(0x4d2, time(NOW));
    vec![
        Refusal::BadRequest {
            reason: "the request names no component".into(),
        },
        Refusal::BadIdentity {
            device_id: DeviceId::from_wire_allowing_zero(0),
            zero_fields: vec!["device_id".into()],
        },
        Refusal::UnknownDevice {
            device_id: DeviceId::new(0x4d2).unwrap(),
        },
        Refusal::RevokedDevice {
            device_id: DeviceId::new(0x4d2).unwrap(),
        },
        Refusal::RateLimited {
            device_id: DeviceId::new(0x4d2).unwrap(),
        },
        Refusal::ClockSkew {
            device_time: time("2026-03-20T18:53:33.250Z"),
            server_time: time(NOW),
            skew_seconds: 121,
            limit_seconds: 60,
        },
        Refusal::NotSigned {
            build_id: request.build_id.clone(),
            device_class: request.identity.device_class.clone(),
        },
        Refusal::ImageNotPublished {
            build_id: request.build_id.clone(),
            device_class: request.identity.device_class.clone(),
            component: "system".parse().unwrap(),
            root_hash: ferry_types::RootHash::from_bytes([0x99; 32]),
        },
        Refusal::NotEntitled {
            build_id: request.build_id.clone(),
            device_class: request.identity.device_class.clone(),
            device_id: DeviceId::new(0x4d2).unwrap(),
        },
        Refusal::RolloutNotInCohort {
            build_id: request.build_id.clone(),
            rollout_id: 7,
            cohort: "tag:beta".into(),
        },
        Refusal::RolloutHalted {
            build_id: request.build_id.clone(),
            rollout_id: 7,
        },
        Refusal::RolloutPaused {
            build_id: request.build_id.clone(),
            rollout_id: 7,
        },
        Refusal::RolloutNotYet {
            build_id: request.build_id.clone(),
            rollout_id: 7,
            wave: 2,
            opens_at: time("2026-03-21T00:00:00Z"),
        },
        Refusal::NonceReused {
            nonce_sha256: request.nonce.sha256(),
        },
    ]
}

#[test]
fn every_refusal_round_trips_through_the_wire() {
    let refusals = every_refusal();
    assert_eq!(refusals.len(), REFUSAL_CODES.len());
    for refusal in refusals {
        let body = serde_json::to_vec(&refusal).unwrap();
        let wire: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(wire["code"], refusal.code());
        assert_eq!(wire["cause"], refusal.to_string());
        assert_eq!(wire["fix"], refusal.fix());
        assert!(wire["data"].is_object());
        assert_eq!(Refusal::from_wire(&body).unwrap(), refusal);
    }
}

#[test]
fn causes_and_fixes_are_one_sentence_without_trailing_period() {
    for refusal in every_refusal() {
        for text in [refusal.to_string(), refusal.fix().to_owned()] {
            assert!(!text.ends_with('.'), "{text}");
            assert!(!text.contains(". "), "{text}");
        }
    }
}

#[test]
fn unknown_codes_and_garbage_are_told_apart() {
    let newer =
        br#"{"code":"QUOTA_EXCEEDED","cause":"the fleet is over quota","fix":"Wait","data":{}}"#;
    let error = Refusal::from_wire(newer).unwrap_err();
    assert_eq!(error.code(), "REFUSAL_UNKNOWN_CODE");
    assert!(error.to_string().contains("the fleet is over quota"));
    let garbage = Refusal::from_wire(b"<html>502 Bad Gateway</html>").unwrap_err();
    assert_eq!(garbage.code(), "REFUSAL_MALFORMED");
    let bad_data =
        br#"{"code":"CLOCK_SKEW","cause":"x","fix":"y","data":{"device_time":"yesterday"}}"#;
    assert_eq!(
        Refusal::from_wire(bad_data).unwrap_err().code(),
        "REFUSAL_MALFORMED"
    );
}
