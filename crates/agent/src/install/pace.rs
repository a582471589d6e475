//! A slow slot disk, for tests and `bench/progress` only: `FERRY_SLOT_IO_LIMIT=BYTES`
//! (bytes per second) paces every write to the target slot and every read-back of it to
//! that rate over the whole process, as a slow eMMC or SD card would. Unset: no pacing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The variable that sets the limit (bytes per second; for tests and benchmarks).
pub const SLOT_IO_LIMIT_VAR: &str = "FERRY_SLOT_IO_LIMIT";

static PACED: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// The limit, if set.
pub fn limit() -> Option<u64> {
    std::env::var(SLOT_IO_LIMIT_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|l| *l > 0)
}

/// Counts `bytes` of slot I/O and, with a limit set, sleeps until they are due.
pub fn slot_io(bytes: u64) {
    let Some(limit) = limit() else {
        return;
    };
    let wait = {
        let Ok(mut paced) = PACED.lock() else {
            return;
        };
        let now = Instant::now();
        let (start, total) = paced.get_or_insert((now, 0));
        // An idle spell does not bank credit: restart the clock after a pause.
        let due = Duration::from_secs_f64(*total as f64 / limit as f64);
        if now.duration_since(*start) > due + Duration::from_secs(1) {
            *start = now;
            *total = 0;
        }
        *total += bytes;
        (*start + Duration::from_secs_f64(*total as f64 / limit as f64)).saturating_duration_since(now)
    };
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}
