//! EcsCluster: an ECS cluster.
//!
//! The spec is CreateCluster's input. Settings, configuration and serviceConnectDefaults
//! change in place through UpdateCluster; capacityProviders and
//! defaultCapacityProviderStrategy through PutClusterCapacityProviders; the name never.
//! capacityProviderRefs names EcsCapacityProvider objects to attach by their ECS names.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::ecs_types::CreateClusterInput;
use super::shared::{CommonStatus, LocalObjectReference, ManagementOptions};

/// Desired state of an ECS cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.operator.dev",
    version = "v1alpha1",
    kind = "EcsCluster",
    namespaced,
    status = "EcsClusterStatus",
    shortname = "ecscl",
    shortname = "ecscluster",
    category = "ecs",
    doc = "An ECS cluster.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Status", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Services", type_ = "integer", json_path = ".status.activeServicesCount"),
    printcolumn(name = "Tasks", type_ = "integer", json_path = ".status.runningTasksCount"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.clusterArn", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.clusterName) || self.metadata.name.matches('^[a-zA-Z0-9_-]{1,255}$')")
        .message("metadata.name is not a valid ECS cluster name (letters, digits, '-' and '_'); set spec.clusterName")
        .field_path(".spec.clusterName"),
)]
#[x_kube(validation = Rule::new("has(self.clusterName) == has(oldSelf.clusterName) && (!has(self.clusterName) || self.clusterName == oldSelf.clusterName)")
    .message("clusterName is immutable: ECS cannot rename a cluster; create a new EcsCluster instead")
    .field_path(".clusterName"))]
#[x_kube(validation = Rule::new("!has(self.settings) || self.settings.all(s, s.name != 'containerInsights' || (has(s.value) && s.value in ['enabled', 'enhanced', 'disabled']))")
    .message("containerInsights must be enabled, enhanced or disabled")
    .field_path(".settings"))]
#[x_kube(validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)")
    .message("region is immutable: create a new EcsCluster in the other region instead")
    .field_path(".region"))]
#[serde(rename_all = "camelCase")]
pub struct EcsClusterSpec {
    /// CreateCluster's input, member for member.
    #[serde(flatten)]
    pub cluster: CreateClusterInput,
    /// EcsCapacityProviders (same namespace) to attach, besides the names in capacityProviders: each is waited for until Ready and attached by its ECS name. A Managed Instances provider is attached by ECS itself to the cluster it names; listing it here makes the cluster wait for it (e.g. before a default strategy uses it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub capacity_provider_refs: Vec<LocalObjectReference>,
    /// Region, deletion policy and adoption.
    #[serde(flatten)]
    pub options: ManagementOptions,
}

/// What the operator observed of the cluster in ECS.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsClusterStatus {
    /// observedGeneration and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Region the cluster lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ARN of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// Name of the cluster in ECS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// ECS status of the cluster (ACTIVE, PROVISIONING, DEPROVISIONING, FAILED, INACTIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Services in the cluster that are ACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_services_count: Option<i32>,
    /// Tasks in the cluster that are RUNNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_tasks_count: Option<i32>,
    /// Tasks in the cluster that are PENDING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_tasks_count: Option<i32>,
    /// Container instances registered to the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_container_instances_count: Option<i32>,
    /// The Service Connect default namespace the spec names, and the Cloud Map namespace ARN
    /// ECS resolved it to (ECS reports only the ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_namespace: Option<NamespaceRecord>,
    /// ECS's status of the capacity provider attachments: UPDATE_IN_PROGRESS,
    /// UPDATE_COMPLETE or UPDATE_FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments_status: Option<String>,
    /// The capacity providers ECS reports associated with the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_providers: Vec<String>,
    /// The providers attached because capacityProviderRefs names them: removing a reference detaches its provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached_by_reference: Vec<String>,
    /// Managed Instances providers of other tools that ECS attached to the cluster itself, learned from ECS: never sent, never detached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_instances_providers: Vec<String>,
}

/// A Cloud Map namespace given by name, and the ARN ECS resolved it to.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceRecord {
    /// The name in spec.serviceConnectDefaults.namespace.
    pub name: String,
    /// The namespace's ARN, as ECS reported it.
    pub arn: String,
}
