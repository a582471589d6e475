//! Replays a recorded progress log through the estimator offline: the plan the run made
//! ([`log::Plan`]: its work and rates) and the units each sample recorded go to a fresh
//! [`Estimator`] at the sample's time, and the time remaining it gives is scored against
//! the real remaining time (the log's end). So the estimator can be changed and judged on
//! real installs, and recorded installs stay as unit tests (`progress/fixtures/`).
//!
//! The log holds about one sample a second, where a live run reports about four times a
//! second: a replay sees fewer points of the same stream, not the same estimate.

use crate::progress::estimate::{Estimate, Estimator};
use crate::progress::log::{Plan, Sample};
use crate::progress::phases;

/// The samples of the last run in `samples` (a resumed install appends a run whose time
/// starts again at 0).
pub fn last_run(samples: &[Sample]) -> &[Sample] {
    let start = samples
        .windows(2)
        .rposition(|w| w[1].t < w[0].t)
        .map_or(0, |i| i + 1);
    &samples[start..]
}

/// The estimate after each sample of `samples` (one run), from `plan`.
pub fn replay(plan: &Plan, samples: &[Sample]) -> Vec<Estimate> {
    let mut est = Estimator::new(phases::plan(&plan.work, &plan.rates));
    samples
        .iter()
        .map(|s| {
            if s.state == "COMPLETED" {
                est.finish();
            }
            est.work(s.t, &s.state, s.done, s.total);
            if s.written_total > 0 {
                est.secondary(s.t, s.written, s.written_total);
            }
            est.at(s.t)
        })
        .collect()
}

/// How far the time remaining was off, as the benchmark scores it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Samples scored.
    pub n: usize,
    /// Median of |estimate − real| / real.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
}

/// The score of `remaining[i]` (the time remaining given at `samples[i]`) against the real
/// remaining time: at each sample past 10 % (`percent[i]`) with at least `min_real`
/// seconds really left. `None` when no sample qualifies.
pub fn score(samples: &[Sample], estimates: &[(f64, f64)], min_real: f64) -> Option<Score> {
    let end = samples.last()?.t;
    let mut errors: Vec<f64> = samples
        .iter()
        .zip(estimates)
        .filter_map(|(s, (percent, remaining))| {
            let real = end - s.t;
            (*percent >= 10.0 && real >= min_real).then(|| (remaining - real).abs() / real)
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    errors.sort_by(f64::total_cmp);
    let q = |q: f64| errors[((errors.len() - 1) as f64 * q).round() as usize];
    Some(Score {
        n: errors.len(),
        median: q(0.5),
        p90: q(0.9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::phases::{Rate, Rates, Source, Work};
    use ferry_types::PayloadKind;

    fn sample(t: f64, state: &str, done: u64, total: u64) -> Sample {
        Sample {
            at: chrono::Utc::now(),
            t,
            percent: 0.0,
            fixed_percent: 0.0,
            state: state.into(),
            action: String::new(),
            done,
            total,
            written: 0,
            written_total: 0,
            remaining: None,
            low: None,
            high: None,
            waiting: None,
            note: None,
        }
    }

    #[test]
    fn a_recorded_run_replays_and_scores() {
        // 100 MB at 10 MB/s from t = 1, then 100 MB verified at 100 MB/s: the install
        // ends at t = 12. The plan expected the network at 5 MB/s.
        let plan = Plan {
            work: Work {
                kind: PayloadKind::Full,
                download_bytes: 100_000_000,
                image_size: 100_000_000,
                leaves_while_writing: false,
                staged: false,
            },
            rates: Rates {
                network: Rate::new(5e6, Source::History),
                verify: Rate::new(100e6, Source::History),
                download_tail: Rate::new(0.0, Source::History),
                ..Rates::default()
            },
        };
        let mut samples = vec![sample(0.5, "PREFLIGHT_PERSONALIZE", 0, 0)];
        for i in 0..=10 {
            let t = 1.0 + i as f64;
            samples.push(sample(t, "DOWNLOADING_UPDATE", i * 10_000_000, 100_000_000));
        }
        samples.push(sample(11.0, "PREPARING_UPDATE", 0, 100_000_000));
        samples.push(sample(11.5, "PREPARING_UPDATE", 50_000_000, 100_000_000));
        samples.push(sample(12.0, "PREPARED", 0, 0));
        let estimates = replay(&plan, &samples);
        assert_eq!(estimates.len(), samples.len());
        // Before the rate is seen, the plan's 20 s download; once seen, its 10 s.
        assert!(estimates[1].remaining > 18.0, "{:?}", estimates[1]);
        let pairs: Vec<(f64, f64)> = estimates.iter().map(|e| (e.percent, e.remaining)).collect();
        let s = score(&samples, &pairs, 2.0).unwrap();
        assert!(s.n >= 5, "{s:?}");
        assert!(s.median <= 0.15, "{s:?}");
        // A resumed run's samples start again at 0: only the last run replays.
        let mut two = samples.clone();
        two.extend(samples.iter().cloned());
        assert_eq!(last_run(&two).len(), samples.len());
    }
}
