//! EcsTask against ECS: the executor of [`crate::plan::task`].
//!
//! A new generation runs with one RunTask (its clientToken from the object's UID and
//! generation) and one DescribeTaskDefinition (which containers are essential). Running
//! tasks are read by the kind's poll sweep, DescribeTasks 100 at a time for every running
//! EcsTask together; a run past its deadline is stopped with StopTask. A finished run costs
//! nothing more, and its object is deleted after ttlSecondsAfterFinished.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ecs::operation::run_task::RunTaskInput as SdkRunTaskInput;
use aws_sdk_ecs::types::Task;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ReflectHandle;
use tracing::debug;

use super::observations::{Observations, by_account};
use super::references::{self, Refers};
use super::service::client_token;
use super::{Context, Error, LabelSelector, Managed, Note, Outcome, State};
use crate::api::{
    CommonStatus, DeletionPolicy, EcsCluster, EcsTask, EcsTaskDefinition, EcsTaskStatus, ManagementOptions,
};
use crate::ecs::client::{Ecs, Found};
use crate::ecs::error::EcsError;
use crate::ecs::wire::to_sdk;
use crate::plan::task::{self as planner, Desired, Plan};

/// The EcsTask controller: also woken when a referenced EcsCluster or EcsTaskDefinition
/// becomes usable.
pub fn controller(
    controller: Controller<EcsTask>,
    clusters: ReflectHandle<EcsCluster>,
    task_definitions: ReflectHandle<EcsTaskDefinition>,
    selector: Option<LabelSelector>,
) -> Controller<EcsTask> {
    references::woken_by_references(controller, clusters, task_definitions, selector)
}

impl Refers for EcsTask {
    fn cluster_ref(&self) -> Option<&str> {
        self.spec.cluster_ref.as_ref().map(|r| r.name.as_str())
    }

    fn cluster(&self) -> Option<&str> {
        self.spec.task.cluster.as_deref()
    }

    fn task_definition_ref(&self) -> Option<&str> {
        self.spec.task_definition_ref.as_ref().map(|r| r.name.as_str())
    }

    fn task_definition(&self) -> Option<&str> {
        self.spec.task.task_definition.as_deref()
    }
}

impl EcsTask {
    /// True while the run's tasks are started and not all STOPPED.
    fn running(&self) -> bool {
        let Some(status) = &self.status else { return false };
        status.run_generation.is_some() && !status.tasks.is_empty() && !planner::finished(status)
    }

    /// RunTask for this generation, then which containers of the revision it ran are
    /// essential. Returns the status of the new run.
    async fn run(
        &self,
        ecs: &Ecs,
        input: &crate::api::ecs_types::RunTaskInput,
        status: &mut EcsTaskStatus,
    ) -> Result<Note, Error> {
        let sdk = to_sdk(input, SdkRunTaskInput::deserialize)?;
        let token = client_token(
            self.metadata.uid.as_deref().unwrap_or_default(),
            self.metadata.generation,
        );
        let out = ecs
            .call("RunTask", |c| {
                c.run_task()
                    .client_token(token)
                    .set_cluster(sdk.cluster)
                    .set_task_definition(sdk.task_definition)
                    .set_count(sdk.count)
                    .set_launch_type(sdk.launch_type)
                    .set_capacity_provider_strategy(sdk.capacity_provider_strategy)
                    .set_network_configuration(sdk.network_configuration)
                    .set_overrides(sdk.overrides)
                    .set_placement_constraints(sdk.placement_constraints)
                    .set_placement_strategy(sdk.placement_strategy)
                    .set_platform_version(sdk.platform_version)
                    .set_propagate_tags(sdk.propagate_tags)
                    .set_reference_id(sdk.reference_id)
                    .set_started_by(sdk.started_by)
                    .set_tags(sdk.tags)
                    .set_group(sdk.group)
                    .set_enable_ecs_managed_tags(sdk.enable_ecs_managed_tags)
                    .set_enable_execute_command(sdk.enable_execute_command)
                    .set_volume_configurations(sdk.volume_configurations)
                    .send()
            })
            .await?;
        status.run_at = Some(Timestamp::now().to_string());
        status.finished_at = None;
        status.deadline_exceeded = false;
        status.tasks = out.tasks().iter().map(planner::summarize).collect();
        status.failures = out
            .failures()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.arn().unwrap_or("RunTask"),
                    [f.reason(), f.detail()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                )
            })
            .collect();
        status.cluster_arn = out.tasks().first().and_then(|t| t.cluster_arn()).map(str::to_owned);
        status.task_definition_arn = out
            .tasks()
            .first()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_owned);
        status.essential_containers = match &status.task_definition_arn {
            Some(arn) => essential_containers(ecs, arn).await?,
            None => vec![],
        };
        let arns: Vec<&str> = status.tasks.iter().map(|t| t.task_arn.as_str()).collect();
        Ok(Note::normal(
            "Started",
            format!(
                "ran {} of {} for generation {}: {}",
                arns.len(),
                input.task_definition.as_deref().unwrap_or_default(),
                self.metadata.generation.unwrap_or_default(),
                arns.join(", ")
            ),
        ))
    }
}

