//! What the device trusts and how it proves it: the signed catalog refreshed from the
//! pinned root ([`catalog`]), the personalization key set it takes from that catalog,
//! and the tickets checked against it at install and at boot ([`personalize`]); the
//! director's signed decision about releases under rollouts, checked against the catalog
//! ([`director`]).

pub mod catalog;
pub mod director;
pub mod personalize;
