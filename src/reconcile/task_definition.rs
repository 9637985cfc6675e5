//! EcsTaskDefinition against ECS.
//!
//! Task definitions are immutable: a change of (normalised) content registers revision N+1
//! of the family, tagged with the content hash, so that re-applying, restarting or resyncing
//! registers nothing. Only tags change in place. The object keeps `revisionHistoryLimit`
//! of the revisions it registered ACTIVE and retires older ones (deregisters them, and
//! deletes them only with `retiredRevisions: Delete`), never one a service the operator
//! watches uses or names, and never touches revisions anyone else registered in the family.
//!
//! Resyncs list ACTIVE revisions (100 per call) instead of describing each object's: a
//! revision's content never changes, so one still ACTIVE is still in sync. Its tags can
//! change, so each revision is described at one resync in 24 (every two hours at the
//! default interval), a twenty-fourth of the objects at each resync.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput as SdkRegisterInput;
use aws_sdk_ecs::types::{TaskDefinition, TaskDefinitionField, TaskDefinitionStatus};
use kube::ResourceExt;
use tracing::debug;

use super::observations::{Observations, by_account};
use super::{Context, Error, Managed, Note, Outcome, State, claim, not_in_ecs};
use crate::api::ecs_types::RegisterTaskDefinitionInput;
use crate::api::task_definition::RetiredRevisions;
use crate::api::{CommonStatus, DeletionPolicy, EcsTaskDefinition, EcsTaskDefinitionStatus, ManagementOptions};
use crate::ecs::client::{Ecs, Found};
use crate::ecs::error::EcsError;
use crate::ecs::normalize::{content_hash, task_definition_content};
use crate::ecs::ownership::{self, creation_tags, sdk_tag_map, sync_tags, tag_changes, tag_map};
use crate::ecs::wire::to_sdk;
use crate::plan::task_definition::{self as planner, CONTENT_HASH, Plan};
use crate::plan::{Write, tag_writes};

/// ListTaskDefinitions returns at most this many revisions per call.
const LIST_PAGE: i32 = 100;
/// Every this many resyncs, each revision is described (tags included) instead of listed.
/// NB: 24 keeps a fleet at the default resync under one ECS read per object per hour
/// (services alone take 0.6: DescribeServices, 10 per call, every 5 minutes).
const DESCRIBE_EVERY: u64 = 24;

/// What a resync's listing saw: the object's revision is still ACTIVE.
pub struct StillActive;

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

/// A revision as DescribeTaskDefinition reports it, with its tags.
pub type Revision = (TaskDefinition, BTreeMap<String, String>);

impl EcsTaskDefinition {
    /// The revision to compare the spec with: the one this object registered last (else the
    /// family's latest), if ACTIVE. One read, two when that revision is stale and this
    /// object registered before.
    pub async fn current_revision(
        &self,
        ecs: &Ecs,
        previous: &EcsTaskDefinitionStatus,
    ) -> Result<Option<Revision>, Error> {
        let family = self.family();
        let content = task_definition_content(&self.desired_input());
        let hash = content_hash(&content);
        let lookup = previous.task_definition_arn.clone().unwrap_or_else(|| family.clone());
        let current = describe_active(ecs, &lookup).await?;
        let stale = current
            .as_ref()
            .is_none_or(|(td, tags)| !planner::in_sync(td, tags, &hash, &content));
        if stale && previous.task_definition_arn.is_some() {
            // NB: a revision registered in a pass whose status write was lost is the family's
            // latest, tagged with this object and this content: take it instead of
            // registering (and leaking) one more. Costs a read only when content changed.
            let latest = describe_active(ecs, &family).await?;
            if let Some(found) =
                latest.filter(|(_, tags)| ownership::owned_by(tags, self) && tags.get(CONTENT_HASH) == Some(&hash))
            {
                return Ok(Some(found));
            }
        }
        Ok(current)
    }

