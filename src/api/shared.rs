//! Types every kind shares: how the operator manages the ECS resource, references between
//! objects, and the conditions of status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What happens to the ECS resource when the Kubernetes object is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Delete the ECS resource (the default).
    #[default]
    Delete,
    /// Leave the ECS resource as it is and only forget it.
    Retain,
}

/// Whether the operator writes to ECS for an object.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManagementPolicy {
    /// Create, update and (per deletionPolicy) delete the ECS resource (the default).
    #[default]
    Manage,
    /// Only read the ECS resource and report where it differs from spec (condition Drifted
    /// and an Event); never write to ECS, never delete it.
    Observe,
}

/// Options every kind carries next to its ECS input.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagementOptions {
    /// AWS region of the ECS resource; defaults to the operator's region. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub region: Option<String>,
    /// Delete (default) removes the ECS resource with the object; Retain leaves it in ECS.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Take over an existing ECS resource of the same name that this operator did not create; it is then owned.
    #[serde(default)]
    pub adopt: bool,
    /// Manage (default) writes to ECS; Observe only reads and reports drift, for gradual adoption or for resources another tool owns.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
}

impl ManagementOptions {
    /// True under `managementPolicy: Observe`: no ECS write of any kind.
    pub fn observe_only(&self) -> bool {
        self.management_policy == ManagementPolicy::Observe
    }
}

/// The part of status every kind shares.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (always), Reconciling and Stalled (when true), Drifted (observe-only objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Observe-only objects: the members where ECS differs from the spec (see Drifted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// A reference to another object of this API in the same namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalObjectReference {
    /// Name of the object in the same namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}
