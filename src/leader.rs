//! Leader election on a coordination.k8s.io Lease, so that two replicas can run and only
//! one reconciles. The leader renews the lease every third of its duration; a standby takes
//! it over once it has not seen the lease change for a whole duration; the leader releases
//! it on shutdown so that the standby need not wait.
//!
//! Expiry is judged as client-go does, by this replica's own clock: the local time at which
//! it last saw the lease record change, never the holder's `renewTime`, which was written
//! with another node's clock (skew between nodes would make two leaders, or none).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

/// Takes part in electing a leader through one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Mutex<Observed>,
}

/// The lease record as last seen, and when (this replica's clock) it was first seen so.
#[derive(Default)]
pub struct Observed {
    record: Option<LeaseSpec>,
    since: Option<Instant>,
}

impl Observed {
    /// Notes the record read now; true when it has not changed for `duration` (the
    /// holder stopped renewing). A record seen for the first time counts from now.
    pub fn expired(&mut self, record: &LeaseSpec, now: Instant, duration: Duration) -> bool {
        if self.record.as_ref() != Some(record) {
            self.record = Some(record.clone());
            self.since = Some(now);
        }
        self.since.is_some_and(|since| now.duration_since(since) >= duration)
    }
}

impl LeaderElector {
    /// An elector for the Lease `namespace/name`, as `identity` (unique per replica).
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: Mutex::new(Observed::default()),
        }
    }

    /// Returns once this process holds the lease.
    pub async fn acquire(&self) {
        info!(lease = %self.name, identity = %self.identity, "waiting to become the leader");
        loop {
            match self.try_hold().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(err) => warn!(error = %err, "could not read or take the lease"),
            }
            tokio::time::sleep(self.duration / 4).await;
        }
    }

    /// Renews the lease until it is lost: another holder took it, or it could not be
    /// renewed for a whole lease duration. Returns then.
    pub async fn keep(&self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            // NB: an attempt may take only what is left of the lease: a stalled apiserver
            // must not keep this replica reconciling once a standby may take over.
            let left = self.duration.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_hold()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    warn!(lease = %self.name, "another replica holds the lease");
                    return;
                }
                Ok(Err(err)) if renewed.elapsed() < self.duration => {
                    warn!(error = %err, "could not renew the lease; retrying")
                }
                Ok(Err(_)) | Err(_) => {
                    warn!(lease = %self.name, "could not renew the lease in time");
                    return;
                }
            }
        }
    }

    /// Gives the lease up, if held, so that a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.name, "released the lease"),
            Err(err) => warn!(error = %err, "could not release the lease"),
        }
    }

    /// Takes or renews the lease if it is free, expired or already ours. Ok(false) when
    /// another replica holds it (or won a race for it).
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX).max(1);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(err) if is_conflict(&err) => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        // NB: the holder's own duration, as client-go; ours when it states none.
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, Duration::from_secs);
        let expired = self
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expired(spec, Instant::now(), duration);
        if !(mine || free || expired) {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // NB: replace carries the resourceVersion read above, so of two replicas racing for
        // an expired lease only one wins; the other gets a conflict.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(err) if is_conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed.parse().expect("time"))),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_renewed_with_a_clock_far_behind_is_not_expired() {
        let mut observed = Observed::default();
        let duration = Duration::from_secs(15);
        // The holder's clock is a year behind, but it renews every 5 s: never expired.
        for i in 0..12 {
            let renewed = format!("2025-11-30T10:00:{:02}Z", i * 5);
            assert!(
                !observed.expired(&record("a", &renewed), Instant::now(), duration),
                "renewal {i}"
            );
            tokio::time::advance(Duration::from_secs(5)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_stops_changing_expires_after_its_duration_on_our_clock() {
        let mut observed = Observed::default();
        let duration = Duration::from_secs(15);
        // renewTime says it was renewed just now (its node's clock is ahead): it still
        // expires 15 s after it stops changing.
        let stale = record("a", "2099-01-01T00:00:00Z");
        assert!(
            !observed.expired(&stale, Instant::now(), duration),
            "first seen: counts from now"
        );
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!observed.expired(&stale, Instant::now(), duration));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(observed.expired(&stale, Instant::now(), duration));
    }
}
