//! EcsCapacityProvider: an ECS capacity provider, on an Auto Scaling group or on ECS Managed
//! Instances.
//!
//! The spec is CreateCapacityProvider's input. UpdateCapacityProvider changes managed
//! scaling, termination protection and draining of an Auto Scaling group provider, and the
//! infrastructure role, launch template (but its capacity option type and FIPS mode), tag
//! propagation, optimisation and auto repair of a Managed Instances provider; everything else
//! is fixed at creation, so admission refuses a change of it.
//!
//! An Auto Scaling group provider is attached to clusters by the clusters themselves
//! (EcsCluster's capacityProviders or capacityProviderRefs). A Managed Instances provider
//! belongs to one cluster, named here (`cluster` or `clusterRef`): ECS associates it with
//! that cluster when it is created, and only deleting it takes it away.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::ecs_types::CreateCapacityProviderInput;
use super::shared::{CommonStatus, LocalObjectReference, ManagementOptions};

/// Desired state of an ECS capacity provider.
// NB: kube's printcolumn(...) entries repeat `type_` by design; clippy reads them as one list.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.operator.dev",
    version = "v1alpha1",
    kind = "EcsCapacityProvider",
    namespaced,
    status = "EcsCapacityProviderStatus",
    shortname = "ecscp",
    category = "ecs",
    doc = "An ECS capacity provider: an Auto Scaling group, or ECS Managed Instances in one cluster.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Status", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Type", type_ = "string", json_path = ".status.type"),
    printcolumn(name = "Clusters", type_ = "string", json_path = ".status.clusters"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.capacityProviderArn", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.name) || self.metadata.name.matches('^[a-zA-Z0-9_-]{1,255}$')")
        .message("metadata.name is not a valid capacity provider name (letters, digits, '-' and '_'); set spec.name")
        .field_path(".spec.name"),
    validation = Rule::new("!(has(self.spec.name) ? self.spec.name : self.metadata.name).lowerAscii().matches('^(aws|ecs|fargate)')")
        .message("a capacity provider name can't be prefixed with \"aws\", \"ecs\" or \"fargate\" (CreateCapacityProvider); set spec.name")
        .field_path(".spec.name"),
)]
#[x_kube(validation = Rule::new("!has(self.name) || self.name.matches('^[a-zA-Z0-9_-]{1,255}$')")
    .message("name is 1 to 255 letters, digits, '-' and '_'")
    .field_path(".name"))]
#[x_kube(validation = Rule::new("has(self.autoScalingGroupProvider) != has(self.managedInstancesProvider)")
    .message("set exactly one of autoScalingGroupProvider and managedInstancesProvider")
    .field_path(".autoScalingGroupProvider"))]
#[x_kube(validation = Rule::new("!(has(self.cluster) && has(self.clusterRef))")
    .message("set at most one of cluster and clusterRef")
    .field_path(".clusterRef"))]
#[x_kube(validation = Rule::new("!has(self.managedInstancesProvider) || has(self.cluster) || has(self.clusterRef)")
    .message("a Managed Instances provider belongs to one cluster: set cluster or clusterRef")
    .field_path(".cluster"))]
#[x_kube(validation = Rule::new("!has(self.autoScalingGroupProvider) || !(has(self.cluster) || has(self.clusterRef))")
    .message("an Auto Scaling group provider belongs to no one cluster: list it in the EcsCluster's capacityProviders or capacityProviderRefs instead")
    .field_path(".cluster"))]
#[x_kube(validation = Rule::new("!has(self.autoScalingGroupProvider) || !has(self.autoScalingGroupProvider.managedScaling) || !has(self.autoScalingGroupProvider.managedScaling.targetCapacity) || (self.autoScalingGroupProvider.managedScaling.targetCapacity >= 1 && self.autoScalingGroupProvider.managedScaling.targetCapacity <= 100)")
    .message("managedScaling.targetCapacity is 1 to 100 (percent)")
    .field_path(".autoScalingGroupProvider.managedScaling.targetCapacity"))]
#[x_kube(validation = Rule::new("!has(self.autoScalingGroupProvider) || !has(self.autoScalingGroupProvider.managedTerminationProtection) || self.autoScalingGroupProvider.managedTerminationProtection != 'ENABLED' || (has(self.autoScalingGroupProvider.managedScaling) && has(self.autoScalingGroupProvider.managedScaling.status) && self.autoScalingGroupProvider.managedScaling.status == 'ENABLED')")
    .message("managed termination protection needs managed scaling: set managedScaling.status ENABLED")
    .field_path(".autoScalingGroupProvider.managedTerminationProtection"))]
