//! EcsCluster against ECS: the executor of [`crate::plan::cluster`].
//!
//! Observed with one DescribeClusters (tags, settings, configurations and attachments
//! included), the planner decides, and this file performs it: CreateCluster, UpdateCluster,
//! PutClusterCapacityProviders, tags through Tag/UntagResource. Deletion waits while ECS
//! still holds services or tasks in the cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_ecs::operation::create_cluster::CreateClusterInput as SdkCreateInput;
use aws_sdk_ecs::operation::put_cluster_capacity_providers::PutClusterCapacityProvidersInput as SdkPutProvidersInput;
use aws_sdk_ecs::operation::update_cluster::UpdateClusterInput as SdkUpdateInput;
use aws_sdk_ecs::types::{Cluster, ClusterField};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::attachments::{self, Providers};
use super::capacity_provider::managed_instances_of;
use super::observations::{Observations, observe_in_batches};
use super::{Context, Error, Managed, Note, Outcome, claim, not_in_ecs};
use crate::api::ecs_types::CreateClusterInput;
use crate::api::{CommonStatus, DeletionPolicy, EcsCluster, EcsClusterStatus, ManagementOptions};
use crate::ecs::client::Ecs;
use crate::ecs::error::{EcsError, ErrorClass};
use crate::ecs::ownership::{self, creation_tags, owned_by, sdk_tag_map, sync_tags, tag_changes, tag_map};
use crate::ecs::wire::to_sdk;
use crate::plan::cluster::{self as planner, Plan, Update};
use crate::plan::{State, Write, tag_writes};

/// DescribeClusters takes at most this many clusters per call.
const DESCRIBE_BATCH: usize = 100;

/// ECS errors that mean "the cluster still holds something; delete that first".
const BLOCKING: &[&str] = &[
    "ClusterContainsServicesException",
    "ClusterContainsTasksException",
    "ClusterContainsContainerInstancesException",
    "UpdateInProgressException",
];

impl EcsCluster {
    /// The providers the spec asks for, resolved against the EcsCapacityProviders of its
    /// region (see [`attachments`]).
    pub fn providers(
        &self,
        ctx: &Context,
        region: &str,
        observed: Option<&Cluster>,
        previous: &EcsClusterStatus,
    ) -> Result<Providers, Error> {
        attachments::resolve(self, &attachments::known_providers(ctx, region), observed, previous)
    }

    /// The cluster name: spec.clusterName, else metadata.name.
    pub fn cluster_name(&self) -> String {
        self.spec
            .cluster
            .cluster_name
            .clone()
            .unwrap_or_else(|| self.name_any())
    }
}

impl EcsCluster {
    /// The cluster as ECS has it: the resync's batched read, when it saw this very cluster;
    /// else a read of its own.
    async fn observed(&self, ctx: &Context, ecs: &Ecs, previous: &EcsClusterStatus) -> Result<Option<Cluster>, Error> {
        let name = self.cluster_name();
        let snapshot = ctx.observed.clusters.take(&self.uid().unwrap_or_default());
        match snapshot {
            Some(seen) if previous.cluster_arn.is_some() && previous.cluster_name.as_ref() == Some(&name) => Ok(seen),
            _ => Ok(describe(ecs, previous.cluster_arn.as_deref().unwrap_or(&name)).await?),
        }
    }

    /// The writes applying the spec would make to the cluster ECS reported (`observed`),
    /// tags included: what `diff` prints and observe-only objects report as drift. An ECS
    /// cluster this object may not take over is the error apply would stall with.
    pub fn preview(
        &self,
        observed: Option<&Cluster>,
        previous: &EcsClusterStatus,
        providers: &Providers,
    ) -> Result<Vec<Write>, Error> {
        let name = self.cluster_name();
        let plan = planner::plan(&providers.spec, &name, observed, previous, &providers.scoped)?;
        let mut writes = planner::writes(&plan, &name);
        if let Some(cluster) = observed.filter(|c| c.status() != Some("INACTIVE")) {
            let tags = sdk_tag_map(cluster.tags());
            let ownership = match self.spec.options.observe_only() {
                true => BTreeMap::new(),
                false => {
                    claim(self, &tags, &format!("ECS cluster {name}"))?;
                    ownership::tags_for(self)
                }
            };
            let user_tags = self.spec.cluster.tags.as_deref().map(tag_map);
            writes.extend(tag_writes(&name, &tag_changes(user_tags.as_ref(), &ownership, &tags)));
        }
        Ok(writes)
    }

