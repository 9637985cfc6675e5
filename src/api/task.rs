//! EcsTask: one run of ECS tasks to completion (RunTask), as a Kubernetes Job runs pods: a
//! database migration, a batch job, a report.
//!
//! The spec is RunTask's input plus references to an EcsCluster and an EcsTaskDefinition in
//! the same namespace, and what a Job has: a deadline and a time to live once finished.
//! What the spec runs runs once; a new generation that changes it runs again.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ecs_types::RunTaskInput;
use super::shared::{CommonStatus, DeletionPolicy, LocalObjectReference};

/// Desired state of a run of ECS tasks.
// NB: kube's printcolumn(...) entries repeat `type_` by design; clippy reads them as one list.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.operator.dev",
    version = "v1alpha1",
    kind = "EcsTask",
    namespaced,
    status = "EcsTaskStatus",
    shortname = "ecstask",
    category = "ecs",
    doc = "One run of ECS tasks to completion (RunTask), like a Job.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Task Status", type_ = "string", json_path = ".status.tasks[0].lastStatus"),
    printcolumn(
        name = "Exit Code",
        type_ = "integer",
        json_path = ".status.tasks[0].containers[0].exitCode"
    ),
    printcolumn(
        name = "Task ARN",
        type_ = "string",
        json_path = ".status.tasks[0].taskArn",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!(has(self.cluster) && has(self.clusterRef))")
    .message("set at most one of cluster and clusterRef")
    .field_path(".clusterRef"))]
#[x_kube(validation = Rule::new("has(self.taskDefinition) != has(self.taskDefinitionRef)")
    .message("set exactly one of taskDefinition and taskDefinitionRef")
    .field_path(".taskDefinition"))]
#[x_kube(validation = Rule::new("!(has(self.launchType) && has(self.capacityProviderStrategy))")
    .message("set at most one of launchType and capacityProviderStrategy (ECS: Specify either Launch Type or Capacity Provider Strategy, but not both)")
    .field_path(".launchType"))]
#[x_kube(validation = Rule::new("!has(self.count) || (self.count >= 1 && self.count <= 10)")
    .message("count is 1 to 10 (RunTask: You can specify up to 10 tasks for each call)")
    .field_path(".count"))]
#[x_kube(validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)")
    .message("region is immutable: create a new EcsTask in the other region instead")
    .field_path(".region"))]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskSpec {
    /// RunTask's input, member for member (without clientToken, which the operator derives
    /// from the object's UID and generation, so that a retry never starts a second run).
    #[serde(flatten)]
    pub task: RunTaskInput,
    /// An EcsCluster in the same namespace to run in; exclusive with cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<LocalObjectReference>,
    /// An EcsTaskDefinition in the same namespace whose current revision to run; exclusive with taskDefinition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_ref: Option<LocalObjectReference>,
    /// Seconds the run may take from RunTask on; then its tasks are stopped (StopTask) and the object is Failed (DeadlineExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds after the run finished (Complete or Failed) after which the operator deletes this object, like a Job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// AWS region of the tasks; defaults to the operator's region. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub region: Option<String>,
    /// Deleting the object while tasks run: Delete (default) stops them (StopTask); Retain lets them finish.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What the operator observed of the run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskStatus {
    /// observedGeneration and conditions (Ready = Complete; Complete and Failed once finished).
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The region the tasks run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The latest generation of the spec this run answers: a generation that changes what runs (RunTask's members, the references) runs again; one that changes only the deadline, time to live or deletion policy keeps this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_generation: Option<i64>,
    /// A digest of what this run runs (RunTask's members and the references), to tell which new generations run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_spec: Option<String>,
    /// The cluster they run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// The task definition revision they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// The containers whose exit decides success (essential in the task definition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub essential_containers: Vec<String>,
    /// When RunTask was called (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// When the last task stopped (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// True once the operator stopped the tasks for activeDeadlineSeconds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deadline_exceeded: bool,
    /// The tasks, as DescribeTasks last reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskSummary>,
    /// What RunTask could not start, in ECS's words (e.g. RESOURCE:MEMORY).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// One ECS task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    /// Its ARN.
    pub task_arn: String,
    /// PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, DEPROVISIONING or STOPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    /// RUNNING or STOPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    /// Why it stopped: EssentialContainerExited, TaskFailedToStart, UserInitiated, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    /// Why it stopped, in ECS's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// When it started running (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it stopped (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// Its containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerSummary>,
}

/// One container of a task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSummary {
    /// Its name in the task definition.
    pub name: String,
    /// PENDING, RUNNING or STOPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    /// The exit code, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it stopped, when ECS says (e.g. CannotPullContainerError).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
