//! Batched re-observation. Before each resync, a kind reads the ECS resources of all its
//! objects in as few calls as ECS allows (DescribeServices: 10 per call and cluster;
//! DescribeClusters: 100 per call) and leaves what it saw here, keyed by object UID. The
//! reconcile the resync triggers next takes its object's entry instead of reading alone.
//!
//! An entry is only good if nothing reconciled the object after the read began: every
//! reconcile marks its object touched when it ends (it may have written to ECS), and an
//! entry read before the mark is dropped. So a snapshot never hides the operator's own
//! writes, and a missing entry only costs the usual single read.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;

use tokio::sync::Notify;
use tracing::debug;

use super::{Context, Managed};
use crate::ecs::client::Ecs;
use crate::ecs::error::EcsError;

/// Entries not taken within this long are dropped (their object was not reconciled).
const MAX_AGE: Duration = Duration::from_secs(60);

/// Snapshots of one kind's ECS resources from batched reads, one per object at most.
pub struct Observations<T> {
    inner: Mutex<Inner<T>>,
    /// Wakes a sweep waiting for room (see [`Observations::room_for`]) when a snapshot goes
    /// or a reconcile ends.
    taken: Notify,
    /// Reconciles of the kind ended so far (see [`Observations::reconciles_after`]).
    reconciles: AtomicU64,
}

impl<T> Default for Observations<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                fresh: HashMap::new(),
                touched: HashMap::new(),
                sweeps: vec![],
            }),
            taken: Notify::new(),
            reconciles: AtomicU64::new(0),
        }
    }
}

struct Inner<T> {
    /// UID -> when the read began, and what it saw.
    fresh: HashMap<String, (Instant, T)>,
    /// UID -> when its last reconcile ended.
    touched: HashMap<String, Instant>,
    /// When each sweep still running began (sweeps of several kinds may overlap).
    sweeps: Vec<Instant>,
}

impl<T> Observations<T> {
    /// Leaves what a read begun at `read_at` saw of an object, unless the object was
    /// reconciled since.
    pub fn offer(&self, uid: &str, read_at: Instant, seen: T) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.touched.get(uid).is_none_or(|touched| *touched < read_at) {
            inner.fresh.insert(uid.to_string(), (read_at, seen));
        }
    }

    /// Takes the object's snapshot, if a batched read left one that is still good.
    pub fn take(&self, uid: &str) -> Option<T> {
        let (read_at, seen) = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.fresh.remove(uid)?
        };
        self.taken.notify_waiters();
        (read_at.elapsed() <= MAX_AGE).then_some(seen)
    }

    /// Waits until fewer than `most` snapshots wait to be taken, or [`MAX_AGE`] (snapshots
    /// of objects nobody reconciles are dropped by then): a sweep in chunks reads its next
    /// chunk only once reconciles have taken most of the last. Unbounded, a resync of 10 000
    /// services read every chunk before the first reconcile ran, holding every snapshot.
    pub async fn room_for(&self, most: usize) {
        self.wait_until(|this| this.len().0 < most, MAX_AGE).await;
    }

    /// Marks the end of a reconcile of the object: snapshots read before now are stale.
    /// Only while a sweep runs: every read begins in a sweep, and one begun after now
    /// cannot predate the mark, so between sweeps a mark would be memory and nothing else
    /// (an entry per object reconciled, 20 000 after creating 10 000 services).
    pub fn touched(&self, uid: &str) {
        {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.fresh.remove(uid);
            if !inner.sweeps.is_empty() {
                inner.touched.insert(uid.to_string(), Instant::now());
            }
        }
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.taken.notify_waiters();
    }

    /// How many reconciles of the kind have ended (a mark for [`Observations::reconciles_after`]).
    pub fn reconciles_ended(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// Waits until `count` more reconciles have ended than `mark` counted, or `most` passed.
    pub async fn reconciles_after(&self, mark: u64, count: u64, most: Duration) {
        self.wait_until(|this| this.reconciles_ended() >= mark + count, most)
            .await;
    }

    /// Waits until `done` holds, checking again each time a snapshot goes or a reconcile
    /// ends, or `most` passed.
    async fn wait_until(&self, done: impl Fn(&Self) -> bool, most: Duration) {
        let waiting = async {
            loop {
                let taken = self.taken.notified();
                tokio::pin!(taken);
                taken.as_mut().enable();
                if done(self) {
                    return;
                }
                taken.await;
            }
        };
        let _ = tokio::time::timeout(most, waiting).await;
    }

    /// Starts a sweep of batched reads: every read of it begins at or after the instant returned.
    pub fn sweep_begins(&self) -> Instant {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let began = Instant::now();
        inner.sweeps.push(began);
        began
    }

    /// Ends the sweep that began at `began`, and forgets what can no longer matter: touch
    /// marks older than every running sweep (no read still to come predates them) and
    /// snapshots nobody took. Keeps memory to at most one entry of each per object.
    pub fn sweep_done(&self, began: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = inner.sweeps.iter().position(|s| *s == began) {
            inner.sweeps.swap_remove(i);
        }
        let oldest_running = inner.sweeps.iter().min().copied().unwrap_or_else(Instant::now);
        inner.touched.retain(|_, touched| *touched >= oldest_running);
        inner.fresh.retain(|_, (read_at, _)| read_at.elapsed() <= MAX_AGE);
    }

    /// How many snapshots and touch marks are held (for tests of memory bounds).
    pub fn len(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.fresh.len(), inner.touched.len())
    }
}