    /// Status as ECS reports `cluster`.
    fn status_of(&self, cluster: &Cluster, region: String, previous: &EcsClusterStatus) -> EcsClusterStatus {
        EcsClusterStatus {
            common: previous.common.clone(),
            region: Some(region),
            cluster_arn: cluster.cluster_arn().map(str::to_owned),
            cluster_name: Some(self.cluster_name()),
            status: cluster.status().map(str::to_owned),
            active_services_count: Some(cluster.active_services_count()),
            running_tasks_count: Some(cluster.running_tasks_count()),
            pending_tasks_count: Some(cluster.pending_tasks_count()),
            registered_container_instances_count: Some(cluster.registered_container_instances_count()),
            service_connect_namespace: planner::namespace_record(&self.spec.cluster, cluster),
            attachments_status: cluster.attachments_status().map(str::to_owned),
            capacity_providers: sorted(cluster.capacity_providers()),
            attached_by_reference: previous.attached_by_reference.clone(),
            // NB: a Managed Instances provider learned of stays known while ECS attaches it.
            managed_instances_providers: previous
                .managed_instances_providers
                .iter()
                .filter(|p| cluster.capacity_providers().contains(p))
                .cloned()
                .collect(),
        }
    }
}

impl Managed for EcsCluster {
    type Status = EcsClusterStatus;
    type Observed = Option<Cluster>;

    fn observations(ctx: &Context) -> &Observations<Self::Observed> {
        &ctx.observed.clusters
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
        let name = self.cluster_name();
        let previous = self.status.clone().unwrap_or_default();
        let spec_changed = previous.common.observed_generation != self.metadata.generation;
        let ownership_tags = ownership::tags_for(self);
        let user_tags = self.spec.cluster.tags.as_deref().map(tag_map);
        let mut events = vec![];

        let observed = self.observed(ctx, &ecs, &previous).await?;
        let mut providers = self.providers(ctx, &region, observed.as_ref(), &previous)?;
        let mut plan = planner::plan(&providers.spec, &name, observed.as_ref(), &previous, &providers.scoped)?;
        let mut learned = vec![];
        if let (Plan::Update(update), Some(cluster)) = (&plan, &observed)
            && update.put_capacity_providers.is_some()
        {
            // NB: ECS attaches a Managed Instances provider to its cluster itself; one made
            // outside this operator is found out here, once, before a write would send or
            // detach it (status remembers it).
            let unexplained = providers.unexplained(self, cluster, &previous);
            if !unexplained.is_empty() {
                learned = managed_instances_of(&ecs, &name, unexplained)
                    .await?
                    .into_iter()
                    .collect();
                providers.scoped.extend(learned.iter().cloned());
                plan = planner::plan(&providers.spec, &name, observed.as_ref(), &previous, &providers.scoped)?;
            }
        }
        let cluster = match (plan, observed) {
            (Plan::Create(input), _) => {
                let cluster = create(&ecs, &input, &ownership_tags).await?;
                events.push(Note::normal("Created", format!("created cluster {name}")));
                cluster
            }
            (plan, Some(cluster)) => {
                let tags = sdk_tag_map(cluster.tags());
                let adopted = claim(self, &tags, &format!("ECS cluster {name}"))?;
                let mut fields = vec![];
                let cluster = match plan {
                    Plan::Update(update) => {
                        fields = update.fields();
                        apply_update(&ecs, &cluster, &update).await?
                    }
                    _ => cluster,
                };
                let arn = cluster.cluster_arn().unwrap_or_default();
                let retagged = sync_tags(&ecs, arn, user_tags.as_ref(), &ownership_tags, &tags).await?;
                // NB: tagging an adopted resource is part of adopting it, not a change to report.
                fields.extend(retagged.filter(|_| adopted.is_none()));
                events.extend(adopted);
                // NB: providers attached once a referenced one is Ready were asked for too.
                let waited = previous
                    .common
                    .conditions
                    .iter()
                    .any(|c| c.reason == "WaitingForCapacityProvider");
                let resolved = waited || providers.by_reference != previous.attached_by_reference;
                events.extend(Note::changed(spec_changed || resolved, &fields));
                cluster
            }
            (_, None) => {
                return Err(EcsError::empty("DescribeClusters", "the cluster to update was not observed").into());
            }
        };

        let mut status = self.status_of(&cluster, region, &previous);
        status.attached_by_reference = providers.by_reference;
        status.managed_instances_providers.extend(learned);
        let state = match (planner::readiness(&name, &cluster), providers.waiting) {
            (State::Ready { .. }, Some(waiting)) => waiting.state(ctx.settings.resync_interval),
            (state, _) => state,
        };
        Ok(Outcome { status, state, events })
    }

