//! EcsTaskSchedule: ECS tasks run on a schedule, as an EventBridge Scheduler schedule whose
//! target runs them (ECS's own "scheduled tasks"), like a CronJob.
//!
//! The schedule's members are EventBridge Scheduler's CreateSchedule input; the task is the
//! same RunTask-shaped block as EcsTask's, with references to an EcsCluster and an
//! EcsTaskDefinition in the same namespace. EventBridge Scheduler runs the task with the
//! IAM role in `roleArn`, which it must be allowed to assume.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ecs_types::RunTaskInput;
use super::shared::{CommonStatus, DeletionPolicy, LocalObjectReference};

/// Desired state of a schedule that runs ECS tasks.
// NB: kube's printcolumn(...) entries repeat `type_` by design; clippy reads them as one list.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.operator.dev",
    version = "v1alpha1",
    kind = "EcsTaskSchedule",
    namespaced,
    status = "EcsTaskScheduleStatus",
    shortname = "ecsschedule",
    category = "ecs",
    doc = "ECS tasks run on a schedule (an EventBridge Scheduler schedule), like a CronJob.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Status", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.scheduleExpression"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.scheduleArn", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.scheduleName) || self.metadata.name.matches('^[0-9a-zA-Z_.-]{1,64}$')")
        .message("metadata.name is not a valid schedule name (1 to 64 letters, digits, '-', '_' and '.'); set spec.scheduleName")
        .field_path(".spec.scheduleName"),
)]
#[x_kube(validation = Rule::new("self.scheduleExpression.matches('^(cron|rate|at)\\\\(.+\\\\)$')")
    .message("scheduleExpression is cron(...), rate(...) or at(...)")
    .field_path(".scheduleExpression"))]
#[x_kube(validation = Rule::new("(has(self.scheduleName) ? self.scheduleName : '') == (has(oldSelf.scheduleName) ? oldSelf.scheduleName : '') && (has(self.groupName) ? self.groupName : '') == (has(oldSelf.groupName) ? oldSelf.groupName : '')")
    .message("scheduleName and groupName are immutable: create a new EcsTaskSchedule instead")
    .field_path(".scheduleName"))]
#[x_kube(validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)")
    .message("region is immutable: create a new EcsTaskSchedule in the other region instead")
    .field_path(".region"))]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskScheduleSpec {
    /// The schedule's name in EventBridge Scheduler; defaults to metadata.name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[0-9a-zA-Z_.-]+$"))]
    pub schedule_name: Option<String>,
    /// The schedule group; defaults to EventBridge Scheduler's `default`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[0-9a-zA-Z_.-]+$"))]
    pub group_name: Option<String>,
    /// When the task runs: `cron(minutes hours day-of-month month day-of-week year)`, `rate(value unit)` or `at(yyyy-mm-ddThh:mm:ss)`.
    #[schemars(length(min = 1, max = 256))]
    pub schedule_expression: String,
    /// The time zone of cron and at expressions (e.g. Europe/Paris); UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub schedule_expression_timezone: Option<String>,
    /// A window after the scheduled time within which EventBridge Scheduler may start the task; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flexible_time_window: Option<FlexibleTimeWindow>,
    /// The first time a recurring schedule may run (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"))]
    pub start_date: Option<String>,
    /// The last time a recurring schedule may run (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"))]
    pub end_date: Option<String>,
    /// ENABLED (default) runs the task on schedule; DISABLED keeps the schedule and runs nothing.
    #[serde(default)]
    pub state: ScheduleState,
    /// A description of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub description: Option<String>,
    /// The IAM role EventBridge Scheduler assumes to run the task (it needs ecs:RunTask, ecs:TagResource and iam:PassRole for the task's roles). Required.
    #[schemars(
        length(min = 1, max = 1600),
        regex(pattern = r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/.+$")
    )]
    pub role_arn: String,
    /// How often, and for how long, EventBridge Scheduler retries a run that failed to start; its defaults (185 attempts over 24 hours) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// The task to run: RunTask's input with references.
    pub task: ScheduledTask,
    /// AWS region of the schedule and its tasks; defaults to the operator's region. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub region: Option<String>,
    /// Delete (default) removes the schedule with the object; Retain leaves it in EventBridge Scheduler.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Take over an existing schedule of the same name that this operator did not create; it is then owned.
    #[serde(default)]
    pub adopt: bool,
}