/// Objects to read together: their UIDs and the ARNs of their ECS resources.
pub type Batch = Vec<(String, String)>;

/// Groups objects for batched reads by the account they act in (their namespace's role),
/// their region and `scope` (the cluster, for services): one group per client and call.
/// `what` gives an object's region, scope and ARN of each of its ECS resources (none when it
/// has none yet); an object with several appears once per resource.
pub async fn by_account<K: Managed, R: IntoIterator<Item = (String, String, String)>>(
    ctx: &Context,
    objects: &[Arc<K>],
    what: impl Fn(&K) -> R,
) -> Vec<(Ecs, String, Batch)> {
    let mut groups: BTreeMap<(Option<String>, String, String), Batch> = BTreeMap::new();
    for obj in objects {
        let Some(uid) = obj.uid() else { continue };
        let role = ctx
            .ecs
            .role_for(&obj.namespace().unwrap_or_default())
            .map(str::to_owned);
        for (region, scope, arn) in what(obj) {
            groups
                .entry((role.clone(), region, scope))
                .or_default()
                .push((uid.clone(), arn));
        }
    }
    let mut clients = vec![];
    for ((role, region, scope), members) in groups {
        clients.push((ctx.ecs.client_as(role.as_deref(), &region).await, scope, members));
    }
    clients
}