    async fn observe(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let name = self.cluster_name();
        let previous = self.status.clone().unwrap_or_default();
        let observed = self.observed(ctx, &ecs, &previous).await?;
        let providers = self.providers(ctx, &region, observed.as_ref(), &previous)?;
        let writes = self.preview(observed.as_ref(), &previous, &providers)?;
        let Some(cluster) = observed.filter(|c| c.status() != Some("INACTIVE")) else {
            return Ok(Outcome {
                status: previous,
                state: not_in_ecs(format!("ECS has no cluster {name}")),
                events: vec![],
            });
        };
        Ok(Outcome {
            status: self.status_of(&cluster, region, &previous),
            state: State::Observed {
                drift: crate::plan::drift_of(&writes),
            },
            events: vec![],
        })
    }

    /// DescribeClusters of every cluster with an ARN in status: 100 per call, per region.
    async fn observe_all(objects: Vec<Arc<Self>>, _sweep: u64, ctx: &Context) {
        let of = |cluster: &Self| {
            let status = cluster.status.as_ref()?;
            Some((status.region.clone()?, String::new(), status.cluster_arn.clone()?))
        };
        observe_in_batches(ctx, &objects, of, DESCRIBE_BATCH, |ecs, _, arns| async move {
            describe_many(&ecs, arns).await
        })
        .await;
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Vec<Note>, Error> {
        let name = self.cluster_name();
        if self.spec.options.deletion_policy == DeletionPolicy::Retain {
            return Ok(vec![Note::normal("Retained", format!("left cluster {name} in ECS"))]);
        }
        let (ecs, region) = ctx.ecs_for(self).await?;
        let status = self.status.clone().unwrap_or_default();
        let Some(cluster) = describe(&ecs, status.cluster_arn.as_deref().unwrap_or(&name)).await? else {
            return Ok(vec![]);
        };
        if !owned_by(&sdk_tag_map(cluster.tags()), self) {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left cluster {name}: this object does not own it"),
            )]);
        }
        let arn = cluster.cluster_arn().unwrap_or(&name).to_string();
        // NB: only to name what blocks the deletion; a reference that cannot resolve must not stop it.
        let own = self
            .providers(ctx, &region, Some(&cluster), &status)
            .map(|p| p.scoped)
            .unwrap_or_default();
        let held: Vec<String> = cluster
            .capacity_providers()
            .iter()
            .filter(|p| own.contains(*p))
            .cloned()
            .collect();
        delete(&ecs, &arn, &name, &held).await
    }
}

