//! Replays a recorded progress log through the estimator offline: the plan the run made
//! ([`log::Plan`]: its work and rates) and the units each sample recorded go to a fresh
//! [`Estimator`] at the sample's time, and the time remaining it gives is scored against
//! the real remaining time (the log's end). So the estimator can be changed and judged on
//! real installs, and recorded installs stay as tests (`crates/agent/tests/progress_replay.rs`
//! on the fixtures `bench/progress-fixture` makes).
//!
//! The log holds about one sample a second, where a live run reports about four times a
//! second: a replay sees fewer points of the same stream, not the same estimate.

use crate::progress::estimate::{Estimate, Estimator};
use crate::progress::figures::{self, Figures, Point};
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

/// The points the replayed `estimates` show for `samples` (one run): the recorded action
/// text, the replay's percent and time remaining, waiting when the replay saw a stall or
/// the run recorded a wait.
pub fn points<'a>(samples: &'a [Sample], estimates: &[Estimate]) -> Vec<Point<'a>> {
    samples
        .iter()
        .zip(estimates)
        .map(|(s, e)| Point {
            percent: e.percent,
            remaining: Some(if s.state == "COMPLETED" {
                0.0
            } else {
                e.remaining
            }),
            waiting: s.waiting.is_some() || e.stalled_for.is_some(),
            ..Point::recorded(s)
        })
        .collect()
}

/// The figures (see [`figures`]) the estimator gives on a recorded run: `plan` and its
/// `samples` (the last run of a log), `change` as in [`figures::of`].
pub fn figures_of(plan: &Plan, samples: &[Sample], change: Option<f64>) -> Figures {
    let estimates = replay(plan, samples);
    figures::of(&points(samples, &estimates), change)
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
        let f = figures::of(&points(&samples, &estimates), None);
        assert_eq!(f.samples, samples.len());
        assert!(f.error_median.unwrap() <= 0.15, "{f:?}");
        assert!(f.longest_stall_secs <= 2.0, "{f:?}");
        assert_eq!(f, figures_of(&plan, &samples, None));
        // A resumed run's samples start again at 0: only the last run replays.
        let mut two = samples.clone();
        two.extend(samples.iter().cloned());
        assert_eq!(last_run(&two).len(), samples.len());
    }
}