#[x_kube(validation = Rule::new("(has(self.name) ? self.name : '') == (has(oldSelf.name) ? oldSelf.name : '')")
    .message("name is immutable: ECS cannot rename a capacity provider; create a new EcsCapacityProvider instead")
    .field_path(".name"))]
#[x_kube(validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)")
    .message("region is immutable: create a new EcsCapacityProvider in the other region instead")
    .field_path(".region"))]
#[x_kube(validation = Rule::new("(has(self.cluster) ? self.cluster : '') == (has(oldSelf.cluster) ? oldSelf.cluster : '') && (has(self.clusterRef) ? self.clusterRef.name : '') == (has(oldSelf.clusterRef) ? oldSelf.clusterRef.name : '')")
    .message("cluster and clusterRef are immutable: a Managed Instances provider stays in the cluster it was created in")
    .field_path(".cluster"))]
#[x_kube(validation = Rule::new("has(self.autoScalingGroupProvider) == has(oldSelf.autoScalingGroupProvider)")
    .message("the kind of provider is immutable: create a new EcsCapacityProvider instead")
    .field_path(".autoScalingGroupProvider"))]
#[x_kube(validation = Rule::new("!has(self.autoScalingGroupProvider) || !has(oldSelf.autoScalingGroupProvider) || self.autoScalingGroupProvider.autoScalingGroupArn == oldSelf.autoScalingGroupProvider.autoScalingGroupArn")
    .message("autoScalingGroupArn is immutable: UpdateCapacityProvider cannot move a provider to another Auto Scaling group")
    .field_path(".autoScalingGroupProvider.autoScalingGroupArn"))]
#[x_kube(validation = Rule::new("!has(self.managedInstancesProvider) || !has(oldSelf.managedInstancesProvider) || ((has(self.managedInstancesProvider.instanceLaunchTemplate.capacityOptionType) ? self.managedInstancesProvider.instanceLaunchTemplate.capacityOptionType : '') == (has(oldSelf.managedInstancesProvider.instanceLaunchTemplate.capacityOptionType) ? oldSelf.managedInstancesProvider.instanceLaunchTemplate.capacityOptionType : '') && (has(self.managedInstancesProvider.instanceLaunchTemplate.fipsEnabled) ? self.managedInstancesProvider.instanceLaunchTemplate.fipsEnabled : false) == (has(oldSelf.managedInstancesProvider.instanceLaunchTemplate.fipsEnabled) ? oldSelf.managedInstancesProvider.instanceLaunchTemplate.fipsEnabled : false))")
    .message("capacityOptionType and fipsEnabled are immutable: UpdateCapacityProvider's launch template has neither; create a new EcsCapacityProvider instead")
    .field_path(".managedInstancesProvider.instanceLaunchTemplate"))]
#[serde(rename_all = "camelCase")]
pub struct EcsCapacityProviderSpec {
    /// CreateCapacityProvider's input, member for member.
    #[serde(flatten)]
    pub provider: CreateCapacityProviderInput,
    /// The EcsCluster (same namespace) a Managed Instances provider belongs to; exclusive with cluster. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<LocalObjectReference>,
    /// Region, deletion policy, adoption and management policy.
    #[serde(flatten)]
    pub options: ManagementOptions,
}

/// What the operator observed of the capacity provider in ECS.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsCapacityProviderStatus {
    /// observedGeneration and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Region the capacity provider lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ARN of the capacity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_arn: Option<String>,
    /// Name of the capacity provider in ECS: what clusters and strategies name it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// EC2_AUTOSCALING or MANAGED_INSTANCES.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub provider_type: Option<String>,
    /// ECS status: PROVISIONING, ACTIVE, DEPROVISIONING or INACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The last create, update or delete: e.g. UPDATE_IN_PROGRESS, UPDATE_COMPLETE, UPDATE_FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<String>,
    /// ECS's reason for updateStatus, when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status_reason: Option<String>,
    /// A Managed Instances provider's cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The ECS clusters using it, as the EcsClusters of this operator report them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
}
