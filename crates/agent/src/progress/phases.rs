//! The expected-duration model: the phases of an install, named by the DESIGN §5
//! checkpoints, each with its measured units and its expected duration for *this* update
//! on *this* device — payload size and kind, image size, and the rates the device knows
//! (its own earlier installs, the fleet's per-class rates, a self-measurement at start).
//! Pure: the rates are inputs ([`Rates`]).

use serde::{Deserialize, Serialize};

use crate::progress::estimate::{Expected, PlannedPhase};
use ferry_types::PayloadKind;

/// Where a rate comes from, which sets how sure a duration computed from it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// This device's earlier installs (median).
    History,
    /// The fleet: the server's per-class medians (`GET /v1/rates`).
    Fleet,
    /// The quick self-measurement at start (hash and write ~16 MiB).
    SelfTest,
    /// Nothing known: a conservative default.
    Default,
}

impl Source {
    /// The relative uncertainty of a duration computed from a rate of this source.
    pub fn spread(self) -> f64 {
        match self {
            Source::History => 0.15,
            Source::Fleet => 0.3,
            Source::SelfTest => 0.35,
            Source::Default => 0.8,
        }
    }
}

/// A rate (bytes or seconds) and its source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Bytes per second, or seconds for a phase measured by time.
    pub value: f64,
    /// Where it comes from.
    pub source: Source,
}

impl Rate {
    /// A rate of `value` from `source`.
    pub fn new(value: f64, source: Source) -> Rate {
        Rate { value, source }
    }
}

/// What the device knows about its speeds, each from the best source it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Payload bytes per second over the network.
    pub network: Rate,
    /// Bytes per second written to the slot (decoded image bytes).
    pub write: Rate,
    /// Image bytes per second read back from the slot and hashed (verification).
    pub verify: Rate,
    /// Image bytes per second a delta or chunk assembly writes (reading the running slot).
    pub assemble: Rate,
    /// Seconds of personalization (a round trip to the signing service).
    pub personalize: Rate,
    /// Seconds of the small steps (loading state, sizing, preconditions, apply), each.
    pub step: Rate,
    /// Seconds the download goes on after its last byte (the last frames written, the
    /// slot synced).
    pub download_tail: Rate,
}

impl Default for Rates {
    /// What a device with no history, no fleet figures and no self-measurement assumes.
    /// The network is assumed slow (2 MB/s): a bar that starts behind and catches up once
    /// the download's own rate is seen is honest; one that races ahead and then crawls is
    /// macOS's.
    fn default() -> Rates {
        Rates {
            network: Rate::new(2e6, Source::Default),
            write: Rate::new(200e6, Source::Default),
            verify: Rate::new(300e6, Source::Default),
            assemble: Rate::new(150e6, Source::Default),
            personalize: Rate::new(0.5, Source::Default),
            step: Rate::new(0.2, Source::Default),
            download_tail: Rate::new(2.0, Source::Default),
        }
    }
}

/// What this update asks of this device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// The payload expected to write the slot.
    pub kind: PayloadKind,
    /// Bytes still to download.
    pub download_bytes: u64,
    /// The image size.
    pub image_size: u64,
    /// The release is sealed and a full payload hashes the leaves as it writes, so
    /// preparing only finishes the tree; otherwise preparing reads the whole slot back.
    pub leaves_while_writing: bool,
    /// Already staged (written, verified, sealed): nothing to download or prepare.
    pub staged: bool,
}

/// The plan: every phase the controller goes through for `work`, in order, with its
/// units and expected duration.
///
/// - Download of a full payload: bytes downloaded; the pipeline runs at its slowest
///   stage: `max(download / network, image / write)`.
/// - Delta or chunk reuse: image bytes written; `download / network + image / assemble`
///   (the apply reads the running slot and writes the target as the bytes arrive).
/// - Prepare: image bytes read back and hashed (`image / verify`), or, when the leaves
///   were hashed while writing, only the tree's upper levels and a sync
///   (`image / verify / 64`).
/// - Personalize: its own seconds; the small steps: `step` seconds each.
/// - The download's tail (last frames written, slot synced after the last byte):
///   `download_tail` seconds.
pub fn plan(work: &Work, rates: &Rates) -> Vec<PlannedPhase> {
    let step = |name| PlannedPhase {
        name,
        total: 0,
        expected: Expected {
            secs: rates.step.value,
            spread: rates.step.source.spread().max(0.5),
        },
        tail: 0.0,
        secondary_rate: 0.0,
        calibrated_by: None,
    };
    let by = |bytes: u64, rate: Rate| bytes as f64 / rate.value.max(1.0);
    // Checkpoints the controller passes through at once: in the plan so the phase before
    // them counts as done.
    let marker = |name| PlannedPhase {
        name,
        total: 0,
        expected: Expected {
            secs: 0.0,
            spread: 0.0,
        },
        tail: 0.0,
        secondary_rate: 0.0,
        calibrated_by: None,
    };
    let mut phases = vec![
        marker("STARTUP"),
        step("LOADING_PERSISTED"),
        step("PURGING"),
        marker("READY"),
        step("PREFLIGHT_PREREQUISITE"),
    ];
    if !work.staged {
        phases.push(PlannedPhase {
            name: "PREFLIGHT_PERSONALIZE",
            total: 0,
            expected: Expected {
                secs: rates.personalize.value,
                spread: rates.personalize.source.spread().max(0.5),
            },
            tail: 0.0,
            secondary_rate: 0.0,
            calibrated_by: None,
        });
        let (total, secs, source) = match work.kind {
            PayloadKind::Full | PayloadKind::Factory => {
                let net = by(work.download_bytes, rates.network);
                let disk = by(work.image_size, rates.write);
                let source = if net >= disk {
                    rates.network.source
                } else {
                    rates.write.source
                };
                (work.download_bytes, net.max(disk), source)
            }
            PayloadKind::Delta | PayloadKind::Chunks => (
                work.image_size,
                by(work.download_bytes, rates.network) + by(work.image_size, rates.assemble),
                worse(rates.network.source, rates.assemble.source),
            ),
        };
        phases.push(PlannedPhase {
            name: "DOWNLOADING_UPDATE",
            total,
            expected: Expected {
                secs,
                spread: source.spread(),
            },
            // A full download's last frames and sync come after its last byte; a delta's
            // sync is part of its writes.
            tail: if matches!(work.kind, PayloadKind::Full | PayloadKind::Factory) {
                download_tail(rates)
            } else {
                0.0
            },
            // A full download also writes the whole image: at most at the write rate.
            secondary_rate: if matches!(work.kind, PayloadKind::Full | PayloadKind::Factory) {
                rates.write.value
            } else {
                0.0
            },
            calibrated_by: None,
        });
        phases.push(marker("DOWNLOADED_UPDATE"));
        let verify = by(work.image_size, rates.verify);
        let prepare = if work.leaves_while_writing && work.kind == PayloadKind::Full {
            verify / 64.0 + rates.step.value
        } else {
            verify
        };
        phases.push(PlannedPhase {
            name: "PREPARING_UPDATE",
            total: work.image_size,
            expected: Expected {
                secs: prepare,
                spread: rates.verify.source.spread(),
            },
            tail: 0.0,
            secondary_rate: 0.0,
            // After a delta or chunk assembly, the disk that wrote is the disk read back.
            calibrated_by: (!matches!(work.kind, PayloadKind::Full | PayloadKind::Factory))
                .then_some("DOWNLOADING_UPDATE"),
        });
    }
    phases.push(step("PREPARED"));
    phases
}

