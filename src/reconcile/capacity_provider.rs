//! EcsCapacityProvider against ECS: the executor of [`crate::plan::capacity_provider`].
//!
//! Observed with DescribeCapacityProviders (tags included; 10 providers per call at resync,
//! a Managed Instances provider asked for within its cluster), the planner decides, and this
//! file performs it: CreateCapacityProvider, UpdateCapacityProvider, tags through
//! Tag/UntagResource. A Managed Instances provider waits for its cluster to exist in ECS.
//! Deletion waits while an EcsCluster still lists the provider, or ECS still associates it
//! with a cluster or a service's strategy, then waits for ECS to finish deprovisioning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_ecs::operation::create_capacity_provider::CreateCapacityProviderInput as SdkCreateInput;
use aws_sdk_ecs::operation::update_capacity_provider::UpdateCapacityProviderInput as SdkUpdateInput;
use aws_sdk_ecs::types::{CapacityProvider, CapacityProviderField};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ReflectHandle;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::attachments::{self, names_provider};
use super::observations::{Observations, observe_in_batches};
use super::references::Waiting;
use super::{Context, Error, LabelSelector, Managed, Note, Outcome, changes, claim, not_in_ecs, queued, selects};
use crate::api::ecs_types::CreateCapacityProviderInput;
use crate::api::{
    CommonStatus, DeletionPolicy, EcsCapacityProvider, EcsCapacityProviderStatus, EcsCluster, ManagementOptions,
};
use crate::ecs::client::{Ecs, Found};
use crate::ecs::error::{EcsError, ErrorClass};
use crate::ecs::ownership::{self, creation_tags, owned_by, sdk_tag_map, sync_tags, tag_changes, tag_map};
use crate::ecs::wire::to_sdk;
use crate::plan::capacity_provider::{self as planner, Plan};
use crate::plan::{State, Write, tag_writes};

/// DescribeCapacityProviders answers at most 10 providers per page.
const DESCRIBE_BATCH: usize = 10;

/// What ECS says when DeleteCapacityProvider meets a provider a cluster or a service's
/// strategy still uses ("Only capacity providers that aren't associated with a cluster can
/// be deleted", DeleteCapacityProvider).
const IN_USE: &[&str] = &["in use", "associated with"];

/// The EcsCapacityProvider controller, also woken when an EcsCluster changes what it tells a
/// provider: that its cluster exists (clusterRef), or which providers ECS attached to it.
pub fn controller(
    controller: Controller<EcsCapacityProvider>,
    clusters: ReflectHandle<EcsCluster>,
    selector: Option<LabelSelector>,
) -> Controller<EcsCapacityProvider> {
    let providers = controller.store();
    let seen_clusters = clusters.reader();
    controller.watches_shared_stream(changes(clusters, what_providers_see, seen_clusters), move |cluster| {
        let status = cluster.status.clone().unwrap_or_default();
        let ecs_name = status.cluster_name.clone().unwrap_or_else(|| cluster.cluster_name());
        providers
            .state()
            .iter()
            .filter(|p| {
                let name = p.provider_name();
                let same_namespace = p.namespace() == cluster.namespace();
                let in_it = p.spec.cluster_ref.as_ref().map(|r| r.name.as_str()) == cluster.meta().name.as_deref();
                let referred = cluster
                    .spec
                    .capacity_provider_refs
                    .iter()
                    .any(|r| r.name == p.name_any());
                // NB: one the cluster let go of is woken too, to say so and to finish deleting.
                let reported = p.status.as_ref().is_some_and(|s| s.clusters.contains(&ecs_name));
                (same_namespace && (in_it || referred))
                    || reported
                    || status.capacity_providers.contains(&name)
                    || names_provider(cluster.as_ref(), &name)
            })
            .filter(|p| selects(&selector, p.as_ref()))
            .map(|p| queued(p.as_ref()))
            .collect::<Vec<_>>()
    })
}

