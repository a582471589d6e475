//! Personalization for ferry: the ticket a device asks for before it installs a build, the
//! pure rules by which the service signs or refuses it, the checks a device runs on it at
//! install and boot, enrollment credentials, and the director's signed decisions about
//! releases under rollouts ([`Decision`], checked against the catalog). (The pinned TLS
//! both sides speak is `ferry-tls`.)
//!
//! A ticket binds one build's component root hashes to one device and one attempt (the
//! SHA-256 of a fresh nonce), so an image can't be replayed onto another device or installed
//! again outside a signing window. It is OLPC canonical JSON, as TUF signs its metadata,
//! signed with Ed25519; the device trusts the public keys of the [`KeySet`] it takes from the
//! TUF target [`KEY_SET_TARGET`] (`keys-personalization.json`), so keys rotate the TUF way. Departures from TUF: key ids hash the raw public key, and the
//! signed ticket keeps the signed bytes verbatim so the signature is checked before any byte
//! is parsed.
//!
//! This crate knows no HTTP and no database: the server looks up the [`Facts`] and calls
//! [`Policy::decide`], which returns an [`UnsignedTicket`] or a [`Refusal`] with its own code.
//!
//! ```
//! use chrono::Utc;
//! use ferry_types::Identity;
//! use ferry_personalize::{
//!     verify, DeviceStatus, Expectation, Facts, Nonce, Policy, Signer, TicketRequest,
//! };
//!
//! let identity: Identity = serde_json::from_str(r#"{"device_id":"00000000000004d2",
//!     "board_id":"000000a1","chip_id":"00008103",
//!     "hardware_uuid":"5b0c2f8e-8e0c-4a59-9a57-0d2b8b1f4a10","device_class":"gateway"}"#)?;
//! let components = serde_json::from_str(r#"[{"name":"system",
//!     "root_hash":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]"#)?;
//!
//! // Device: a fresh nonce, stored durably, then the request.
//! let nonce = Nonce::random();
//! let request = TicketRequest {
//!     identity,
//!     nonce,
//!     build_id: "26.3 (25D125)".parse()?,
//!     components,
//!     device_time: Utc::now(),
//! };
//!
//! // Server: facts from its database, the pure rules, the signature.
//! let facts = Facts {
//!     device: DeviceStatus::Enrolled,
//!     window_open: true,
//!     published: request.components.clone(), // the images the build published
//!     nonce_seen: false,
//!     rate_limited: false,
//!     rollout: None, // no rollout holds the device back
//! };
//! let approved = Policy::default().decide(&request, Utc::now(), &facts)?;
//! let signer = Signer::generate();
//! let signed = signer.sign(&approved);
//!
//! // Device, at install and at boot.
//! let expect = Expectation {
//!     identity: request.identity.clone(),
//!     nonce,
//!     build_id: request.build_id.clone(), // the build the catalog offered
//!     components: request.components.clone(),
//! };
//! let ticket = verify(&signed, &[signer.public_key()], &expect)?;
//! assert_eq!(ticket.build_id.as_str(), "26.3 (25D125)");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every error type implements `ferry_types::Diagnose` (a stable code, a one-sentence cause and
//! fix). The identity, device id, digests and root hashes are `ferry_types`'. TLS and the CA
//! devices pin are `ferry-tls`'.
//!
//! Tests: `cargo test` runs unit and property tests (no network); `cargo run --release -p ferry-personalize --example ticket_bench` measures tickets signed and verified per
//! second on one core.

#![deny(missing_docs)]

mod canonical;
mod credential;
mod decision;
mod keys;
mod keyset;
mod preflight;
mod refusal;
mod rules;
mod ticket;
mod types;

pub use credential::{
    Credential, CredentialError, CredentialId, CredentialSigner, EnrollmentToken, IssuedCredential,
    MAX_CREDENTIAL_TOKEN_LEN, verify_credential,
};
pub use decision::{
    DIRECTOR_KEY_SET_TARGET, DecidedRelease, Decision, DecisionError, DecisionState,
    SignedDecision, check_against_catalog, verify_decision,
};
pub use keys::{KeyError, KeyId, PublicKey, SignatureBytes};
pub use keyset::{KEY_SET_TARGET, KeySet, KeySetError};
pub use preflight::{Preflight, Standing};
pub use refusal::{REFUSAL_CODES, Refusal, RefusalWire, RefusalWireError};
pub use rules::{DeviceStatus, Facts, Policy, RolloutHold, check_identity};
pub use ticket::{
    Expectation, SignedTicket, Signer, Ticket, TicketError, TicketRequest, UnsignedTicket, verify,
    verify_signature,
};
pub use types::{BuildId, Component, ComponentName, Nonce, ParseError};
