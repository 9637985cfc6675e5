//! Retry bookkeeping in one place: per object, how often it failed in a row and when it
//! last stalled on a generation. The waits themselves are [`crate::backoff::Backoff`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

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
