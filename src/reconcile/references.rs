//! References from one object to an EcsCluster and an EcsTaskDefinition in its namespace
//! (services, tasks, task schedules): resolved from the shared watch caches, never read
//! from the apiserver, and usable only once the referenced object is Ready for its current
//! generation; a change of what a referrer may use wakes it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::Stream;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use kube::{Resource, ResourceExt};

use super::{Context, Error, LabelSelector, Managed, changes, queued, selects};
use crate::api::{CommonStatus, EcsCluster, EcsTaskDefinition};

/// A kind that names a cluster and a task definition, directly or by reference.
pub trait Refers: Managed {
    /// spec.clusterRef.name.
    fn cluster_ref(&self) -> Option<&str>;
    /// spec.cluster: a name or ARN.
    fn cluster(&self) -> Option<&str>;
    /// spec.taskDefinitionRef.name.
    fn task_definition_ref(&self) -> Option<&str>;
    /// spec.taskDefinition: family, family:revision or ARN.
    fn task_definition(&self) -> Option<&str>;
}

/// What the spec resolves to in ECS terms.
pub struct Target {
    /// Cluster name or ARN.
    pub cluster: String,
    /// Task definition ARN, family or family:revision; None when the spec names none.
    pub task_definition: Option<String>,
}

/// Where a reference stands when it cannot be used yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// WaitingForCluster or WaitingForTaskDefinition.
    pub reason: &'static str,
    /// Which object, and why.
    pub message: String,
}

impl Waiting {
    /// The referrer's state meanwhile: in progress, looked at again by `recheck` at the
    /// latest (a change of the referenced object wakes it sooner).
    pub fn state(self, recheck: std::time::Duration) -> super::State {
        super::State::InProgress {
            reason: self.reason,
            message: self.message,
            recheck,
        }
    }
}

impl Target {
    /// The task definition a task or schedule runs (admission requires one).
    pub fn task_definition(&self) -> Result<String, Error> {
        self.task_definition
            .clone()
            .ok_or_else(|| Error::Invalid("set taskDefinition or taskDefinitionRef".into()))
    }
}

/// `controller`, also woken when a referenced EcsCluster or EcsTaskDefinition changes in a
/// way that matters to its referrers, so a new revision or a newly Ready cluster is acted
/// on at once.
pub fn woken_by_references<K: Refers>(
    controller: Controller<K>,
    clusters: ReflectHandle<EcsCluster>,
    task_definitions: ReflectHandle<EcsTaskDefinition>,
    selector: Option<LabelSelector>,
) -> Controller<K> {
    let by_cluster = controller.store();
    let by_task_definition = controller.store();
    let selector_too = selector.clone();
    controller
        .watches_shared_stream(reference_changes(clusters, cluster_arn), move |cluster| {
            referencing(&by_cluster, cluster.as_ref(), &selector, K::cluster_ref)
        })
        .watches_shared_stream(reference_changes(task_definitions, task_definition_arn), move |td| {
            referencing(&by_task_definition, td.as_ref(), &selector_too, K::task_definition_ref)
        })
}

/// Resolves cluster and task definition, from the spec or the referenced objects (as the
/// shared watch caches have them); Err(Waiting) while a referenced object is missing or not
/// Ready; Error::Invalid for one in another region.
pub fn resolve<K: Refers>(obj: &K, ctx: &Context, region: &str) -> Result<Result<Target, Waiting>, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let cluster = match (obj.cluster_ref(), obj.cluster()) {
        (Some(name), _) => {
            let found = ctx.caches.clusters.get(&namespace, name);
            match referenced(found.as_deref(), name, region, "WaitingForCluster", cluster_arn)? {
                Ok(arn) => arn,
                Err(waiting) => return Ok(Err(waiting)),
            }
        }
        (None, Some(cluster)) => cluster.to_string(),
        (None, None) => "default".to_string(),
    };
    let task_definition = match (obj.task_definition_ref(), obj.task_definition()) {
        (Some(name), _) => {
            let found = ctx.caches.task_definitions.get(&namespace, name);
            match referenced(
                found.as_deref(),
                name,
                region,
                "WaitingForTaskDefinition",
                task_definition_arn,
            )? {
                Ok(arn) => Some(arn),
                Err(waiting) => return Ok(Err(waiting)),
            }
        }
        (None, td) => td.map(str::to_owned),
    };
    Ok(Ok(Target {
        cluster,
        task_definition,
    }))
}

/// An ARN in status, and the region it lives in.
type ArnAndRegion = Option<(String, Option<String>)>;

fn cluster_arn(cluster: &EcsCluster) -> ArnAndRegion {
    let status = cluster.status.as_ref()?;
    Some((status.cluster_arn.clone()?, status.region.clone()))
}

fn task_definition_arn(td: &EcsTaskDefinition) -> ArnAndRegion {
    let status = td.status.as_ref()?;
    Some((status.task_definition_arn.clone()?, status.region.clone()))
}

