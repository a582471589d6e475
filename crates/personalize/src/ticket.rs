//! Ticket request, ticket, signed ticket, the signer and device-side verification.

use std::fmt;

use chrono::{DateTime, Utc};
use ferry_types::{DeviceId, Diagnose, Identity, RootHash, Sha256};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical::{to_canonical_json, type_marker};
use crate::keys::{KeyError, KeyId, KeyPair, PublicKey, SignatureBytes};
use crate::types::{BuildId, Component, ComponentName, Nonce};

type_marker!(TicketType, "ferry-ticket/1");

/// What a device sends to `POST /v1/personalize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRequest {
    /// The device's identity as it read it from its hardware. An all-zero device id
    /// deserializes here (and only here), so the service answers `BAD_IDENTITY`.
    #[serde(deserialize_with = "Identity::deserialize_allowing_zero")]
    pub identity: Identity,
    /// The fresh nonce the device stored durably before asking.
    pub nonce: Nonce,
    /// The build it is about to install.
    pub build_id: BuildId,
    /// The seal root hash of each component it will install.
    pub components: Vec<Component>,
    /// The device's clock when it asked.
    pub device_time: DateTime<Utc>,
}

/// A ticket the rules approved and the signer has not signed yet (see [`crate::Policy::decide`]).
///
/// Unsigned and signed tickets are different types, so an unsigned one can never be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedTicket {
    /// The device the ticket is for.
    pub identity: Identity,
    /// SHA-256 of the request's nonce.
    pub nonce_sha256: Sha256,
    /// The build it allows.
    pub build_id: BuildId,
    /// The components and root hashes it allows.
    pub components: Vec<Component>,
    /// When the service approved it.
    pub issued_at: DateTime<Utc>,
}

/// The signed content of a ticket, as a device reads it after [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    #[serde(rename = "_type")]
    kind: TicketType,
    /// The device the ticket is for.
    pub identity: Identity,
    /// SHA-256 of the nonce the device sent.
    pub nonce_sha256: Sha256,
    /// The build it allows.
    pub build_id: BuildId,
    /// The components and root hashes it allows.
    pub components: Vec<Component>,
    /// When the service signed it.
    pub issued_at: DateTime<Utc>,
    /// Id of the key that signed it.
    pub key_id: KeyId,
}

impl Ticket {
    /// The canonical JSON bytes the signature covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        to_canonical_json(self)
    }
}

/// A ticket with its signature, as the service returns it and the device stores it beside the
/// slot: `{"key_id":…,"signature":…,"ticket":{…}}`.
///
/// The `ticket` member is kept byte for byte as it was signed (the canonical JSON the signer
/// produced), and the signature is checked over those exact bytes before anything in them is
/// parsed: any changed byte fails as `TICKET_BAD_SIGNATURE`.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedTicket {
    ticket_bytes: Vec<u8>,
    /// Ed25519 signature over the ticket bytes.
    pub signature: SignatureBytes,
    /// Id of the key that made the signature.
    pub key_id: KeyId,
}

impl SignedTicket {
    /// Assembles a signed ticket from its parts; nothing is checked until [`verify`].
    pub fn from_parts(ticket_bytes: Vec<u8>, signature: SignatureBytes, key_id: KeyId) -> Self {
        SignedTicket {
            ticket_bytes,
            signature,
            key_id,
        }
    }

    /// The exact bytes the signature covers (canonical JSON of the ticket).
    pub fn ticket_bytes(&self) -> &[u8] {
        &self.ticket_bytes
    }

    /// The ticket file's bytes (compact JSON), as stored beside the slot.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a ticket file; only the envelope is parsed here, the ticket is checked by [`verify`].
    pub fn from_json(bytes: &[u8]) -> Result<SignedTicket, TicketError> {
        serde_json::from_slice(bytes).map_err(|error| TicketError::Malformed {
            reason: format!("the ticket file is not a signed ticket: {error}"),
        })
    }
}