    /// The writes applying the spec would make given `current` (see
    /// [`Self::current_revision`]) and the revisions services use (`in_use`), tags and
    /// retirement included: what `diff` prints and observe-only objects report as drift. A
    /// family this object may not take over is the error apply would stall with.
    pub fn preview(
        &self,
        current: Option<&Revision>,
        previous: &EcsTaskDefinitionStatus,
        in_use: &BTreeMap<i32, Vec<String>>,
    ) -> Result<Vec<Write>, Error> {
        let family = self.family();
        let input = self.desired_input();
        let observe_only = self.spec.options.observe_only();
        let ours = current.is_some_and(|(_, tags)| ownership::owned_by(tags, self));
        if let Some((td, tags)) = current
            && !ours
            && !observe_only
            && previous.task_definition_arn.as_deref() != Some(arn_of(td).as_str())
        {
            claim(self, tags, &format!("task definition family {family}"))?;
        }
        let plan = planner::plan(
            &input,
            current.map(|(td, tags)| (td, tags)),
            previous.task_definition_arn.is_some(),
        );
        let registers = !matches!((&plan, current), (Plan::InSync, Some(_)));
        let mut retiring = vec![];
        if !observe_only {
            // NB: a revision to be registered is the newest; it is never retired.
            let mut active = previous.active_revisions.clone();
            match current {
                Some((td, _)) if !registers && ours && !active.contains(&td.revision()) => active.push(td.revision()),
                _ if registers => active.push(i32::MAX),
                _ => {}
            }
            let limit = usize::try_from(self.spec.revision_history_limit.max(1)).unwrap_or(1);
            if active.len() > limit {
                retiring = planner::retirement(&active, limit, in_use).0;
            }
        }
        let mut writes = planner::writes(&plan, &family, &retiring, self.spec.retired_revisions);
        if let (false, Some((td, tags))) = (registers, current) {
            let mut own_tags = BTreeMap::new();
            if ours && !observe_only {
                own_tags = ownership::tags_for(self);
                own_tags.insert(CONTENT_HASH.into(), content_hash(&task_definition_content(&input)));
            }
            let user_tags = input.tags.as_deref().map(tag_map);
            let changes = tag_changes(user_tags.as_ref(), &own_tags, tags);
            writes.splice(0..0, tag_writes(&format!("{family}:{}", td.revision()), &changes));
        }
        Ok(writes)
    }
}

impl Managed for EcsTaskDefinition {
    type Status = EcsTaskDefinitionStatus;
    type Observed = StillActive;

