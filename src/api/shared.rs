//! Types every kind shares: how the operator manages the ECS resource, references between
//! objects, and the conditions of status.

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
}

/// A reference to another object of this API in the same namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalObjectReference {
    /// Name of the object in the same namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}
