//! What the device trusts: the signed catalog and the personalization tickets.

pub mod catalog;
pub mod personalize;