impl Managed for EcsTask {
    type Status = EcsTaskStatus;
    type Observed = Vec<Task>;

    fn observations(ctx: &Context) -> &Observations<Self::Observed> {
        &ctx.observed.tasks
    }

    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }

    fn common(status: &mut Self::Status) -> &mut CommonStatus {
        &mut status.common
    }

    fn options(&self) -> ManagementOptions {
        ManagementOptions {
            region: self.spec.region.clone(),
            deletion_policy: self.spec.deletion_policy,
            ..ManagementOptions::default()
        }
    }

    fn poll_interval() -> Option<Duration> {
        Some(planner::POLL)
    }

    fn polled(&self) -> bool {
        self.running()
    }

    async fn apply(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let previous = self.status.clone().unwrap_or_default();
        let mut status = EcsTaskStatus {
            region: Some(region.clone()),
            ..previous.clone()
        };
        let mut events = vec![];

        // Read the tasks in flight: the poll sweep's batched read, else a read of its own.
        if self.running() {
            let snapshot = ctx.observed.tasks.take(&self.uid().unwrap_or_default());
            let seen = match snapshot {
                Some(seen) => seen,
                None => describe_tasks(&ecs, &status).await?,
            };
            refresh(&mut status, &seen, Timestamp::now());
        }

        // NB: references matter only to a new run; a run under way or finished keeps what
        // it ran, whatever its task definition registers meanwhile.
        let (cluster, task_definition) = if planner::needs_run(&self.spec, &status) {
            let target = match references::resolve(self, ctx, &region)? {
                Ok(target) => target,
                Err(waiting) => {
                    let state = waiting.state(ctx.settings.resync_interval);
                    return Ok(Outcome { status, state, events });
                }
            };
            let task_definition = target.task_definition()?;
            (target.cluster, task_definition)
        } else {
            let ran = |arn: &Option<String>| arn.clone().unwrap_or_default();
            (ran(&status.cluster_arn), ran(&status.task_definition_arn))
        };
        let desired = Desired::new(self, cluster, task_definition);

        let now = Timestamp::now();
        match planner::plan(&desired, &status, now) {
            Plan::Run(input) => {
                events.extend(stop_previous_run(&ecs, &status).await?);
                events.push(self.run(&ecs, &input, &mut status).await?);
                status.run_spec = Some(desired.run_spec.clone());
            }
            Plan::StopForDeadline(arns) => {
                let deadline = self.spec.active_deadline_seconds.unwrap_or_default();
                for arn in &arns {
                    stop(
                        &ecs,
                        &status,
                        arn,
                        &format!("activeDeadlineSeconds ({deadline} s) exceeded"),
                    )
                    .await?;
                }
                status.deadline_exceeded = true;
                events.push(Note::warning(
                    "DeadlineExceeded",
                    format!(
                        "stopped {} task(s) after activeDeadlineSeconds ({deadline} s)",
                        arns.len()
                    ),
                ));
            }
            Plan::Follow | Plan::Finished => {}
        }
        // A generation that changed only the deadline, time to live or deletion policy.
        status.run_generation = self.metadata.generation;
        if planner::finished(&status) && status.finished_at.is_none() {
            status.finished_at = Some(finished_at(&status).unwrap_or_else(|| now.to_string()));
        }
        let ttl_left = planner::time_to_live(self.spec.ttl_seconds_after_finished, &status, now);
        let state = planner::readiness(&status, ttl_left);
        if planner::finished(&status) && !planner::finished(&previous) {
            let warning = matches!(state, State::Finished { succeeded: false, .. });
            let (reason, message) = (state.reason(), finished_message(&state));
            events.push(match warning {
                true => Note::warning(reason, message),
                false => Note::normal(reason, message),
            });
        }
        if ttl_left == Some(Duration::ZERO) {
            let api: Api<EcsTask> = Api::namespaced(ctx.client.clone(), &self.namespace().unwrap_or_default());
            api.delete(&self.name_any(), &DeleteParams::background()).await?;
            debug!(object = %self.name_any(), "deleted after ttlSecondsAfterFinished");
        }
        Ok(Outcome { status, state, events })
    }

    async fn observe(&self, _ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        // NB: unreachable: an EcsTask has no managementPolicy (options() says Manage).
        Err(Error::Invalid("an EcsTask cannot be observe-only".into()))
    }

    /// DescribeTasks of every running EcsTask: 100 tasks per call, per account, region and
    /// cluster.
    async fn observe_all(objects: Vec<Arc<Self>>, _sweep: u64, ctx: &Context) {
        let running: Vec<Arc<Self>> = objects.into_iter().filter(|t| t.running()).collect();
        let what = |task: &Self| {
            let status = task.status.clone().unwrap_or_default();
            let (Some(region), Some(cluster)) = (status.region, status.cluster_arn) else {
                return vec![];
            };
            status
                .tasks
                .into_iter()
                .map(|t| (region.clone(), cluster.clone(), t.task_arn))
                .collect::<Vec<_>>()
        };
        for (ecs, cluster, members) in by_account(ctx, &running, what).await {
            let read_at = Instant::now();
            let mut seen: HashMap<String, Vec<Task>> = HashMap::new();
            let mut complete = true;
            for chunk in members.chunks(planner::DESCRIBE_BATCH) {
                let arns = chunk.iter().map(|(_, arn)| arn.clone()).collect();
                match describe(&ecs, &cluster, arns).await {
                    Ok(found) => {
                        for (uid, arn) in chunk {
                            let task = found.iter().find(|t| t.task_arn() == Some(arn.as_str()));
                            seen.entry(uid.clone()).or_default().extend(task.cloned());
                        }
                    }
                    // NB: each reconcile then reads its own, as without batching.
                    Err(err) => {
                        debug!(cluster, error = %err, "batched DescribeTasks failed");
                        complete = false;
                    }
                }
            }
            if complete {
                for (uid, tasks) in seen {
                    ctx.observed.tasks.offer(&uid, read_at, tasks);
                }
            }
        }
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Vec<Note>, Error> {
        let status = self.status.clone().unwrap_or_default();
        let running: Vec<String> = status
            .tasks
            .iter()
            .filter(|t| t.last_status.as_deref() != Some("STOPPED"))
            .map(|t| t.task_arn.clone())
            .collect();
        if running.is_empty() {
            return Ok(vec![]);
        }
        if self.spec.deletion_policy == DeletionPolicy::Retain {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left {} task(s) running to finish", running.len()),
            )]);
        }
        let (ecs, _) = ctx.ecs_for(self).await?;
        for arn in &running {
            stop(&ecs, &status, arn, "EcsTask deleted").await?;
        }
        Ok(vec![Note::normal(
            "Stopped",
            format!("stopped {} task(s)", running.len()),
        )])
    }
}

