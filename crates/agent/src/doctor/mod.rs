//! `ferry doctor`: why is this device not updating? Every known cause checked on its own,
//! each with its evidence, and the one that explains the device's current failure named at
//! the top, with its code and fix; `--fix` repairs what is safe.
//!
//! Modules, each a family of checks, in the order they may name each other:
//! [`check`] (what a check returns, the causes only the doctor names), [`subject`] (the
//! device read without its lock), [`net`] (the device's client, time-limited and
//! counted); then the families: [`config`], [`identity`], [`trust`], [`network`],
//! [`server`], [`clock`], [`catalog`], [`enrollment`] (and the signing window),
//! [`space`], [`cache`], [`boot`] (boot state, both slots' seals), [`conflicts`] (the
//! lock, health checks, a stuck install, the current failure); then [`diagnose`] (runs
//! them, chooses the cause) and [`fix`].

pub mod boot;
pub mod cache;
pub mod catalog;
pub mod check;
pub mod clock;
pub mod config;
pub mod conflicts;
pub mod diagnose;
pub mod enrollment;
pub mod fix;
pub mod identity;
pub mod net;
pub mod network;
pub mod server;
pub mod space;
pub mod subject;
pub mod trust;

pub use check::{Check, Finding, Outcome};
pub use diagnose::{
    Cause, DoctorReport, Fixed, PRECEDENCE, Scope, after_failure, queue_result, run,
};
pub use subject::Subject;
