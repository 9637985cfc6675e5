//! EcsService: an ECS service.
//!
//! The spec is CreateService's input plus references to an EcsCluster and an
//! EcsTaskDefinition in the same namespace. Most fields change in place through
//! UpdateService; serviceName, cluster, launchType, schedulingStrategy and role cannot, so
//! changing them is rejected at admission unless `allowReplacement` is true.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::ecs_types::CreateServiceInput;
use super::shared::{CommonStatus, LocalObjectReference, ManagementOptions};

/// Desired state of an ECS service.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.operator.dev",
    version = "v1alpha1",
    kind = "EcsService",
    namespaced,
    status = "EcsServiceStatus",
    shortname = "ecssvc",
    shortname = "ecsservice",
    category = "ecs",
    doc = "An ECS service.",
    scale(spec_replicas_path = ".spec.desiredCount", status_replicas_path = ".status.runningCount"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Status", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredCount"),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.runningCount"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".status.serviceDeployment.lifecycleStage", priority = "1"),
    printcolumn(name = "Task Definition", type_ = "string", json_path = ".status.taskDefinitionArn", priority = "1"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.serviceArn", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.serviceName) || self.metadata.name.matches('^[a-zA-Z0-9_-]{1,255}$')")
        .message("metadata.name is not a valid ECS service name (letters, digits, '-' and '_'); set spec.serviceName")
        .field_path(".spec.serviceName"),
)]
#[x_kube(validation = Rule::new("!(has(self.cluster) && has(self.clusterRef))")
    .message("set at most one of cluster and clusterRef")
    .field_path(".clusterRef"))]
#[x_kube(validation = Rule::new("(has(self.deploymentController) && self.deploymentController.type == 'EXTERNAL') || has(self.taskDefinition) != has(self.taskDefinitionRef)")
    .message("set exactly one of taskDefinition and taskDefinitionRef")
    .field_path(".taskDefinition"))]
#[x_kube(validation = Rule::new("!(has(self.deploymentController) && self.deploymentController.type == 'EXTERNAL') || (!has(self.taskDefinition) && !has(self.taskDefinitionRef))")
    .message("an EXTERNAL service has no task definition (ECS: TaskDefinition must be blank); its task sets name theirs")
    .field_path(".taskDefinition"))]
#[x_kube(validation = Rule::new("self.allowReplacement || (has(self.serviceName) == has(oldSelf.serviceName) && (!has(self.serviceName) || self.serviceName == oldSelf.serviceName))")
    .message("serviceName cannot change in place: set allowReplacement: true to delete and recreate the service, or create a new EcsService")
    .field_path(".serviceName"))]
#[x_kube(validation = Rule::new("self.allowReplacement || (has(self.cluster) == has(oldSelf.cluster) && (!has(self.cluster) || self.cluster == oldSelf.cluster) && has(self.clusterRef) == has(oldSelf.clusterRef) && (!has(self.clusterRef) || self.clusterRef == oldSelf.clusterRef))")
    .message("cluster and clusterRef cannot change in place: set allowReplacement: true to recreate the service in the other cluster")
    .field_path(".cluster"))]
#[x_kube(validation = Rule::new("self.allowReplacement || !has(self.launchType) || !has(oldSelf.launchType) || self.launchType == oldSelf.launchType")
    .message("launchType cannot change from one launch type to another in place: move through capacityProviderStrategy, or set allowReplacement: true to recreate the service")
    .field_path(".launchType"))]
#[x_kube(validation = Rule::new("self.allowReplacement || (has(self.schedulingStrategy) == has(oldSelf.schedulingStrategy) && (!has(self.schedulingStrategy) || self.schedulingStrategy == oldSelf.schedulingStrategy))")
    .message("schedulingStrategy cannot change in place: set allowReplacement: true to recreate the service")
    .field_path(".schedulingStrategy"))]
#[x_kube(validation = Rule::new("self.allowReplacement || (has(self.role) == has(oldSelf.role) && (!has(self.role) || self.role == oldSelf.role))")
    .message("role cannot change in place: set allowReplacement: true to recreate the service")
    .field_path(".role"))]
