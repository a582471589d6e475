//! Signed decisions: the director's per-device answer to "which releases under a rollout
//! may I take now", signed by an online director key (Uptane's director repository, reduced
//! to what ferry needs). The keys a device accepts are a [`crate::KeySet`] published as the
//! TUF target [`DIRECTOR_KEY_SET_TARGET`], so the offline targets key decides which director
//! keys exist; and a decision only ever *withholds* or *allows* images the TUF targets
//! already sign, with the same length and SHA-256 ([`check_against_catalog`]), so whoever
//! holds the online key cannot make a device install anything the offline key did not sign.

use chrono::{DateTime, Utc};
use ferry_types::{DeviceId, Diagnose, Sha256};
use serde::{Deserialize, Serialize};

use crate::canonical::to_canonical_json;
use crate::keys::{KeyId, PublicKey, SignatureBytes};
use crate::ticket::Signer;

/// The TUF target naming the director keys devices accept decisions from.
pub const DIRECTOR_KEY_SET_TARGET: &str = "keys-director.json";

/// Where a release under a rollout stands for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionState {
    /// Its wave is open: the device may take it.
    Open,
    /// Its wave opens later (`opens_at`).
    NotYet,
    /// The rollout is paused.
    Paused,
    /// The rollout is halted: do not start it, do not install it if staged.
    Halted,
    /// The device is outside the rollout's cohort.
    NotInCohort,
    /// The device is not entitled to the release (no rollout needed).
    NotEntitled,
    /// Its wave is open but the device deferred it (`deferred_until`): offered, and the
    /// agent waits until then on its own.
    Deferred,
}

impl DecisionState {
    /// Whether the device may take the release now.
    pub fn allows(self) -> bool {
        matches!(self, DecisionState::Open | DecisionState::Deferred)
    }

    /// The refusal code the signing service gives in this state (`None`: open).
    pub fn code(self) -> Option<&'static str> {
        match self {
            DecisionState::Open => None,
            DecisionState::NotYet => Some("ROLLOUT_NOT_YET"),
            DecisionState::Paused => Some("ROLLOUT_PAUSED"),
            DecisionState::Halted => Some("ROLLOUT_HALTED"),
            DecisionState::NotInCohort => Some("ROLLOUT_NOT_IN_COHORT"),
            DecisionState::NotEntitled => Some("NOT_ENTITLED"),
            DecisionState::Deferred => Some("ROLLOUT_DEFERRED"),
        }
    }
}

/// One release under a rollout, named by its TUF payload target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecidedRelease {
    /// The release's version.
    pub version: String,
    /// Its payload's TUF target name.
    pub target: String,
    /// The target's length, as the image repository signs it.
    pub length: u64,
    /// The target's SHA-256, as the image repository signs it.
    pub sha256: Sha256,
    /// The rollout (`None`: a release without one that the device is not entitled to).
    pub rollout_id: Option<i64>,
    /// Where it stands for this device.
    pub state: DecisionState,
    /// When the device's wave opens, if not open.
    pub opens_at: Option<DateTime<Utc>>,
    /// After it the device installs at its first allowed moment (the maintenance window
    /// no longer holds it back).
    #[serde(default)]
    pub deadline: Option<DateTime<Utc>>,
    /// Until when the device deferred it.
    #[serde(default)]
    pub deferred_until: Option<DateTime<Utc>>,
    /// The latest the device may defer it to (the rollout's maximum, or the deadline).
    #[serde(default)]
    pub defer_latest: Option<DateTime<Utc>>,
    /// An emergency rollout: every wave open, no deferral.
    #[serde(default)]
    pub emergency: bool,
}

impl DecidedRelease {
    /// What holds it back, in words: `rollout N`, or `the release's entitlements`.
    pub fn holder(&self) -> String {
        match (self.state, self.rollout_id) {
            (DecisionState::NotEntitled, _) | (_, None) => "the release's entitlements".into(),
            (_, Some(id)) => format!("rollout {id}"),
        }
    }
}

/// A device's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// The device it is for.
    pub device_id: DeviceId,
    /// When the director made it.
    pub issued_at: DateTime<Utc>,
    /// Every release of the device's class under a rollout, and every one it is not
    /// entitled to.
    pub releases: Vec<DecidedRelease>,
    /// The key that signs it.
    pub key_id: KeyId,
}

impl Decision {
    /// The entry for `version`, if the release is under a rollout.
    pub fn release(&self, version: &str) -> Option<&DecidedRelease> {
        self.releases.iter().find(|r| r.version == version)
    }
}

