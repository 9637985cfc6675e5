//! EcsTaskDefinition against ECS.
//!
//! Task definitions are immutable: a change of (normalised) content registers revision N+1
//! of the family, tagged with the content hash, so that re-applying, restarting or resyncing
//! registers nothing. Only tags change in place. The object keeps `revisionHistoryLimit`
//! of the revisions it registered ACTIVE, deregisters and deletes older ones, and never
//! touches revisions anyone else registered in the family.
//!
//! Resyncs list ACTIVE revisions (100 per call) instead of describing each object's: a
//! revision's content never changes, so one still ACTIVE is still in sync. Its tags can
//! change, so every 12th resync (hourly at the default interval) describes each revision.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput as SdkRegisterInput;
use aws_sdk_ecs::types::{TaskDefinition, TaskDefinitionField, TaskDefinitionStatus};
use kube::ResourceExt;
use serde_json::Value;
use tracing::debug;

use super::observations::by_account;
use super::{Context, Error, Managed, Note, Outcome, State, claim};
use crate::api::ecs_types::RegisterTaskDefinitionInput;
use crate::api::{CommonStatus, DeletionPolicy, EcsTaskDefinition, EcsTaskDefinitionStatus, ManagementOptions};
use crate::ecs::client::Ecs;
use crate::ecs::error::{EcsError, ErrorClass};
use crate::ecs::normalize::{content_hash, task_definition_content};
use crate::ecs::ownership::{self, sdk_tag_map, sync_tags, tag_list, tag_map};
use crate::ecs::wire::{from_sdk, to_sdk};

/// Tag recording the hash of the normalised content a revision was registered from.
pub const CONTENT_HASH: &str = "ecs.operator.dev/content-hash";

/// DeleteTaskDefinitions takes at most this many revisions per call.
const DELETE_BATCH: usize = 10;
/// ListTaskDefinitions returns at most this many revisions per call.
const LIST_PAGE: i32 = 100;
/// Every this many resyncs, each revision is described (tags included) instead of listed.
const DESCRIBE_EVERY: u64 = 12;

/// What a resync's listing saw: the object's revision is still ACTIVE.
struct StillActive;

impl EcsTaskDefinition {
    /// The family: spec.family, else metadata.name.
    pub fn family(&self) -> String {
        self.spec
            .task_definition
            .family
            .clone()
            .unwrap_or_else(|| self.name_any())
    }

    /// RegisterTaskDefinition's input as this object wants it (family filled in).
    fn desired_input(&self) -> RegisterTaskDefinitionInput {
        let mut input = self.spec.task_definition.clone();
        input.family = Some(self.family());
        input
    }
}