impl fmt::Debug for SignedTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedTicket")
            .field("ticket", &String::from_utf8_lossy(&self.ticket_bytes))
            .field("signature", &self.signature)
            .field("key_id", &self.key_id)
            .finish()
    }
}

#[derive(Serialize)]
struct SignedTicketOut<'a> {
    key_id: &'a KeyId,
    signature: &'a SignatureBytes,
    ticket: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedTicketIn {
    key_id: KeyId,
    signature: SignatureBytes,
    ticket: Box<serde_json::value::RawValue>,
}

impl Serialize for SignedTicket {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let text = std::str::from_utf8(&self.ticket_bytes).map_err(S::Error::custom)?;
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(text).map_err(S::Error::custom)?;
        SignedTicketOut {
            key_id: &self.key_id,
            signature: &self.signature,
            ticket: raw,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SignedTicket {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let input = SignedTicketIn::deserialize(deserializer)?;
        if !input.ticket.get().starts_with('{') {
            return Err(D::Error::custom("ticket is not a JSON object"));
        }
        Ok(SignedTicket {
            ticket_bytes: input.ticket.get().as_bytes().to_vec(),
            signature: input.signature,
            key_id: input.key_id,
        })
    }
}

/// Signs tickets with the personalization key.
#[derive(Debug, Clone)]
pub struct Signer {
    key_pair: KeyPair,
}

impl Signer {
    /// Makes a new random key.
    pub fn generate() -> Signer {
        Signer {
            key_pair: KeyPair::generate(),
        }
    }

    /// Reads a key from PKCS#8 DER (as the catalog stores its keys).
    pub fn from_pkcs8(der: &[u8]) -> Result<Signer, KeyError> {
        Ok(Signer {
            key_pair: KeyPair::from_pkcs8(der)?,
        })
    }

    /// The key as PKCS#8 DER; store it with mode 0600.
    pub fn to_pkcs8(&self) -> Vec<u8> {
        self.key_pair.to_pkcs8()
    }

    /// The public key devices trust once a published [`crate::KeySet`] lists it.
    pub fn public_key(&self) -> PublicKey {
        self.key_pair.public_key()
    }

    /// The signing key's id.
    pub fn key_id(&self) -> KeyId {
        self.key_pair.public_key().key_id()
    }

    /// Signs `bytes` (the caller makes them canonical).
    pub(crate) fn sign_bytes(&self, bytes: &[u8]) -> SignatureBytes {
        self.key_pair.sign(bytes)
    }

    /// Signs an approved ticket.
    pub fn sign(&self, ticket: &UnsignedTicket) -> SignedTicket {
        let ticket = Ticket {
            kind: TicketType,
            identity: ticket.identity.clone(),
            nonce_sha256: ticket.nonce_sha256,
            build_id: ticket.build_id.clone(),
            components: ticket.components.clone(),
            issued_at: ticket.issued_at,
            key_id: self.key_id(),
        };
        let ticket_bytes = ticket.canonical_bytes();
        SignedTicket {
            signature: self.key_pair.sign(&ticket_bytes),
            key_id: ticket.key_id,
            ticket_bytes,
        }
    }
}

/// What a device expects a ticket to say: its own identity, the nonce it stored, the build it
/// was offered and the root hashes of what it installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// This device's identity.
    pub identity: Identity,
    /// The nonce stored before the request.
    pub nonce: Nonce,
    /// The build the signed catalog offered (and the slot records): a ticket for another
    /// build, even with the same root hashes, is refused.
    pub build_id: BuildId,
    /// Every component the slot holds; each must be in the ticket with the same root hash
    /// (components in the ticket that are not expected are ignored).
    pub components: Vec<Component>,
}

