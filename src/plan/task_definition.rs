//! EcsTaskDefinition: whether the spec needs a new revision, and which old revisions may go.
//!
//! Task definitions are immutable: a change of (normalised) content registers revision N+1
//! of the family; only tags change in place. A revision is in sync when it was registered
//! from the same content (its content-hash tag) or, for revisions registered elsewhere, when
//! its normalised content equals the spec's. Of the revisions this object registered, the
//! newest `revisionHistoryLimit` stay ACTIVE; older ones are retired, except those a service
//! uses or names.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ecs::types::{TaskDefinition, TaskDefinitionStatus};
use serde_json::{Value, json};

use super::Write;
use crate::api::EcsService;
use crate::api::ecs_types::RegisterTaskDefinitionInput;
use crate::api::task_definition::RetiredRevisions;
use crate::ecs::normalize::{as_ecs_reports, content_hash, task_definition_content};
use crate::ecs::wire::from_sdk;

/// Tag recording the hash of the normalised content a revision was registered from.
pub const CONTENT_HASH: &str = "ecs.operator.dev/content-hash";

/// DeleteTaskDefinitions takes at most this many revisions per call.
pub const DELETE_BATCH: usize = 10;

/// Whether to register.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The revision holds the spec's content: nothing to register (tags are corrected in
    /// place).
    InSync,
    /// Register a new revision, for this reason (said in the RevisionRegistered Event).
    Register {
        /// Why, e.g. "changed: containerDefinitions[web].image".
        why: String,
    },
}

impl Plan {
    /// The plan as JSON, as table tests and `diff` show it.
    pub fn summary(&self) -> Value {
        match self {
            Plan::InSync => json!({"action": "InSync"}),
            Plan::Register { why } => json!({"action": "Register", "why": why}),
        }
    }
}

/// Decides whether `input` needs a new revision, given the revision ECS has ACTIVE for it
/// (`current`, with its tags; None when there is none) and whether the object registered
/// one before.
pub fn plan(
    input: &RegisterTaskDefinitionInput,
    current: Option<(&TaskDefinition, &BTreeMap<String, String>)>,
    registered_before: bool,
) -> Plan {
    let content = task_definition_content(input);
    let hash = content_hash(&content);
    match current.filter(|(td, _)| td.status() == Some(&TaskDefinitionStatus::Active)) {
        Some((td, tags)) if in_sync(td, tags, &hash, &content) => Plan::InSync,
        Some((td, _)) => Plan::Register {
            why: format!("changed: {}", changed_fields(td, &content).join(", ")),
        },
        None if registered_before => Plan::Register {
            why: "its last revision is no longer ACTIVE in ECS".into(),
        },
        None => Plan::Register {
            why: "first revision of this object".into(),
        },
    }
}

/// The ECS writes for a task definition family: the registration `plan` asks for, then
/// the retirement of the `retiring` revisions under `policy` (tags aside).
pub fn writes(plan: &Plan, family: &str, retiring: &[i32], policy: RetiredRevisions) -> Vec<Write> {
    let mut writes = vec![];
    if let Plan::Register { why } = plan {
        writes.push(Write::new("RegisterTaskDefinition", family, why.clone()));
    }
    let why = "older than revisionHistoryLimit allows";
    for revision in retiring {
        writes.push(Write::new(
            "DeregisterTaskDefinition",
            format!("{family}:{revision}"),
            why,
        ));
    }
    if policy == RetiredRevisions::Delete {
        for batch in retiring.chunks(DELETE_BATCH) {
            let names: Vec<String> = batch.iter().map(|r| format!("{family}:{r}")).collect();
            writes.push(Write::new("DeleteTaskDefinitions", names.join(", "), why));
        }
    }
    writes
}

/// Which of the object's `active` revisions (oldest first) to retire: all but the newest
/// `limit`, except those services use (`in_use`, with the services), which are kept.
pub fn retirement(
    active: &[i32],
    limit: usize,
    in_use: &BTreeMap<i32, Vec<String>>,
) -> (Vec<i32>, BTreeMap<i32, Vec<String>>) {
    let excess = active.len().saturating_sub(limit);
    let mut retire = vec![];
    let mut keep = BTreeMap::new();
    for revision in &active[..excess] {
        match in_use.get(revision) {
            Some(users) => {
                keep.insert(*revision, users.clone());
            }
            None => retire.push(*revision),
        }
    }
    (retire, keep)
}

/// Revisions of `family` that `services` use (their deployments and task sets as last
/// observed, rollback targets included, and what ECS runs) or name in spec
/// (`family:revision` or an ARN), with the services using each.
pub fn revisions_in_use<'a>(
    services: impl IntoIterator<Item = &'a EcsService>,
    family: &str,
) -> BTreeMap<i32, Vec<String>> {
    let mut in_use: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for service in services {
        let who = format!(
            "service {}/{}",
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref().unwrap_or_default()
        );
        for revision in revisions_used_by(service, family) {
            let users = in_use.entry(revision).or_default();
            if !users.contains(&who) {
                users.push(who.clone());
            }
        }
    }
    in_use
}

/// The revisions of `family` one service uses or names.
pub fn revisions_used_by(service: &EcsService, family: &str) -> BTreeSet<i32> {
    let mut named: Vec<&str> = service
        .spec
        .service
        .task_definition
        .iter()
        .map(String::as_str)
        .collect();
    if let Some(status) = &service.status {
        named.extend(status.task_definition_arn.as_deref());
        named.extend(status.deployments.iter().filter_map(|d| d.task_definition.as_deref()));
        named.extend(status.task_sets.iter().filter_map(|t| t.task_definition.as_deref()));
    }
    named
        .into_iter()
        .filter_map(family_and_revision)
        .filter(|(f, _)| *f == family)
        .map(|(_, r)| r)
        .collect()
}

