//! The figures (README "Rollouts"): seeded streams of a bad release's event
//! reports from 200 devices under the waves `1%@0,5%@1h,25%@4h,100%@1d`, replayed through
//! ferry's halt rule (the server's own [`counted`] and [`halts`], per wave) and through
//! hawkBit's (a group halts when more than 50 % of its devices have a failed install; no
//! silent device, no rollback counts). The same stream, the same waves: only the rule
//! differs. `cargo test -p ferry-server --lib replay -- --nocapture` prints the table.

use std::collections::{BTreeMap, BTreeSet};

use ferry_events::{EventKind, EventReport};
use ferry_types::DeviceId;
use serde_json::json;

use super::count::{Counted, counted};
use super::waves::{Waves, halts, place};

const DEVICES: usize = 200;
const WAVES: &str = "1%@0,5%@1h,25%@4h,100%@1d";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// The server's default `--silent-after`.
const SILENT_AFTER: i64 = crate::events::DEFAULT_SILENT_AFTER.as_millis() as i64;

/// What the bad release does to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Installs, reboots, commits.
    Good,
    /// The install fails with a code blaming the release (`SEAL_MISMATCH`).
    InstallFails,
    /// The install fails for the device's own reason (`INSUFFICIENT_SPACE`).
    NoSpace,
    /// Installs, then the new slot fails its tries and the device rolls back.
    RollsBack,
    /// Installs, reboots and is never heard from again.
    GoesSilent,
}

/// One entry of the stream: a device's report, or the server marking it silent.
#[derive(Debug, Clone)]
enum Entry {
    Report(Box<EventReport>),
    Silent,
}

/// One device in the stream: its wave, when it gets the release (its first hourly scan
/// after its wave opens), and its entries after that.
struct Device {
    wave: u32,
    ticket_ms: i64,
    entries: Vec<(i64, Entry)>,
}

/// splitmix64: the stream's seeded randomness.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below
    }
}

/// A report of `event` (with an error `code`) by `device_id` for the update 1.0 → 2.0.
fn report(device_id: DeviceId, sequence: u64, event: EventKind, code: Option<&str>) -> Entry {
    let failed = matches!(event, EventKind::Failed | EventKind::RolledBack);
    let mut body = json!({
        "report_version": 1, "uuid": null, "event_time": "2026-11-30T12:00:00Z",
        "transition": null, "audience_type": "customer", "device_class": "vm",
        "device_model": "m", "platform": "p", "core_version": "0.1.0",
        "current_os_type": "system", "current_os_version": "1.0",
        "current_base_os_version": "1.0", "current_slot": "a", "target_os_version": "2.0",
        "data_fs_capacity": 1, "data_fs_free": 1, "system_fs_capacity": 1,
        "system_fs_free": 1, "storage_capacity": 1, "phases": [],
    });
    for flag in [
        "battery_is_charging",
        "low_power_mode",
        "mandatory_update_eligible",
        "pre_staging_enabled",
        "ramp_enabled",
        "rapid_security_response_installed",
        "rapid_security_response_semi_splat",
    ] {
        body[flag] = json!(false);
    }
    body["on_ac_power"] = json!(true);
    body["mandatory_update_optional"] = json!(true);
    body["sequence"] = json!(sequence);
    body["device_id"] = json!(device_id.to_string());
    body["event"] = json!(event.as_str());
    body["result"] = json!(if failed { "failure" } else { "success" });
    body["error"] = json!(code.map(|c| json!({"code": c, "cause": "c", "fix": "f"})));
    Entry::Report(Box::new(
        serde_json::from_value(body).expect("the report is well formed"),
    ))
}

