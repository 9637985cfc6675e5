//! The Kubernetes API of ecs-operator: group `ecs.operator.dev`, version `v1alpha1`.
//!
//! Each spec embeds, flattened, the ECS input it drives (generated in [`ecs_types`]), so a
//! document for `aws ecs ... --cli-input-json` pastes in unchanged; the few fields that only
//! make sense in Kubernetes (references, region, deletion policy) sit beside it.

pub mod capacity_provider;
pub mod cluster;
pub mod ecs_types;
pub mod schedule;
pub mod service;
mod shared;
pub mod task;
pub mod task_definition;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use capacity_provider::{EcsCapacityProvider, EcsCapacityProviderSpec, EcsCapacityProviderStatus};
pub use cluster::{EcsCluster, EcsClusterSpec, EcsClusterStatus};
pub use schedule::{EcsTaskSchedule, EcsTaskScheduleSpec, EcsTaskScheduleStatus};
pub use service::{EcsService, EcsServiceSpec, EcsServiceStatus};
pub use shared::{CommonStatus, DeletionPolicy, LocalObjectReference, ManagementOptions, ManagementPolicy};
pub use task::{EcsTask, EcsTaskSpec, EcsTaskStatus};
pub use task_definition::{EcsTaskDefinition, EcsTaskDefinitionSpec, EcsTaskDefinitionStatus};

/// The API group of every kind.
pub const GROUP: &str = "ecs.operator.dev";

/// Every CRD this operator serves, in a stable order (the file names in crds/ follow it).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        EcsCluster::crd(),
        EcsTaskDefinition::crd(),
        EcsService::crd(),
        EcsTask::crd(),
        EcsTaskSchedule::crd(),
        EcsCapacityProvider::crd(),
    ]
}

/// The schema of a free-form JSON member (botocore's "document" type): any value, kept as
/// written rather than pruned by the apiserver.
pub fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-preserve-unknown-fields": true})
}

/// The YAML document `ecs-operator crd` prints for one CRD, as committed in crds/.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(crd)
}

/// The file in crds/ that holds a CRD: `<group>_<plural>.yaml`, as kubebuilder names them.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}
