//! Shared by the integration tests: a sample machine, a stepping clock and
//! a temporary device directory.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use ferry_fsm::{Clock, JournalConfig, Machine, MachineDef, Store, StoreOptions, Warning, machine};

/// A cut-down `update[uuid]` machine.
pub const UPDATE: MachineDef = machine! {
    name: "update",
    initial: IDLE,
    finals: [APPLIED, FAILED],
    failures: [Fail],
    exempt: [],
    rows: [
        IDLE          + Start       => Personalize -> PERSONALIZING,
        PERSONALIZING + Ticket      => OpenStream  -> DOWNLOADING,
        DOWNLOADING   + ChunkDone   => WriteChunk  -> DOWNLOADING,
        DOWNLOADING   + Interrupted => Resume      -> DOWNLOADING,
        DOWNLOADING   + Downloaded  => Verify      -> PREPARING,
        PREPARING     + Verified    => Apply       -> APPLIED,
        IDLE          + Fail        => Report      -> FAILED,
        PERSONALIZING + Fail        => Report      -> FAILED,
        DOWNLOADING   + Fail        => Report      -> FAILED,
        PREPARING     + Fail        => Report      -> FAILED,
    ],
};

pub const UUID: &str = "6f1c9a52-3b0e-5d7a-8c11-2e4f90ab7d33";

pub fn update() -> Machine {
    Machine::new(&UPDATE).expect("sample table is valid")
}

/// A clock that starts at DESIGN §4's example time and moves 1 ms per reading.
#[derive(Debug)]
pub struct StepClock(AtomicI64);

impl StepClock {
    pub fn new() -> Arc<StepClock> {
        Arc::new(StepClock(AtomicI64::new(1_774_032_692_924_688)))
    }
}

impl Clock for StepClock {
    fn now(&self) -> DateTime<Utc> {
        let micros = self.0.fetch_add(1000, Ordering::SeqCst);
        DateTime::from_timestamp_micros(micros).expect("in range")
    }
}

/// A temporary device directory with `journal/` and `state/`.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub clock: Arc<StepClock>,
    pub config: JournalConfig,
}

impl Device {
    pub fn new() -> Device {
        Device::with_config(JournalConfig::default())
    }

    pub fn with_config(config: JournalConfig) -> Device {
        Device {
            dir: tempfile::tempdir().expect("tempdir"),
            clock: StepClock::new(),
            config,
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Opens the store, as an agent does at boot.
    pub fn open(&self) -> (Store, Vec<Warning>) {
        let options = StoreOptions {
            journal: self.config,
            clock: self.clock.clone(),
            observer: None,
        };
        Store::open(self.journal_dir(), self.state_dir(), options).expect("store opens")
    }
}