/// A ticket failed verification on the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The signature does not verify with the trusted key of the stated id.
    #[error("the ticket's signature does not verify with key {key_id}: {reason}")]
    BadSignature {
        /// The key id the ticket names.
        key_id: KeyId,
        /// `"signature mismatch"`.
        reason: &'static str,
    },
    /// The ticket is signed by a key the device does not trust (never published, or
    /// retired from the personalization key set).
    #[error(
        "the ticket is signed by key {key_id}, which is not in the trusted personalization key set ({})",
        trusted_list(trusted)
    )]
    KeyNotTrusted {
        /// The key id the ticket names.
        key_id: KeyId,
        /// The key ids the device trusts.
        trusted: Vec<KeyId>,
    },
    /// The ticket was issued for another device.
    #[error(
        "the ticket is for device {ticket_device_id}, not for this device {this_device_id} ({field} differs)"
    )]
    OtherDevice {
        /// The device id in the ticket.
        ticket_device_id: DeviceId,
        /// This device's id.
        this_device_id: DeviceId,
        /// The first identity field that differs.
        field: &'static str,
    },
    /// The ticket was issued for another nonce (another attempt).
    #[error(
        "the ticket is for nonce sha256 {ticket_nonce_sha256}, not for the stored nonce (sha256 {stored_nonce_sha256})"
    )]
    OtherNonce {
        /// The nonce hash in the ticket.
        ticket_nonce_sha256: Sha256,
        /// The hash of the nonce this device stored.
        stored_nonce_sha256: Sha256,
    },
    /// The ticket was issued for another build than the one the device was offered.
    #[error(
        "the ticket is for build {ticket_build_id}, not for build {expected_build_id} that the device was offered"
    )]
    OtherBuild {
        /// The build in the ticket.
        ticket_build_id: BuildId,
        /// The build the device expects.
        expected_build_id: BuildId,
    },
    /// A component's root hash differs from the ticket's.
    #[error(
        "component {component} has root hash {actual_root_hash} but the ticket allows {ticket_root_hash}"
    )]
    RootHashMismatch {
        /// The component.
        component: ComponentName,
        /// The root hash in the ticket.
        ticket_root_hash: RootHash,
        /// The root hash of what is installed.
        actual_root_hash: RootHash,
    },
    /// An installed component is not in the ticket at all.
    #[error("component {component} is not covered by the ticket")]
    ComponentMissing {
        /// The component.
        component: ComponentName,
    },
    /// The ticket file or its content cannot be read.
    #[error("the ticket is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

impl Diagnose for TicketError {
    fn code(&self) -> &'static str {
        match self {
            TicketError::BadSignature { .. } => "TICKET_BAD_SIGNATURE",
            TicketError::KeyNotTrusted { .. } => "TICKET_KEY_NOT_TRUSTED",
            TicketError::OtherDevice { .. } => "TICKET_OTHER_DEVICE",
            TicketError::OtherNonce { .. } => "TICKET_OTHER_NONCE",
            TicketError::OtherBuild { .. } => "TICKET_OTHER_BUILD",
            TicketError::RootHashMismatch { .. } => "TICKET_ROOT_HASH_MISMATCH",
            TicketError::ComponentMissing { .. } => "TICKET_COMPONENT_MISSING",
            TicketError::Malformed { .. } => "TICKET_MALFORMED",
        }
    }

    fn fix(&self) -> String {
        let fix = match self {
            TicketError::BadSignature { .. } => {
                "Install again to get a new ticket: this one was changed after it was signed"
            }
            TicketError::KeyNotTrusted { .. } => {
                "Scan so the device takes the current key set from the catalog, then install again to get a ticket signed by a trusted key"
            }
            TicketError::OtherDevice { .. } => {
                "Install the update on this device itself: tickets cannot be copied between devices"
            }
            TicketError::OtherNonce { .. } => {
                "Install again: the ticket belongs to an earlier attempt and a new one will be requested"
            }
            TicketError::OtherBuild { .. } => {
                "Scan and install again: the ticket was signed for another build than the one the catalog offered"
            }
            TicketError::RootHashMismatch { .. } | TicketError::ComponentMissing { .. } => {
                "Install again: the slot does not hold the image the ticket was signed for"
            }
            TicketError::Malformed { .. } => "Install again to replace the damaged ticket file",
        };
        fix.into()
    }
}

