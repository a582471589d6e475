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
        (*start + Duration::from_secs_f64(*total as f64 / limit as f64))
            .saturating_duration_since(now)
    };
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

/// The target slot as the delta applier and the chunk assembler write it: every write
/// paced (see the module docs) and counted, so progress can show the bytes written.
pub struct CountedSlot {
    file: std::fs::File,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountedSlot {
    /// `file`, counting into `written`.
    pub fn new(
        file: std::fs::File,
        written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> CountedSlot {
        CountedSlot { file, written }
    }

    /// The file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

impl ferry_delta::SlotSink for CountedSlot {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, offset)?;
        slot_io(data.len() as u64);
        self.written
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