/// The task a schedule runs: RunTask's input, with the members EventBridge Scheduler's ECS
/// target has (overrides become the target's input), and references in the namespace.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.cluster) && has(self.clusterRef))")
    .message("set at most one of cluster and clusterRef")
    .field_path(".clusterRef"))]
#[x_kube(validation = Rule::new("has(self.cluster) || has(self.clusterRef)")
    .message("set cluster (an ARN) or clusterRef: EventBridge Scheduler targets a cluster by ARN")
    .field_path(".cluster"))]
#[x_kube(validation = Rule::new("!has(self.cluster) || self.cluster.startsWith('arn:')")
    .message("cluster must be an ARN: EventBridge Scheduler targets a cluster by ARN (or use clusterRef)")
    .field_path(".cluster"))]
#[x_kube(validation = Rule::new("has(self.taskDefinition) != has(self.taskDefinitionRef)")
    .message("set exactly one of taskDefinition and taskDefinitionRef")
    .field_path(".taskDefinition"))]
#[x_kube(validation = Rule::new("!has(self.taskDefinition) || self.taskDefinition.startsWith('arn:')")
    .message("taskDefinition must be an ARN: EventBridge Scheduler's EcsParameters take TaskDefinitionArn (or use taskDefinitionRef)")
    .field_path(".taskDefinition"))]
#[x_kube(validation = Rule::new("!(has(self.launchType) && has(self.capacityProviderStrategy))")
    .message("set at most one of launchType and capacityProviderStrategy")
    .field_path(".launchType"))]
#[x_kube(validation = Rule::new("!has(self.count) || (self.count >= 1 && self.count <= 10)")
    .message("count is 1 to 10")
    .field_path(".count"))]
#[x_kube(validation = Rule::new("!has(self.startedBy) && !has(self.volumeConfigurations)")
    .message("EventBridge Scheduler's ECS target has no startedBy or volumeConfigurations")
    .field_path(".startedBy"))]
#[serde(rename_all = "camelCase")]
pub struct ScheduledTask {
    /// RunTask's input, member for member.
    #[serde(flatten)]
    pub run: RunTaskInput,
    /// An EcsCluster in the same namespace to run in; exclusive with cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<LocalObjectReference>,
    /// An EcsTaskDefinition in the same namespace whose current revision to run; exclusive with taskDefinition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_ref: Option<LocalObjectReference>,
}

/// Whether a schedule runs its task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum ScheduleState {
    /// Runs the task on schedule (the default).
    #[default]
    Enabled,
    /// Keeps the schedule and runs nothing.
    Disabled,
}

impl ScheduleState {
    /// EventBridge Scheduler's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Enabled => "ENABLED",
            ScheduleState::Disabled => "DISABLED",
        }
    }
}

/// EventBridge Scheduler's FlexibleTimeWindow.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FlexibleTimeWindow {
    /// OFF or FLEXIBLE.
    pub mode: FlexibleTimeWindowMode,
    /// With FLEXIBLE: the window in minutes, 1 to 1440.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1440))]
    pub maximum_window_in_minutes: Option<i32>,
}

/// OFF or FLEXIBLE.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum FlexibleTimeWindowMode {
    /// The task starts at the scheduled time.
    #[default]
    Off,
    /// The task starts within maximumWindowInMinutes of it.
    Flexible,
}

/// EventBridge Scheduler's RetryPolicy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// How long, in seconds, an unprocessed run is kept and retried: 60 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 86400))]
    pub maximum_event_age_in_seconds: Option<i32>,
    /// How many times a run is retried: 0 to 185.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 185))]
    pub maximum_retry_attempts: Option<i32>,
}

/// What the operator observed of the schedule.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskScheduleStatus {
    /// observedGeneration and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The region of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The schedule's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_arn: Option<String>,
    /// ENABLED or DISABLED, as EventBridge Scheduler reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The cluster its tasks run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// The task definition revision its tasks run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
}