/// Takes what DescribeTasks reported into status. A task it did not report (MISSING in its
/// `failures[]`: ECS keeps a stopped task for about an hour) has stopped in a way no one
/// can tell any more: STOPPED, without an exit code, which fails the run. Not right after
/// RunTask, though: ECS's API is eventually consistent, and a task just started may not be
/// described yet.
fn refresh(status: &mut EcsTaskStatus, seen: &[Task], now: Timestamp) {
    let ran_for = status
        .run_at
        .as_deref()
        .and_then(|at| at.parse::<Timestamp>().ok())
        .and_then(|at| Duration::try_from(now.duration_since(at)).ok())
        .unwrap_or_default();
    let lost = ran_for >= planner::MISSING_AFTER;
    for summary in &mut status.tasks {
        match seen.iter().find(|t| t.task_arn() == Some(summary.task_arn.as_str())) {
            Some(task) => *summary = planner::summarize(task),
            None if lost && summary.last_status.as_deref() != Some("STOPPED") => {
                summary.last_status = Some("STOPPED".into());
                summary.stop_code = Some("MISSING".into());
                summary.stopped_reason =
                    Some("ECS no longer knows this task (DescribeTasks: MISSING); how it ended is unknown".into());
            }
            None => {}
        }
    }
}

/// Before a new run: StopTask for what still runs of the last one (the spec that started it
/// changed), so that two runs never overlap.
async fn stop_previous_run(ecs: &Ecs, status: &EcsTaskStatus) -> Result<Option<Note>, EcsError> {
    let running: Vec<&str> = status
        .tasks
        .iter()
        .filter(|t| t.last_status.as_deref() != Some("STOPPED"))
        .map(|t| t.task_arn.as_str())
        .collect();
    for arn in &running {
        stop(ecs, status, arn, "the EcsTask's spec changed: replaced by a new run").await?;
    }
    Ok((!running.is_empty()).then(|| {
        Note::normal(
            "Stopped",
            format!(
                "stopped {} task(s) of the previous run: the spec changed",
                running.len()
            ),
        )
    }))
}