/// A decision and its signature: `{"decision":"<canonical JSON>","key_id":…,"signature":…}`.
/// The signature covers the `decision` string's bytes, checked before they are parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDecision {
    /// Canonical JSON of the [`Decision`].
    pub decision: String,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Ed25519 over `decision`.
    pub signature: SignatureBytes,
}

impl Signer {
    /// Signs a decision (its `key_id` is set to this key's).
    pub fn sign_decision(&self, decision: &Decision) -> SignedDecision {
        let decision = Decision {
            key_id: self.key_id(),
            ..decision.clone()
        };
        let bytes = to_canonical_json(&decision);
        SignedDecision {
            signature: self.sign_bytes(&bytes),
            key_id: decision.key_id,
            decision: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// A decision the device refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// Signed by a key the published director key set does not list.
    #[error(
        "the decision is signed by key {key_id}, which the catalog's director key set does not list"
    )]
    KeyNotTrusted {
        /// The key that signed.
        key_id: KeyId,
    },
    /// The signature does not verify.
    #[error("the decision's signature by key {key_id} does not verify")]
    BadSignature {
        /// The stated key.
        key_id: KeyId,
    },
    /// Not a decision.
    #[error("the decision could not be read: {reason}")]
    Malformed {
        /// What the parser said.
        reason: String,
    },
    /// For another device.
    #[error("the decision is for device {named}, not this device {device}")]
    OtherDevice {
        /// The device it names.
        named: DeviceId,
        /// This device.
        device: DeviceId,
    },
    /// Names a target the image repository (TUF targets) does not sign.
    #[error("the decision names target {target}, which the signed catalog does not list")]
    TargetUnknown {
        /// The target.
        target: String,
    },
    /// Names a target with another length or hash than the image repository signs.
    #[error(
        "the decision names target {target} with SHA-256 {named} ({named_length} bytes), but the signed catalog has {signed} ({signed_length} bytes)"
    )]
    TargetMismatch {
        /// The target.
        target: String,
        /// The hash the decision names.
        named: Sha256,
        /// Its length there.
        named_length: u64,
        /// The hash the catalog signs.
        signed: Sha256,
        /// Its length there.
        signed_length: u64,
    },
}

impl Diagnose for DecisionError {
    fn code(&self) -> &'static str {
        match self {
            DecisionError::KeyNotTrusted { .. } => "DECISION_KEY_NOT_TRUSTED",
            DecisionError::BadSignature { .. } => "DECISION_BAD_SIGNATURE",
            DecisionError::Malformed { .. } => "DECISION_MALFORMED",
            DecisionError::OtherDevice { .. } => "DECISION_OTHER_DEVICE",
            DecisionError::TargetUnknown { .. } => "DECISION_TARGET_UNKNOWN",
            DecisionError::TargetMismatch { .. } => "DECISION_TARGET_MISMATCH",
        }
    }

    fn fix(&self) -> String {
        match self {
            DecisionError::KeyNotTrusted { .. } | DecisionError::BadSignature { .. } => {
                "Check that the device talks to its own server and that the server's director key is the one its catalog publishes (ferry server init made it)".into()
            }
            DecisionError::Malformed { .. } | DecisionError::OtherDevice { .. } => {
                "Check that no proxy rewrites the server's answers, then scan again".into()
            }
            DecisionError::TargetUnknown { .. } | DecisionError::TargetMismatch { .. } => {
                "Treat the server's online keys as compromised: rotate them and publish releases only with the offline targets key".into()
            }
        }
    }
}

/// Checks the signature by one of `trusted` keys over the exact bytes, then parses, then
/// that the decision is for `device`.
pub fn verify_decision(
    signed: &SignedDecision,
    trusted: &[PublicKey],
    device: DeviceId,
) -> Result<Decision, DecisionError> {
    let key = trusted.iter().find(|k| k.key_id() == signed.key_id).ok_or(
        DecisionError::KeyNotTrusted {
            key_id: signed.key_id,
        },
    )?;
    if !key.verify_strict(signed.decision.as_bytes(), &signed.signature) {
        return Err(DecisionError::BadSignature {
            key_id: signed.key_id,
        });
    }
    let decision: Decision =
        serde_json::from_str(&signed.decision).map_err(|e| DecisionError::Malformed {
            reason: e.to_string(),
        })?;
    if decision.key_id != signed.key_id {
        return Err(DecisionError::Malformed {
            reason: format!(
                "it names key {} but was signed by {}",
                decision.key_id, signed.key_id
            ),
        });
    }
    if decision.device_id != device {
        return Err(DecisionError::OtherDevice {
            named: decision.device_id,
            device,
        });
    }
    Ok(decision)
}

