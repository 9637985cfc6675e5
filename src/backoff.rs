//! Jittered exponential backoff, the one shape of waiting the operator uses: reconciles
//! after a failure, watches after an error, the HTTP endpoints after a failed accept.

use std::time::Duration;

/// Exponential backoff: `first` before the first retry, doubling up to `most`, each wait
/// jittered by ±50% so that objects that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (before jitter).
    pub first: Duration,
    /// The longest wait (before jitter).
    pub most: Duration,
}

impl Backoff {
    /// The wait before retry `n` (1 is the first), before jitter.
    pub fn base(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(20);
        self.first.saturating_mul(1 << doublings).min(self.most)
    }

    /// The wait before retry `n` (1 is the first), jittered.
    pub fn delay(&self, n: u32) -> Duration {
        jitter(self.base(n))
    }
}

/// `wait` scaled by a random factor between 0.5 and 1.5.
pub fn jitter(wait: Duration) -> Duration {
    wait.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_most_and_stay_within_the_jitter() {
        let backoff = Backoff {
            first: Duration::from_secs(2),
            most: Duration::from_secs(60),
        };
        let bases: Vec<u64> = (1..=8).map(|n| backoff.base(n).as_secs()).collect();
        assert_eq!(bases, [2, 4, 8, 16, 32, 60, 60, 60]);
        for n in 1..=8 {
            let wait = backoff.delay(n);
            assert!(
                wait >= backoff.base(n) / 2 && wait <= backoff.base(n) * 3 / 2,
                "{n}: {wait:?}"
            );
        }
        assert_eq!(backoff.base(u32::MAX), Duration::from_secs(60));
    }
}
