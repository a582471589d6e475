//! The device's update policy (`[policy]` in `config.toml`, DESIGN §3 step 1) and the
//! preconditions a download and an install must meet: power, low-power mode, a metered
//! network, free space. The checks are pure functions of [`crate::facts::Facts`]; the
//! controller runs them as its PREFLIGHT_PREREQUISITE step (before a download, and again
//! before an install), and the daemon (`ferry-daemon`) runs them before it starts
//! anything on its own, with the maintenance window, which it alone evaluates.

use serde::{Deserialize, Serialize};

use crate::facts::Facts;

/// `[policy]` in `config.toml`: what the device may do on its own, and when it may not.
/// Every key is optional; the defaults are written beside each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Stage (personalize, download, verify, seal) the offered update in the background
    /// (default yes).
    #[serde(default = "yes")]
    pub auto_download: bool,
    /// Apply a staged update on its own, inside the maintenance window (default no).
    #[serde(default)]
    pub auto_install: bool,
    /// Restart into the new slot after an automatic install (default no).
    #[serde(default)]
    pub auto_restart: bool,
    /// The command that restarts the device. Absent: [`DEFAULT_RESTART_COMMAND`] with a
    /// real bootloader (`grub`, `uboot`), the simulated restart of `ferry reboot` with the
    /// `file` backend (simulated devices: tests, the demo); `[]`: the simulated restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_command: Option<Vec<String>>,
    /// Below this battery charge, and not on mains power, nothing is downloaded or
    /// installed (default 20 %).
    #[serde(default = "default_min_battery")]
    pub min_battery_percent: u8,
    /// Download and install in low-power mode too (default no).
    #[serde(default)]
    pub allow_low_power_mode: bool,
    /// The largest download made over a metered network, in bytes (default 100 MB).
    #[serde(default = "default_metered_max")]
    pub metered_max_bytes: u64,
    /// A staged update whose ticket is older than this gets a fresh ticket before it is
    /// applied (default one day); if the server no longer signs the build, the staged
    /// update is dropped.
    #[serde(default = "default_ticket_max_age")]
    pub ticket_max_age_secs: u64,
    /// When the device may install on its own; absent: at any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            auto_download: true,
            auto_install: false,
            auto_restart: false,
            restart_command: None,
            min_battery_percent: default_min_battery(),
            allow_low_power_mode: false,
            metered_max_bytes: default_metered_max(),
            ticket_max_age_secs: default_ticket_max_age(),
            window: None,
        }
    }
}

/// How a device with a real bootloader restarts unless `restart_command` says otherwise.
pub const DEFAULT_RESTART_COMMAND: [&str; 2] = ["systemctl", "reboot"];

/// How the device restarts into a newly installed slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// The simulated restart of `ferry reboot`: the file backend's bootloader, then the
    /// booted system's check and commit, in this process.
    Simulated,
    /// A command that restarts the machine (the bootloader and the agent's next start do
    /// the rest).
    Command(Vec<String>),
}