/// Checks that every release the decision names is a target the image repository signs,
/// with the same length and SHA-256 (`signed(name)`: the verified TUF target's length and
/// hash).
pub fn check_against_catalog(
    decision: &Decision,
    signed: impl Fn(&str) -> Option<(u64, Sha256)>,
) -> Result<(), DecisionError> {
    for release in &decision.releases {
        let Some((length, sha256)) = signed(&release.target) else {
            return Err(DecisionError::TargetUnknown {
                target: release.target.clone(),
            });
        };
        if (length, sha256) != (release.length, release.sha256) {
            return Err(DecisionError::TargetMismatch {
                target: release.target.clone(),
                named: release.sha256,
                named_length: release.length,
                signed: sha256,
                signed_length: length,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(device: DeviceId) -> Decision {
        Decision {
            device_id: device,
            issued_at: Utc::now(),
            releases: vec![DecidedRelease {
                version: "2.0".into(),
                target: "vm-2.0.payload.zst".into(),
                length: 1000,
                sha256: Sha256::of(b"payload 2.0"),
                rollout_id: Some(1),
                state: DecisionState::Halted,
                opens_at: None,
                deadline: None,
                deferred_until: None,
                defer_latest: None,
                emergency: false,
            }],
            key_id: Signer::generate().key_id(),
        }
    }

    fn catalog(name: &str) -> Option<(u64, Sha256)> {
        (name == "vm-2.0.payload.zst").then(|| (1000, Sha256::of(b"payload 2.0")))
    }

    #[test]
    fn a_decision_by_the_published_key_for_this_device_naming_signed_targets_passes() {
        let director = Signer::generate();
        let device = DeviceId::new(42).unwrap();
        let signed = director.sign_decision(&decision(device));
        let wire = serde_json::to_vec(&signed).unwrap();
        let read: SignedDecision = serde_json::from_slice(&wire).unwrap();
        let verified = verify_decision(&read, &[director.public_key()], device).unwrap();
        assert_eq!(
            verified.release("2.0").unwrap().state,
            DecisionState::Halted
        );
        check_against_catalog(&verified, catalog).unwrap();
    }

    #[test]
    fn forged_tampered_or_misdirected_decisions_are_refused_with_their_codes() {
        let director = Signer::generate();
        let device = DeviceId::new(42).unwrap();
        // Signed by an online key the catalog does not publish.
        let forger = Signer::generate();
        let forged = forger.sign_decision(&decision(device));
        let e = verify_decision(&forged, &[director.public_key()], device).unwrap_err();
        assert_eq!(e.code(), "DECISION_KEY_NOT_TRUSTED");
        // A byte changed after signing.
        let mut tampered = director.sign_decision(&decision(device));
        tampered.decision = tampered.decision.replace("halted", "open\"\"");
        let e = verify_decision(&tampered, &[director.public_key()], device).unwrap_err();
        assert_eq!(e.code(), "DECISION_BAD_SIGNATURE");
        // Another device's decision.
        let other = director.sign_decision(&decision(DeviceId::new(43).unwrap()));
        let e = verify_decision(&other, &[director.public_key()], device).unwrap_err();
        assert_eq!(e.code(), "DECISION_OTHER_DEVICE");
    }

    #[test]
    fn the_online_key_alone_cannot_name_an_image_the_offline_key_did_not_sign() {
        // A validly signed decision (the online key is the attacker's) naming an image the
        // image repository lacks, or a signed target with another hash or length.
        let device = DeviceId::new(42).unwrap();
        let mut unknown = decision(device);
        unknown.releases[0].target = "vm-9.9.payload.zst".into();
        assert_eq!(
            check_against_catalog(&unknown, catalog).unwrap_err().code(),
            "DECISION_TARGET_UNKNOWN"
        );
        let mut other_hash = decision(device);
        other_hash.releases[0].sha256 = Sha256::of(b"evil image");
        assert_eq!(
            check_against_catalog(&other_hash, catalog)
                .unwrap_err()
                .code(),
            "DECISION_TARGET_MISMATCH"
        );
        let mut other_length = decision(device);
        other_length.releases[0].length = 999;
        assert_eq!(
            check_against_catalog(&other_length, catalog)
                .unwrap_err()
                .code(),
            "DECISION_TARGET_MISMATCH"
        );
    }

    #[test]
    fn causes_and_fixes_are_one_sentence() {
        let errors = [
            DecisionError::KeyNotTrusted {
                key_id: Signer::generate().key_id(),
            },
            DecisionError::TargetUnknown {
                target: "vm-9.9.payload.zst".into(),
            },
        ];
        for e in errors {
            for text in [e.to_string(), e.fix()] {
                assert!(!text.ends_with('.') && !text.contains(". "), "{text}");
            }
        }
    }
}
