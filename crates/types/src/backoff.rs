//! Waits between retries with full jitter: retry `n` waits a uniformly random time between
//! zero and `min(cap, base × 2^(n-1))`, so a herd of devices that failed together (a
//! release's burst of personalizations) spreads its retries instead of asking in step.

use std::time::Duration;

/// An exponential back-off with full jitter (AWS's "full jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's wait.
    pub base: Duration,
    /// The ceiling no wait exceeds.
    pub cap: Duration,
}

impl Backoff {
    /// The most retry `attempt` (from 1) waits: `min(cap, base × 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The wait before retry `attempt` for `jitter` in `[0, 1]` (clamped): that share of
    /// [`Backoff::ceiling`]. Pure, so the schedule can be checked.
    pub fn wait_with(&self, attempt: u32, jitter: f64) -> Duration {
        self.ceiling(attempt).mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The wait before retry `attempt`, its jitter drawn at random.
    pub fn wait(&self, attempt: u32) -> Duration {
        self.wait_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(8),
    };

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let ceilings: Vec<u128> = (1..=7).map(|n| B.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(B.ceiling(u32::MAX), B.cap);
        assert_eq!(B.wait_with(3, 0.0), Duration::ZERO);
        assert_eq!(B.wait_with(3, 1.0), Duration::from_secs(2));
        assert_eq!(
            B.wait_with(3, 7.0),
            Duration::from_secs(2),
            "jitter clamped"
        );
    }

    /// A herd's waits for one retry are spread over the whole interval, never past its
    /// ceiling: no two devices in step.
    #[test]
    fn a_herds_waits_are_spread_and_bounded() {
        let waits: Vec<Duration> = (0..2000).map(|_| B.wait(3)).collect();
        let ceiling = B.ceiling(3);
        assert!(waits.iter().all(|w| *w <= ceiling));
        // Ten buckets of the interval, each holding some of the waits (uniform: ~200 each).
        let mut buckets = [0u32; 10];
        for w in &waits {
            let i = (w.as_secs_f64() / ceiling.as_secs_f64() * 10.0) as usize;
            buckets[i.min(9)] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 100), "{buckets:?}");
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 1900, "{} distinct waits", distinct.len());
    }
}