/// The stream of `DEVICES` devices for a release whose outcomes are drawn from `mix`
/// (each outcome with its percentage; the rest `Good`).
fn stream(seed: u64, mix: &[(Outcome, u64)]) -> Vec<Device> {
    let waves: Waves = WAVES.parse().expect("the spec parses");
    let mut rng = Seeded(seed);
    (0..DEVICES)
        .map(|i| {
            let id = DeviceId::new(0x5100_0000_0000_0000 + i as u64 * 7919 + 1).expect("nonzero");
            let wave = waves.wave_of(place(1, &id));
            let opens = waves.offset_of(wave);
            let phase = rng.next(HOUR as u64) as i64;
            let ticket_ms = opens + (phase - opens).rem_euclid(HOUR);
            let mut roll = rng.next(100);
            let outcome = mix
                .iter()
                .find(|(_, pct)| {
                    let hit = roll < *pct;
                    roll = roll.saturating_sub(*pct);
                    hit
                })
                .map_or(Outcome::Good, |(o, _)| *o);
            let installed = ticket_ms + 10 * MINUTE + rng.next(10 * MINUTE as u64) as i64;
            let rebooted = installed + 5 * MINUTE + rng.next(10 * MINUTE as u64) as i64;
            let mut entries = vec![(ticket_ms, report(id, 1, EventKind::Personalized, None))];
            match outcome {
                Outcome::Good => {
                    entries.push((installed, report(id, 2, EventKind::Installed, None)));
                    entries.push((rebooted, report(id, 3, EventKind::Committed, None)));
                }
                Outcome::InstallFails => entries.push((
                    installed,
                    report(id, 2, EventKind::Failed, Some("SEAL_MISMATCH")),
                )),
                Outcome::NoSpace => entries.push((
                    installed,
                    report(id, 2, EventKind::Failed, Some("INSUFFICIENT_SPACE")),
                )),
                Outcome::RollsBack => {
                    entries.push((installed, report(id, 2, EventKind::Installed, None)));
                    entries.push((
                        rebooted,
                        report(id, 3, EventKind::RolledBack, Some("BOOT_TRIES_EXHAUSTED")),
                    ));
                }
                Outcome::GoesSilent => {
                    entries.push((installed, report(id, 2, EventKind::Installed, None)));
                    entries.push((installed + SILENT_AFTER, Entry::Silent));
                }
            }
            Device {
                wave,
                ticket_ms,
                entries,
            }
        })
        .collect()
}

/// A halt rule fed the stream one entry at a time.
trait Rule {
    /// Counts `entry` of device `d` (in `wave`); true when the rule halts the rollout.
    fn feed(&mut self, d: usize, wave: u32, entry: &Entry) -> bool;
}

/// ferry's: per wave, attempts and failures as the server counts them, the Wilson rule
/// with the defaults (threshold 0.2, at least 3 attempts).
#[derive(Default)]
struct Ferry {
    attempts: BTreeMap<u32, BTreeSet<usize>>,
    failures: BTreeMap<u32, BTreeSet<usize>>,
}

impl Rule for Ferry {
    fn feed(&mut self, d: usize, wave: u32, entry: &Entry) -> bool {
        let failure = match entry {
            Entry::Silent => true,
            Entry::Report(r) => match counted(r) {
                None => return false,
                Some(Counted::Attempt) => false,
                Some(Counted::Failure(_)) => true,
            },
        };
        self.attempts.entry(wave).or_default().insert(d);
        if !failure {
            return false;
        }
        self.failures.entry(wave).or_default().insert(d);
        let failures = self.failures[&wave].len() as u64;
        let attempts = self.attempts[&wave].len() as u64;
        halts(
            failures,
            attempts,
            super::DEFAULT_THRESHOLD,
            super::DEFAULT_MIN_ATTEMPTS,
        )
        .is_some()
    }
}

/// hawkBit's `ThresholdRolloutGroupErrorCondition`: a group halts when its devices with a
/// failed install are more than `percent` of the group (every device of a started group
/// has an action). Rollbacks after the reboot and silent devices are not errors.
struct HawkBit {
    percent: u64,
    group_sizes: BTreeMap<u32, u64>,
    errors: BTreeMap<u32, BTreeSet<usize>>,
}

impl Rule for HawkBit {
    fn feed(&mut self, d: usize, wave: u32, entry: &Entry) -> bool {
        let Entry::Report(r) = entry else {
            return false;
        };
        if r.event != EventKind::Failed {
            return false;
        }
        let errors = self.errors.entry(wave).or_default();
        errors.insert(d);
        errors.len() as u64 * 100 > self.percent * self.group_sizes[&wave]
    }
}