/// `family:revision`, alone or at the end of an ARN; None for a bare family.
pub fn family_and_revision(name: &str) -> Option<(&str, i32)> {
    let last = name.rsplit('/').next().unwrap_or(name);
    let (family, revision) = last.rsplit_once(':')?;
    Some((family, revision.parse().ok()?))
}

/// In sync when the revision was registered from the same content (its hash tag), or, for
/// revisions registered elsewhere, when its normalised content equals the desired one.
pub fn in_sync(td: &TaskDefinition, tags: &BTreeMap<String, String>, hash: &str, content: &Value) -> bool {
    tags.get(CONTENT_HASH).map(String::as_str) == Some(hash) || observed_content(td) == Some(as_ecs_reports(content))
}

/// The revision's content, normalised as the spec's is compared with it.
fn observed_content(td: &TaskDefinition) -> Option<Value> {
    from_sdk::<_, RegisterTaskDefinitionInput>(td)
        .ok()
        .map(|input| as_ecs_reports(&task_definition_content(&input)))
}

/// Top-level fields (and container.field for containers) that differ, for Events.
pub fn changed_fields(old: &TaskDefinition, new: &Value) -> Vec<String> {
    let Some(old) = observed_content(old) else {
        return vec!["content".into()];
    };
    let new = as_ecs_reports(new);
    let (Value::Object(old), Value::Object(new)) = (&old, &new) else {
        return vec!["content".into()];
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed = vec![];
    for key in keys {
        let (a, b) = (old.get(key), new.get(key));
        if a == b {
            continue;
        }
        if key == "containerDefinitions" {
            changed.extend(container_changes(a, b));
        } else {
            changed.push(key.clone());
        }
    }
    if changed.is_empty() {
        changed.push("content".into());
    }
    changed
}

fn container_changes(old: Option<&Value>, new: Option<&Value>) -> Vec<String> {
    let by_name = |v: Option<&Value>| -> BTreeMap<String, Value> {
        v.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|c| (c["name"].as_str().unwrap_or_default().to_string(), c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (by_name(old), by_name(new));
    let mut changed = vec![];
    for (name, container) in &new {
        match old.get(name) {
            None => changed.push(format!("containerDefinitions[{name}] added")),
            Some(before) => {
                let (Some(a), Some(b)) = (before.as_object(), container.as_object()) else {
                    continue;
                };
                let mut fields: Vec<&String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).collect();
                fields.sort();
                fields.dedup();
                changed.extend(fields.into_iter().map(|f| format!("containerDefinitions[{name}].{f}")));
            }
        }
    }
    changed.extend(
        old.keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| format!("containerDefinitions[{n}] removed")),
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
    use serde::Deserialize;

    /// One case of tests/fixtures/task_definitions/plans.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Case {
        spec: Value,
        /// DescribeTaskDefinition's answer (taskDefinition and tags), absent for none.
        #[serde(default)]
        describe_task_definition: Option<Value>,
        #[serde(default)]
        registered_before: bool,
        plan: Value,
    }

    #[test]
    fn every_fixture_gets_exactly_the_plan_it_names() {
        let cases = crate::plan::fixtures::<Case>("task_definitions");
        assert!(cases.len() >= 6, "{} fixtures", cases.len());
        for (name, case) in cases {
            let input: RegisterTaskDefinitionInput = serde_json::from_value(case.spec.clone()).expect("spec");
            let answer = case
                .describe_task_definition
                .as_ref()
                .map(|a| crate::ecs::wire::to_sdk(a, DescribeTaskDefinitionOutput::deserialize).expect("an answer"));
            let current = answer.as_ref().and_then(|a| {
                let tags = crate::ecs::ownership::sdk_tag_map(a.tags());
                a.task_definition().cloned().map(|td| (td, tags))
            });
            let plan = plan(
                &input,
                current.as_ref().map(|(td, tags)| (td, tags)),
                case.registered_before,
            );
            assert_eq!(plan.summary(), case.plan, "{name}");
        }
    }

    #[test]
    fn old_revisions_go_except_those_services_use() {
        let in_use = BTreeMap::from([(1, vec!["service shop/pinned".to_string()])]);
        let (retire, keep) = retirement(&[1, 2, 3, 4], 1, &in_use);
        assert_eq!(retire, vec![2, 3]);
        assert_eq!(keep, in_use);
        let (retire, keep) = retirement(&[3, 4], 3, &in_use);
        assert!(retire.is_empty() && keep.is_empty(), "within the limit nothing goes");
    }

    #[test]
    fn a_service_uses_the_revisions_it_runs_deploys_or_names() {
        let service: EcsService = serde_json::from_value(serde_json::json!({
            "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"taskDefinition": "web:1"},
            "status": {
                "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:4",
                "deployments": [
                    {"id": "ecs-svc/2", "status": "PRIMARY", "taskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/web:4"},
                    {"id": "ecs-svc/1", "status": "ACTIVE", "taskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/web:3"},
                ],
                "taskSets": [{"id": "ecs-svc/9", "taskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/other:7"}],
            },
        }))
        .expect("service");
        assert_eq!(revisions_used_by(&service, "web"), BTreeSet::from([1, 3, 4]));
        assert_eq!(revisions_used_by(&service, "other"), BTreeSet::from([7]));
        let mut by_family = service.clone();
        by_family.spec.service.task_definition = Some("web".into());
        by_family.status = None;
        assert!(
            revisions_used_by(&by_family, "web").is_empty(),
            "a bare family names no revision"
        );
    }
}