    fn observations(ctx: &Context) -> &Observations<Self::Observed> {
        &ctx.observed.task_definitions
    }

    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }

    fn common(status: &mut Self::Status) -> &mut CommonStatus {
        &mut status.common
    }

    fn options(&self) -> ManagementOptions {
        self.spec.options.clone()
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
            .observed
            .task_definitions
            .take(&self.uid().unwrap_or_default())
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

        let mut events = vec![];
        let current = self.current_revision(&ecs, &previous).await?;
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

        let plan = planner::plan(
            &input,
            current.as_ref().map(|(td, tags)| (td, tags)),
            previous.task_definition_arn.is_some(),
        );
        let (td, registered) = match (plan, current) {
            (Plan::InSync, Some((td, tags))) => {
                let own_tags = if ours { wanted_tags.clone() } else { BTreeMap::new() };
                let retagged = sync_tags(&ecs, &arn_of(&td), user_tags.as_ref(), &own_tags, &tags).await?;
                events.extend(Note::changed(spec_changed, &Vec::from_iter(retagged)));
                (td, false)
            }
            (plan, _) => {
                let why = match plan {
                    Plan::Register { why } => why,
                    Plan::InSync => "no revision to use".to_string(),
                };
                let td = register(&ecs, &input, &wanted_tags).await?;
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
        let mut message = format!("revision {} is ACTIVE", td.revision());
        if active.len() > limit {
            // NB: a failure here must not fail the pass: the new revision is registered and
            // has to reach status; the old ones are retired on a later pass.
            let in_use = revisions_in_use(ctx, &family);
            let (retiring, kept) = planner::retirement(&active, limit, &in_use);
            let retirement = retire(&ecs, &family, &retiring, self.spec.retired_revisions).await;
            active.retain(|r| !retirement.retired.contains(r));
            message.push_str(&retirement.summary(&kept));
            events.extend(retirement.notes);
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
            message,
        };
        Ok(Outcome { status, state, events })
    }

    async fn observe(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let family = self.family();
        let previous = self.status.clone().unwrap_or_default();
        // NB: always the family's latest ACTIVE revision: what another tool registered last.
        let unregistered = EcsTaskDefinitionStatus::default();
        let Some(revision) = self.current_revision(&ecs, &unregistered).await? else {
            return Ok(Outcome {
                status: previous,
                state: not_in_ecs(format!("ECS has no ACTIVE revision of family {family}")),
                events: vec![],
            });
        };
        let writes = self.preview(Some(&revision), &unregistered, &BTreeMap::new())?;
        let td = &revision.0;
        let status = EcsTaskDefinitionStatus {
            common: previous.common,
            region: Some(region),
            task_definition_arn: Some(arn_of(td)),
            family: Some(family),
            revision: Some(td.revision()),
            status: td.status().map(|s| s.as_str().to_string()),
            active_revisions: vec![],
        };
        Ok(Outcome {
            status,
            state: State::Observed {
                drift: crate::plan::drift_of(&writes),
            },
            events: vec![],
        })
    }

    /// ListTaskDefinitions of the ACTIVE revisions per region, 100 per call; an object whose
    /// revision is listed needs no read of its own, unless its turn to be described (and
    /// have drifted tags corrected) came (see [`describe_due`]).
    async fn observe_all(objects: Vec<Arc<Self>>, sweep: u64, ctx: &Context) {
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
                let token = next_token.take();
                let page = ecs
                    .call("ListTaskDefinitions", |c| {
                        c.list_task_definitions()
                            .status(TaskDefinitionStatus::Active)
                            .max_results(LIST_PAGE)
                            .set_next_token(token)
                            .send()
                    })
                    .await;
                match page {
                    Ok(out) => {
                        active.extend(out.task_definition_arns().iter().cloned());
                        next_token = out.next_token;
                    }
                    Err(err) => {
                        debug!(error = %err, "listing failed");
                        break;
                    }
                }
                if next_token.is_none() {
                    break;
                }
            }
            let listed = members
                .iter()
                .filter(|(uid, arn)| active.contains(arn) && !describe_due(uid, sweep));
            for (uid, _) in listed {
                ctx.observed.task_definitions.offer(uid, read_at, StillActive);
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
        let in_use = revisions_in_use(ctx, &family);
        let (retiring, kept) = planner::retirement(&revisions, 0, &in_use);
        let retirement = retire(&ecs, &family, &retiring, self.spec.retired_revisions).await;
        if let Some((revision, users)) = kept.first_key_value() {
            // NB: the services go first (a namespace deletion removes them too); the
            // revisions follow once no service uses them.
            return Err(Error::DeletionBlocked(format!(
                "revision {revision} of {family} is used by {}; it is retired once no service uses it",
                users.join(", ")
            )));
        }
        if let Some(failure) = retirement.failures.first() {
            return Err(Error::DeletionBlocked(format!(
                "ECS refused to retire a revision: {failure}"
            )));
        }
        Ok(retirement.notes)
    }
}

/// True when the object's revision is described at resync `sweep` rather than listed: at one
/// resync in [`DESCRIBE_EVERY`], spread by UID so that each resync describes a share of the
/// fleet instead of every revision at once.
fn describe_due(uid: &str, sweep: u64) -> bool {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    uid.hash(&mut hasher);
    (hasher.finish() % DESCRIBE_EVERY) == (sweep % DESCRIBE_EVERY)
}

/// Revisions of `family` in use by the EcsServices the operator watches, in every shard
/// (see [`planner::revisions_in_use`]).
fn revisions_in_use(ctx: &Context, family: &str) -> BTreeMap<i32, Vec<String>> {
    let services = ctx.caches.services.all();
    planner::revisions_in_use(services.iter().map(|s| s.as_ref()), family)
}

/// What retiring revisions did.
#[derive(Default)]
struct Retirement {
    /// Revisions deregistered (and deleted, with Delete).
    retired: Vec<i32>,
    /// What ECS refused, in its words (the revisions stay and are retried later).
    failures: Vec<String>,
    /// Events.
    notes: Vec<Note>,
}

impl Retirement {
    /// For the Ready message: what is kept for services, and what failed.
    fn summary(&self, kept: &BTreeMap<i32, Vec<String>>) -> String {
        let mut text = String::new();
        for (revision, users) in kept {
            text.push_str(&format!(
                "; revision {revision} is kept while {} uses it",
                users.join(", ")
            ));
        }
        if !self.failures.is_empty() {
            text.push_str(&format!("; retiring failed: {}", self.failures.join("; ")));
        }
        text
    }
}

/// The revision if ECS has it ACTIVE.
pub(crate) async fn describe_active(
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
    let described = ecs
        .call("DescribeTaskDefinition", |c| {
            c.describe_task_definition()
                .task_definition(task_definition)
                .include(TaskDefinitionField::Tags)
                .send()
        })
        .await
        .found()?;
    Ok(described.and_then(|out| {
        let tags = sdk_tag_map(out.tags());
        out.task_definition.map(|td| (td, tags))
    }))
}

/// Registers the desired content as a new revision, tagged with the user's tags, the
/// ownership tags and the content hash.
// NB: inferenceAccelerators is deprecated in the SDK but still part of the input; the spec
// mirrors the input in full, so it is passed through like every other member.
#[allow(deprecated)]
async fn register(
    ecs: &Ecs,
    input: &RegisterTaskDefinitionInput,
    wanted_tags: &BTreeMap<String, String>,
) -> Result<TaskDefinition, Error> {
    let mut input = input.clone();
    input.tags = Some(creation_tags(input.tags.as_deref(), wanted_tags));
    let sdk = to_sdk(&input, SdkRegisterInput::deserialize)?;
    let out = ecs
        .call("RegisterTaskDefinition", |c| {
            c.register_task_definition()
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
        })
        .await?;
    out.task_definition.ok_or_else(|| {
        Error::Ecs(EcsError::empty(
            "RegisterTaskDefinition",
            "no taskDefinition in the response",
        ))
    })
}

/// Deregisters revisions this object registered and, with [`RetiredRevisions::Delete`],
/// deletes them (10 per call). A revision ECS refuses to deregister or delete (an error, or
/// DeleteTaskDefinitions' `failures[]`) is not retired: it stays in status and is tried
/// again on a later pass; ECS's words go to a Warning Event.
async fn retire(ecs: &Ecs, family: &str, revisions: &[i32], policy: RetiredRevisions) -> Retirement {
    let mut retirement = Retirement::default();
    let mut deregistered = vec![];
    for &revision in revisions {
        let name = format!("{family}:{revision}");
        let deregistered_now = ecs
            .call("DeregisterTaskDefinition", |c| {
                c.deregister_task_definition().task_definition(&name).send()
            })
            .await
            .found();
        match deregistered_now {
            // NB: a revision already gone is what we want.
            Ok(_) => deregistered.push(revision),
            Err(e) => retirement.failures.push(format!("{name}: {e}")),
        }
    }
    if policy == RetiredRevisions::Deregister {
        retirement.retired = deregistered;
    } else {
        for batch in deregistered.chunks(planner::DELETE_BATCH) {
            let names: Vec<String> = batch.iter().map(|r| format!("{family}:{r}")).collect();
            match ecs
                .call("DeleteTaskDefinitions", |c| {
                    c.delete_task_definitions().set_task_definitions(Some(names)).send()
                })
                .await
            {
                Ok(out) => {
                    // NB: a revision already deleted (a second pass that read this object's
                    // status before the first one's write reached the cache) is retired.
                    let failed: Vec<(Option<i32>, String)> = out
                        .failures()
                        .iter()
                        .filter(|f| !f.reason().is_some_and(already_deleted))
                        .map(|f| {
                            let arn = f.arn().unwrap_or_default();
                            let revision = planner::family_and_revision(arn).map(|(_, r)| r);
                            (revision, format!("{arn}: {}", f.reason().unwrap_or("refused")))
                        })
                        .collect();
                    retirement
                        .retired
                        .extend(batch.iter().filter(|r| !failed.iter().any(|(f, _)| *f == Some(**r))));
                    retirement.failures.extend(failed.into_iter().map(|(_, why)| why));
                }
                Err(err) => retirement.failures.push(err.to_string()),
            }
        }
    }
    if !retirement.retired.is_empty() {
        let what = match policy {
            RetiredRevisions::Deregister => "deregistered",
            RetiredRevisions::Delete => "deregistered and deleted",
        };
        retirement.notes.push(Note::normal(
            "RevisionsRetired",
            format!("{what} revisions {:?} of {family}", retirement.retired),
        ));
    }
    if !retirement.failures.is_empty() {
        retirement.notes.push(Note::warning(
            "RetireFailed",
            format!(
                "revisions of {family} stay in status and are retried later: {}",
                retirement.failures.join("; ")
            ),
        ));
    }
    retirement
}

/// How DeleteTaskDefinitions' `failures[]` says a revision is not there (any more).
fn already_deleted(reason: &str) -> bool {
    reason.contains("does not exist")
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

    #[test]
    fn each_revision_is_described_once_in_24_resyncs_and_each_resync_describes_a_share() {
        let uids: Vec<String> = (0..2400).map(|i| format!("4f1c2a9e-0000-4000-8000-{i:012}")).collect();
        for uid in &uids {
            let due = (100..124).filter(|sweep| describe_due(uid, *sweep)).count();
            assert_eq!(due, 1, "{uid} is described {due} times in 24 resyncs");
        }
        for sweep in 100..124 {
            let share = uids.iter().filter(|uid| describe_due(uid, sweep)).count();
            // NB: 100 each on average; a resync never describes the fleet at once.
            assert!((50..=150).contains(&share), "resync {sweep} describes {share} of 2400");
        }
    }

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
        let retirement = retire(&ecs, "web", &revisions, RetiredRevisions::Delete).await;
        assert_eq!(retirement.retired, revisions);
        assert_eq!(*batches.lock().expect("lock"), vec![10, 10, 3]);
        assert_eq!(deregister.num_calls(), 23);
    }

    #[tokio::test]
    async fn what_ecs_refuses_to_retire_stays_and_says_why() {
        use aws_sdk_ecs::types::Failure;
        let deregister = mock!(Client::deregister_task_definition)
            .match_requests(|req| req.task_definition() != Some("web:2"))
            .then_output(|| DeregisterTaskDefinitionOutput::builder().build());
        let denied = mock!(Client::deregister_task_definition)
            .match_requests(|req| req.task_definition() == Some("web:2"))
            .sequence()
            .http_status(
                400,
                Some(
                    r#"{"__type":"AccessDeniedException","message":"not authorized to perform: ecs:DeregisterTaskDefinition"}"#
                        .into(),
                ),
            )
            .build();
        let delete = mock!(Client::delete_task_definitions).then_output(|| {
            DeleteTaskDefinitionsOutput::builder()
                .failures(
                    Failure::builder()
                        .arn("arn:aws:ecs:us-east-1:1:task-definition/web:3")
                        .reason("The specified task definition is still in ACTIVE status.")
                        .build(),
                )
                .failures(
                    Failure::builder()
                        .arn("arn:aws:ecs:us-east-1:1:task-definition/web:4")
                        .reason("The specified task definition does not exist. Specify a valid account, family, revision and try again.")
                        .build(),
                )
                .build()
        });
        let ecs = Ecs::unlimited(mock_client!(
            aws_sdk_ecs,
            RuleMode::MatchAny,
            &[&deregister, &denied, &delete]
        ));
        let retirement = retire(&ecs, "web", &[1, 2, 3, 4], RetiredRevisions::Delete).await;
        assert_eq!(
            retirement.retired,
            vec![1, 4],
            "4 was deleted already: retired, not failed"
        );
        assert!(
            retirement.failures.iter().any(|f| f.contains("AccessDenied")),
            "{:?}",
            retirement.failures
        );
        assert!(
            retirement.failures.iter().any(|f| f.contains("web:3")),
            "{:?}",
            retirement.failures
        );
        assert!(retirement.notes.iter().any(|n| n.warning && n.reason == "RetireFailed"));
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
