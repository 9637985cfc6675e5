//! Decide, then act: per kind, a pure planner takes the spec (with its references
//! resolved), what ECS reported and the status of the last pass, and names the one thing to
//! do, with no I/O and no clock. The reconcilers in [`crate::reconcile`] perform the plan;
//! the same planner answers "what would applying this do", so prediction and action agree.
//! Each ECS rule a planner applies sits beside the line that applies it, citing the API.

pub mod cluster;
pub mod service;
pub mod task_definition;

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// One field the operator changes: what ECS reports now and what the spec asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The ECS member, e.g. `networkConfiguration`.
    pub field: String,
    /// What ECS reports (null when absent).
    pub from: Value,
    /// What is sent.
    pub to: Value,
}

/// Where an object stands after a successful reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// ECS matches the spec.
    Ready { reason: &'static str, message: String },
    /// ECS is still getting there (provisioning, rolling out): look again soon.
    InProgress {
        reason: &'static str,
        message: String,
        recheck: Duration,
    },
    /// ECS tried and failed (a rollout the circuit breaker stopped): Stalled until the spec
    /// or what it refers to changes; looked at again on every resync, without retrying.
    Failed { reason: &'static str, message: String },
}

/// The table-test cases in tests/fixtures/<kind>/plans, by file name, in order.
#[cfg(test)]
pub(crate) fn fixtures<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<(String, T)> {
    let dir = format!("{}/tests/fixtures/{kind}/plans", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture");
            let case = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            (
                path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                case,
            )
        })
        .collect()
}