/// Seconds a full download goes on after its last byte: what the device measured, or,
/// with nothing measured, what is still to write then — the slot is synced once a second,
/// so about a second of the network's bytes at the write rate — plus the last sync and
/// checkpoint (a quarter second), never more than the default.
fn download_tail(rates: &Rates) -> f64 {
    let tail = rates.download_tail;
    if tail.source != Source::Default {
        return tail.value;
    }
    let pending = rates.network.value.min(rates.write.value) / rates.write.value.max(1.0);
    (pending + 0.25).min(tail.value)
}

fn worse(a: Source, b: Source) -> Source {
    if a.spread() >= b.spread() { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(kind: PayloadKind, download: u64) -> Work {
        Work {
            kind,
            download_bytes: download,
            image_size: 1 << 30,
            leaves_while_writing: true,
            staged: false,
        }
    }

    #[test]
    fn a_phase_lasts_its_work_over_its_rate() {
        let mut rates = Rates {
            network: Rate::new(10e6, Source::History),
            ..Rates::default()
        };
        let plan = plan(&work(PayloadKind::Full, 500_000_000), &rates);
        let dl = plan
            .iter()
            .find(|p| p.name == "DOWNLOADING_UPDATE")
            .unwrap();
        assert_eq!(dl.total, 500_000_000);
        assert!((dl.expected.secs - 50.0).abs() < 1e-6);
        assert_eq!(dl.expected.spread, Source::History.spread());
        // A slow disk makes the write the bottleneck.
        rates.write = Rate::new(1e6, Source::SelfTest);
        let plan = super::plan(&work(PayloadKind::Full, 500_000_000), &rates);
        let dl = plan
            .iter()
            .find(|p| p.name == "DOWNLOADING_UPDATE")
            .unwrap();
        assert!((dl.expected.secs - (1u64 << 30) as f64 / 1e6).abs() < 1e-6);
    }

    #[test]
    fn with_no_measured_tail_a_download_ends_about_a_second_of_writes_after_its_last_byte() {
        let rates = Rates {
            network: Rate::new(20e6, Source::History),
            write: Rate::new(100e6, Source::SelfTest),
            ..Rates::default()
        };
        let dl = |rates: &Rates| {
            plan(&work(PayloadKind::Full, 500_000_000), rates)
                .into_iter()
                .find(|p| p.name == "DOWNLOADING_UPDATE")
                .unwrap()
        };
        assert!((dl(&rates).tail - 0.45).abs() < 1e-9, "{}", dl(&rates).tail);
        // A slot-bound download: a whole second of writes, at most the default.
        let slow = Rates {
            write: Rate::new(10e6, Source::SelfTest),
            ..rates.clone()
        };
        assert!((dl(&slow).tail - 1.25).abs() < 1e-9, "{}", dl(&slow).tail);
        // Measured: as measured.
        let measured = Rates {
            download_tail: Rate::new(3.0, Source::History),
            ..rates
        };
        assert_eq!(dl(&measured).tail, 3.0);
    }

    #[test]
    fn a_delta_is_measured_in_image_bytes_and_prepare_reads_back() {
        let rates = Rates::default();
        let p = plan(&work(PayloadKind::Delta, 1_000_000), &rates);
        let dl = p.iter().find(|p| p.name == "DOWNLOADING_UPDATE").unwrap();
        assert_eq!(dl.total, 1 << 30);
        let prep = p.iter().find(|p| p.name == "PREPARING_UPDATE").unwrap();
        assert!((prep.expected.secs - (1u64 << 30) as f64 / 300e6).abs() < 1e-6);
        let staged = plan(
            &Work {
                staged: true,
                ..work(PayloadKind::Full, 0)
            },
            &rates,
        );
        assert!(staged.iter().all(|p| p.total == 0), "{staged:?}");
    }
}
