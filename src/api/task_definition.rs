//! EcsTaskDefinition: a task definition family whose revisions this object registers.
//!
//! The spec is RegisterTaskDefinition's input. ECS task definitions are immutable: a change
//! of content registers a new revision of the family; only tags change in place.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::ecs_types::RegisterTaskDefinitionInput;
use super::shared::{CommonStatus, ManagementOptions};

/// Desired state of an ECS task definition family.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.operator.dev",
    version = "v1alpha1",
    kind = "EcsTaskDefinition",
    namespaced,
    status = "EcsTaskDefinitionStatus",
    shortname = "ecstd",
    shortname = "ecstaskdef",
    category = "ecs",
    doc = "An ECS task definition family; each change of content registers a new revision.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Status", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".status.revision"),
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.taskDefinitionArn", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.family) || self.metadata.name.matches('^[a-zA-Z0-9_-]{1,255}$')")
        .message("metadata.name is not a valid ECS family name (letters, digits, '-' and '_'); set spec.family")
        .field_path(".spec.family"),
)]
#[x_kube(validation = Rule::new("has(self.family) == has(oldSelf.family) && (!has(self.family) || self.family == oldSelf.family)")
    .message("family is immutable: ECS cannot rename a task definition family; create a new EcsTaskDefinition instead")
    .field_path(".family"))]
#[x_kube(validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)")
    .message("region is immutable: create a new EcsTaskDefinition in the other region instead")
    .field_path(".region"))]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskDefinitionSpec {
    /// RegisterTaskDefinition's input, member for member.
    #[serde(flatten)]
    pub task_definition: RegisterTaskDefinitionInput,
    /// How many revisions this object registered to keep ACTIVE, the current one included; older ones are retired (see retiredRevisions). A revision a service uses or names is never retired.
    #[serde(default = "default_revision_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub revision_history_limit: i32,
    /// What retiring a revision means, beyond revisionHistoryLimit and when the object is deleted: Deregister (default) makes it INACTIVE, which running services and tasks keep using; Delete also deletes it with DeleteTaskDefinitions, which is permanent.
    #[serde(default)]
    pub retired_revisions: RetiredRevisions,
    /// Region, deletion policy and adoption.
    #[serde(flatten)]
    pub options: ManagementOptions,
}

fn default_revision_history_limit() -> i32 {
    3
}

/// What retiring a revision does in ECS.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetiredRevisions {
    /// DeregisterTaskDefinition: the revision becomes INACTIVE; services and tasks that run
    /// it go on running it, and it can still be described.
    #[default]
    Deregister,
    /// DeregisterTaskDefinition, then DeleteTaskDefinitions: gone for good; "you can't update
    /// an existing service to reference" it any more.
    Delete,
}

/// What the operator observed of the family in ECS.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskDefinitionStatus {
    /// observedGeneration and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Region the family lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ARN of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// Family of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Revision number of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i32>,
    /// ECS status of the current revision (ACTIVE, INACTIVE, DELETE_IN_PROGRESS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Revisions this object registered that are still ACTIVE, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_revisions: Vec<i32>,
}
