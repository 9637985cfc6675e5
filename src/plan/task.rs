//! EcsTask: when to run, when to stop, and how a run ended, from what RunTask and
//! DescribeTasks reported.
//!
//! - What runs (RunTask's members and the references) runs once: RunTask with a clientToken
//!   derived from the object's UID and generation, so that a retry after a lost answer or a
//!   crash answers with the tasks already started instead of starting more. A new
//!   generation that changes what runs runs again (stopping what still runs of the last
//!   one); one that changes only ttlSecondsAfterFinished, activeDeadlineSeconds or
//!   deletionPolicy applies to the run there is, as a Job's would.
//! - While tasks run, they are only read; past activeDeadlineSeconds they are stopped.
//! - A run is Complete when every task stopped because an essential container exited
//!   ("If the essential parameter of a container is marked as true, and that container
//!   fails or stops for any reason, all other containers that are part of the task are
//!   stopped", ContainerDefinition.essential) and every essential container exited 0;
//!   otherwise it Failed: a non-zero exit, a task that failed to start, one stopped by
//!   someone, or the deadline.

use std::time::Duration;

use aws_sdk_ecs::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ecs::types::Task;
use k8s_openapi::jiff::Timestamp;

use super::{State, Write};
use crate::api::ecs_types::RunTaskInput;
use crate::api::task::{ContainerSummary, TaskSummary};
use crate::api::{EcsTask, EcsTaskStatus};

/// How soon a run that just started is looked at first; after that, running tasks are read
/// together, every [`POLL`] (or resync interval, if shorter).
pub const FIRST_LOOK: Duration = Duration::from_secs(5);
/// How often the tasks of running EcsTasks are read, in DescribeTasks calls of 100.
pub const POLL: Duration = Duration::from_secs(10);
/// How long after RunTask a task DescribeTasks does not report (MISSING) counts as lost
/// rather than not yet visible (ECS's API is eventually consistent).
pub const MISSING_AFTER: Duration = Duration::from_secs(60);
/// DescribeTasks takes at most this many tasks per call.
pub const DESCRIBE_BATCH: usize = 100;

/// What the spec asks for, with its references resolved.
pub struct Desired<'a> {
    /// The spec.
    pub spec: &'a crate::api::EcsTaskSpec,
    /// What runs, as a digest of RunTask's members and the references (see [`run_spec`]).
    pub run_spec: String,
    /// The cluster, by name or ARN.
    pub cluster: String,
    /// The task definition: ARN, family or family:revision.
    pub task_definition: String,
    /// metadata.generation.
    pub generation: Option<i64>,
}

impl<'a> Desired<'a> {
    /// What `task` asks for, given the cluster and task definition its spec resolves to.
    pub fn new(task: &'a EcsTask, cluster: String, task_definition: String) -> Self {
        Self {
            spec: &task.spec,
            run_spec: run_spec(&task.spec),
            cluster,
            task_definition,
            generation: task.metadata.generation,
        }
    }
}