/// What a provider sees of a cluster, as a hash: whether it exists in ECS, which providers ECS
/// attached, what its spec names or refers to and whether it is being deleted.
fn what_providers_see(cluster: &EcsCluster) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    let status = cluster.status.clone().unwrap_or_default();
    (status.cluster_arn, status.status, status.capacity_providers).hash(&mut hasher);
    let spec = &cluster.spec;
    let strategy: Vec<&str> = spec
        .cluster
        .default_capacity_provider_strategy
        .iter()
        .flatten()
        .map(|i| i.capacity_provider.as_str())
        .collect();
    (&spec.cluster.capacity_providers, strategy).hash(&mut hasher);
    let refs: Vec<&str> = spec.capacity_provider_refs.iter().map(|r| r.name.as_str()).collect();
    (refs, cluster.meta().deletion_timestamp.is_some()).hash(&mut hasher);
    Some(hasher.finish())
}

impl EcsCapacityProvider {
    /// The provider's ECS name: spec.name, else metadata.name.
    pub fn provider_name(&self) -> String {
        self.spec.provider.name.clone().unwrap_or_else(|| self.name_any())
    }

    /// True for a Managed Instances provider.
    fn managed_instances(&self) -> bool {
        self.spec.provider.managed_instances_provider.is_some()
    }

    /// The cluster a Managed Instances provider belongs to, by name: spec.cluster, or the
    /// referenced EcsCluster once ECS has it (ACTIVE; it need not be Ready, since a cluster
    /// may wait for this very provider). None for an Auto Scaling group provider.
    fn cluster(&self, ctx: &Context, region: &str) -> Result<Result<Option<String>, Waiting>, Error> {
        let Some(reference) = &self.spec.cluster_ref else {
            return Ok(Ok(self.spec.provider.cluster.clone()));
        };
        let namespace = self.namespace().unwrap_or_default();
        let waiting = |message: String| {
            Ok(Err(Waiting {
                reason: "WaitingForCluster",
                message,
            }))
        };
        let Some(cluster) = ctx.caches.clusters.get(&namespace, &reference.name) else {
            return waiting(format!("EcsCluster {} does not exist", reference.name));
        };
        let status = cluster.status.clone().unwrap_or_default();
        if let Some(theirs) = status.region.as_deref().filter(|r| *r != region) {
            return Err(Error::Invalid(format!(
                "EcsCluster {} is in region {theirs} and this provider in {region}",
                reference.name
            )));
        }
        if cluster.meta().deletion_timestamp.is_some() {
            return waiting(format!("EcsCluster {} is being deleted", reference.name));
        }
        match (status.cluster_arn, status.status.as_deref()) {
            (Some(_), Some("ACTIVE")) => Ok(Ok(Some(cluster.cluster_name()))),
            _ => waiting(format!("EcsCluster {} is not ACTIVE in ECS yet", reference.name)),
        }
    }

    /// The provider as ECS has it: the resync's batched read, when it saw this very
    /// provider; else a read of its own.
    async fn observed(
        &self,
        ctx: &Context,
        ecs: &Ecs,
        previous: &EcsCapacityProviderStatus,
        cluster: Option<&str>,
    ) -> Result<Option<CapacityProvider>, Error> {
        let name = self.provider_name();
        let snapshot = ctx.observed.capacity_providers.take(&self.uid().unwrap_or_default());
        match snapshot {
            Some(seen) if previous.capacity_provider_arn.is_some() && previous.name.as_ref() == Some(&name) => Ok(seen),
            _ => Ok(describe(ecs, &name, cluster).await?),
        }
    }

    /// The writes applying the spec would make to the provider ECS reported, tags included:
    /// what `diff` prints and observe-only objects report as drift.
    pub fn preview(&self, observed: Option<&CapacityProvider>, cluster: Option<&str>) -> Result<Vec<Write>, Error> {
        let name = self.provider_name();
        let plan = planner::plan(&self.spec.provider, &name, cluster, observed)?;
        if let Plan::Fixed(why) = plan {
            return Err(Error::Invalid(why));
        }
        let mut writes = planner::writes(&plan, &name);
        if let Some(provider) = observed.filter(|_| !planner::gone(observed)) {
            let tags = sdk_tag_map(provider.tags());
            let ownership = match self.spec.options.observe_only() {
                true => BTreeMap::new(),
                false => {
                    claim(self, &tags, &format!("ECS capacity provider {name}"))?;
                    ownership::tags_for(self)
                }
            };
            let user_tags = self.spec.provider.tags.as_deref().map(tag_map);
            writes.extend(tag_writes(&name, &tag_changes(user_tags.as_ref(), &ownership, &tags)));
        }
        Ok(writes)
    }

