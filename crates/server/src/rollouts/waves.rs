//! A rollout's schedule and its arithmetic, no I/O: the wave spec (`1%@0,5%@4h,100%@3d`),
//! each device's fixed place in it, when its wave opens, and the halt rule (the lower bound
//! of the 95 % Wilson interval of a wave's failure rate).

use std::fmt;
use std::str::FromStr;

use ferry_types::{DeviceId, Sha256};

use super::RolloutError;

/// Places in a cohort: a device's place is in `0..PLACES`, a wave's share in basis points.
pub const PLACES: u32 = 10_000;

/// One wave: the cohort's first `share` basis points (cumulative) from `offset_ms` after the
/// start, on the rollout's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave {
    /// Cumulative share of the cohort, in basis points (100 = 1 %), `1..=10000`.
    pub share: u32,
    /// When it opens: milliseconds after the start (time paused or halted not counted).
    pub offset_ms: i64,
}

/// A rollout's waves: shares strictly increasing, offsets never decreasing, the last 100 %.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waves(Vec<Wave>);

impl Waves {
    /// Everyone at once (`100%@0`).
    pub fn all_at_once() -> Waves {
        Waves(vec![Wave {
            share: PLACES,
            offset_ms: 0,
        }])
    }

    /// The waves, first to last.
    pub fn waves(&self) -> &[Wave] {
        &self.0
    }

    /// The wave a device at `place` belongs to (never changes for a rollout).
    pub fn wave_of(&self, place: u32) -> u32 {
        let index = self.0.iter().position(|w| place < w.share);
        // The last wave is 100 %: every place is below it.
        index.unwrap_or(self.0.len() - 1) as u32
    }

    /// The wave's opening offset.
    pub fn offset_of(&self, wave: u32) -> i64 {
        self.0.get(wave as usize).map_or(i64::MAX, |w| w.offset_ms)
    }

    /// The waves open after `elapsed_ms` on the rollout's clock.
    pub fn open_waves(&self, elapsed_ms: i64) -> u32 {
        self.0.iter().filter(|w| w.offset_ms <= elapsed_ms).count() as u32
    }
}