/// DeleteCluster; [`Error::DeletionBlocked`], naming the services or the Managed Instances
/// providers (`own`), while ECS refuses because the cluster still holds something.
async fn delete(ecs: &Ecs, arn: &str, name: &str, own: &[String]) -> Result<Vec<Note>, Error> {
    match ecs
        .call("DeleteCluster", |c| c.delete_cluster().cluster(arn).send())
        .await
    {
        Ok(_) => Ok(vec![Note::normal("Deleted", format!("deleted cluster {name}"))]),
        Err(err) => match err {
            e if e.class == ErrorClass::NotFound => Ok(vec![]),
            e if e.is("ClusterContainsCapacityProviderException") => {
                let held = match own.is_empty() {
                    true => String::new(),
                    false => format!(" ({}; delete them first)", own.join(", ")),
                };
                Err(Error::DeletionBlocked(format!(
                    "ECS still holds Managed Instances capacity providers in cluster {name}{held}: {}",
                    e.message
                )))
            }
            e if BLOCKING.iter().any(|code| e.is(code)) => {
                let services = service_names(ecs, arn).await?;
                let held = if services.is_empty() {
                    e.message.clone()
                } else {
                    format!("ECS still holds services in cluster {name}: {}", services.join(", "))
                };
                Err(Error::DeletionBlocked(held))
            }
            e => Err(e.into()),
        },
    }
}

/// DescribeClusters for up to 100 clusters, with tags, settings and configurations: the
/// clusters ECS has, by ARN, INACTIVE ones left out.
async fn describe_many(ecs: &Ecs, arns: Vec<String>) -> Result<HashMap<String, Cluster>, EcsError> {
    let out = ecs
        .call("DescribeClusters", |c| {
            c.describe_clusters()
                .set_clusters(Some(arns))
                .include(ClusterField::Tags)
                .include(ClusterField::Settings)
                .include(ClusterField::Configurations)
                .include(ClusterField::Attachments)
                .send()
        })
        .await?;
    Ok(out
        .clusters
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.status() != Some("INACTIVE"))
        .filter_map(|c| Some((c.cluster_arn()?.to_string(), c)))
        .collect())
}

/// DescribeClusters for one cluster (name or ARN), with tags, settings and configurations.
/// None when ECS reports it MISSING or INACTIVE (a deleted cluster stays INACTIVE a while).
pub(crate) async fn describe(ecs: &Ecs, cluster: &str) -> Result<Option<Cluster>, EcsError> {
    Ok(describe_many(ecs, vec![cluster.to_string()])
        .await?
        .into_values()
        .next())
}

async fn create(
    ecs: &Ecs,
    input: &CreateClusterInput,
    ownership_tags: &BTreeMap<String, String>,
) -> Result<Cluster, Error> {
    let mut input = input.clone();
    input.tags = Some(creation_tags(input.tags.as_deref(), ownership_tags));
    let sdk = to_sdk(&input, SdkCreateInput::deserialize)?;
    let out = ecs
        .call("CreateCluster", |c| {
            c.create_cluster()
                .set_cluster_name(sdk.cluster_name)
                .set_tags(sdk.tags)
                .set_settings(sdk.settings)
                .set_configuration(sdk.configuration)
                .set_capacity_providers(sdk.capacity_providers)
                .set_default_capacity_provider_strategy(sdk.default_capacity_provider_strategy)
                .set_service_connect_defaults(sdk.service_connect_defaults)
                .send()
        })
        .await?;
    out.cluster
        .ok_or_else(|| Error::Ecs(EcsError::empty("CreateCluster", "no cluster in the response")))
}

