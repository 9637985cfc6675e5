//! Ownership tags: everything the operator creates carries them, and it never updates or
//! deletes an ECS resource without them unless the object adopts it.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};

use crate::api::ecs_types::Tag;
use crate::ecs::client::Ecs;
use crate::ecs::error::EcsError;

/// Tag naming the operator.
pub const MANAGED_BY: &str = "ecs.operator.dev/managed-by";
/// Tag naming the object's namespace.
pub const NAMESPACE: &str = "ecs.operator.dev/namespace";
/// Tag naming the object.
pub const NAME: &str = "ecs.operator.dev/name";
/// Tag holding the object's UID: the proof of ownership.
pub const UID: &str = "ecs.operator.dev/uid";
/// Value of [`MANAGED_BY`].
pub const OPERATOR: &str = "ecs-operator";

/// The ownership tags for an object.
pub fn tags_for<K: Resource>(obj: &K) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), OPERATOR.to_string()),
        (NAMESPACE.to_string(), obj.namespace().unwrap_or_default()),
        (NAME.to_string(), obj.name_any()),
        (UID.to_string(), obj.uid().unwrap_or_default()),
    ])
}

/// True when ECS tags say the resource belongs to this object.
pub fn owned_by<K: Resource>(tags: &BTreeMap<String, String>, obj: &K) -> bool {
    obj.uid().is_some_and(|uid| tags.get(UID) == Some(&uid))
}

/// True for tags the operator manages itself (never part of a user's spec.tags).
pub fn is_operator_tag(key: &str) -> bool {
    key.starts_with("ecs.operator.dev/")
}

/// ECS tags as a map (ECS allows one value per key).
pub fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

/// Tags ECS returned, as a map.
pub fn sdk_tag_map(tags: &[aws_sdk_ecs::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A map back to ECS tags.
pub fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// The tag changes that bring `observed` to the user's `desired` tags (when spec.tags is
/// set) plus the ownership tags; tags outside both are left alone when spec.tags is unset.
pub fn tag_changes(
    desired_user: Option<&BTreeMap<String, String>>,
    ownership: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> TagChanges {
    let mut wanted = ownership.clone();
    if let Some(user) = desired_user {
        wanted.extend(user.clone());
    }
    let add: BTreeMap<String, String> = wanted
        .iter()
        .filter(|(k, v)| observed.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove: Vec<String> = match desired_user {
        Some(_) => observed
            .keys()
            .filter(|k| !wanted.contains_key(*k) && !k.starts_with("aws:") && !is_operator_tag(k))
            .cloned()
            .collect(),
        None => vec![],
    };
    TagChanges { add, remove }
}

/// Tags to set and keys to remove.
#[derive(Debug, Default, PartialEq)]
pub struct TagChanges {
    /// TagResource these.
    pub add: BTreeMap<String, String>,
    /// UntagResource these.
    pub remove: Vec<String>,
}

impl TagChanges {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Applies tag changes to an ECS resource: one TagResource and/or one UntagResource.
async fn apply_tag_changes(ecs: &Ecs, arn: &str, changes: &TagChanges) -> Result<(), EcsError> {
    if !changes.add.is_empty() {
        let tags = changes
            .add
            .iter()
            .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
            .collect();
        ecs.call("TagResource", |c| {
            c.tag_resource().resource_arn(arn).set_tags(Some(tags)).send()
        })
        .await?;
    }
    if !changes.remove.is_empty() {
        let keys = changes.remove.clone();
        ecs.call("UntagResource", |c| {
            c.untag_resource().resource_arn(arn).set_tag_keys(Some(keys)).send()
        })
        .await?;
    }
    Ok(())
}

/// The tags a resource is created with: the user's (spec.tags) and the ownership tags,
/// which win.
pub fn creation_tags(user: Option<&[Tag]>, ownership: &BTreeMap<String, String>) -> Vec<Tag> {
    let mut tags = user.map(tag_map).unwrap_or_default();
    tags.extend(ownership.clone());
    tag_list(&tags)
}

/// Brings a resource's tags to the user's (when spec.tags is set) plus the ownership tags,
/// with at most one TagResource and one UntagResource. Returns the change, named for an
/// Event ("tags (team, env)"), or None when the tags were right.
pub async fn sync_tags(
    ecs: &Ecs,
    arn: &str,
    desired_user: Option<&BTreeMap<String, String>>,
    ownership: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> Result<Option<String>, EcsError> {
    let changes = tag_changes(desired_user, ownership, observed);
    if changes.is_empty() {
        return Ok(None);
    }
    apply_tag_changes(ecs, arn, &changes).await?;
    let mut keys: Vec<&str> = changes.add.keys().map(String::as_str).collect();
    keys.extend(changes.remove.iter().map(String::as_str));
    Ok(Some(format!("tags ({})", keys.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn unset_spec_tags_leave_other_tags_alone() {
        let owner = map(&[(UID, "u1")]);
        let observed = map(&[(UID, "u1"), ("team", "a")]);
        assert!(tag_changes(None, &owner, &observed).is_empty());
    }

    #[test]
    fn set_spec_tags_are_enforced_exactly() {
        let owner = map(&[(UID, "u1")]);
        let observed = map(&[
            (UID, "u1"),
            ("team", "a"),
            ("old", "x"),
            ("aws:cloudformation:stack-name", "s"),
        ]);
        let changes = tag_changes(Some(&map(&[("team", "b")])), &owner, &observed);
        assert_eq!(changes.add, map(&[("team", "b")]));
        assert_eq!(changes.remove, vec!["old".to_string()]);
    }
}