fn trusted_list(trusted: &[KeyId]) -> String {
    if trusted.is_empty() {
        return "it trusts no key".into();
    }
    let ids: Vec<String> = trusted.iter().map(KeyId::to_string).collect();
    format!("trusted: {}", ids.join(", "))
}

/// Checks only that the ticket is signed by one of `trusted_keys` and parses it; use
/// [`verify`] before installing or booting.
pub fn verify_signature(
    signed: &SignedTicket,
    trusted_keys: &[PublicKey],
) -> Result<Ticket, TicketError> {
    let key = trusted_keys
        .iter()
        .find(|key| key.key_id() == signed.key_id)
        .ok_or_else(|| TicketError::KeyNotTrusted {
            key_id: signed.key_id,
            trusted: trusted_keys.iter().map(PublicKey::key_id).collect(),
        })?;
    if !key.verify_strict(&signed.ticket_bytes, &signed.signature) {
        return Err(TicketError::BadSignature {
            key_id: signed.key_id,
            reason: "signature mismatch",
        });
    }
    let ticket: Ticket =
        serde_json::from_slice(&signed.ticket_bytes).map_err(|error| TicketError::Malformed {
            reason: format!("the signed content is not a ticket: {error}"),
        })?;
    if ticket.key_id != signed.key_id {
        return Err(TicketError::Malformed {
            reason: format!(
                "the ticket names key {} but was signed by {}",
                ticket.key_id, signed.key_id
            ),
        });
    }
    Ok(ticket)
}

/// Verifies a ticket on the device, in this order: a trusted key of the stated id
/// (`TICKET_KEY_NOT_TRUSTED`), its signature (`TICKET_BAD_SIGNATURE`), parse (`TICKET_MALFORMED`), identity (`TICKET_OTHER_DEVICE`),
/// nonce (`TICKET_OTHER_NONCE`), build (`TICKET_OTHER_BUILD`), then each expected component's root hash
/// (`TICKET_COMPONENT_MISSING`, `TICKET_ROOT_HASH_MISMATCH`).
pub fn verify(
    signed: &SignedTicket,
    trusted_keys: &[PublicKey],
    expect: &Expectation,
) -> Result<Ticket, TicketError> {
    let ticket = verify_signature(signed, trusted_keys)?;
    let theirs = &ticket.identity;
    let ours = &expect.identity;
    let differing_field = if theirs.device_id != ours.device_id {
        Some("device_id")
    } else if theirs.board_id != ours.board_id {
        Some("board_id")
    } else if theirs.chip_id != ours.chip_id {
        Some("chip_id")
    } else if theirs.hardware_uuid != ours.hardware_uuid {
        Some("hardware_uuid")
    } else if theirs.device_class != ours.device_class {
        Some("device_class")
    } else {
        None
    };
    if let Some(field) = differing_field {
        return Err(TicketError::OtherDevice {
            ticket_device_id: theirs.device_id,
            this_device_id: ours.device_id,
            field,
        });
    }
    let stored_nonce_sha256 = expect.nonce.sha256();
    if ticket.nonce_sha256 != stored_nonce_sha256 {
        return Err(TicketError::OtherNonce {
            ticket_nonce_sha256: ticket.nonce_sha256,
            stored_nonce_sha256,
        });
    }
    if ticket.build_id != expect.build_id {
        return Err(TicketError::OtherBuild {
            ticket_build_id: ticket.build_id,
            expected_build_id: expect.build_id.clone(),
        });
    }
    for expected in &expect.components {
        let in_ticket = ticket
            .components
            .iter()
            .find(|component| component.name == expected.name)
            .ok_or_else(|| TicketError::ComponentMissing {
                component: expected.name.clone(),
            })?;
        if in_ticket.root_hash != expected.root_hash {
            return Err(TicketError::RootHashMismatch {
                component: expected.name.clone(),
                ticket_root_hash: in_ticket.root_hash,
                actual_root_hash: expected.root_hash,
            });
        }
    }
    Ok(ticket)
}
