//! The ferry device agent: the device directory ([`device`]), the scan through the
//! signed catalog ([`scan`]), offers ([`offer`]),
//! the streaming install into the inactive slot ([`install`], [`download`]), the
//! simulated restart and boot check ([`reboot`]), and status ([`status`]).
//!
//! Invariant: the running slot is never written, and every durable effect happens in
//! an order after which a crash leaves a bootable device and a resumable install
//! (see [`install`]). Every failure is an [`AgentError`] with a stable code.
#![deny(missing_docs)]

pub mod catalog;
pub mod chunks;
pub mod client;
pub mod delta;
pub mod device;
pub mod doctor;
pub mod download;
pub mod durable;
mod error;
pub mod facts;
pub mod health;
pub mod install;
pub mod journal;
pub mod machines;
pub mod offer;
pub mod personalize;
pub mod progress;
pub mod ranges;
pub mod reboot;
pub mod scan;
pub mod seal;
pub mod spool;
pub mod status;

pub use error::AgentError;