#[x_kube(validation = Rule::new("!has(self.deploymentConfiguration) || !has(self.deploymentConfiguration.lifecycleHooks) || self.deploymentConfiguration.lifecycleHooks.all(h, !has(h.targetType) || h.targetType != 'PAUSE' || !has(h.lifecycleStages) || !h.lifecycleStages.exists(s, s == 'TEST_TRAFFIC_SHIFT' || s == 'PRODUCTION_TRAFFIC_SHIFT'))")
    .message("PAUSE hooks cannot be configured at TEST_TRAFFIC_SHIFT or PRODUCTION_TRAFFIC_SHIFT (ECS takes only AWS_LAMBDA hooks there)")
    .field_path(".deploymentConfiguration.lifecycleHooks"))]
#[x_kube(validation = Rule::new("!has(self.deploymentConfiguration) || !has(self.deploymentConfiguration.lifecycleHooks) || self.deploymentConfiguration.lifecycleHooks.all(h, (has(h.targetType) && h.targetType == 'PAUSE') || has(h.hookTargetArn))")
    .message("an AWS_LAMBDA lifecycle hook (the default targetType) needs hookTargetArn")
    .field_path(".deploymentConfiguration.lifecycleHooks"))]
#[x_kube(validation = Rule::new("!has(self.deploymentConfiguration) || !has(self.deploymentConfiguration.lifecycleHooks) || self.deploymentConfiguration.lifecycleHooks.all(h, has(h.lifecycleStages) && size(h.lifecycleStages) > 0)")
    .message("a lifecycle hook needs lifecycleStages")
    .field_path(".deploymentConfiguration.lifecycleHooks"))]
#[x_kube(validation = Rule::new("!has(self.deploymentConfiguration) || !has(self.deploymentConfiguration.strategy) || self.deploymentConfiguration.strategy != 'BLUE_GREEN' || has(self.deploymentConfiguration.bakeTimeInMinutes)")
    .message("the BLUE_GREEN strategy needs bakeTimeInMinutes")
    .field_path(".deploymentConfiguration.bakeTimeInMinutes"))]
#[x_kube(validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)")
    .message("region is immutable: create a new EcsService in the other region instead")
    .field_path(".region"))]
#[serde(rename_all = "camelCase")]
pub struct EcsServiceSpec {
    /// CreateService's input, member for member (without clientToken, which the operator
    /// derives from the object's UID).
    #[serde(flatten)]
    pub service: CreateServiceInput,
    /// An EcsCluster in the same namespace to run in; exclusive with cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<LocalObjectReference>,
    /// An EcsTaskDefinition in the same namespace whose current revision to run; exclusive with taskDefinition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_ref: Option<LocalObjectReference>,
    /// When true, a change ECS cannot apply in place (serviceName, cluster, launchType, schedulingStrategy, role) deletes and recreates the service.
    #[serde(default)]
    pub allow_replacement: bool,
    /// Any change of this value starts exactly one new deployment (forceNewDeployment), like `kubectl rollout restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeploy_trigger: Option<String>,
    /// Region, deletion policy and adoption.
    #[serde(flatten)]
    pub options: ManagementOptions,
}

/// What the operator observed of the service in ECS.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsServiceStatus {
    /// observedGeneration and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Region the service lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ARN of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_arn: Option<String>,
    /// ARN of the cluster the service runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// Task definition the service is asked to run (resolved to an ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// ECS status of the service (ACTIVE, DRAINING, INACTIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Tasks the service should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<i32>,
    /// Tasks RUNNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_count: Option<i32>,
    /// Tasks PENDING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_count: Option<i32>,
    /// The service's deployments, PRIMARY first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<DeploymentSummary>,
    /// The latest events ECS reported for the service, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ServiceEventSummary>,
    /// The deployment the operator started for the current spec, and how it went; a FAILED
    /// one is not retried until the spec or the task definition changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Box<RolloutRecord>>,
    /// Under the CODE_DEPLOY or EXTERNAL deployment controller: the service's task sets,
    /// PRIMARY first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_sets: Vec<TaskSetSummary>,
    /// The service deployment in flight, or the last one (BLUE_GREEN, CANARY and LINEAR
    /// strategies): its lifecycle stage, hooks, rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_deployment: Option<Box<ServiceDeploymentSummary>>,
    /// The service deployment before that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_service_deployment: Option<Box<ServiceDeploymentSummary>>,
    /// Steering annotations already acted on (`approve=<deployment id>`, ...): each is
    /// acted on once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steered: Vec<String>,
    /// Fields the spec sets differently from ECS that the CODE_DEPLOY or EXTERNAL deployment
    /// controller owns: UpdateService cannot change them, so they reach ECS only through
    /// that controller's next deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_to_deployment_controller: Vec<String>,
    /// The redeployTrigger value the last forced deployment answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_redeploy_trigger: Option<String>,
}

