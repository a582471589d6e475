//! Booting a new slot: the simulated restart, the boot check and its health checks.

pub mod health;
pub mod reboot;