impl Managed for EcsTaskDefinition {
    type Status = EcsTaskDefinitionStatus;

    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }

    fn common(status: &mut Self::Status) -> &mut CommonStatus {
        &mut status.common
    }

    fn options(&self) -> &ManagementOptions {
        &self.spec.options
    }

    async fn apply(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let family = self.family();
        let input = self.desired_input();
        let content = task_definition_content(&input);
        let hash = content_hash(&content);
        let previous = self.status.clone().unwrap_or_default();
        let spec_changed = previous.common.observed_generation != self.metadata.generation;

        let limit = usize::try_from(self.spec.revision_history_limit.max(1)).unwrap_or(1);

        // NB: the resync's listing saw the revision this object registered still ACTIVE, and
        // the spec is the one it was registered from: nothing to read or write.
        let listed_active = ctx
            .observations
            .take::<StillActive>(&self.uid().unwrap_or_default())
            .is_some();
        if listed_active && !spec_changed && previous.active_revisions.len() <= limit {
            let revision = previous.revision.unwrap_or_default();
            let state = State::Ready {
                reason: "Registered",
                message: format!("revision {revision} is ACTIVE"),
            };
            return Ok(Outcome {
                status: previous,
                state,
                events: vec![],
            });
        }

        let mut wanted_tags = ownership::tags_for(self);
        wanted_tags.insert(CONTENT_HASH.into(), hash.clone());
        let user_tags = input.tags.as_deref().map(tag_map);

        // One read: the revision this object registered last, or the family's latest.
        let lookup = previous.task_definition_arn.clone().unwrap_or_else(|| family.clone());
        let mut events = vec![];
        let mut current = describe_active(&ecs, &lookup).await?;
        let stale = current
            .as_ref()
            .is_none_or(|(td, tags)| !in_sync(td, tags, &hash, &content));
        if stale && previous.task_definition_arn.is_some() {
            // NB: a revision registered in a pass whose status write was lost is the family's
            // latest, tagged with this object and this content: take it instead of
            // registering (and leaking) one more. Costs a read only when content changed.
            let latest = describe_active(&ecs, &family).await?;
            if let Some((td, tags)) =
                latest.filter(|(_, tags)| ownership::owned_by(tags, self) && tags.get(CONTENT_HASH) == Some(&hash))
            {
                current = Some((td, tags));
            }
        }
        let ours = current
            .as_ref()
            .is_some_and(|(_, tags)| ownership::owned_by(tags, self));
        if let Some((td, tags)) = &current
            && !ours
            && previous.task_definition_arn.as_deref() != Some(arn_of(td).as_str())
        {
            // NB: adopting a family registers new revisions into it; revisions anyone else
            // registered are never tagged as this object's, retired or deleted.
            let what = format!("task definition family {family} (latest revision {})", arn_of(td));
            events.extend(claim(self, tags, &what)?);
        }

        let (td, registered) = match current {
            Some((td, tags)) if in_sync(&td, &tags, &hash, &content) => {
                let own_tags = if ours { wanted_tags.clone() } else { BTreeMap::new() };
                let retagged = sync_tags(&ecs, &arn_of(&td), user_tags.as_ref(), &own_tags, &tags).await?;
                events.extend(Note::changed(spec_changed, &Vec::from_iter(retagged)));
                (td, false)
            }
            other => {
                let why = match &other {
                    Some((old, _)) => format!("changed: {}", changed_fields(old, &content).join(", ")),
                    None if previous.task_definition_arn.is_some() => {
                        "its last revision is no longer ACTIVE in ECS".to_string()
                    }
                    None => "first revision of this object".to_string(),
                };
                let td = register(&ecs, &input, user_tags.as_ref(), &wanted_tags).await?;
                events.push(Note::normal(
                    "RevisionRegistered",
                    format!("revision {} of {family} registered ({why})", td.revision()),
                ));
                (td, true)
            }
        };

        // Only revisions this object registered are kept in history (and ever retired).
        let mut active = previous.active_revisions.clone();
        if (ours || registered) && !active.contains(&td.revision()) {
            active.push(td.revision());
        }
        let excess = active.len().saturating_sub(limit);
        if excess > 0 {
            let old = active[..excess].to_vec();
            // NB: a failure here must not fail the pass: the new revision is registered and
            // has to reach status; the old ones are retired on a later pass.
            match retire(&ecs, &family, &old).await {
                Ok(note) => {
                    active.drain(..excess);
                    events.push(note);
                }
                Err(err) => events.push(Note {
                    warning: true,
                    reason: "RetireFailed",
                    message: format!("revisions {old:?} of {family} stay ACTIVE for now, retried later: {err}"),
                }),
            }
        }

        let status = EcsTaskDefinitionStatus {
            common: previous.common.clone(),
            region: Some(region),
            task_definition_arn: Some(arn_of(&td)),
            family: Some(family),
            revision: Some(td.revision()),
            status: td.status().map(|s| s.as_str().to_string()),
            active_revisions: active,
        };
        let state = State::Ready {
            reason: "Registered",
            message: format!("revision {} is ACTIVE", td.revision()),
        };
        Ok(Outcome { status, state, events })
    }

    /// ListTaskDefinitions of the ACTIVE revisions per region, 100 per call; an object whose
    /// revision is listed needs no read of its own. Every 12th resync lists nothing, so each
    /// object describes its revision and corrects drifted tags.
    async fn observe_all(objects: Vec<Arc<Self>>, sweep: u64, ctx: &Context) {
        if sweep.is_multiple_of(DESCRIBE_EVERY) {
            return;
        }
        let groups = by_account(ctx, &objects, |td| {
            let status = td.status.as_ref()?;
            Some((
                status.region.clone()?,
                String::new(),
                status.task_definition_arn.clone()?,
            ))
        });
        for (ecs, _, members) in groups.await {
            let read_at = Instant::now();
            let mut active = HashSet::new();
            let mut next_token = None;
            // NB: the account may hold far more ACTIVE revisions than the operator manages:
            // never list more pages than there are objects to check; the rest read their own.
            for _ in 0..members.len() {
                ecs.permit("ListTaskDefinitions").await;
                let page = ecs
                    .list_task_definitions()
                    .status(TaskDefinitionStatus::Active)
                    .max_results(LIST_PAGE)
                    .set_next_token(next_token.take())
                    .send()
                    .await;
                match page {
                    Ok(out) => {
                        active.extend(out.task_definition_arns().iter().cloned());
                        next_token = out.next_token;
                    }
                    Err(err) => {
                        debug!(error = %EcsError::new("ListTaskDefinitions", err), "listing failed");
                        break;
                    }
                }
                if next_token.is_none() {
                    break;
                }
            }
            for (uid, _) in members.iter().filter(|(_, arn)| active.contains(arn)) {
                ctx.observations.offer(uid, read_at, StillActive);
            }
        }
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Vec<Note>, Error> {
        let family = self.family();
        let revisions = self.status.clone().unwrap_or_default().active_revisions;
        if self.spec.options.deletion_policy == DeletionPolicy::Retain || revisions.is_empty() {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left revisions {revisions:?} of {family} in ECS"),
            )]);
        }
        let (ecs, _) = ctx.ecs_for(self).await?;
        Ok(vec![retire(&ecs, &family, &revisions).await?])
    }
}