impl Policy {
    /// How a device whose boot control is `boot` restarts under this policy.
    pub fn restart(&self, boot: &ferry_boot::BootBackend) -> Restart {
        match (&self.restart_command, boot) {
            (Some(command), _) if command.is_empty() => Restart::Simulated,
            (Some(command), _) => Restart::Command(command.clone()),
            (None, ferry_boot::BootBackend::File) => Restart::Simulated,
            (None, _) => Restart::Command(DEFAULT_RESTART_COMMAND.map(str::to_owned).to_vec()),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_min_battery() -> u8 {
    20
}
fn default_metered_max() -> u64 {
    100_000_000
}
fn default_ticket_max_age() -> u64 {
    24 * 3600
}

/// `[policy.window]`: the maintenance window, in the device's time zone. `end` before
/// `start` crosses midnight (the window belongs to the day it opens on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Days it opens on (`mon` … `sun`; default every day).
    #[serde(default = "every_day")]
    pub days: Vec<Weekday>,
    /// When it opens, `HH:MM`.
    pub start: ClockTime,
    /// When it closes, `HH:MM` (equal to `start`: the whole day).
    pub end: ClockTime,
    /// IANA time zone (`Europe/Berlin`); absent: the system's (`TZ`, `/etc/localtime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

fn every_day() -> Vec<Weekday> {
    Weekday::ALL.to_vec()
}

/// A day of the week, as `config.toml` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Days after Monday (Monday 0).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A time of day, minutes after midnight, written `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    minutes: u16,
}

impl ClockTime {
    /// `hour:minute`, if it is a time of day.
    pub fn new(hour: u8, minute: u8) -> Option<ClockTime> {
        (hour < 24 && minute < 60).then(|| ClockTime {
            minutes: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    /// Hour, 0–23.
    pub fn hour(self) -> u8 {
        (self.minutes / 60) as u8
    }

    /// Minute, 0–59.
    pub fn minute(self) -> u8 {
        (self.minutes % 60) as u8
    }

    /// Minutes after midnight.
    pub fn minutes(self) -> u16 {
        self.minutes
    }
}

impl std::str::FromStr for ClockTime {
    type Err = String;
    fn from_str(text: &str) -> Result<ClockTime, String> {
        let bad = || format!("{text:?} is not a time of day (HH:MM, 00:00 to 23:59)");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let (h, m) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        ClockTime::new(h, m).ok_or_else(bad)
    }
}

impl std::fmt::Display for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ClockTime, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What is about to happen, as the preconditions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A download of `bytes` (its space is the sizing's: PURGING, `install::sizing`).
    Download {
        /// Bytes to fetch.
        bytes: u64,
    },
    /// Applying a staged update (and the restart after it).
    Install,
}

impl Step {
    /// `download` or `install`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::Download { .. } => "download",
            Step::Install => "install",
        }
    }
}

/// A precondition that holds an update back: each with its code, cause and fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Precondition {
    /// The battery is below the threshold and mains power is not connected.
    #[error(
        "the battery is at {level} % and not charging on mains power, below the {threshold} % an {step} needs"
    )]
    BatteryLow {
        /// Charge now.
        level: u8,
        /// `min_battery_percent`.
        threshold: u8,
        /// What was held back.
        step: &'static str,
    },
    /// Low-power mode is on.
    #[error("the device is in low-power mode, which holds back an {step}")]
    LowPowerMode {
        /// What was held back.
        step: &'static str,
    },
    /// The network is metered and the download is larger than allowed on it.
    #[error(
        "the network is metered and the download is {bytes} bytes, more than the {limit} allowed on it"
    )]
    MeteredNetwork {
        /// Download size.
        bytes: u64,
        /// `metered_max_bytes`.
        limit: u64,
    },
}

impl ferry_types::Diagnose for Precondition {
    fn code(&self) -> &'static str {
        match self {
            Precondition::BatteryLow { .. } => "BATTERY_LOW",
            Precondition::LowPowerMode { .. } => "LOW_POWER_MODE",
            Precondition::MeteredNetwork { .. } => "METERED_NETWORK",
        }
    }

    fn fix(&self) -> String {
        match self {
            Precondition::BatteryLow { threshold, .. } => format!(
                "Connect the device to mains power or let it charge above {threshold} % (min_battery_percent in config.toml [policy])"
            ),
            Precondition::LowPowerMode { .. } => {
                "Turn low-power mode off, or set allow_low_power_mode = true in config.toml [policy]".into()
            }
            Precondition::MeteredNetwork { .. } => {
                "Connect to an unmetered network, or raise metered_max_bytes in config.toml [policy]".into()
            }
        }
    }
}