impl fmt::Display for Waves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|w| {
                let pct = if w.share.is_multiple_of(100) {
                    (w.share / 100).to_string()
                } else {
                    format!("{}", f64::from(w.share) / 100.0)
                };
                format!("{pct}%@{}", duration_text(w.offset_ms))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn duration_text(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    if ms == 0 {
        return "0".into();
    }
    for (unit, name) in UNITS {
        if ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

impl FromStr for Waves {
    type Err = RolloutError;

    fn from_str(spec: &str) -> Result<Waves, RolloutError> {
        let invalid = |why: String| RolloutError::WavesInvalid {
            spec: spec.to_owned(),
            why,
        };
        let mut waves = Vec::new();
        for part in spec.split(',').map(str::trim) {
            let (pct, at) = part
                .split_once("%@")
                .ok_or_else(|| invalid(format!("{part:?} is not PERCENT%@TIME")))?;
            let share = parse_share(pct).ok_or_else(|| {
                invalid(format!(
                    "{pct:?} is not a percentage above 0 and at most 100"
                ))
            })?;
            let offset_ms = parse_offset(at)
                .ok_or_else(|| invalid(format!("{at:?} is not a time like 0, 30m, 4h or 1d")))?;
            if let Some(last) = waves.last().copied() {
                let Wave {
                    share: s,
                    offset_ms: o,
                } = last;
                if share <= s {
                    return Err(invalid(format!("{part:?}: shares must increase")));
                }
                if offset_ms < o {
                    return Err(invalid(format!("{part:?}: times must not go back")));
                }
            }
            waves.push(Wave { share, offset_ms });
        }
        if waves.last().map(|w| w.share) != Some(PLACES) {
            return Err(invalid("the last wave must be 100%".into()));
        }
        Ok(Waves(waves))
    }
}

/// `0.5`, `5`, `100` → basis points.
fn parse_share(pct: &str) -> Option<u32> {
    let value: f64 = pct.parse().ok()?;
    let bp = (value * 100.0).round();
    (value.is_finite() && bp >= 1.0 && bp <= f64::from(PLACES)).then_some(bp as u32)
}

/// `0`, `90s`, `30m`, `4h`, `1d` → milliseconds.
pub fn parse_offset(at: &str) -> Option<i64> {
    if at == "0" {
        return Some(0);
    }
    let unit = match at.chars().last()? {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    let n: i64 = at[..at.len() - 1].parse().ok()?;
    (0..=3650 * 86_400)
        .contains(&(n * unit / 1000))
        .then_some(n * unit)
}

/// When (Unix ms) the rollout's clock reached `offset_ms`, replaying its `changes` (time
/// and action `pause`, `halt` or `resume`, oldest first) from `started_ms`: the clock
/// stops at a pause or halt and runs again at a resume. `None` if it has not yet.
pub fn opened_at(started_ms: i64, changes: &[(i64, String)], offset_ms: i64) -> Option<i64> {
    let mut clock = 0i64;
    let mut running_since = Some(started_ms);
    for (at, action) in changes {
        match (action.as_str(), running_since) {
            ("pause" | "halt", Some(since)) => {
                if clock + (at - since) >= offset_ms {
                    return Some(since + (offset_ms - clock));
                }
                clock += at - since;
                running_since = None;
            }
            ("resume", None) => running_since = Some(*at),
            _ => {}
        }
    }
    running_since.map(|since| since + (offset_ms - clock).max(0))
}

/// A device's place in rollout `rollout_id`'s cohort, in `0..PLACES`: the first 8 bytes of
/// SHA-256 over the rollout and the device id, so it is fixed for the rollout and
/// independent between rollouts.
pub fn place(rollout_id: i64, device_id: &DeviceId) -> u32 {
    let digest = Sha256::of(format!("ferry-rollout-place\0{rollout_id}\0{device_id}").as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest.0[..8]);
    (u64::from_be_bytes(head) % u64::from(PLACES)) as u32
}

/// The 95 % two-sided z.
const Z: f64 = 1.959_963_984_540_054;

/// The lower bound of the 95 % Wilson score interval for `failures` out of `attempts`.
pub fn wilson_lower(failures: u64, attempts: u64) -> f64 {
    if attempts == 0 {
        return 0.0;
    }
    let n = attempts as f64;
    let p = failures.min(attempts) as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let spread = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The halt rule: at least `min_attempts` attempts and the Wilson lower bound of the
/// failure rate above `threshold`. Returns the lower bound when it halts.
pub fn halts(failures: u64, attempts: u64, threshold: f64, min_attempts: u64) -> Option<f64> {
    let lower = wilson_lower(failures, attempts);
    (attempts >= min_attempts.max(1) && lower > threshold).then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let waves: Waves = "1%@0,5%@4h,25%@1d,100%@3d".parse().unwrap();
        assert_eq!(
            waves.waves(),
            &[
                Wave {
                    share: 100,
                    offset_ms: 0
                },
                Wave {
                    share: 500,
                    offset_ms: 4 * 3_600_000
                },
                Wave {
                    share: 2500,
                    offset_ms: 86_400_000
                },
                Wave {
                    share: 10_000,
                    offset_ms: 3 * 86_400_000
                },
            ]
        );
        assert_eq!(waves.to_string(), "1%@0,5%@4h,25%@1d,100%@3d");
        let half: Waves = "0.5%@0,100%@90s".parse().unwrap();
        assert_eq!(half.to_string(), "0.5%@0,100%@90s");
        assert_eq!(Waves::all_at_once().to_string(), "100%@0");
    }

    #[test]
    fn bad_specs_are_refused_with_why() {
        for (spec, why) in [
            ("5%@0,1%@1h,100%@2h", "shares must increase"),
            ("5%@2h,100%@1h", "must not go back"),
            ("5%@0,50%@1h", "last wave must be 100%"),
            ("0%@0,100%@1h", "percentage"),
            ("101%@0", "percentage"),
            ("5%@1w,100%@2w", "time like"),
            ("5,100", "PERCENT%@TIME"),
        ] {
            let e = spec.parse::<Waves>().unwrap_err();
            assert!(e.to_string().contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn places_are_fixed_spread_and_differ_between_rollouts() {
        let ids: Vec<DeviceId> = (1..=2000u64)
            .map(|n| DeviceId::new(n * 7919).unwrap())
            .collect();
        let a: Vec<u32> = ids.iter().map(|d| place(1, d)).collect();
        assert_eq!(a, ids.iter().map(|d| place(1, d)).collect::<Vec<_>>());
        assert_ne!(a, ids.iter().map(|d| place(2, d)).collect::<Vec<_>>());
        // About 10 % of devices below 1000 places (binomial sd ~13 of 2000).
        let low = a.iter().filter(|p| **p < 1000).count();
        assert!((140..=260).contains(&low), "{low}");
        let waves: Waves = "10%@0,100%@1h".parse().unwrap();
        assert!(a.iter().all(|p| waves.wave_of(*p) == u32::from(*p >= 1000)));
    }

    #[test]
    fn an_open_wave_opened_when_the_clock_reached_its_offset() {
        let h = 3_600_000;
        let change = |at: i64, action: &str| (at, action.to_owned());
        // Never held: start + offset.
        assert_eq!(opened_at(1000, &[], 0), Some(1000));
        assert_eq!(opened_at(1000, &[], 4 * h), Some(1000 + 4 * h));
        // Paused 1 h after the start for 2 h: a 4 h wave opened at 6 h of wall time.
        let held = [change(h, "pause"), change(3 * h, "resume")];
        assert_eq!(opened_at(0, &held, 4 * h), Some(6 * h));
        // A wave reached before the pause opened then.
        assert_eq!(opened_at(0, &held, h / 2), Some(h / 2));
        // Halted (after a pause, the clock already stopped) and not resumed: not yet.
        let halted = [change(h, "pause"), change(2 * h, "halt")];
        assert_eq!(opened_at(0, &halted, 4 * h), None);
        assert_eq!(opened_at(0, &halted, h), Some(h));
    }

    #[test]
    fn waves_open_on_the_rollout_clock() {
        let waves: Waves = "1%@0,5%@4h,100%@1d".parse().unwrap();
        assert_eq!(waves.open_waves(0), 1);
        assert_eq!(waves.open_waves(4 * 3_600_000 - 1), 1);
        assert_eq!(waves.open_waves(4 * 3_600_000), 2);
        assert_eq!(waves.open_waves(86_400_000), 3);
        assert_eq!(waves.wave_of(0), 0);
        assert_eq!(waves.wave_of(99), 0);
        assert_eq!(waves.wave_of(100), 1);
        assert_eq!(waves.wave_of(9999), 2);
    }

    #[test]
    fn the_wilson_rule_halts_small_bad_waves_not_large_good_ones() {
        // 2 of 3 devices failing halts at 20 %; 1 of 500 does not; nor 1 of 1.
        assert!(halts(2, 3, 0.2, 3).is_some());
        assert!(halts(1, 500, 0.2, 3).is_none());
        assert!(halts(1, 1, 0.2, 3).is_none());
        // Too few attempts never halt, however bad.
        assert!(halts(2, 2, 0.2, 3).is_none());
        // Textbook value: 2/3 → lower bound about 0.2077.
        assert!(
            (wilson_lower(2, 3) - 0.2077).abs() < 1e-3,
            "{}",
            wilson_lower(2, 3)
        );
        assert!((wilson_lower(0, 10)).abs() < 1e-12);
        // 10 % failing of 1000 at a 5 % threshold halts; 5.5 % does not (lower bound < 5 %).
        assert!(halts(100, 1000, 0.05, 3).is_some());
        assert!(halts(55, 1000, 0.05, 3).is_none());
    }
}
