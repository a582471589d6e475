//! `ferry list` and `ferry install`: the controller's executor and the pieces an
//! install is made of.

mod attempts;
pub mod chunks;
mod controller;
pub mod delta;
pub mod download;
pub mod ranges;
pub mod record;
pub mod seal;
pub mod spool;

pub use controller::*;
pub use record::InstallProgress;
