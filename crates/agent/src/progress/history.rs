//! Where the rates of the expected-duration model come from: this device's earlier
//! installs (`progress/history.json`, written durably when an install finishes), the
//! fleet's per-class medians (`cache/phase-rates.json`, see [`crate::report::rates`]),
//! and a quick self-measurement at start (hash and write ~16 MiB in the cache directory).
//! Each rate takes the best source it has, in that order.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use ferry_events::PhaseRates;
use serde::{Deserialize, Serialize};

use crate::device::{Device, PayloadKind};
use crate::progress::phases::{Rate, Rates, Source};

/// Installs the history keeps (the oldest go first).
pub const HISTORY_LEN: usize = 20;
/// Bytes the self-measurement hashes and writes.
pub const SELF_TEST_BYTES: usize = 16 << 20;

/// What one finished install measured (bytes per second; seconds for timed phases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// The payload that wrote the slot.
    pub kind: PayloadKind,
    /// Payload bytes per second of a full download (the whole pipeline).
    pub download: Option<f64>,
    /// Image bytes per second of a delta or chunk assembly.
    pub assemble: Option<f64>,
    /// Image bytes per second read back and hashed.
    pub verify: Option<f64>,
    /// Seconds of personalization.
    pub personalize: Option<f64>,
    /// Seconds of a small step (median of the install's).
    pub step: Option<f64>,
    /// Seconds the download went on after its last byte.
    #[serde(default)]
    pub download_tail: Option<f64>,
    /// Image bytes per second written to the slot after the last byte (sustained writes).
    #[serde(default)]
    pub write: Option<f64>,
}

/// `progress/history.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The last [`HISTORY_LEN`] installs, oldest first.
    pub installs: Vec<Measured>,
}

impl History {
    /// The device's history (empty when none or unreadable: it is only an estimate's input).
    pub fn load(device: &Device) -> History {
        crate::device::read_json(&device.layout().progress_history()).unwrap_or_default()
    }

    /// Adds `measured` and stores the history durably.
    pub fn record(device: &Device, measured: Measured) -> std::io::Result<()> {
        let mut history = History::load(device);
        history.installs.push(measured);
        let extra = history.installs.len().saturating_sub(HISTORY_LEN);
        history.installs.drain(..extra);
        let path = device.layout().progress_history();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        ferry_durable::write_json(&path, &history)
    }

    fn median(&self, f: impl Fn(&Measured) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> = self
            .installs
            .iter()
            .filter_map(f)
            .filter(|x| x.is_finite() && *x > 0.0)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

/// What the self-measurement found (bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SelfTest {
    /// SHA-256 over memory.
    pub hash: f64,
    /// Writes to the cache directory, synced (paced like slot writes).
    pub write: f64,
    /// The written file read back from the disk (dropped from the page cache first) and
    /// hashed, as verification reads the slot (paced like slot reads).
    pub verify: f64,
}

/// Hashes, writes, then reads back and hashes [`SELF_TEST_BYTES`] (the file in `dir` is
/// removed after).
pub fn self_test(dir: &Path) -> std::io::Result<SelfTest> {
    let data: Vec<u8> = (0..SELF_TEST_BYTES)
        .map(|i| (i * 131 % 251) as u8)
        .collect();
    let started = Instant::now();
    let _ = ferry_types::Sha256::of(&data);
    let hash = SELF_TEST_BYTES as f64 / started.elapsed().as_secs_f64().max(1e-6);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".progress-self-test");
    let started = Instant::now();
    let written = (|| {
        let mut file = std::fs::File::create(&path)?;
        for chunk in data.chunks(1 << 20) {
            file.write_all(chunk)?;
            crate::install::pace::slot_io(chunk.len() as u64);
        }
        file.sync_all()
    })();
    let write = SELF_TEST_BYTES as f64 / started.elapsed().as_secs_f64().max(1e-6);
    let read_back = written.and_then(|()| {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut file = std::fs::File::open(&path)?;
        // SAFETY: a plain advisory call on a file descriptor this function owns.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let started = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crate::install::pace::slot_io(n as u64);
            let _ = ferry_types::Sha256::of(&buf[..n]);
        }
        Ok(SELF_TEST_BYTES as f64 / started.elapsed().as_secs_f64().max(1e-6))
    });
    let _ = std::fs::remove_file(&path);
    let verify = read_back?;
    Ok(SelfTest {
        hash,
        write,
        verify,
    })
}

