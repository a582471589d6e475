//! Booting a new slot: `ferry reboot` (what the bootloader does), `ferry boot-check`
//! (what the booted system checks before it commits) and the health checks it runs.

pub mod health;
pub mod reboot;