/// One ECS deployment of the service.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSummary {
    /// Deployment ID.
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// IN_PROGRESS, COMPLETED or FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    /// Why the rollout is in its state, as ECS says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state_reason: Option<String>,
    /// Task definition ARN of this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// Tasks this deployment should run.
    #[serde(default)]
    pub desired_count: i32,
    /// Tasks of this deployment RUNNING.
    #[serde(default)]
    pub running_count: i32,
    /// Tasks of this deployment PENDING.
    #[serde(default)]
    pub pending_count: i32,
    /// Tasks of this deployment that failed to start.
    #[serde(default)]
    pub failed_tasks: i32,
}

/// One event ECS reported for the service.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEventSummary {
    /// When ECS reported it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// What ECS said.
    pub message: String,
}

/// The deployment the operator started, and what became of it.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// ECS's deployment ID.
    pub deployment_id: String,
    /// The metadata.generation it deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The task definition it deploys, as the spec resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// IN_PROGRESS, COMPLETED or FAILED, as last seen.
    pub state: String,
    /// Why it failed, in ECS's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The service deployment (ECS's ARN) that the deployment belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_deployment_arn: Option<String>,
}

/// One ECS service deployment (DescribeServiceDeployments).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentSummary {
    /// Its ARN.
    pub arn: String,
    /// The last part of the ARN: what the steering annotations and `ecs-operator rollout` name.
    pub id: String,
    /// PENDING, IN_PROGRESS, SUCCESSFUL, STOPPED, STOP_REQUESTED, ROLLBACK_REQUESTED,
    /// ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL or ROLLBACK_FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why it is in that status, in ECS's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The lifecycle stage it is in (RECONCILE_SERVICE ... BAKE_TIME, CLEAN_UP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_stage: Option<String>,
    /// The deployment strategy: ROLLING, BLUE_GREEN, LINEAR or CANARY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The service revisions it moves away from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_service_revisions: Vec<String>,
    /// The service revision it deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_service_revision: Option<String>,
    /// Why and to what it rolled back, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// The deployment circuit breaker: TRIGGERED, MONITORING, MONITORING_COMPLETE or DISABLED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<String>,
    /// The CloudWatch alarms watching it, the same states, and those triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<String>,
    /// The lifecycle hook running or waiting, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookSummary>,
}

/// A lifecycle hook of a service deployment.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HookSummary {
    /// What ContinueServiceDeployment names.
    pub hook_id: String,
    /// AWS_LAMBDA or PAUSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// AWAITING_ACTION, IN_PROGRESS, SUCCEEDED, FAILED or TIMED_OUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When ECS takes the timeout action (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// CONTINUE or ROLLBACK, taken at expiresAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_action: Option<String>,
}

/// One task set of a CODE_DEPLOY or EXTERNAL service.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskSetSummary {
    /// Task set ID.
    pub id: String,
    /// PRIMARY, ACTIVE or DRAINING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// STEADY_STATE or STABILIZING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability_status: Option<String>,
    /// Task definition ARN of this task set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// Tasks this task set should run.
    #[serde(default)]
    pub computed_desired_count: i32,
    /// Tasks of this task set RUNNING.
    #[serde(default)]
    pub running_count: i32,
}