/// Whether `step` may run now given `facts` and `policy`: the first precondition that
/// holds it back, in the order power, low-power mode, metered network.
pub fn check(step: Step, facts: &Facts, policy: &Policy) -> Result<(), Precondition> {
    let power = &facts.power;
    if let Some(level) = power.battery_level
        && level < policy.min_battery_percent
        && !power.on_ac
        && !power.battery_charging
    {
        return Err(Precondition::BatteryLow {
            level,
            threshold: policy.min_battery_percent,
            step: step.name(),
        });
    }
    if power.low_power_mode && !policy.allow_low_power_mode {
        return Err(Precondition::LowPowerMode { step: step.name() });
    }
    if let Step::Download { bytes } = step
        && facts.metered_network == Some(true)
        && bytes > policy.metered_max_bytes
    {
        return Err(Precondition::MeteredNetwork {
            bytes,
            limit: policy.metered_max_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    #[test]
    fn the_restart_is_simulated_only_with_the_file_bootloader_or_when_asked() {
        use ferry_boot::BootBackend;
        let grub = BootBackend::Grub {
            path: "grubenv".into(),
        };
        let default = Policy::default();
        assert_eq!(default.restart(&BootBackend::File), Restart::Simulated);
        assert_eq!(
            default.restart(&grub),
            Restart::Command(vec!["systemctl".into(), "reboot".into()])
        );
        let parsed: Policy = toml::from_str("restart_command = []").unwrap();
        assert_eq!(parsed.restart(&grub), Restart::Simulated);
        let parsed: Policy =
            toml::from_str("restart_command = [\"/sbin/reboot\", \"-f\"]").unwrap();
        assert_eq!(
            parsed.restart(&BootBackend::File),
            Restart::Command(vec!["/sbin/reboot".into(), "-f".into()])
        );
    }

    fn facts(battery: Option<u8>, on_ac: bool, metered: Option<bool>, free: u64) -> Facts {
        Facts::simulated(battery, on_ac, metered, free)
    }

    const DOWNLOAD: Step = Step::Download { bytes: 200_000_000 };

    #[test]
    fn each_precondition_refuses_with_its_own_code() {
        let policy = Policy::default();
        let ok = facts(Some(80), false, Some(false), 1 << 40);
        assert_eq!(check(DOWNLOAD, &ok, &policy), Ok(()));
        assert_eq!(check(Step::Install, &ok, &policy), Ok(()));

        let low = facts(Some(5), false, None, 1 << 40);
        let e = check(Step::Install, &low, &policy).unwrap_err();
        assert_eq!(e.code(), "BATTERY_LOW");
        assert!(e.to_string().contains("5 %"), "{e}");
        let mut charging = low.clone();
        charging.power.battery_charging = true;
        assert_eq!(check(Step::Install, &charging, &policy), Ok(()));
        let on_mains = facts(Some(5), true, None, 1 << 40);
        assert_eq!(check(Step::Install, &on_mains, &policy), Ok(()));
        let vm = facts(None, true, None, 1 << 40);
        assert_eq!(check(DOWNLOAD, &vm, &policy), Ok(()));

        let mut saver = ok.clone();
        saver.power.low_power_mode = true;
        assert_eq!(
            check(Step::Install, &saver, &policy).unwrap_err().code(),
            "LOW_POWER_MODE"
        );
        let lenient = Policy {
            allow_low_power_mode: true,
            ..Policy::default()
        };
        assert_eq!(check(Step::Install, &saver, &lenient), Ok(()));

        let metered = facts(None, true, Some(true), 1 << 40);
        assert_eq!(
            check(DOWNLOAD, &metered, &policy).unwrap_err().code(),
            "METERED_NETWORK"
        );
        assert_eq!(check(Step::Install, &metered, &policy), Ok(()));
        let small = Step::Download { bytes: 1000 };
        assert_eq!(check(small, &metered, &policy), Ok(()));
    }

    #[test]
    fn the_policy_table_parses_with_defaults_and_refuses_bad_times() {
        let policy: Policy = toml::from_str(
            r#"
            auto_install = true
            min_battery_percent = 30
            [window]
            days = ["sat", "sun"]
            start = "22:30"
            end = "04:00"
            time_zone = "Europe/Berlin"
            "#,
        )
        .unwrap();
        assert!(policy.auto_download && policy.auto_install && !policy.auto_restart);
        let window = policy.window.as_ref().unwrap();
        assert_eq!(window.days, [Weekday::Sat, Weekday::Sun]);
        assert_eq!((window.start.hour(), window.start.minute()), (22, 30));
        assert_eq!(window.end.to_string(), "04:00");
        let again: Policy = toml::from_str(&toml::to_string(&policy).unwrap()).unwrap();
        assert_eq!(again, policy);
        assert_eq!(toml::from_str::<Policy>("").unwrap(), Policy::default());
        for bad in ["24:00", "7:00", "07:60", "noon"] {
            let text = format!("[window]\nstart = \"{bad}\"\nend = \"05:00\"\n");
            assert!(toml::from_str::<Policy>(&text).is_err(), "{bad}");
        }
        assert!(toml::from_str::<Policy>("auto_instal = true").is_err());
    }
}