    /// Status as ECS reports `provider`, with the clusters this operator's EcsClusters say
    /// ECS attached it to.
    fn status_of(&self, ctx: &Context, provider: &CapacityProvider, region: String) -> EcsCapacityProviderStatus {
        let name = self.provider_name();
        let clusters: BTreeSet<String> = ctx
            .caches
            .clusters
            .all()
            .iter()
            .filter_map(|c| c.status.clone())
            .filter(|s| s.region.as_deref() == Some(region.as_str()) && s.capacity_providers.contains(&name))
            .filter_map(|s| s.cluster_name)
            .collect();
        EcsCapacityProviderStatus {
            common: self.status.clone().unwrap_or_default().common,
            region: Some(region),
            capacity_provider_arn: provider.capacity_provider_arn().map(str::to_owned),
            name: Some(name),
            provider_type: provider.r#type().map(|t| t.as_str().to_string()),
            status: provider.status().map(|s| s.as_str().to_string()),
            update_status: provider.update_status().map(|s| s.as_str().to_string()),
            update_status_reason: provider.update_status_reason().map(str::to_owned),
            cluster: provider.cluster().map(str::to_owned),
            clusters: clusters.into_iter().collect(),
        }
    }

    /// The EcsClusters (not being deleted, in this region) whose spec lists this provider:
    /// while one does, deleting the provider would fight it.
    fn listed_by(&self, ctx: &Context, region: &str) -> Vec<String> {
        let name = self.provider_name();
        ctx.caches
            .clusters
            .all()
            .iter()
            .filter(|c| c.meta().deletion_timestamp.is_none())
            .filter(|c| ctx.ecs.region(c.spec.options.region.as_deref()).as_deref() == Some(region))
            .filter(|c| {
                let by_ref = c.namespace() == self.namespace()
                    && c.spec.capacity_provider_refs.iter().any(|r| r.name == self.name_any());
                by_ref || names_provider(c, &name)
            })
            .map(|c| format!("EcsCluster {}/{}", c.namespace().unwrap_or_default(), c.name_any()))
            .collect()
    }
}

impl Managed for EcsCapacityProvider {
    type Status = EcsCapacityProviderStatus;
    type Observed = Option<CapacityProvider>;