/// Reads the ECS resources of `objects` in calls of at most `batch` (per account, region
/// and scope, see [`by_account`]) with `read`, which answers with the resources ECS has, by
/// ARN; offers each object what was seen of its own (None: absent).
pub async fn observe_in_batches<K, T, F, Fut>(
    ctx: &Context,
    objects: &[Arc<K>],
    what: impl Fn(&K) -> Option<(String, String, String)>,
    batch: usize,
    read: F,
) where
    K: Managed<Observed = Option<T>>,
    F: Fn(Ecs, String, Vec<String>) -> Fut,
    Fut: Future<Output = Result<HashMap<String, T>, EcsError>>,
{
    let observations = K::observations(ctx);
    for (ecs, scope, members) in by_account(ctx, objects, what).await {
        for chunk in members.chunks(batch) {
            let read_at = Instant::now();
            let arns = chunk.iter().map(|(_, arn)| arn.clone()).collect();
            match read(ecs.clone(), scope.clone(), arns).await {
                Ok(mut found) => {
                    for (uid, arn) in chunk {
                        observations.offer(uid, read_at, found.remove(arn));
                    }
                }
                // NB: each reconcile then reads its own, as without batching.
                Err(err) => debug!(kind = K::kind(&()).as_ref(), scope, error = %err, "batched read failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_taken_once() {
        let observations = Observations::default();
        observations.offer("a", Instant::now(), Some("ACTIVE".to_string()));
        assert_eq!(observations.take("a"), Some(Some("ACTIVE".into())));
        assert_eq!(observations.take("a"), None);
    }

    #[test]
    fn a_reconcile_after_the_read_began_makes_the_snapshot_stale() {
        let observations = Observations::<u32>::default();
        // read began, then the object was reconciled (maybe written), then the read answered
        let sweep = observations.sweep_begins();
        let read_at = Instant::now();
        observations.touched("a");
        observations.offer("a", read_at, 1u32);
        assert_eq!(observations.take("a"), None);
        // answered first, reconciled after: dropped as well
        observations.offer("b", Instant::now(), 2u32);
        observations.touched("b");
        assert_eq!(observations.take("b"), None);
        // a read that began after the reconcile is good
        observations.offer("a", Instant::now(), 3u32);
        assert_eq!(observations.take("a"), Some(3));
        observations.sweep_done(sweep);
    }

    #[test]
    fn reconciles_between_sweeps_leave_no_marks() {
        let observations = Observations::<u32>::default();
        for uid in 0..1000 {
            observations.touched(&uid.to_string());
        }
        assert_eq!(observations.len(), (0, 0));
        // and the next sweep's reads, all begun after those reconciles, are good
        let sweep = observations.sweep_begins();
        observations.offer("7", sweep, 7);
        assert_eq!(observations.take("7"), Some(7));
        observations.sweep_done(sweep);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_reads_its_next_chunk_once_most_of_the_last_is_taken() {
        let observations = Arc::new(Observations::<u32>::default());
        for uid in 0..3 {
            observations.offer(&uid.to_string(), Instant::now(), uid);
        }
        let waiting = tokio::spawn({
            let observations = observations.clone();
            async move { observations.room_for(3).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "3 snapshots wait: no room for the next chunk");
        assert_eq!(observations.take("0"), Some(0));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("room once one is taken")
            .unwrap();
        // snapshots nobody takes hold the next chunk back no longer than they are good
        observations.offer("3", Instant::now(), 3);
        let started = tokio::time::Instant::now();
        observations.room_for(3).await;
        assert_eq!(started.elapsed(), MAX_AGE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_hands_its_next_group_once_enough_reconciles_ended() {
        let observations = Arc::new(Observations::<u32>::default());
        observations.touched("before");
        let mark = observations.reconciles_ended();
        let waiting = tokio::spawn({
            let observations = observations.clone();
            async move { observations.reconciles_after(mark, 2, Duration::from_secs(10)).await }
        });
        observations.touched("a");
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one of two reconciles ended");
        observations.touched("b");
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("two reconciles ended")
            .unwrap();
        // objects never reconciled (deleted meanwhile) hold the next group back only so long
        let started = tokio::time::Instant::now();
        observations
            .reconciles_after(observations.reconciles_ended(), 1, Duration::from_secs(10))
            .await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn a_sweep_keeps_at_most_one_entry_per_object() {
        let observations = Observations::<i32>::default();
        for round in 0..5 {
            let began = observations.sweep_begins();
            for uid in 0..100 {
                observations.offer(&uid.to_string(), began, round);
                observations.touched(&uid.to_string());
            }
            observations.sweep_done(began);
            let (fresh, touched) = observations.len();
            assert!(fresh <= 100 && touched <= 100, "round {round}: {fresh} {touched}");
        }
        let last = observations.sweep_begins();
        observations.sweep_done(last);
        assert_eq!(observations.len(), (0, 0));
    }

    #[test]
    fn a_touch_outlives_a_sweep_while_an_older_sweep_still_runs() {
        let observations = Observations::<u32>::default();
        let services = observations.sweep_begins();
        let read_at = Instant::now();
        observations.touched("svc");
        // the clusters' sweep begins and ends meanwhile
        let clusters = observations.sweep_begins();
        observations.sweep_done(clusters);
        // the services' read of "svc" began before its reconcile ended: still stale
        observations.offer("svc", read_at, 1u32);
        assert_eq!(observations.take("svc"), None);
        observations.sweep_done(services);
    }
}
