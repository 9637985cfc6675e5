//! Which capacity providers a cluster attaches: its spec's names and references resolved
//! against the EcsCapacityProviders the operator knows, before the cluster planner compares
//! them with ECS.
//!
//! - A provider an EcsCapacityProvider makes is waited for until ECS has it ACTIVE, whether
//!   the cluster names it or refers to it (an edit of the provider does not make the cluster
//!   wait again: its name cannot change).
//! - A Managed Instances provider of this cluster is ECS's to attach: ECS associates it with
//!   its cluster when it is created and refuses it in PutClusterCapacityProviders ("Cannot
//!   associate Managed Instances capacity provider to clusters using this API",
//!   terraform-provider-aws#44783), so it is `scoped`: never sent, never a difference.
//! - The cluster owns its list. Without `capacityProviders`, the providers ECS has stay,
//!   except those a removed reference had attached (status.attachedByReference).

use std::collections::BTreeSet;

use aws_sdk_ecs::types::Cluster;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ReflectHandle;
use kube::{Resource, ResourceExt};

use super::references::Waiting;
use super::{Context, Error, LabelSelector, changes, queued, selects};
use crate::api::ecs_types::CreateClusterInput;
use crate::api::{EcsCapacityProvider, EcsCluster, EcsClusterStatus};

/// The type ECS gives a Managed Instances provider.
pub const MANAGED_INSTANCES: &str = "MANAGED_INSTANCES";

/// The Fargate providers: every account has them, and they are never Managed Instances ones.
pub fn fargate(name: &str) -> bool {
    matches!(name, "FARGATE" | "FARGATE_SPOT")
}

/// A cluster's short name from its name or ARN.
pub fn short_name(cluster: &str) -> &str {
    cluster.rsplit('/').next().unwrap_or(cluster)
}

/// What a cluster needs to know of an EcsCapacityProvider.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownProvider {
    /// `namespace/name` of the object.
    pub object: String,
    /// Its ECS name.
    pub name: String,
    /// For a Managed Instances provider, the (short) name of its cluster.
    pub managed_instances_of: Option<String>,
    /// ECS has it ACTIVE, so a cluster may attach it or name it in a strategy.
    pub active: bool,
}

impl KnownProvider {
    /// What the shared cache says of a provider in `region`; None for one in another region,
    /// or one the operator has not made yet (it has no ECS name in status).
    pub fn from_status(provider: &EcsCapacityProvider, region: &str) -> Option<Self> {
        let status = provider.status.as_ref()?;
        if status.region.as_deref().is_some_and(|r| r != region) {
            return None;
        }
        let managed_instances = status.provider_type.as_deref() == Some(MANAGED_INSTANCES);
        Some(Self {
            object: object_name(provider),
            name: status.name.clone()?,
            managed_instances_of: managed_instances
                .then(|| status.cluster.as_deref().map(|c| short_name(c).to_string()))
                .flatten(),
            active: status.status.as_deref() == Some("ACTIVE"),
        })
    }

    /// What a provider's spec says it will be once made (for `diff`, which predicts).
    pub fn from_spec(provider: &EcsCapacityProvider, cluster: Option<String>) -> Self {
        Self {
            object: object_name(provider),
            name: provider.provider_name(),
            managed_instances_of: provider
                .spec
                .provider
                .managed_instances_provider
                .as_ref()
                .and(cluster.map(|c| short_name(&c).to_string())),
            active: true,
        }
    }
}

fn object_name(provider: &EcsCapacityProvider) -> String {
    format!("{}/{}", provider.namespace().unwrap_or_default(), provider.name_any())
}

/// The capacity providers a cluster's spec resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct Providers {
    /// The spec with capacityProviderRefs resolved into capacityProviders; both lists left
    /// unset (not touched) while a provider they need is not ACTIVE.
    pub spec: CreateClusterInput,
    /// The cluster's own Managed Instances providers: ECS attaches them itself.
    pub scoped: BTreeSet<String>,
    /// The providers attached because a reference names them (status keeps them, so that
    /// removing the reference detaches them).
    pub by_reference: Vec<String>,
    /// Why the attachments wait, if they do.
    pub waiting: Option<Waiting>,
}