/// Performs an update plan: at most one UpdateCluster and one PutClusterCapacityProviders.
/// Returns the cluster as ECS reports it afterwards.
async fn apply_update(ecs: &Ecs, cluster: &Cluster, update: &Update) -> Result<Cluster, Error> {
    let arn = cluster.cluster_arn().unwrap_or_default();
    let mut latest = cluster.clone();
    if let Some(mut request) = update.update_cluster() {
        request.insert("cluster".into(), json!(arn));
        let sdk = to_sdk(&Value::Object(request), SdkUpdateInput::deserialize)?;
        let out = ecs
            .call("UpdateCluster", |c| {
                c.update_cluster()
                    .set_cluster(sdk.cluster)
                    .set_settings(sdk.settings)
                    .set_configuration(sdk.configuration)
                    .set_service_connect_defaults(sdk.service_connect_defaults)
                    .send()
            })
            .await?;
        latest = out.cluster.unwrap_or(latest);
    }
    if let Some(mut request) = update.put_capacity_providers.clone() {
        request.insert("cluster".into(), json!(arn));
        let sdk = to_sdk(&Value::Object(request), SdkPutProvidersInput::deserialize)?;
        let out = ecs
            .call("PutClusterCapacityProviders", |c| {
                c.put_cluster_capacity_providers()
                    .set_cluster(sdk.cluster)
                    .set_capacity_providers(sdk.capacity_providers)
                    .set_default_capacity_provider_strategy(sdk.default_capacity_provider_strategy)
                    .send()
            })
            .await?;
        latest = out.cluster.unwrap_or(latest);
    }
    Ok(latest)
}

/// Provider names in a stable order: ECS promises none.
fn sorted(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names
}

/// Names of the services ECS lists in a cluster (first page: enough to name the blockers).
async fn service_names(ecs: &Ecs, cluster: &str) -> Result<Vec<String>, EcsError> {
    let out = ecs
        .call("ListServices", |c| {
            c.list_services().cluster(cluster).max_results(100).send()
        })
        .await?;
    Ok(out
        .service_arns()
        .iter()
        .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::Client;
    use aws_sdk_ecs::operation::list_services::ListServicesOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn ecs_error(code: &str, message: &str) -> String {
        json!({"__type": code, "message": message}).to_string()
    }

    #[tokio::test]
    async fn delete_waits_while_the_cluster_holds_services_and_names_them() {
        let refuse = mock!(Client::delete_cluster)
            .sequence()
            .http_status(
                400,
                Some(ecs_error(
                    "ClusterContainsServicesException",
                    "The Cluster cannot be deleted while Services are active.",
                )),
            )
            .build();
        let services = mock!(Client::list_services).then_output(|| {
            ListServicesOutput::builder()
                .service_arns("arn:aws:ecs:us-east-1:1:service/prod/web")
                .build()
        });
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&refuse, &services]));
        match delete(&ecs, "arn:aws:ecs:us-east-1:1:cluster/prod", "prod", &[]).await {
            Err(Error::DeletionBlocked(message)) => assert!(message.contains("web"), "{message}"),
            other => panic!("expected DeletionBlocked, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn delete_of_a_missing_cluster_is_done() {
        let missing = mock!(Client::delete_cluster)
            .sequence()
            .http_status(400, Some(ecs_error("ClusterNotFoundException", "Cluster not found.")))
            .build();
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&missing]));
        assert!(delete(&ecs, "prod", "prod", &[]).await.expect("done").is_empty());
    }

    #[tokio::test]
    async fn throttling_and_server_errors_are_retryable_and_rejections_are_not() {
        for (status, code, terminal, reason) in [
            (400, "ThrottlingException", false, "Throttled"),
            (500, "ServerException", false, "EcsUnavailable"),
            (400, "InvalidParameterException", true, "EcsRejected"),
            (400, "AccessDeniedException", true, "AccessDenied"),
        ] {
            let rule = mock!(Client::delete_cluster)
                .sequence()
                .http_status(status, Some(ecs_error(code, "no")))
                .times(5)
                .build();
            let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&rule]));
            let err = delete(&ecs, "prod", "prod", &[]).await.expect_err(code);
            assert_eq!(err.is_terminal(), terminal, "{code}");
            assert_eq!(err.reason(), reason, "{code}");
            assert!(err.to_string().contains(code), "ECS's code reaches the user: {err}");
        }
    }
}
