//! Ready / Reconciling / Stalled, the way kstatus and Argo CD read them: Ready always
//! present, the other two only while true; lastTransitionTime moves only when a condition's
//! status does. Observe-only objects also carry Drifted, true or false; a finished EcsTask
//! Complete or Failed, as a Job does.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::{Error, Managed, State};

/// A condition the core wants on the object.
pub struct Wanted {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

impl Wanted {
    fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Conditions after a successful reconcile.
pub fn from_state(state: &State) -> Vec<Wanted> {
    match state {
        State::Ready { reason, message } => {
            vec![Wanted::new("Ready", true, reason, message.clone())]
        }
        State::InProgress { reason, message, .. } => vec![
            Wanted::new("Ready", false, reason, message.clone()),
            Wanted::new("Reconciling", true, reason, message.clone()),
        ],
        State::Failed { reason, message } => vec![
            Wanted::new("Ready", false, reason, message.clone()),
            Wanted::new("Stalled", true, reason, message.clone()),
        ],
        // NB: Ready: the observation is current and nothing is in flight; whether ECS
        // matches the spec is the Drifted condition's to say.
        State::Observed { drift } if drift.is_empty() => vec![
            Wanted::new("Ready", true, "Observed", "observe-only: ECS matches the spec"),
            Wanted::new("Drifted", false, "InSync", "ECS matches the spec"),
        ],
        State::Finished {
            succeeded: true,
            reason,
            message,
            ..
        } => vec![
            Wanted::new("Ready", true, reason, message.clone()),
            Wanted::new("Complete", true, reason, message.clone()),
        ],
        State::Finished { reason, message, .. } => vec![
            Wanted::new("Ready", false, reason, message.clone()),
            Wanted::new("Stalled", true, reason, message.clone()),
            Wanted::new("Failed", true, reason, message.clone()),
        ],
        State::Observed { drift } => {
            let message = format!("ECS differs from the spec in {}", drift.join(", "));
            vec![
                Wanted::new("Ready", true, "Observed", format!("observe-only: {message}")),
                Wanted::new("Drifted", true, "Drifted", message),
            ]
        }
    }
}

/// Conditions after a failed reconcile: Stalled for what retrying cannot fix.
pub fn from_error(err: &Error, terminal: bool) -> Vec<Wanted> {
    let message = err.to_string();
    let third = if terminal { "Stalled" } else { "Reconciling" };
    vec![
        Wanted::new("Ready", false, err.reason(), message.clone()),
        Wanted::new(third, true, err.reason(), message),
    ]
}

/// The conditions to write: `wanted`, keeping each previous lastTransitionTime whose status
/// did not change.
pub fn merge(previous: &[Condition], wanted: Vec<Wanted>, generation: Option<i64>) -> Vec<Condition> {
    wanted
        .into_iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" }.to_string();
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(Timestamp::now()));
            Condition {
                type_: w.type_.to_string(),
                status,
                reason: w.reason.to_string(),
                message: w.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Ready reasons of the errors retrying cannot fix ([`Error::is_terminal`]).
const TERMINAL_REASONS: &[&str] = &["EcsRejected", "AccessDenied", "InvalidSpec", "NotOwned", "NoRegion"];

/// Whether the object is Ready on its current generation.
pub fn ready<K: Managed>(obj: &K) -> bool {
    let Some(mut status) = obj.status().cloned() else {
        return false;
    };
    let common = K::common(&mut status);
    common.observed_generation == obj.meta().generation
        && common
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether the object is where its last reconcile left it waiting for nothing but change:
/// Ready on its current generation, or Failed in ECS (a rollout the circuit breaker
/// stopped, a FAILED cluster). Only these are re-observed by resyncs; every other object
/// already has its own requeue (in progress, backing off, or stalled on bad input).
pub fn settled<K: Managed>(obj: &K) -> bool {
    let Some(mut status) = obj.status().cloned() else {
        return false;
    };
    let common = K::common(&mut status);
    let is_true = |type_: &str| common.conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    let failed_in_ecs = common
        .conditions
        .iter()
        .any(|c| c.type_ == "Stalled" && c.status == "True" && !TERMINAL_REASONS.contains(&c.reason.as_str()));
    common.observed_generation == obj.meta().generation && (is_true("Ready") || failed_in_ecs)
}

/// While an object is Stalled by a terminal error on its current generation, how long to
/// wait before one more try: `interval` after the later of the stall and the last attempt
/// this process made (the condition's time stays put while it remains Stalled). None when
/// it should be reconciled now.
pub fn stalled_hold_off<K: Managed>(obj: &K, interval: Duration, last_attempt: Option<Instant>) -> Option<Duration> {
    let mut status = obj.status().cloned()?;
    let common = K::common(&mut status);
    if common.observed_generation != obj.meta().generation {
        return None;
    }
    let stalled = common
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True" && TERMINAL_REASONS.contains(&c.reason.as_str()))?;
    let since = Timestamp::now().duration_since(stalled.last_transition_time.0);
    let mut elapsed = Duration::try_from(since).unwrap_or_default();
    if let Some(attempt) = last_attempt {
        elapsed = elapsed.min(attempt.elapsed());
    }
    interval.checked_sub(elapsed).filter(|left| !left.is_zero())
}