impl Providers {
    /// The names ECS reports attached that neither the spec nor a reference supplies nor are
    /// known Managed Instances providers of the cluster: what a PutClusterCapacityProviders
    /// would send or detach on ECS's word alone. The executor asks ECS what they are first.
    /// Providers a reference attached before are known not to be: ECS took them in a Put.
    pub fn unexplained(&self, cluster: &EcsCluster, observed: &Cluster, previous: &EcsClusterStatus) -> Vec<String> {
        let written = cluster.spec.cluster.capacity_providers.clone().unwrap_or_default();
        let attached_before = &previous.attached_by_reference;
        observed
            .capacity_providers()
            .iter()
            .filter(|n| !fargate(n) && !written.contains(n) && !self.by_reference.contains(n))
            .filter(|n| !self.scoped.contains(*n) && !attached_before.contains(n))
            .cloned()
            .collect()
    }
}

/// Resolves `cluster`'s providers against `known` (the EcsCapacityProviders of its region)
/// and what ECS reports (`observed`), given the last pass's status. An error for a
/// reference that can never resolve (a Managed Instances provider of another cluster).
pub fn resolve(
    cluster: &EcsCluster,
    known: &[KnownProvider],
    observed: Option<&Cluster>,
    previous: &EcsClusterStatus,
) -> Result<Providers, Error> {
    let name = cluster.cluster_name();
    let namespace = cluster.namespace().unwrap_or_default();
    let mut scoped: BTreeSet<String> = previous.managed_instances_providers.iter().cloned().collect();
    scoped.extend(
        known
            .iter()
            .filter(|p| p.managed_instances_of.as_deref() == Some(name.as_str()))
            .map(|p| p.name.clone()),
    );
    let mut providers = Providers {
        spec: cluster.spec.cluster.clone(),
        scoped,
        by_reference: vec![],
        waiting: None,
    };
    let mut needed: Vec<&KnownProvider> = vec![];
    for reference in &cluster.spec.capacity_provider_refs {
        let object = format!("{namespace}/{}", reference.name);
        let Some(provider) = known.iter().find(|p| p.object == object) else {
            return Ok(waiting(
                providers,
                previous,
                format!("EcsCapacityProvider {} does not exist", reference.name),
            ));
        };
        match provider.managed_instances_of.as_deref() {
            Some(theirs) if theirs != name => {
                return Err(Error::Invalid(format!(
                    "EcsCapacityProvider {} is a Managed Instances provider of cluster {theirs}; it can only be used there",
                    reference.name
                )));
            }
            Some(_) => {}
            None if !providers.by_reference.contains(&provider.name) => {
                providers.by_reference.push(provider.name.clone())
            }
            None => {}
        }
        needed.push(provider);
    }
    // NB: a provider an EcsCapacityProvider makes, named rather than referred to, is waited
    // for just the same: ECS refuses one that does not exist or is not yet ACTIVE.
    let spec = &cluster.spec.cluster;
    let named = spec.capacity_providers.iter().flatten().cloned();
    let in_strategy = spec.default_capacity_provider_strategy.iter().flatten();
    for written in named.chain(in_strategy.map(|i| i.capacity_provider.clone())) {
        let same_name = known.iter().filter(|p| p.name == written);
        let chosen = same_name
            .clone()
            .find(|p| p.object.starts_with(&format!("{namespace}/")))
            .or_else(|| same_name.clone().next());
        needed.extend(chosen);
    }
    if let Some(provider) = needed.iter().find(|p| !p.active) {
        let message = format!("EcsCapacityProvider {} is not ACTIVE in ECS yet", provider.object);
        return Ok(waiting(providers, previous, message));
    }
    let Some(mut names) = listed_names(cluster, observed, previous) else {
        return Ok(providers);
    };
    for name in &providers.by_reference {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    providers.spec.capacity_providers = Some(names);
    Ok(providers)
}

/// The providers stay as ECS has them while one the spec needs is not ACTIVE yet.
fn waiting(mut providers: Providers, previous: &EcsClusterStatus, message: String) -> Providers {
    providers.spec.capacity_providers = None;
    providers.spec.default_capacity_provider_strategy = None;
    providers.by_reference = previous.attached_by_reference.clone();
    providers.waiting = Some(Waiting {
        reason: "WaitingForCapacityProvider",
        message,
    });
    providers
}

/// The providers the cluster attaches besides its references: capacityProviders; when
/// the spec names none but attaches some by reference (or did), those ECS has minus the
/// ones attached by a reference the last pass resolved. None when the spec leaves the list
/// alone.
fn listed_names(cluster: &EcsCluster, observed: Option<&Cluster>, previous: &EcsClusterStatus) -> Option<Vec<String>> {
    if let Some(names) = &cluster.spec.cluster.capacity_providers {
        return Some(names.clone());
    }
    if cluster.spec.capacity_provider_refs.is_empty() && previous.attached_by_reference.is_empty() {
        return None;
    }
    let attached = observed.map(Cluster::capacity_providers).unwrap_or_default();
    Some(
        attached
            .iter()
            .filter(|n| !previous.attached_by_reference.contains(n))
            .cloned()
            .collect(),
    )
}

/// The EcsCapacityProviders of `region` the shared cache knows.
pub fn known_providers(ctx: &Context, region: &str) -> Vec<KnownProvider> {
    ctx.caches
        .capacity_providers
        .all()
        .iter()
        .filter_map(|p| KnownProvider::from_status(p, region))
        .collect()
}

/// The EcsCluster controller, also woken when an EcsCapacityProvider it may name changes
/// what a cluster sees of it (made in ECS, ACTIVE, its cluster), so it is attached at once.
pub fn woken_by_providers(
    controller: Controller<EcsCluster>,
    providers: ReflectHandle<EcsCapacityProvider>,
    selector: Option<LabelSelector>,
) -> Controller<EcsCluster> {
    let clusters = controller.store();
    let seen_providers = providers.reader();
    controller.watches_shared_stream(changes(providers, what_clusters_see, seen_providers), move |provider| {
        let ecs_name = provider.status.as_ref().and_then(|s| s.name.clone());
        let object = provider.meta().name.clone();
        clusters
            .state()
            .iter()
            .filter(|c| {
                let by_ref = c.namespace() == provider.namespace()
                    && c.spec
                        .capacity_provider_refs
                        .iter()
                        .any(|r| Some(&r.name) == object.as_ref());
                let by_name = ecs_name.as_ref().is_some_and(|n| names_provider(c, n));
                by_ref || by_name
            })
            .filter(|c| selects(&selector, c.as_ref()))
            .map(|c| queued(c.as_ref()))
            .collect::<Vec<_>>()
    })
}

/// True when a cluster's spec names the provider `name` (in capacityProviders or its
/// default strategy).
pub fn names_provider(cluster: &EcsCluster, name: &str) -> bool {
    let spec = &cluster.spec.cluster;
    spec.capacity_providers.iter().flatten().any(|n| n == name)
        || spec
            .default_capacity_provider_strategy
            .iter()
            .flatten()
            .any(|i| i.capacity_provider == name)
}

/// What a cluster sees of a provider, as a hash: its ECS name, whether ECS has it ACTIVE,
/// its kind and cluster, and whether it is being deleted.
fn what_clusters_see(provider: &EcsCapacityProvider) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    let status = provider.status.clone().unwrap_or_default();
    (status.name, status.status, status.provider_type, status.cluster).hash(&mut hasher);
    provider.meta().deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn cluster(spec: Value) -> EcsCluster {
        serde_json::from_value(json!({
            "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster",
            "metadata": {"name": "main", "namespace": "shop"}, "spec": spec,
        }))
        .expect("cluster")
    }

    fn known(object: &str, name: &str, managed_instances_of: Option<&str>, active: bool) -> KnownProvider {
        KnownProvider {
            object: format!("shop/{object}"),
            name: name.into(),
            managed_instances_of: managed_instances_of.map(str::to_owned),
            active,
        }
    }

    fn observed(providers: &[&str]) -> Cluster {
        Cluster::builder()
            .set_capacity_providers(Some(providers.iter().map(|p| p.to_string()).collect()))
            .build()
    }

    #[test]
    fn references_resolve_to_ecs_names_and_managed_instances_ones_are_never_sent() {
        let main = cluster(json!({"capacityProviderRefs": [{"name": "spot"}, {"name": "mi"}]}));
        let providers = [
            known("spot", "shop-spot", None, true),
            known("mi", "shop-mi", Some("main"), true),
        ];
        let resolved =
            resolve(&main, &providers, Some(&observed(&["shop-mi"])), &Default::default()).expect("resolved");
        assert_eq!(
            resolved.spec.capacity_providers,
            Some(vec!["shop-mi".to_string(), "shop-spot".to_string()])
        );
        assert_eq!(resolved.scoped, BTreeSet::from(["shop-mi".to_string()]));
        assert_eq!(resolved.by_reference, vec!["shop-spot".to_string()]);
        assert!(resolved.waiting.is_none());
    }

    #[test]
    fn a_provider_not_active_yet_leaves_the_lists_alone_whether_named_or_referred_to() {
        let providers = [known("spot", "shop-spot", None, false)];
        for spec in [
            json!({"capacityProviderRefs": [{"name": "spot"}]}),
            json!({"capacityProviders": ["FARGATE", "shop-spot"]}),
            json!({"defaultCapacityProviderStrategy": [{"capacityProvider": "shop-spot", "weight": 1}]}),
        ] {
            let resolved = resolve(&cluster(spec.clone()), &providers, None, &Default::default()).expect("resolved");
            assert_eq!(resolved.spec.capacity_providers, None, "{spec}");
            assert_eq!(resolved.spec.default_capacity_provider_strategy, None, "{spec}");
            let waiting = resolved.waiting.expect("waiting");
            assert!(waiting.message.contains("shop/spot"), "{}", waiting.message);
        }
        let missing = resolve(
            &cluster(json!({"capacityProviderRefs": [{"name": "nope"}]})),
            &[],
            None,
            &Default::default(),
        );
        assert!(
            missing
                .expect("resolved")
                .waiting
                .expect("waiting")
                .message
                .contains("does not exist")
        );
    }

    #[test]
    fn a_removed_reference_detaches_its_provider_and_nothing_else() {
        let main = cluster(json!({}));
        let previous = EcsClusterStatus {
            attached_by_reference: vec!["shop-spot".into()],
            ..Default::default()
        };
        let ecs = observed(&["FARGATE", "shop-spot", "other-tool"]);
        let resolved = resolve(&main, &[], Some(&ecs), &previous).expect("resolved");
        assert_eq!(
            resolved.spec.capacity_providers,
            Some(vec!["FARGATE".to_string(), "other-tool".to_string()])
        );
        // other-tool is kept on ECS's word: the executor asks ECS what it is before a write
        assert_eq!(
            resolved.unexplained(&main, &ecs, &previous),
            vec!["other-tool".to_string()]
        );
        // without references now or before, the spec leaves the list alone
        let untouched = resolve(&main, &[], Some(&ecs), &Default::default()).expect("resolved");
        assert_eq!(untouched.spec.capacity_providers, None);
    }

    #[test]
    fn a_managed_instances_provider_of_another_cluster_cannot_be_referred_to() {
        let main = cluster(json!({"capacityProviderRefs": [{"name": "mi"}]}));
        let providers = [known("mi", "shop-mi", Some("staging"), true)];
        let err = resolve(&main, &providers, None, &Default::default()).expect_err("invalid");
        assert!(err.to_string().contains("cluster staging"), "{err}");
    }
}