/// A digest of what a spec runs: RunTask's members and the references, not the
/// Kubernetes-side fields (deadline, time to live, deletion policy).
pub fn run_spec(spec: &crate::api::EcsTaskSpec) -> String {
    use sha2::{Digest, Sha256};
    let what = serde_json::json!([spec.task, spec.cluster_ref, spec.task_definition_ref]);
    let digest = Sha256::digest(what.to_string().as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Whether the spec asks for a new run: the first, or one whose RunTask part changed.
pub fn needs_run(spec: &crate::api::EcsTaskSpec, status: &EcsTaskStatus) -> bool {
    status.run_generation.is_none() || status.run_spec.as_deref() != Some(run_spec(spec).as_str())
}

/// The one thing to do about a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// RunTask with this input (the executor adds the clientToken).
    Run(Box<RunTaskInput>),
    /// The tasks run: nothing to send.
    Follow,
    /// activeDeadlineSeconds passed with these tasks still running: StopTask each.
    StopForDeadline(Vec<String>),
    /// The run is over: nothing to send, ever again for this generation.
    Finished,
}

/// Decides what to do, given the status after the latest read of the tasks and the time.
pub fn plan(desired: &Desired, status: &EcsTaskStatus, now: Timestamp) -> Plan {
    if needs_run(desired.spec, status) {
        let mut input = desired.spec.task.clone();
        input.cluster = Some(desired.cluster.clone());
        input.task_definition = Some(desired.task_definition.clone());
        // NB: startedBy shows up in ListTasks and the console; name who started it.
        input.started_by.get_or_insert_with(|| "ecs-operator".to_string());
        return Plan::Run(Box::new(input));
    }
    if finished(status) {
        return Plan::Finished;
    }
    let deadline = desired.spec.active_deadline_seconds.and_then(|s| u64::try_from(s).ok());
    let ran = status
        .run_at
        .as_deref()
        .and_then(|at| at.parse::<Timestamp>().ok())
        .and_then(|at| Duration::try_from(now.duration_since(at)).ok());
    if let (Some(deadline), Some(ran)) = (deadline, ran)
        && ran >= Duration::from_secs(deadline)
        && !status.deadline_exceeded
    {
        let running = status
            .tasks
            .iter()
            .filter(|t| t.last_status.as_deref() != Some("STOPPED"))
            .map(|t| t.task_arn.clone())
            .collect();
        return Plan::StopForDeadline(running);
    }
    Plan::Follow
}

/// The ECS writes `plan` makes, for `diff`.
pub fn writes(plan: &Plan, desired: &Desired) -> Vec<Write> {
    match plan {
        Plan::Run(input) => vec![Write::new(
            "RunTask",
            desired.cluster.clone(),
            format!(
                "{} task(s) of {} for generation {}",
                input.count.unwrap_or(1),
                desired.task_definition,
                desired.generation.unwrap_or(1)
            ),
        )],
        Plan::StopForDeadline(arns) => arns
            .iter()
            .map(|arn| Write::new("StopTask", arn.clone(), "activeDeadlineSeconds exceeded"))
            .collect(),
        Plan::Follow | Plan::Finished => vec![],
    }
}

/// True once the run is over: every task STOPPED, or RunTask started none.
pub fn finished(status: &EcsTaskStatus) -> bool {
    status.run_generation.is_some()
        && (status.tasks.is_empty() && !status.failures.is_empty()
            || !status.tasks.is_empty() && status.tasks.iter().all(|t| t.last_status.as_deref() == Some("STOPPED")))
}

/// How long until a finished run's object is to be deleted (zero: now); None without
/// ttlSecondsAfterFinished or before the run finished.
pub fn time_to_live(ttl_seconds: Option<i64>, status: &EcsTaskStatus, now: Timestamp) -> Option<Duration> {
    let ttl = Duration::from_secs(u64::try_from(ttl_seconds?).ok()?);
    let finished_at: Timestamp = status.finished_at.as_deref()?.parse().ok()?;
    let since = Duration::try_from(now.duration_since(finished_at)).unwrap_or_default();
    Some(ttl.saturating_sub(since))
}

/// Where the run stands.
pub fn readiness(status: &EcsTaskStatus, ttl_left: Option<Duration>) -> State {
    if !finished(status) {
        let running = status
            .tasks
            .iter()
            .filter(|t| t.last_status.as_deref() == Some("RUNNING"))
            .count();
        let reason = if running > 0 { "Running" } else { "Starting" };
        return State::InProgress {
            reason,
            message: format!("{running} of {} task(s) RUNNING", status.tasks.len()),
            recheck: FIRST_LOOK,
        };
    }
    let (succeeded, reason, message) = verdict(status);
    State::Finished {
        succeeded,
        reason,
        message,
        recheck: ttl_left,
    }
}

/// How a finished run ended: success, and the reason and message of its conditions.
fn verdict(status: &EcsTaskStatus) -> (bool, &'static str, String) {
    if !status.failures.is_empty() {
        // NB: a run of which ECS started only some tasks failed, whatever those did.
        return (
            false,
            "RunTaskFailed",
            format!(
                "RunTask started {} of the tasks asked for: {}",
                status.tasks.len(),
                status.failures.join("; ")
            ),
        );
    }
    if status.deadline_exceeded {
        return (
            false,
            "DeadlineExceeded",
            "stopped after activeDeadlineSeconds".to_string(),
        );
    }
    for task in &status.tasks {
        let id = task.task_arn.rsplit('/').next().unwrap_or(&task.task_arn);
        let why = task.stopped_reason.clone().unwrap_or_default();
        if task.stop_code.as_deref() != Some("EssentialContainerExited") {
            let code = task.stop_code.clone().unwrap_or_else(|| "stopped".into());
            let reason = if code == "TaskFailedToStart" {
                "TaskFailedToStart"
            } else {
                "TaskStopped"
            };
            return (false, reason, format!("task {id}: {code}: {why}"));
        }
        for container in task.containers.iter().filter(|c| essential(status, &c.name)) {
            if container.exit_code != Some(0) {
                let exit = container
                    .exit_code
                    .map_or("no exit code".to_string(), |c| format!("exit code {c}"));
                let reason = container
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                return (
                    false,
                    "ContainerFailed",
                    format!("task {id}: container {} exited with {exit}{reason}", container.name),
                );
            }
        }
    }
    let count = status.tasks.len();
    (
        true,
        "Complete",
        format!("{count} task(s) completed; every essential container exited 0"),
    )
}

/// Whether a container decides success: essential in the task definition (every container,
/// when the task definition could not be read).
fn essential(status: &EcsTaskStatus, name: &str) -> bool {
    status.essential_containers.is_empty() || status.essential_containers.iter().any(|c| c == name)
}

/// A task as status keeps it.
pub fn summarize(task: &Task) -> TaskSummary {
    let time = |t: Option<&DateTime>| t.and_then(|t| t.fmt(DateTimeFormat::DateTime).ok());
    TaskSummary {
        task_arn: task.task_arn().unwrap_or_default().to_string(),
        last_status: task.last_status().map(str::to_owned),
        desired_status: task.desired_status().map(str::to_owned),
        stop_code: task.stop_code().map(|c| c.as_str().to_string()),
        stopped_reason: task.stopped_reason().map(str::to_owned),
        started_at: time(task.started_at()),
        stopped_at: time(task.stopped_at()),
        containers: task
            .containers()
            .iter()
            .map(|c| ContainerSummary {
                name: c.name().unwrap_or_default().to_string(),
                last_status: c.last_status().map(str::to_owned),
                exit_code: c.exit_code(),
                reason: c.reason().map(str::to_owned),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(spec: serde_json::Value) -> EcsTask {
        serde_json::from_value(json!({
            "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsTask",
            "metadata": {"name": "migrate", "namespace": "shop", "uid": "u-1", "generation": 2},
            "spec": spec,
        }))
        .expect("task")
    }

    fn stopped(stop_code: &str, exits: &[(&str, Option<i32>)]) -> TaskSummary {
        TaskSummary {
            task_arn: "arn:aws:ecs:us-east-1:1:task/prod/abc".into(),
            last_status: Some("STOPPED".into()),
            stop_code: Some(stop_code.into()),
            stopped_reason: Some("Essential container in task exited".into()),
            containers: exits
                .iter()
                .map(|(name, code)| ContainerSummary {
                    name: name.to_string(),
                    exit_code: *code,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn ran(tasks: Vec<TaskSummary>) -> EcsTaskStatus {
        EcsTaskStatus {
            run_generation: Some(2),
            run_at: Some("2026-11-30T10:00:00Z".into()),
            essential_containers: vec!["app".into()],
            tasks,
            ..Default::default()
        }
    }

    #[test]
    fn a_new_generation_runs_once_with_its_references() {
        let obj = task(json!({"taskDefinition": "migrate", "count": 1}));
        let desired = Desired::new(&obj, "arn:cluster/prod".into(), "arn:td/migrate:3".into());
        let now: Timestamp = "2026-11-30T10:00:05Z".parse().expect("time");
        let Plan::Run(input) = plan(&desired, &EcsTaskStatus::default(), now) else {
            panic!("expected Run");
        };
        assert_eq!(input.cluster.as_deref(), Some("arn:cluster/prod"));
        assert_eq!(input.task_definition.as_deref(), Some("arn:td/migrate:3"));
        assert_eq!(input.started_by.as_deref(), Some("ecs-operator"));
        let mut running = ran(vec![TaskSummary {
            last_status: Some("RUNNING".into()),
            ..stopped("", &[])
        }]);
        running.run_spec = Some(desired.run_spec.clone());
        assert_eq!(plan(&desired, &running, now), Plan::Follow);
    }

    #[test]
    fn only_a_change_of_what_runs_runs_again() {
        let first = task(json!({"taskDefinitionRef": {"name": "migrate"}, "overrides": {"cpu": "256"}}));
        let mut status = ran(vec![stopped("EssentialContainerExited", &[("app", Some(0))])]);
        status.run_spec = Some(run_spec(&first.spec));
        let now: Timestamp = "2026-11-30T10:00:05Z".parse().expect("time");
        let deadline = task(
            json!({"taskDefinitionRef": {"name": "migrate"}, "overrides": {"cpu": "256"},
                                   "activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 5, "deletionPolicy": "Retain"}),
        );
        assert!(
            !needs_run(&deadline.spec, &status),
            "the deadline, time to live and deletion policy are not a new run"
        );
        let desired = Desired::new(&deadline, "prod".into(), "migrate:3".into());
        assert_eq!(plan(&desired, &status, now), Plan::Finished);
        for other in [
            json!({"taskDefinitionRef": {"name": "migrate"}, "overrides": {"cpu": "512"}}),
            json!({"taskDefinitionRef": {"name": "report"}, "overrides": {"cpu": "256"}}),
            json!({"taskDefinition": "migrate:4", "overrides": {"cpu": "256"}}),
        ] {
            assert!(needs_run(&task(other.clone()).spec, &status), "{other}");
        }
    }

    #[test]
    fn the_deadline_stops_what_still_runs_once() {
        let obj = task(json!({"taskDefinition": "migrate", "activeDeadlineSeconds": 60}));
        let desired = Desired::new(&obj, "prod".into(), "migrate".into());
        let mut status = ran(vec![TaskSummary {
            last_status: Some("RUNNING".into()),
            ..stopped("", &[])
        }]);
        status.run_spec = Some(desired.run_spec.clone());
        let early: Timestamp = "2026-11-30T10:00:59Z".parse().expect("time");
        assert_eq!(plan(&desired, &status, early), Plan::Follow);
        let late: Timestamp = "2026-11-30T10:01:00Z".parse().expect("time");
        assert_eq!(
            plan(&desired, &status, late),
            Plan::StopForDeadline(vec!["arn:aws:ecs:us-east-1:1:task/prod/abc".into()])
        );
        status.deadline_exceeded = true;
        assert_eq!(plan(&desired, &status, late), Plan::Follow);
    }

    #[test]
    fn a_run_is_complete_only_when_every_essential_container_exited_zero() {
        let complete = ran(vec![stopped(
            "EssentialContainerExited",
            &[("app", Some(0)), ("sidecar", Some(143))],
        )]);
        assert_eq!(readiness(&complete, None).reason(), "Complete");
        let failed = ran(vec![stopped("EssentialContainerExited", &[("app", Some(3))])]);
        let State::Finished { succeeded, message, .. } = readiness(&failed, None) else {
            panic!("finished");
        };
        assert!(!succeeded);
        assert!(message.contains("container app exited with exit code 3"), "{message}");
        let not_started = ran(vec![stopped("TaskFailedToStart", &[("app", None)])]);
        assert_eq!(readiness(&not_started, None).reason(), "TaskFailedToStart");
        let mut deadline = ran(vec![stopped("UserInitiated", &[("app", Some(143))])]);
        deadline.deadline_exceeded = true;
        assert_eq!(readiness(&deadline, None).reason(), "DeadlineExceeded");
    }

    #[test]
    fn the_time_to_live_counts_from_the_end_of_the_run() {
        let mut status = ran(vec![stopped("EssentialContainerExited", &[("app", Some(0))])]);
        let now: Timestamp = "2026-11-30T10:05:00Z".parse().expect("time");
        assert_eq!(time_to_live(Some(60), &status, now), None, "not finished yet in status");
        status.finished_at = Some("2026-11-30T10:04:30Z".into());
        assert_eq!(time_to_live(Some(60), &status, now), Some(Duration::from_secs(30)));
        assert_eq!(time_to_live(Some(10), &status, now), Some(Duration::ZERO));
        assert_eq!(time_to_live(None, &status, now), None);
    }

    #[test]
    fn a_run_ecs_started_only_in_part_failed() {
        let mut partial = ran(vec![stopped("EssentialContainerExited", &[("app", Some(0))])]);
        partial.failures = vec!["arn:aws:ecs:us-east-1:1:container-instance/x: RESOURCE:MEMORY".into()];
        let State::Finished {
            succeeded,
            reason,
            message,
            ..
        } = readiness(&partial, None)
        else {
            panic!("finished");
        };
        assert!(!succeeded);
        assert_eq!(reason, "RunTaskFailed");
        assert!(message.contains("RESOURCE:MEMORY"), "{message}");
    }
}