/// Changes of referenced objects that a referrer acts on: which ARN it may use (if any) and
/// the start of a deletion. Not the rest of status: a cluster's task counts change with
/// every task its services start, and waking each of its services for that cost one
/// DescribeServices per service per change (14 per service while 1000 were created).
fn reference_changes<K: Managed>(
    objects: ReflectHandle<K>,
    arn_and_region: fn(&K) -> ArnAndRegion,
) -> impl Stream<Item = Arc<K>> + Send + 'static {
    let store = objects.reader();
    changes(
        objects,
        move |obj: &K| Some(reference_state(obj, arn_and_region)),
        store,
    )
}

/// What a referrer sees of an object it references, as a hash.
fn reference_state<K: Managed>(obj: &K, arn_and_region: fn(&K) -> ArnAndRegion) -> u64 {
    let mut hasher = DefaultHasher::new();
    (usable(obj, arn_and_region), obj.meta().deletion_timestamp.is_some()).hash(&mut hasher);
    hasher.finish()
}

/// The referrers of this operator's shard that refer to `referenced`.
fn referencing<R: Managed, K: Resource>(
    referrers: &Store<R>,
    referenced: &K,
    selector: &Option<LabelSelector>,
    reference: fn(&R) -> Option<&str>,
) -> Vec<ObjectRef<R>> {
    let (namespace, name) = (referenced.meta().namespace.clone(), referenced.meta().name.clone());
    referrers
        .state()
        .iter()
        .filter(|obj| obj.meta().namespace == namespace && reference(obj) == name.as_deref())
        .filter(|obj| selects(selector, obj.as_ref()))
        .map(|obj| queued(obj.as_ref()))
        .collect()
}

/// The ARN of a referenced object (`found`, None when it does not exist) once it is Ready
/// for its current generation (a task definition about to register a new revision must not
/// send a referrer to the old one), or why the referrer has to wait for it. It must live in
/// the referrer's region.
fn referenced<K: Managed>(
    found: Option<&K>,
    name: &str,
    region: &str,
    waiting: &'static str,
    arn_and_region: fn(&K) -> ArnAndRegion,
) -> Result<Result<String, Waiting>, Error> {
    let kind = K::kind(&());
    let Some(obj) = found else {
        return Ok(Err(Waiting {
            reason: waiting,
            message: format!("{kind} {name} does not exist"),
        }));
    };
    match usable(obj, arn_and_region) {
        Some((_, Some(theirs))) if theirs != region => Err(Error::Invalid(format!(
            "{kind} {name} is in region {theirs} and this object in {region}; an object can only use resources of its own region"
        ))),
        Some((arn, _)) => Ok(Ok(arn)),
        None => Ok(Err(Waiting {
            reason: waiting,
            message: format!("{kind} {name} is not Ready"),
        })),
    }
}

/// The ARN a referrer may use: only once the object is Ready for its current generation.
fn usable<K: Managed>(obj: &K, arn_and_region: fn(&K) -> ArnAndRegion) -> ArnAndRegion {
    let mut status = obj.status().cloned().unwrap_or_default();
    let common = K::common(&mut status);
    let current = common.observed_generation == obj.meta().generation && is_ready(common);
    arn_and_region(obj).filter(|_| current)
}

fn is_ready(common: &CommonStatus) -> bool {
    common
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ready_cluster() -> EcsCluster {
        serde_json::from_value(json!({
            "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster",
            "metadata": {"name": "prod", "namespace": "shop", "uid": "c-1", "generation": 1},
            "spec": {},
            "status": {
                "observedGeneration": 1, "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/prod",
                "region": "us-east-1", "runningTasksCount": 2, "activeServicesCount": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        }))
        .expect("cluster")
    }

    #[test]
    fn services_are_woken_by_what_they_use_of_a_cluster_not_by_its_counts() {
        let state = |c: &EcsCluster| reference_state(c, cluster_arn);
        let ready = ready_cluster();

        let mut counts = ready.clone();
        let status = counts.status.as_mut().expect("status");
        status.running_tasks_count = Some(40);
        status.active_services_count = Some(20);
        status.pending_tasks_count = Some(3);
        assert_eq!(state(&counts), state(&ready), "task and service counts");

        let mut new_spec = ready.clone();
        new_spec.metadata.generation = Some(2);
        assert_ne!(state(&new_spec), state(&ready), "not Ready for its new generation");

        let mut not_ready = ready.clone();
        not_ready.status.as_mut().expect("status").common.conditions[0].status = "False".into();
        assert_ne!(state(&not_ready), state(&ready), "Ready=False");

        let mut other_arn = ready.clone();
        other_arn.status.as_mut().expect("status").cluster_arn = Some("arn:aws:ecs:us-east-1:1:cluster/other".into());
        assert_ne!(state(&other_arn), state(&ready), "another ARN");

        let mut deleting = ready.clone();
        deleting.metadata.deletion_timestamp = serde_json::from_value(json!("2026-01-02T00:00:00Z")).expect("time");
        assert_ne!(state(&deleting), state(&ready), "deletion started");
    }
}