/// The rates for the model, each from the best source there is: history, then fleet
/// (`fleet`: `None` until a scan stored the class's rates), then the self-measurement,
/// then [`Rates::default`]; the disk's rates are the slower of history and the
/// self-measurement.
pub fn rates(history: &History, fleet: Option<&PhaseRates>, test: Option<SelfTest>) -> Rates {
    let mut rates = Rates::default();
    let fleet_rate = |phase: &str, kind: Option<PayloadKind>| {
        fleet.and_then(|f| {
            f.rates
                .iter()
                .filter(|r| r.phase == phase && r.samples > 0)
                .find(|r| kind.is_none() || r.payload == kind)
        })
    };
    if let Some(test) = test {
        rates.write = Rate::new(test.write, Source::SelfTest);
        rates.verify = Rate::new(test.verify, Source::SelfTest);
        // A delta or chunk assembly reads the running slot and writes the target.
        let assemble = 1.0 / (1.0 / test.write.max(1.0) + 1.0 / test.verify.max(1.0));
        rates.assemble = Rate::new(assemble, Source::SelfTest);
    }
    if let Some(bps) = fleet_rate("DOWNLOADING_UPDATE", Some(PayloadKind::Full))
        .and_then(|r| r.median_bytes_per_sec)
    {
        rates.network = Rate::new(bps, Source::Fleet);
    }
    if let Some(bps) = fleet_rate("PREPARING_UPDATE", None).and_then(|r| r.median_bytes_per_sec) {
        rates.verify = Rate::new(bps, Source::Fleet);
    }
    if let Some(r) = fleet_rate("PREFLIGHT_PERSONALIZE", None) {
        rates.personalize = Rate::new(r.median_secs, Source::Fleet);
    }
    let from_history = |f: fn(&Measured) -> Option<f64>, into: &mut Rate| {
        if let Some(v) = history.median(f) {
            *into = Rate::new(v, Source::History);
        }
    };
    from_history(|m| m.download, &mut rates.network);
    from_history(|m| m.assemble, &mut rates.assemble);
    from_history(|m| m.verify, &mut rates.verify);
    from_history(|m| m.personalize, &mut rates.personalize);
    from_history(|m| m.step, &mut rates.step);
    from_history(|m| m.download_tail, &mut rates.download_tail);
    from_history(|m| m.write, &mut rates.write);
    // The disk measured now can only lower what the history says (a disk wears, or is
    // busy): the slower of the two.
    if let Some(test) = test {
        if rates.write.value > test.write {
            rates.write = Rate::new(test.write, Source::SelfTest);
        }
        if rates.verify.value > test.verify {
            rates.verify = Rate::new(test.verify, Source::SelfTest);
        }
    }
    rates
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_events::PhaseRate;

    fn measured(download: f64) -> Measured {
        Measured {
            at: Utc::now(),
            kind: PayloadKind::Full,
            download: Some(download),
            assemble: None,
            verify: Some(100e6),
            personalize: Some(0.3),
            step: Some(0.01),
            download_tail: Some(1.0),
            write: None,
        }
    }

    #[test]
    fn history_beats_fleet_beats_self_test_beats_default() {
        let fleet = PhaseRates {
            class: "vm".parse().unwrap(),
            computed_at: Utc::now(),
            rates: vec![PhaseRate {
                phase: "DOWNLOADING_UPDATE".into(),
                payload: Some(PayloadKind::Full),
                samples: 3,
                median_secs: 10.0,
                median_bytes_per_sec: Some(5e6),
            }],
        };
        let test = SelfTest {
            hash: 500e6,
            write: 80e6,
            verify: 120e6,
        };
        let none = rates(&History::default(), None, None);
        assert_eq!(none, Rates::default());
        let r = rates(&History::default(), Some(&fleet), Some(test));
        assert_eq!(r.network, Rate::new(5e6, Source::Fleet));
        assert_eq!(r.write, Rate::new(80e6, Source::SelfTest));
        let history = History {
            installs: vec![measured(1e6), measured(3e6), measured(2e6)],
        };
        let r = rates(&history, Some(&fleet), Some(test));
        assert_eq!(r.network, Rate::new(2e6, Source::History), "the median");
        assert_eq!(r.verify, Rate::new(100e6, Source::History));
    }

    #[test]
    fn self_test_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let t = self_test(dir.path()).unwrap();
        assert!(t.hash > 1e6 && t.write > 1e5 && t.verify > 1e5, "{t:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
