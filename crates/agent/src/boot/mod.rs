//! Booting a new slot: `ferry reboot` (what the bootloader does), `ferry boot-check`
//! (what the booted system checks before it commits), the health checks it runs, and the
//! post-commit health watch that keeps running them for a while after the commit.

pub mod health;
pub mod reboot;
pub mod watch;