/// When the last task stopped, as ECS reports it.
fn finished_at(status: &EcsTaskStatus) -> Option<String> {
    status.tasks.iter().filter_map(|t| t.stopped_at.clone()).max()
}

fn finished_message(state: &State) -> String {
    match state {
        State::Finished { message, .. } => message.clone(),
        _ => String::new(),
    }
}

/// DescribeTasks of this object's tasks, 100 per call.
async fn describe_tasks(ecs: &Ecs, status: &EcsTaskStatus) -> Result<Vec<Task>, EcsError> {
    let cluster = status.cluster_arn.clone().unwrap_or_default();
    let arns: Vec<String> = status.tasks.iter().map(|t| t.task_arn.clone()).collect();
    let mut seen = vec![];
    for chunk in arns.chunks(planner::DESCRIBE_BATCH) {
        seen.extend(describe(ecs, &cluster, chunk.to_vec()).await?);
    }
    Ok(seen)
}

/// One DescribeTasks call (at most 100 tasks of one cluster).
async fn describe(ecs: &Ecs, cluster: &str, arns: Vec<String>) -> Result<Vec<Task>, EcsError> {
    let out = ecs
        .call("DescribeTasks", |c| {
            c.describe_tasks().cluster(cluster).set_tasks(Some(arns)).send()
        })
        .await?;
    Ok(out.tasks().to_vec())
}

/// StopTask with `reason`; a task ECS no longer knows is stopped already.
async fn stop(ecs: &Ecs, status: &EcsTaskStatus, arn: &str, reason: &str) -> Result<(), EcsError> {
    let cluster = status.cluster_arn.clone().unwrap_or_default();
    ecs.call("StopTask", |c| {
        c.stop_task().cluster(cluster).task(arn).reason(reason).send()
    })
    .await
    .found()?;
    Ok(())
}

/// The essential containers of a task definition revision (containers are essential unless
/// they say otherwise).
async fn essential_containers(ecs: &Ecs, task_definition: &str) -> Result<Vec<String>, EcsError> {
    let out = ecs
        .call("DescribeTaskDefinition", |c| {
            c.describe_task_definition().task_definition(task_definition).send()
        })
        .await?;
    Ok(out
        .task_definition()
        .map(|td| {
            td.container_definitions()
                .iter()
                .filter(|c| c.essential().unwrap_or(true))
                .filter_map(|c| c.name().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}
