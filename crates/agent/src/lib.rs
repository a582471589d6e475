//! The ferry device agent: everything a device does, each step an action of one of the
//! state machines in [`machines`]: the scan through the signed catalog ([`scan`]), the
//! offers ([`offer`]), the install into the inactive slot ([`install`]), the simulated
//! restart and boot check ([`boot`]), status ([`status`]) and diagnostics ([`doctor`]).
//!
//! Invariant: the running slot is never written, and every durable effect happens in
//! an order after which a crash leaves a bootable device and a resumable install
//! (see [`install`]). Every failure is an [`AgentError`] with a stable code.
//!
//! # Modules, in dependency order
//!
//! A module names only modules listed before it, so none imports a module that imports
//! it back (`tests/module_order.rs` checks it):
//!
//! 1. [`layout`] (every path of the device directory), [`facts`] (power, network,
//!    space), [`policy`] (`[policy]` and the preconditions), [`stop`] (cancel, suspend,
//!    shut down), the error type (which names their errors), [`warnings`] (repairs and
//!    notices reported as they happen), [`progress`] (`estimate` and `phases`, pure,
//!    first), [`machines`] (the tables and their typed names);
//! 2. [`device`]: an open device directory (identity, config, slot metadata, receipts,
//!    the lock);
//! 3. [`client`] (HTTP to the server), `report::build` (the event report of a
//!    transition or a progress sample, queued in the outbox), [`journal`] (the machines'
//!    store, typed instances, fault injection; its `fire` hands every transition to
//!    `report::build`), [`offer`] (which update a device is offered);
//! 4. [`trust`]: `personalize` (enrollment, the personalization key set, tickets and
//!    nonces), then `catalog` (the TUF refresh, which takes the key set with it); then
//!    [`report`]'s `deliver` (batches to `POST /v1/events`) and `rates` (the class's
//!    phase rates, taken at each scan);
//! 5. [`scan`]; `install::pace` (the test-only slow slot disk); then [`progress`]'s
//!    `history` (the rates of the expected durations), `log` (the progress log of an
//!    update), `replay` (a log re-run through the estimator offline) and `tracker` (the
//!    sink that turns measured work into the honest bar);
//! 6. [`install`]: the pieces (`ranges`, `chunks`, `delta`, `spool`, `seal`,
//!    `download`, `record`, `purge`, `sizing`, `meter`), then `attempts` (the one runner of
//!    payload attempts), then
//!    `controller` (the controller's executor, `ferry list`, `ferry install`); [`why`]
//!    (`ferry list --why`: every release not run, with its one reason);
//! 7. [`boot`]: `health`, `watch` (the post-commit health watch), then `reboot`;
//! 8. [`status`], [`doctor`], [`provision`] (`ferry device init`).
#![deny(missing_docs)]

pub mod boot;
pub mod client;
pub mod device;
pub mod doctor;
mod error;
pub mod facts;
pub mod install;
pub mod journal;
pub mod layout;
pub mod machines;
pub mod offer;
pub mod policy;
pub mod progress;
pub mod provision;
pub mod report;
pub mod scan;
pub mod status;
pub mod stop;
pub mod trust;
pub mod warnings;
pub mod why;

pub use error::AgentError;
