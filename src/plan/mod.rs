//! Decide, then act: per kind, a pure planner takes the spec (with its references
//! resolved), what ECS reported and the status of the last pass, and names the one thing to
//! do, with no I/O and no clock. The reconcilers in [`crate::reconcile`] perform the plan;
//! the same planner answers "what would applying this do", so prediction and action agree.
//! Each ECS rule a planner applies sits beside the line that applies it, citing the API.

pub mod capacity_provider;
pub mod cluster;
pub mod schedule;
pub mod service;
pub mod task;
pub mod task_definition;

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::ecs::ownership::TagChanges;

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

/// One ECS write the operator makes for an object: what `ecs-operator diff` predicts, what
/// an observe-only object reports as drift, and what the executor then sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Write {
    /// The ECS operation, e.g. `UpdateService`.
    pub operation: &'static str,
    /// What it acts on: a cluster, a service, a family or a revision.
    pub target: String,
    /// Why, in a few words (e.g. "changed: containerDefinitions[web].image").
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// The fields it changes, from what ECS reports to what is sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

impl Write {
    /// A write of `operation` on `target`, for `why`.
    pub fn new(operation: &'static str, target: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            operation,
            target: target.into(),
            why: why.into(),
            changes: vec![],
        }
    }

    /// The same write, changing `changes`.
    pub fn changing(mut self, changes: Vec<Change>) -> Self {
        self.changes = changes;
        self
    }
}

/// The TagResource and UntagResource that bring a resource's tags where `changes` says.
pub fn tag_writes(target: &str, changes: &TagChanges) -> Vec<Write> {
    let mut writes = vec![];
    if !changes.add.is_empty() {
        let keys: Vec<&str> = changes.add.keys().map(String::as_str).collect();
        writes.push(Write::new("TagResource", target, format!("tags {}", keys.join(", "))));
    }
    if !changes.remove.is_empty() {
        writes.push(Write::new(
            "UntagResource",
            target,
            format!("tags {}", changes.remove.join(", ")),
        ));
    }
    writes
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
    /// Observe-only: ECS was read and nothing written; `drift` names what differs from the
    /// spec (empty: nothing).
    Observed { drift: Vec<String> },
    /// A run to completion ended (EcsTask): Complete, or Failed with why; nothing more
    /// happens for this generation. `recheck`: when to look again (its time to live).
    Finished {
        succeeded: bool,
        reason: &'static str,
        message: String,
        recheck: Option<Duration>,
    },
}

impl State {
    /// The reason its Ready condition carries.
    pub fn reason(&self) -> &'static str {
        match self {
            State::Ready { reason, .. } | State::InProgress { reason, .. } | State::Failed { reason, .. } => reason,
            State::Observed { .. } => "Observed",
            State::Finished { reason, .. } => reason,
        }
    }
}

/// What an observe-only object reports as drift: the fields the writes Manage would make
/// change ("desiredCount", "containerDefinitions[web].image", "tags (team)").
pub fn drift_of(writes: &[Write]) -> Vec<String> {
    let mut drift = vec![];
    for write in writes {
        if !write.changes.is_empty() {
            drift.extend(write.changes.iter().map(|c| c.field.clone()));
        } else if let Some(fields) = write.why.strip_prefix("changed: ") {
            drift.extend(fields.split(", ").map(str::to_owned));
        } else if let Some(keys) = write.why.strip_prefix("tags ") {
            drift.push(format!("tags ({keys})"));
        } else {
            drift.push(format!("{} {}", write.operation, write.target));
        }
    }
    drift.dedup();
    drift
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift_names_the_members_the_writes_would_change() {
        let update = Write::new("UpdateService", "web in prod", "").changing(vec![Change {
            field: "desiredCount".into(),
            from: json!(2),
            to: json!(4),
        }]);
        let register = Write::new(
            "RegisterTaskDefinition",
            "web",
            "changed: cpu, containerDefinitions[web].image",
        );
        let tags = TagChanges {
            add: [("team".to_string(), "a".to_string())].into(),
            remove: vec![],
        };
        let mut writes = vec![update, register];
        writes.extend(tag_writes("web", &tags));
        assert_eq!(
            drift_of(&writes),
            ["desiredCount", "cpu", "containerDefinitions[web].image", "tags (team)"]
        );
    }
}