/// The revision if ECS has it ACTIVE.
async fn describe_active(
    ecs: &Ecs,
    task_definition: &str,
) -> Result<Option<(TaskDefinition, BTreeMap<String, String>)>, EcsError> {
    let found = describe(ecs, task_definition).await?;
    Ok(found.filter(|(td, _)| td.status() == Some(&TaskDefinitionStatus::Active)))
}

/// DescribeTaskDefinition with tags; None when ECS does not know it.
async fn describe(
    ecs: &Ecs,
    task_definition: &str,
) -> Result<Option<(TaskDefinition, BTreeMap<String, String>)>, EcsError> {
    ecs.permit("DescribeTaskDefinition").await;
    match ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(out) => {
            let tags = sdk_tag_map(out.tags());
            Ok(out.task_definition.map(|td| (td, tags)))
        }
        Err(err) => match EcsError::new("DescribeTaskDefinition", err) {
            e if e.class == ErrorClass::NotFound => Ok(None),
            e => Err(e),
        },
    }
}

/// Registers the desired content as a new revision, tagged with the user's tags, the
/// ownership tags and the content hash.
// NB: inferenceAccelerators is deprecated in the SDK but still part of the input; the spec
// mirrors the input in full, so it is passed through like every other member.
#[allow(deprecated)]
async fn register(
    ecs: &Ecs,
    input: &RegisterTaskDefinitionInput,
    user_tags: Option<&BTreeMap<String, String>>,
    wanted_tags: &BTreeMap<String, String>,
) -> Result<TaskDefinition, Error> {
    let mut tags = user_tags.cloned().unwrap_or_default();
    tags.extend(wanted_tags.clone());
    let mut input = input.clone();
    input.tags = Some(tag_list(&tags));
    let sdk = to_sdk(&input, SdkRegisterInput::deserialize)?;
    ecs.permit("RegisterTaskDefinition").await;
    let out = ecs
        .register_task_definition()
        .set_family(sdk.family)
        .set_task_role_arn(sdk.task_role_arn)
        .set_execution_role_arn(sdk.execution_role_arn)
        .set_network_mode(sdk.network_mode)
        .set_container_definitions(sdk.container_definitions)
        .set_volumes(sdk.volumes)
        .set_placement_constraints(sdk.placement_constraints)
        .set_requires_compatibilities(sdk.requires_compatibilities)
        .set_cpu(sdk.cpu)
        .set_memory(sdk.memory)
        .set_tags(sdk.tags)
        .set_pid_mode(sdk.pid_mode)
        .set_ipc_mode(sdk.ipc_mode)
        .set_proxy_configuration(sdk.proxy_configuration)
        .set_inference_accelerators(sdk.inference_accelerators)
        .set_ephemeral_storage(sdk.ephemeral_storage)
        .set_runtime_platform(sdk.runtime_platform)
        .set_enable_fault_injection(sdk.enable_fault_injection)
        // NB: RegisterTaskDefinition has no idempotency token: if the answer to a call ECS
        // carried out is lost, an SDK retry registers a second revision. Without retries,
        // the next pass finds the revision by its content-hash tag instead.
        .customize()
        .config_override(aws_sdk_ecs::config::Builder::default().retry_config(RetryConfig::disabled()))
        .send()
        .await
        .map_err(|e| EcsError::new("RegisterTaskDefinition", e))?;
    out.task_definition.ok_or_else(|| {
        Error::Ecs(EcsError::empty(
            "RegisterTaskDefinition",
            "no taskDefinition in the response",
        ))
    })
}

