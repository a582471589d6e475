//! `ferry list`, `ferry install` and `ferry download` ([`update`]): the controller's executor ([`controller`], whose
//! docs give the order of the install's durable effects), the one runner of payload
//! attempts and its fallback rule ([`attempts`]), and the pieces an install is made of:
//! the streaming download ([`download`], [`spool`]), tailored deltas ([`delta`]), chunk
//! reuse ([`chunks`], [`ranges`]), the seal ([`seal`]), the install record
//! ([`record`]), and the space it needs: what can be purged ([`purge`]) and the sizing
//! before any download ([`sizing`]).

pub mod attempts;
pub mod chunks;
pub mod controller;
pub mod delta;
pub mod download;
mod meter;
pub mod pace;
pub mod purge;
pub mod ranges;
pub mod record;
pub mod seal;
pub mod sizing;
pub mod spool;
pub mod update;

pub use controller::*;
pub use record::InstallProgress;
pub use update::{Options, choose, download, install, list, list_full, run, run_offer};