/// The replay: entries in time order; a device whose ticket comes at or after the halt
/// never gets the release (the halt stops tickets at once, for both rules). Returns the
/// halt time and how many devices got the release.
fn replay(devices: &[Device], rule: &mut dyn Rule) -> (Option<i64>, usize) {
    let mut timeline: Vec<(i64, usize, &Entry)> = devices
        .iter()
        .enumerate()
        .flat_map(|(d, dev)| dev.entries.iter().map(move |(at, e)| (*at, d, e)))
        .collect();
    timeline.sort_by_key(|(at, d, _)| (*at, *d));
    let mut halted = None;
    for (at, d, entry) in timeline {
        if halted.is_some_and(|h| devices[d].ticket_ms >= h) {
            continue;
        }
        if rule.feed(d, devices[d].wave, entry) && halted.is_none() {
            halted = Some(at);
        }
    }
    let got = devices
        .iter()
        .filter(|dev| halted.is_none_or(|h| dev.ticket_ms < h))
        .count();
    (halted, got)
}

fn hawkbit(devices: &[Device]) -> HawkBit {
    let mut group_sizes = BTreeMap::new();
    for dev in devices {
        *group_sizes.entry(dev.wave).or_default() += 1;
    }
    HawkBit {
        percent: 50,
        group_sizes,
        errors: BTreeMap::new(),
    }
}

fn when(halted: Option<i64>) -> String {
    halted.map_or_else(
        || "never".into(),
        |ms| format!("{}h{:02}", ms / HOUR, ms % HOUR / MINUTE),
    )
}

/// `(min, median, max)` of `values`.
fn spread(values: &mut [usize]) -> (usize, usize, usize) {
    values.sort_unstable();
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

#[test]
fn ferrys_rule_halts_a_release_that_boots_badly_which_hawkbits_never_sees() {
    use Outcome::*;
    let scenarios: [(&str, Vec<(Outcome, u64)>); 2] = [
        (
            "boots badly (60 % roll back, 10 % silent, 5 % fail to install, 5 % no space)",
            vec![
                (RollsBack, 60),
                (GoesSilent, 10),
                (InstallFails, 5),
                (NoSpace, 5),
            ],
        ),
        (
            "fails to install (60 % SEAL_MISMATCH, 5 % no space)",
            vec![(InstallFails, 60), (NoSpace, 5)],
        ),
    ];
    const SEEDS: u64 = 20;
    println!(
        "{DEVICES} devices, waves {WAVES}, hourly scans, {SEEDS} seeded streams; devices that got the bad release, min/median/max:"
    );
    for (name, mix) in &scenarios {
        let (mut ferry, mut hawk, mut ferry_minutes, mut hawk_halts) = (vec![], vec![], vec![], 0);
        for seed in 1..=SEEDS {
            let devices = stream(seed, mix);
            let sizes: Vec<usize> = (0..4)
                .map(|w| devices.iter().filter(|d| d.wave == w).count())
                .collect();
            let (ferry_at, ferry_got) = replay(&devices, &mut Ferry::default());
            let (hawk_at, hawk_got) = replay(&devices, &mut hawkbit(&devices));
            // ferry halts before the last wave (three quarters of the devices) opens.
            let before_last: usize = sizes[..3].iter().sum();
            assert!(
                ferry_at.is_some_and(|h| h < 24 * HOUR) && ferry_got <= before_last,
                "{name}, seed {seed}: {ferry_got} devices, halt at {}",
                when(ferry_at)
            );
            ferry.push(ferry_got);
            ferry_minutes.push(ferry_at.map_or(0, |h| (h / MINUTE) as usize));
            hawk.push(hawk_got);
            hawk_halts += usize::from(hawk_at.is_some());
        }
        let minutes = spread(&mut ferry_minutes).1 as i64 * MINUTE;
        println!(
            "  {name}: ferry {:?} (median halt at {}), hawkBit 50 % {:?} (halted in {hawk_halts} of {SEEDS})",
            spread(&mut ferry),
            when(Some(minutes)),
            spread(&mut hawk)
        );
    }
    // hawkBit cannot see a release that boots badly: every device gets it, every time.
    for seed in 1..=SEEDS {
        let devices = stream(seed, &scenarios[0].1);
        assert_eq!(replay(&devices, &mut hawkbit(&devices)), (None, DEVICES));
    }
}

#[test]
fn the_replay_lets_a_good_release_through_under_both_rules() {
    // 2 % of installs failing for the release, 3 % out of space: no halt, everyone gets it.
    let devices = stream(7, &[(Outcome::InstallFails, 2), (Outcome::NoSpace, 3)]);
    assert_eq!(replay(&devices, &mut Ferry::default()), (None, DEVICES));
    assert_eq!(replay(&devices, &mut hawkbit(&devices)), (None, DEVICES));
}