/// Deregisters revisions this object registered, then deletes them (10 per call).
async fn retire(ecs: &Ecs, family: &str, revisions: &[i32]) -> Result<Note, Error> {
    let names: Vec<String> = revisions.iter().map(|r| format!("{family}:{r}")).collect();
    for name in &names {
        ecs.permit("DeregisterTaskDefinition").await;
        if let Err(err) = ecs.deregister_task_definition().task_definition(name).send().await {
            let err = EcsError::new("DeregisterTaskDefinition", err);
            // NB: a revision already INACTIVE (or gone) is what we want; anything else is real.
            if !matches!(err.class, ErrorClass::NotFound | ErrorClass::Terminal) {
                return Err(err.into());
            }
        }
    }
    let mut failures = vec![];
    for batch in names.chunks(DELETE_BATCH) {
        ecs.permit("DeleteTaskDefinitions").await;
        let out = ecs
            .delete_task_definitions()
            .set_task_definitions(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| EcsError::new("DeleteTaskDefinitions", e))?;
        failures.extend(
            out.failures()
                .iter()
                .map(|f| format!("{}: {}", f.arn().unwrap_or_default(), f.reason().unwrap_or_default())),
        );
    }
    let mut message = format!("deregistered and deleted revisions {revisions:?} of {family}");
    if !failures.is_empty() {
        message.push_str(&format!("; ECS reported: {}", failures.join("; ")));
    }
    Ok(Note::normal("RevisionsDeleted", message))
}

/// In sync when the revision was registered from the same content (its hash tag), or, for
/// revisions registered elsewhere, when its normalised content equals the desired one.
fn in_sync(td: &TaskDefinition, tags: &BTreeMap<String, String>, hash: &str, content: &Value) -> bool {
    tags.get(CONTENT_HASH).map(String::as_str) == Some(hash) || observed_content(td).as_ref() == Some(content)
}

fn observed_content(td: &TaskDefinition) -> Option<Value> {
    from_sdk::<_, RegisterTaskDefinitionInput>(td)
        .ok()
        .map(|input| task_definition_content(&input))
}

/// Top-level fields (and container.field for containers) that differ, for Events.
fn changed_fields(old: &TaskDefinition, new: &Value) -> Vec<String> {
    let Some(old) = observed_content(old) else {
        return vec!["content".into()];
    };
    let (Value::Object(old), Value::Object(new)) = (&old, new) else {
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

fn arn_of(td: &TaskDefinition) -> String {
    td.task_definition_arn().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use aws_sdk_ecs::Client;
    use aws_sdk_ecs::operation::delete_task_definitions::DeleteTaskDefinitionsOutput;
    use aws_sdk_ecs::operation::deregister_task_definition::DeregisterTaskDefinitionOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn retiring_deletes_in_batches_of_ten() {
        let batches = Arc::new(std::sync::Mutex::new(vec![]));
        let seen = batches.clone();
        let deregister =
            mock!(Client::deregister_task_definition).then_output(|| DeregisterTaskDefinitionOutput::builder().build());
        let delete = mock!(Client::delete_task_definitions)
            .match_requests(move |req| {
                seen.lock().expect("lock").push(req.task_definitions().len());
                true
            })
            .then_output(|| DeleteTaskDefinitionsOutput::builder().build());
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&deregister, &delete]));
        let revisions: Vec<i32> = (1..=23).collect();
        retire(&ecs, "web", &revisions).await.expect("retire");
        assert_eq!(*batches.lock().expect("lock"), vec![10, 10, 3]);
        assert_eq!(deregister.num_calls(), 23);
    }

    #[tokio::test]
    async fn a_missing_family_is_not_an_error() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let missing = mock!(Client::describe_task_definition)
            .match_requests(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                true
            })
            .sequence()
            .http_status(
                400,
                Some(r#"{"__type":"ClientException","message":"Unable to describe task definition."}"#.into()),
            )
            .build();
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&missing]));
        assert!(describe(&ecs, "web").await.expect("no error").is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a terminal answer is not retried");
    }
}
