//! Retry bookkeeping in one place: the jittered exponential backoff that reconciles and
//! watches share, and per object how often it failed in a row and when it last stalled on
//! a generation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Per object (by UID): failures in a row, and the generation it last stalled on, and when.
#[derive(Default)]
pub struct Retries {
    by_uid: Mutex<HashMap<String, Record>>,
}

#[derive(Default)]
struct Record {
    failures: u32,
    stalled: Option<(Option<i64>, Instant)>,
}

impl Retries {
    /// How many times in a row the object's reconcile failed.
    pub fn failures(&self, uid: &str) -> u32 {
        self.lock().get(uid).map_or(0, |r| r.failures)
    }

    /// Counts one more failure; returns how many in a row.
    pub fn failed(&self, uid: &str) -> u32 {
        let mut by_uid = self.lock();
        let record = by_uid.entry(uid.to_string()).or_default();
        record.failures = record.failures.saturating_add(1);
        record.failures
    }

    /// Notes that the object stalled on `generation` now.
    pub fn stalled(&self, uid: &str, generation: Option<i64>) {
        self.lock().entry(uid.to_string()).or_default().stalled = Some((generation, Instant::now()));
    }

    /// When the object last stalled on `generation`, if it did.
    pub fn last_stall(&self, uid: &str, generation: Option<i64>) -> Option<Instant> {
        self.lock()
            .get(uid)
            .and_then(|r| r.stalled)
            .filter(|(stalled_on, _)| *stalled_on == generation)
            .map(|(_, at)| at)
    }

    /// Forgets the object: it succeeded, or it is gone.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.by_uid.lock().unwrap_or_else(|p| p.into_inner())
    }
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

    #[test]
    fn failures_count_in_a_row_and_a_stall_belongs_to_its_generation() {
        let retries = Retries::default();
        assert_eq!(retries.failures("a"), 0);
        assert_eq!(retries.failed("a"), 1);
        assert_eq!(retries.failed("a"), 2);
        retries.stalled("a", Some(3));
        assert!(retries.last_stall("a", Some(3)).is_some());
        assert!(
            retries.last_stall("a", Some(4)).is_none(),
            "a new generation is tried at once"
        );
        retries.forget("a");
        assert_eq!(retries.failures("a"), 0);
        assert!(retries.last_stall("a", Some(3)).is_none());
    }
}
