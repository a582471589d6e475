//! The ferry device agent: the device directory ([`device`]), the scan through the
//! signed catalog ([`scan`]), offers ([`offer`]),
//! the streaming install into the inactive slot ([`install`]), the
//! simulated restart and boot check ([`boot`]), and status ([`status`]).
//!
//! Invariant: the running slot is never written, and every durable effect happens in
//! an order after which a crash leaves a bootable device and a resumable install
//! (see [`install`]). Every failure is an [`AgentError`] with a stable code.
#![deny(missing_docs)]

pub mod boot;
pub mod client;
pub mod device;
pub mod doctor;
pub mod durable;
mod error;
pub mod install;
pub mod journal;
pub mod layout;
pub mod machines;
pub mod offer;
pub mod progress;
pub mod provision;
pub mod scan;
pub mod status;
pub mod trust;

pub use error::AgentError;