    fn observations(ctx: &Context) -> &Observations<Self::Observed> {
        &ctx.observed.capacity_providers
    }

    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }

    fn common(status: &mut Self::Status) -> &mut CommonStatus {
        &mut status.common
    }

    fn options(&self) -> ManagementOptions {
        self.spec.options.clone()
    }

    async fn apply(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let name = self.provider_name();
        let previous = self.status.clone().unwrap_or_default();
        let spec_changed = previous.common.observed_generation != self.metadata.generation;
        let cluster = match self.cluster(ctx, &region)? {
            Ok(cluster) => cluster,
            Err(waiting) => {
                let status = EcsCapacityProviderStatus {
                    region: Some(region),
                    ..previous
                };
                let state = waiting.state(ctx.settings.resync_interval);
                return Ok(Outcome {
                    status,
                    state,
                    events: vec![],
                });
            }
        };
        let ownership_tags = ownership::tags_for(self);
        let user_tags = self.spec.provider.tags.as_deref().map(tag_map);
        let mut events = vec![];

        let observed = self.observed(ctx, &ecs, &previous, cluster.as_deref()).await?;
        let mut plan = planner::plan(&self.spec.provider, &name, cluster.as_deref(), observed.as_ref())?;
        if let (Plan::Update(_), Some(provider)) = (&plan, &observed)
            && planner::failed(provider)
            && !spec_changed
        {
            // NB: ECS failed this generation's update; it is not sent again until the spec changes.
            plan = Plan::InSync;
        }
        let provider = match (plan, observed) {
            (Plan::Create(input), _) => {
                let provider = match create(&ecs, &input, &ownership_tags).await {
                    // NB: a cluster named (not referred to) that ECS does not have yet.
                    Err(Error::Ecs(e)) if e.is("ClusterNotFoundException") => {
                        let status = EcsCapacityProviderStatus {
                            region: Some(region),
                            ..previous
                        };
                        let waiting = Waiting {
                            reason: "WaitingForCluster",
                            message: format!("ECS has no cluster {} yet: {e}", cluster.unwrap_or_default()),
                        };
                        let state = waiting.state(ctx.settings.resync_interval);
                        return Ok(Outcome { status, state, events });
                    }
                    created => created?,
                };
                events.push(Note::normal("Created", format!("created capacity provider {name}")));
                provider
            }
            (plan, Some(provider)) => {
                let tags = sdk_tag_map(provider.tags());
                let adopted = claim(self, &tags, &format!("ECS capacity provider {name}"))?;
                let mut fields = vec![];
                let provider = match plan {
                    Plan::Fixed(why) => return Err(Error::Invalid(why)),
                    Plan::UpdateWhenSettled(_) => {
                        let state = State::InProgress {
                            reason: "WaitingForUpdate",
                            message: format!(
                                "capacity provider {name} is {}; the change waits until it is done",
                                provider.update_status().map(|s| s.as_str()).unwrap_or("PROVISIONING")
                            ),
                            recheck: planner::PROVISIONING_RECHECK,
                        };
                        let status = self.status_of(ctx, &provider, region);
                        return Ok(Outcome { status, state, events });
                    }
                    Plan::Update(update) => {
                        fields = update.changes.iter().map(|c| c.field.clone()).collect();
                        self.update(&ecs, cluster.as_deref(), update.request).await?
                    }
                    _ => provider,
                };
                let arn = provider.capacity_provider_arn().unwrap_or_default();
                let retagged = sync_tags(&ecs, arn, user_tags.as_ref(), &ownership_tags, &tags).await?;
                // NB: tagging an adopted resource is part of adopting it, not a change to report.
                fields.extend(retagged.filter(|_| adopted.is_none()));
                events.extend(adopted);
                events.extend(Note::changed(spec_changed, &fields));
                provider
            }
            (_, None) => {
                return Err(
                    EcsError::empty("DescribeCapacityProviders", "the provider to update was not observed").into(),
                );
            }
        };
        let status = self.status_of(ctx, &provider, region);
        let state = planner::readiness(&name, &provider);
        Ok(Outcome { status, state, events })
    }

    async fn observe(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let name = self.provider_name();
        let previous = self.status.clone().unwrap_or_default();
        let cluster = self
            .cluster(ctx, &region)?
            .unwrap_or(self.spec.provider.cluster.clone());
        let observed = self.observed(ctx, &ecs, &previous, cluster.as_deref()).await?;
        let writes = self.preview(observed.as_ref(), cluster.as_deref())?;
        let Some(provider) = observed.filter(|p| !planner::gone(Some(p))) else {
            return Ok(Outcome {
                status: previous,
                state: not_in_ecs(format!("ECS has no capacity provider {name}")),
                events: vec![],
            });
        };
        Ok(Outcome {
            status: self.status_of(ctx, &provider, region),
            state: State::Observed {
                drift: crate::plan::drift_of(&writes),
            },
            events: vec![],
        })
    }

    /// DescribeCapacityProviders of every provider ECS has: 10 per call, per region and
    /// cluster (a Managed Instances provider is asked for within its cluster).
    async fn observe_all(objects: Vec<Arc<Self>>, _sweep: u64, ctx: &Context) {
        let of = |provider: &Self| {
            let status = provider.status.as_ref()?;
            status.capacity_provider_arn.as_ref()?;
            let cluster = status.cluster.clone().unwrap_or_default();
            Some((status.region.clone()?, cluster, status.name.clone()?))
        };
        observe_in_batches(ctx, &objects, of, DESCRIBE_BATCH, |ecs, cluster, names| async move {
            describe_many(&ecs, Some(cluster).filter(|c| !c.is_empty()), names).await
        })
        .await;
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Vec<Note>, Error> {
        let name = self.provider_name();
        if self.spec.options.deletion_policy == DeletionPolicy::Retain {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left capacity provider {name} in ECS"),
            )]);
        }
        let (ecs, region) = ctx.ecs_for(self).await?;
        let listed = self.listed_by(ctx, &region);
        if !listed.is_empty() {
            return Err(Error::DeletionBlocked(format!(
                "capacity provider {name} is still listed by {}; remove it there first",
                listed.join(", ")
            )));
        }
        let status = self.status.clone().unwrap_or_default();
        // NB: a Managed Instances provider is only seen and deleted within its cluster, also
        // when its status never recorded the cluster (a crash right after creating it).
        let resolved = self.cluster(ctx, &region).ok().and_then(Result::ok).flatten();
        let cluster = status.cluster.clone().or(resolved);
        let Some(provider) = describe(&ecs, &name, cluster.as_deref()).await? else {
            return Ok(vec![]);
        };
        if !owned_by(&sdk_tag_map(provider.tags()), self) {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left capacity provider {name}: this object does not own it"),
            )]);
        }
        if deleting(&provider) {
            return Err(deprovisioning(&name, &provider));
        }
        let deleted = ecs
            .call("DeleteCapacityProvider", |c| {
                c.delete_capacity_provider()
                    .capacity_provider(&name)
                    .set_cluster(cluster.clone())
                    .send()
            })
            .await;
        match deleted {
            Ok(out) => match out.capacity_provider {
                Some(p) if deleting(&p) => Err(deprovisioning(&name, &p)),
                _ => Ok(vec![Note::normal(
                    "Deleted",
                    format!("deleted capacity provider {name}"),
                )]),
            },
            Err(e) if e.class == ErrorClass::NotFound || e.message.contains("does not exist") => Ok(vec![]),
            Err(e) if e.is("UpdateInProgressException") => Err(Error::Draining(format!(
                "ECS is still updating capacity provider {name}; it is deleted once that is done: {e}"
            ))),
            Err(e) if IN_USE.iter().any(|words| e.message.contains(words)) => Err(Error::DeletionBlocked(format!(
                "ECS still uses capacity provider {name}: {e}"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

/// True while ECS deletes the provider: DEPROVISIONING, or still ACTIVE with its delete
/// under way (DELETE_IN_PROGRESS).
fn deleting(provider: &CapacityProvider) -> bool {
    provider.status().map(|s| s.as_str()) == Some("DEPROVISIONING")
        || provider.update_status().map(|s| s.as_str()) == Some("DELETE_IN_PROGRESS")
}

/// A provider ECS is still deleting: looked at again shortly.
fn deprovisioning(name: &str, provider: &CapacityProvider) -> Error {
    let update = provider
        .update_status()
        .map(|s| s.as_str())
        .unwrap_or("DELETE_IN_PROGRESS");
    Error::Draining(format!("ECS is deleting capacity provider {name} ({update})"))
}

impl EcsCapacityProvider {
    /// UpdateCapacityProvider with the planner's request; the provider as ECS answers.
    async fn update(
        &self,
        ecs: &Ecs,
        cluster: Option<&str>,
        mut request: serde_json::Map<String, Value>,
    ) -> Result<CapacityProvider, Error> {
        request.insert("name".into(), json!(self.provider_name()));
        if self.managed_instances() {
            request.insert("cluster".into(), json!(cluster));
        }
        let sdk = to_sdk(&Value::Object(request), SdkUpdateInput::deserialize)?;
        let out = ecs
            .call("UpdateCapacityProvider", |c| {
                c.update_capacity_provider()
                    .set_name(sdk.name)
                    .set_cluster(sdk.cluster)
                    .set_auto_scaling_group_provider(sdk.auto_scaling_group_provider)
                    .set_managed_instances_provider(sdk.managed_instances_provider)
                    .send()
            })
            .await?;
        out.capacity_provider.ok_or_else(|| {
            Error::Ecs(EcsError::empty(
                "UpdateCapacityProvider",
                "no capacity provider in the response",
            ))
        })
    }
}

async fn create(
    ecs: &Ecs,
    input: &CreateCapacityProviderInput,
    ownership_tags: &BTreeMap<String, String>,
) -> Result<CapacityProvider, Error> {
    let mut input = input.clone();
    input.tags = Some(creation_tags(input.tags.as_deref(), ownership_tags));
    let sdk = to_sdk(&input, SdkCreateInput::deserialize)?;
    let out = ecs
        .call("CreateCapacityProvider", |c| {
            c.create_capacity_provider()
                .set_name(sdk.name)
                .set_cluster(sdk.cluster)
                .set_auto_scaling_group_provider(sdk.auto_scaling_group_provider)
                .set_managed_instances_provider(sdk.managed_instances_provider)
                .set_tags(sdk.tags)
                .send()
        })
        .await?;
    out.capacity_provider.ok_or_else(|| {
        Error::Ecs(EcsError::empty(
            "CreateCapacityProvider",
            "no capacity provider in the response",
        ))
    })
}

/// DescribeCapacityProviders for up to 10 providers (within `cluster`, for Managed
/// Instances ones), with tags: the providers ECS has, by name, INACTIVE ones left out.
async fn describe_many(
    ecs: &Ecs,
    cluster: Option<String>,
    names: Vec<String>,
) -> Result<HashMap<String, CapacityProvider>, EcsError> {
    let out = ecs
        .call("DescribeCapacityProviders", |c| {
            c.describe_capacity_providers()
                .set_capacity_providers(Some(names))
                .set_cluster(cluster)
                .include(CapacityProviderField::Tags)
                .send()
        })
        .await
        .found()?;
    Ok(out
        .map(|o| o.capacity_providers.unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !planner::gone(Some(p)))
        .filter_map(|p| Some((p.name()?.to_string(), p)))
        .collect())
}

/// DescribeCapacityProviders for one provider; None when ECS has none (or only INACTIVE).
pub(crate) async fn describe(
    ecs: &Ecs,
    name: &str,
    cluster: Option<&str>,
) -> Result<Option<CapacityProvider>, EcsError> {
    Ok(describe_many(ecs, cluster.map(str::to_owned), vec![name.to_string()])
        .await?
        .remove(name))
}

/// Of `names`, those ECS reports as Managed Instances providers of `cluster`: ECS attaches
/// them itself, so a cluster's list must neither send nor fight them.
pub(crate) async fn managed_instances_of(
    ecs: &Ecs,
    cluster: &str,
    names: Vec<String>,
) -> Result<BTreeSet<String>, EcsError> {
    let mut found = BTreeSet::new();
    for chunk in names.chunks(DESCRIBE_BATCH) {
        let providers = describe_many(ecs, Some(cluster.to_string()), chunk.to_vec()).await?;
        found.extend(
            providers
                .into_values()
                .filter(|p| p.r#type().map(|t| t.as_str()) == Some(attachments::MANAGED_INSTANCES))
                .filter_map(|p| p.name().map(str::to_owned)),
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::Client;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn describe_of_an_unknown_provider_is_none() {
        let missing = mock!(Client::describe_capacity_providers).then_output(|| {
            aws_sdk_ecs::operation::describe_capacity_providers::DescribeCapacityProvidersOutput::builder()
                .failures(
                    aws_sdk_ecs::types::Failure::builder()
                        .arn("cp")
                        .reason("MISSING")
                        .build(),
                )
                .build()
        });
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&missing]));
        assert!(describe(&ecs, "cp", None).await.expect("read").is_none());
    }
}
