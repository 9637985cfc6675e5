//! EcsService against ECS: the executor of [`crate::plan::service`].
//!
//! References (clusterRef, taskDefinitionRef) are resolved from the referenced objects'
//! status; the controller watches both kinds so a new revision reaches the service at once.
//! The service is observed with one DescribeServices (or its share of a batched one at
//! resync), its ownership claimed, and then the planner decides; this file only performs
//! what it decided (CreateService with a clientToken derived from the object's UID, one
//! UpdateService, a replacement) and reports it. Deletion uses force and waits out DRAINING.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_ecs::operation::create_service::CreateServiceInput as SdkCreateInput;
use aws_sdk_ecs::operation::update_service::UpdateServiceInput as SdkUpdateInput;
use aws_sdk_ecs::types::{Service, ServiceField};
use kube::ResourceExt;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ReflectHandle;
use serde_json::{Value, json};

use super::observations::{Observations, observe_in_batches};
use super::references::{self, Refers, Target, Waiting};
use super::{Context, Error, LabelSelector, Managed, Note, Outcome, State, claim, not_in_ecs};
use crate::api::ecs_types::{CreateServiceInput, DeploymentControllerType};
use crate::api::service::ServiceDeploymentSummary;
use crate::api::service::{DeploymentSummary, ServiceEventSummary, TaskSetSummary};
use crate::api::{
    CommonStatus, DeletionPolicy, EcsCluster, EcsService, EcsServiceStatus, EcsTaskDefinition, ManagementOptions,
};
use crate::ecs::client::{Ecs, Found};
use crate::ecs::error::EcsError;
use crate::ecs::error::ErrorClass;
use crate::ecs::ownership::{self, creation_tags, owned_by, sdk_tag_map, sync_tags, tag_changes, tag_map};
use crate::ecs::wire::to_sdk;
use crate::plan::service::{self as planner, Desired, Plan, ROLLING_RECHECK, Steer};
use crate::plan::{Write, tag_writes};

/// How many of ECS's service events status keeps.
const EVENTS_KEPT: usize = 5;
/// DescribeServices takes at most this many services of one cluster per call.
const DESCRIBE_BATCH: usize = 10;
/// How many steering annotations acted on status remembers.
const STEERED_KEPT: usize = 10;

/// The service controller: also woken when a referenced EcsCluster or EcsTaskDefinition
/// changes in a way that matters to its services, so a new revision or a newly Ready
/// cluster is acted on at once.
pub fn controller(
    controller: Controller<EcsService>,
    clusters: ReflectHandle<EcsCluster>,
    task_definitions: ReflectHandle<EcsTaskDefinition>,
    selector: Option<LabelSelector>,
) -> Controller<EcsService> {
    references::woken_by_references(controller, clusters, task_definitions, selector)
}

impl Refers for EcsService {
    fn cluster_ref(&self) -> Option<&str> {
        self.spec.cluster_ref.as_ref().map(|r| r.name.as_str())
    }

    fn cluster(&self) -> Option<&str> {
        self.spec.service.cluster.as_deref()
    }

    fn task_definition_ref(&self) -> Option<&str> {
        self.spec.task_definition_ref.as_ref().map(|r| r.name.as_str())
    }

    fn task_definition(&self) -> Option<&str> {
        self.spec.service.task_definition.as_deref()
    }
}

impl EcsService {
    /// The service name: spec.serviceName, else metadata.name.
    pub fn service_name(&self) -> String {
        self.spec
            .service
            .service_name
            .clone()
            .unwrap_or_else(|| self.name_any())
    }

    /// Resolves cluster and task definition (see [`references::resolve`]); an EXTERNAL
    /// service alone may have no task definition.
    fn resolve(&self, ctx: &Context, region: &str) -> Result<Result<Target, Waiting>, Error> {
        let target = references::resolve(self, ctx, region)?;
        if let Ok(Target {
            task_definition: None, ..
        }) = &target
            && !self.is_external()
        {
            return Err(Error::Invalid("set taskDefinition or taskDefinitionRef".into()));
        }
        Ok(target)
    }
}

/// What every pass starts from: the client of the service's region, the last pass's status
/// and a copy to fill in, and what the spec asks for with its references resolved.
struct Pass<'a> {
    ecs: Ecs,
    previous: EcsServiceStatus,
    status: EcsServiceStatus,
    desired: Desired<'a>,
}

impl EcsService {
    /// The start of a pass; Err: the outcome of waiting for a reference not Ready yet.
    async fn start(&self, ctx: &Context) -> Result<Result<Pass<'_>, Outcome<EcsServiceStatus>>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let previous = self.status.clone().unwrap_or_default();
        let status = EcsServiceStatus {
            region: Some(region.clone()),
            ..previous.clone()
        };
        match self.resolve(ctx, &region)? {
            Ok(target) => Ok(Ok(Pass {
                ecs,
                previous,
                status,
                desired: Desired::new(self, target.cluster, target.task_definition),
            })),
            Err(waiting) => Ok(Err(Outcome {
                status,
                state: waiting.state(ctx.settings.resync_interval),
                events: vec![],
            })),
        }
    }
}

impl Managed for EcsService {
    type Status = EcsServiceStatus;
    type Observed = Option<Service>;
    // NB: a described service is some 2.5 KB; 1000 at a time keeps a resync of 10 000
    // services from holding 25 MB of snapshots at once.
    const SWEEP_CHUNK: usize = 1000;

    fn sweep_key(&self) -> Option<&str> {
        self.status.as_ref()?.cluster_arn.as_deref()
    }

    fn observations(ctx: &Context) -> &Observations<Self::Observed> {
        &ctx.observed.services
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
        let Pass {
            ecs,
            previous,
            mut status,
            desired,
        } = match self.start(ctx).await? {
            Ok(pass) => pass,
            Err(waiting) => return Ok(waiting),
        };
        let mut events = vec![];
        if let Some(waiting) = self
            .retire_moved_service(&ecs, &desired, &mut status, &mut events)
            .await?
        {
            return Ok(Outcome {
                status,
                state: waiting,
                events,
            });
        }
        let observed = self.observed_service(ctx, &ecs, &desired, &status).await?;
        let adopted = match observed.as_ref().filter(|s| s.status() == Some("ACTIVE")) {
            Some(service) => claim(
                self,
                &sdk_tag_map(service.tags()),
                &format!("ECS service {} in cluster {}", desired.name, desired.cluster),
            )?,
            None => None,
        };
        // The current service deployment, under a strategy with lifecycle stages: read while
        // in flight, kept from status once it has ended; steered as the annotations ask.
        let mut service_deployment = previous.service_deployment.as_deref().cloned();
        if let Some(service) = observed.as_ref().filter(|s| s.status() == Some("ACTIVE")) {
            let read = planner::service_deployment_to_read(&desired, service, &previous);
            if let Some(arn) = read.map(str::to_owned) {
                let summary = describe_service_deployment(&ecs, &arn).await?;
                if let Some(summary) = summary {
                    if service_deployment.as_ref().is_some_and(|old| old.arn != summary.arn) {
                        status.previous_service_deployment = service_deployment.take().map(Box::new);
                    }
                    service_deployment = Some(summary);
                }
                let steps = planner::steering(self.annotations(), service_deployment.as_ref(), &status.steered);
                if !steps.is_empty() {
                    let acted = self.steer(&ecs, steps, &mut status.steered, &mut events).await?;
                    if acted {
                        service_deployment = describe_service_deployment(&ecs, &arn).await?.or(service_deployment);
                    }
                }
            }
        }
        let plan = planner::plan(&desired, observed.as_ref(), service_deployment.as_ref(), &previous)?;
        let service = match (&plan, observed) {
            (Plan::WaitForDrain, _) => {
                let state = State::InProgress {
                    reason: "WaitingForDrain",
                    message: format!(
                        "a previous service {} is still DRAINING; ECS cannot create it again until it is INACTIVE",
                        desired.name
                    ),
                    recheck: ROLLING_RECHECK,
                };
                return Ok(Outcome { status, state, events });
            }
            (Plan::Replace { field, allowed: false }, _) => return Err(replacement_refused(field)),
            (Plan::Replace { field, allowed: true }, Some(service)) => {
                let name = &desired.name;
                delete(&ecs, &desired.cluster, service.service_arn().unwrap_or(name)).await?;
                events.push(Note::normal(
                    "Replacing",
                    format!("deleting service {name} to recreate it: {field} changed"),
                ));
                let state = State::InProgress {
                    reason: "Replacing",
                    message: format!("recreating service {name}: {field} changed"),
                    recheck: ROLLING_RECHECK,
                };
                return Ok(Outcome { status, state, events });
            }
            (
                Plan::Create {
                    input,
                    desired_count_defaulted,
                },
                _,
            ) => {
                let service = self.create(&ecs, input).await?;
                let defaulted = if *desired_count_defaulted {
                    " with desiredCount 1 (unset in spec: left to whoever scales it from now on)"
                } else {
                    ""
                };
                events.push(Note::normal(
                    "Created",
                    format!("created service {} in {}{defaulted}", desired.name, desired.cluster),
                ));
                service
            }
            (plan, observed) => {
                let Some(service) = observed else {
                    return Err(EcsError::empty("DescribeServices", "the service to update was not observed").into());
                };
                let tags = sdk_tag_map(service.tags());
                let mut fields = vec![];
                let service = match plan {
                    Plan::Update(update) => {
                        fields = update.fields();
                        update_service(&ecs, &desired.cluster, &service, update.request()).await?
                    }
                    Plan::RolloutFailed { deployment, reason } if !previous_failure(&previous, &desired) => {
                        let which = deployment.as_deref().unwrap_or("of this spec");
                        events.push(Note::warning(
                            "RolloutFailed",
                            format!("deployment {which} failed: {reason}"),
                        ));
                        service
                    }
                    _ => service,
                };
                let arn = service.service_arn().unwrap_or_default();
                let user_tags = self.spec.service.tags.as_deref().map(tag_map);
                let retagged = sync_tags(&ecs, arn, user_tags.as_ref(), &ownership::tags_for(self), &tags).await?;
                // NB: tagging an adopted resource is part of adopting it, not a change to report.
                fields.extend(retagged.filter(|_| adopted.is_none()));
                events.extend(adopted);
                // A new revision of the referenced task definition is asked for, not drift.
                let spec_changed = previous.common.observed_generation != self.metadata.generation;
                let asked_for = spec_changed || fields.iter().any(|f| f == "taskDefinition");
                events.extend(Note::changed(asked_for, &fields));
                service
            }
        };
        observe_into(&mut status, &service);
        status.observed_redeploy_trigger = self.spec.redeploy_trigger.clone();
        status.rollout = planner::rollout_record(&desired, &plan, &service, &previous).map(Box::new);
        status.left_to_deployment_controller = match &plan {
            Plan::InSync { deferred } => deferred_fields(deferred),
            Plan::Update(update) => deferred_fields(&update.deferred),
            _ => vec![],
        };
        let state = planner::readiness(&desired, &plan, &service, service_deployment.as_ref());
        status.service_deployment = service_deployment.map(Box::new);
        Ok(Outcome { status, state, events })
    }

    async fn observe(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let Pass {
            ecs,
            previous,
            mut status,
            desired,
        } = match self.start(ctx).await? {
            Ok(pass) => pass,
            Err(waiting) => return Ok(waiting),
        };
        let observed = self.observed_service(ctx, &ecs, &desired, &status).await?;
        let Some(service) = observed.filter(|s| s.status() == Some("ACTIVE")) else {
            let what = format!("ECS has no ACTIVE service {} in {}", desired.name, desired.cluster);
            return Ok(Outcome {
                status,
                state: not_in_ecs(what),
                events: vec![],
            });
        };
        let writes = self.preview(&desired, Some(&service), &previous)?;
        observe_into(&mut status, &service);
        Ok(Outcome {
            status,
            state: State::Observed {
                drift: crate::plan::drift_of(&writes),
            },
            events: vec![],
        })
    }

    /// DescribeServices of every service with an ARN in status: 10 per call, per cluster.
    async fn observe_all(objects: Vec<Arc<Self>>, _sweep: u64, ctx: &Context) {
        let of = |svc: &Self| {
            let status = svc.status.as_ref()?;
            Some((
                status.region.clone()?,
                status.cluster_arn.clone()?,
                status.service_arn.clone()?,
            ))
        };
        observe_in_batches(ctx, &objects, of, DESCRIBE_BATCH, |ecs, cluster, arns| async move {
            describe_many(&ecs, &cluster, arns).await
        })
        .await;
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Vec<Note>, Error> {
        let name = self.service_name();
        if self.spec.options.deletion_policy == DeletionPolicy::Retain {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left service {name} running in ECS"),
            )]);
        }
        let status = self.status.clone().unwrap_or_default();
        // NB: without an ARN in status (a create whose status write was lost) the service is
        // looked up by name in its cluster; delete_and_wait checks it is this object's.
        let service = status.service_arn.clone().unwrap_or_else(|| name.clone());
        let cluster = match (status.cluster_arn, &self.spec.cluster_ref, &self.spec.service.cluster) {
            (Some(arn), _, _) => arn,
            (None, Some(reference), _) => {
                let namespace = self.namespace().unwrap_or_default();
                let cluster = ctx.caches.clusters.get(&namespace, &reference.name);
                match cluster.and_then(|c| c.status.clone()?.cluster_arn) {
                    Some(arn) => arn,
                    None => return Ok(vec![]), // the cluster never existed, so neither did the service
                }
            }
            (None, None, Some(cluster)) => cluster.clone(),
            (None, None, None) => "default".to_string(),
        };
        let (ecs, _) = ctx.ecs_for(self).await?;
        self.delete_and_wait(&ecs, &cluster, &service).await
    }
}

impl EcsService {
    /// Deletes the service this object owns (with force: no scale-in step needed) and
    /// reports [`Error::Draining`] until ECS has it INACTIVE.
    async fn delete_and_wait(&self, ecs: &Ecs, cluster: &str, arn: &str) -> Result<Vec<Note>, Error> {
        let name = self.service_name();
        let Some(service) = describe(ecs, cluster, arn).await? else {
            return Ok(vec![Note::normal("Deleted", format!("service {name} is gone"))]);
        };
        if !owned_by(&sdk_tag_map(service.tags()), self) {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left service {name}: this object does not own it"),
            )]);
        }
        if service.status() == Some("ACTIVE") {
            let after = delete(ecs, cluster, arn).await?;
            if after.as_ref().is_none_or(|s| s.status() == Some("INACTIVE")) {
                return Ok(vec![Note::normal("Deleted", format!("deleted service {name}"))]);
            }
        }
        Err(Error::Draining(format!(
            "service {name} is DRAINING; waiting for it to become INACTIVE"
        )))
    }
}

impl EcsService {
    /// True under the EXTERNAL deployment controller, whose services have no task definition.
    fn is_external(&self) -> bool {
        self.spec
            .service
            .deployment_controller
            .as_ref()
            .is_some_and(|c| c.r#type == DeploymentControllerType::External)
    }

    /// The service this object made last time, if the spec moved it (a new name or
    /// cluster), is deleted first and waited out: returns the state to report meanwhile.
    async fn retire_moved_service(
        &self,
        ecs: &Ecs,
        desired: &Desired<'_>,
        status: &mut EcsServiceStatus,
        events: &mut Vec<Note>,
    ) -> Result<Option<State>, Error> {
        let (Some(old_arn), Some(old_cluster)) = (status.service_arn.clone(), status.cluster_arn.clone()) else {
            return Ok(None);
        };
        let moved = !old_arn.ends_with(&format!("/{}", desired.name)) || !same_cluster(&old_cluster, &desired.cluster);
        if !moved {
            return Ok(None);
        }
        let Some(old) = describe(ecs, &old_cluster, &old_arn)
            .await?
            .filter(|s| owned_by(&sdk_tag_map(s.tags()), self))
        else {
            status.service_arn = None;
            status.cluster_arn = None;
            return Ok(None);
        };
        if old.status() == Some("ACTIVE") {
            delete(ecs, &old_cluster, &old_arn).await?;
            events.push(Note::normal(
                "Replacing",
                format!(
                    "deleting service {old_arn} to recreate it as {} in {}",
                    desired.name, desired.cluster
                ),
            ));
        }
        Ok(Some(State::InProgress {
            reason: "Replacing",
            message: format!("waiting for the previous service {old_arn} to finish draining"),
            recheck: ROLLING_RECHECK,
        }))
    }

    /// The service as ECS has it: the resync's batched read when it saw this very service,
    /// else a DescribeServices of its own.
    async fn observed_service(
        &self,
        ctx: &Context,
        ecs: &Ecs,
        desired: &Desired<'_>,
        status: &EcsServiceStatus,
    ) -> Result<Option<Service>, Error> {
        let snapshot = ctx.observed.services.take(&self.uid().unwrap_or_default());
        let same_service = status
            .service_arn
            .as_deref()
            .is_some_and(|arn| arn.ends_with(&format!("/{}", desired.name)))
            && status
                .cluster_arn
                .as_deref()
                .is_some_and(|c| same_cluster(c, &desired.cluster));
        match snapshot {
            Some(seen) if same_service => Ok(seen),
            _ => Ok(describe(ecs, &desired.cluster, &desired.name).await?),
        }
    }

    /// CreateService with the planned input, this object's tags, and a clientToken derived
    /// from its UID and generation.
    async fn create(&self, ecs: &Ecs, input: &CreateServiceInput) -> Result<Service, Error> {
        let mut input = input.clone();
        input.tags = Some(creation_tags(
            self.spec.service.tags.as_deref(),
            &ownership::tags_for(self),
        ));
        let sdk = to_sdk(&input, SdkCreateInput::deserialize)?;
        let token = client_token(
            self.metadata.uid.as_deref().unwrap_or_default(),
            self.metadata.generation,
        );
        let out = ecs
            .call("CreateService", |c| {
                c.create_service()
                    .client_token(token)
                    .set_cluster(sdk.cluster)
                    .set_service_name(sdk.service_name)
                    .set_task_definition(sdk.task_definition)
                    .set_availability_zone_rebalancing(sdk.availability_zone_rebalancing)
                    .set_load_balancers(sdk.load_balancers)
                    .set_service_registries(sdk.service_registries)
                    .set_desired_count(sdk.desired_count)
                    .set_launch_type(sdk.launch_type)
                    .set_capacity_provider_strategy(sdk.capacity_provider_strategy)
                    .set_platform_version(sdk.platform_version)
                    .set_role(sdk.role)
                    .set_deployment_configuration(sdk.deployment_configuration)
                    .set_placement_constraints(sdk.placement_constraints)
                    .set_placement_strategy(sdk.placement_strategy)
                    .set_network_configuration(sdk.network_configuration)
                    .set_health_check_grace_period_seconds(sdk.health_check_grace_period_seconds)
                    .set_scheduling_strategy(sdk.scheduling_strategy)
                    .set_deployment_controller(sdk.deployment_controller)
                    .set_tags(sdk.tags)
                    .set_enable_ecs_managed_tags(sdk.enable_ecs_managed_tags)
                    .set_propagate_tags(sdk.propagate_tags)
                    .set_enable_execute_command(sdk.enable_execute_command)
                    .set_service_connect_configuration(sdk.service_connect_configuration)
                    .set_volume_configurations(sdk.volume_configurations)
                    .set_vpc_lattice_configurations(sdk.vpc_lattice_configurations)
                    .set_gateway_connectors(sdk.gateway_connectors)
                    .set_monitoring(sdk.monitoring)
                    .send()
            })
            .await?;
        out.service
            .ok_or_else(|| Error::Ecs(EcsError::empty("CreateService", "no service in the response")))
    }
}

impl EcsService {
    /// Performs the steering steps (approve, roll back, abort); each is recorded in
    /// `steered` so that it is acted on once, and announced in an Event. Returns true when
    /// something was asked of ECS. ECS refusing (the hook timed out meanwhile, ...) is a
    /// Warning, not a failure of the object; a call that may succeed later is retried.
    async fn steer(
        &self,
        ecs: &Ecs,
        steps: Vec<(String, Steer)>,
        steered: &mut Vec<String>,
        events: &mut Vec<Note>,
    ) -> Result<bool, Error> {
        use aws_sdk_ecs::types::{DeploymentLifecycleHookAction, StopServiceDeploymentStopType};
        let mut acted = false;
        for (key, step) in steps {
            let (operation, done) = match &step {
                Steer::Ignore(why) => {
                    events.push(Note::normal("SteeringIgnored", why.clone()));
                    remember(steered, key);
                    continue;
                }
                Steer::Approve { arn, hook_id } => (
                    "ContinueServiceDeployment",
                    answer_hook(ecs, arn, hook_id, DeploymentLifecycleHookAction::Continue).await,
                ),
                Steer::RollBackAtHook { arn, hook_id } => (
                    "ContinueServiceDeployment",
                    answer_hook(ecs, arn, hook_id, DeploymentLifecycleHookAction::Rollback).await,
                ),
                Steer::RollBack { arn } => (
                    "StopServiceDeployment",
                    stop_deployment(ecs, arn, StopServiceDeploymentStopType::Rollback).await,
                ),
                Steer::Abort { arn } => (
                    "StopServiceDeployment",
                    stop_deployment(ecs, arn, StopServiceDeploymentStopType::Abort).await,
                ),
            };
            match done {
                Ok(()) => {
                    let (reason, what) = match step {
                        Steer::Approve { .. } => ("Approved", "approved"),
                        Steer::Abort { .. } => ("Aborted", "stopped (ABORT)"),
                        _ => ("RollbackRequested", "asked ECS to roll back"),
                    };
                    events.push(Note::normal(
                        reason,
                        format!("{what} service deployment {} ({operation})", deployment_of(&key)),
                    ));
                    acted = true;
                }
                Err(err) if matches!(err.class, ErrorClass::Throttled | ErrorClass::Transient) => {
                    return Err(err.into());
                }
                Err(err) => events.push(Note::warning(
                    "SteeringFailed",
                    format!("service deployment {}: {err}", deployment_of(&key)),
                )),
            }
            remember(steered, key);
        }
        Ok(acted)
    }
}

/// A field ECS cannot change in place differs and the spec does not allow replacement.
fn replacement_refused(field: &str) -> Error {
    Error::Invalid(format!(
        "{field} differs from the running service and ECS cannot change it in place; set allowReplacement: true to recreate the service"
    ))
}

impl EcsService {
    /// The writes applying the spec would make to the service ECS reported (`observed`),
    /// tags included: what `diff` prints and observe-only objects report as drift. What
    /// apply would stall with (a service this object may not take over, a replacement the
    /// spec does not allow) is the error.
    pub fn preview(
        &self,
        desired: &Desired<'_>,
        observed: Option<&Service>,
        previous: &EcsServiceStatus,
    ) -> Result<Vec<Write>, Error> {
        let observe_only = self.spec.options.observe_only();
        let mut writes = vec![];
        if let (false, Some(old_arn), Some(old_cluster)) = (observe_only, &previous.service_arn, &previous.cluster_arn)
            && (!old_arn.ends_with(&format!("/{}", desired.name)) || !same_cluster(old_cluster, &desired.cluster))
        {
            writes.push(Write::new(
                "DeleteService",
                old_arn.clone(),
                "the service moved or was renamed",
            ));
        }
        let live = observed.filter(|s| s.status() == Some("ACTIVE"));
        let tags = live.map(|s| sdk_tag_map(s.tags())).unwrap_or_default();
        if let (false, Some(_)) = (observe_only, live) {
            let what = format!("ECS service {} in cluster {}", desired.name, desired.cluster);
            claim(self, &tags, &what)?;
        }
        let plan = planner::plan(desired, observed, previous.service_deployment.as_deref(), previous)?;
        if let Plan::Replace { field, allowed: false } = &plan {
            return Err(replacement_refused(field));
        }
        writes.extend(planner::writes(&plan, desired));
        let in_place = matches!(plan, Plan::Update(_) | Plan::InSync { .. } | Plan::RolloutFailed { .. });
        if let (true, Some(service)) = (in_place, live) {
            let ownership = match observe_only {
                true => std::collections::BTreeMap::new(),
                false => ownership::tags_for(self),
            };
            let user_tags = self.spec.service.tags.as_deref().map(tag_map);
            let target = service.service_name().unwrap_or(&desired.name);
            writes.extend(tag_writes(target, &tag_changes(user_tags.as_ref(), &ownership, &tags)));
        }
        Ok(writes)
    }
}

/// ContinueServiceDeployment: the answer to the hook a deployment waits at.
async fn answer_hook(
    ecs: &Ecs,
    arn: &str,
    hook_id: &str,
    action: aws_sdk_ecs::types::DeploymentLifecycleHookAction,
) -> Result<(), EcsError> {
    ecs.call("ContinueServiceDeployment", |c| {
        c.continue_service_deployment()
            .service_deployment_arn(arn)
            .hook_id(hook_id)
            .action(action)
            .send()
    })
    .await
    .map(|_| ())
}

/// StopServiceDeployment, rolling back or leaving things where they are (ABORT).
async fn stop_deployment(
    ecs: &Ecs,
    arn: &str,
    stop: aws_sdk_ecs::types::StopServiceDeploymentStopType,
) -> Result<(), EcsError> {
    ecs.call("StopServiceDeployment", |c| {
        c.stop_service_deployment()
            .service_deployment_arn(arn)
            .stop_type(stop)
            .send()
    })
    .await
    .map(|_| ())
}

/// The service deployment a steering key (`approve=<id>`) names.
fn deployment_of(key: &str) -> &str {
    key.split_once('=').map_or(key, |(_, id)| id)
}

/// Notes a steering annotation as acted on, keeping the last few.
fn remember(steered: &mut Vec<String>, key: String) {
    steered.push(key);
    let excess = steered.len().saturating_sub(STEERED_KEPT);
    steered.drain(..excess);
}

/// DescribeServiceDeployments of one; None when ECS no longer knows it.
async fn describe_service_deployment(ecs: &Ecs, arn: &str) -> Result<Option<ServiceDeploymentSummary>, Error> {
    let out = ecs
        .call("DescribeServiceDeployments", |c| {
            c.describe_service_deployments().service_deployment_arns(arn).send()
        })
        .await
        .found()?;
    Ok(out.and_then(|out| out.service_deployments().first().map(planner::summarize)))
}

/// One UpdateService with the planned members. Returns the service as ECS reports it
/// afterwards.
async fn update_service(
    ecs: &Ecs,
    cluster: &str,
    service: &Service,
    mut request: serde_json::Map<String, Value>,
) -> Result<Service, Error> {
    request.insert("cluster".into(), json!(cluster));
    request.insert("service".into(), json!(service.service_arn().unwrap_or_default()));
    let sdk = to_sdk(&Value::Object(request), SdkUpdateInput::deserialize)?;
    let out = ecs
        .call("UpdateService", |c| {
            c.update_service()
                .set_cluster(sdk.cluster)
                .set_service(sdk.service)
                .set_desired_count(sdk.desired_count)
                .set_task_definition(sdk.task_definition)
                .set_capacity_provider_strategy(sdk.capacity_provider_strategy)
                .set_deployment_configuration(sdk.deployment_configuration)
                .set_availability_zone_rebalancing(sdk.availability_zone_rebalancing)
                .set_network_configuration(sdk.network_configuration)
                .set_placement_constraints(sdk.placement_constraints)
                .set_placement_strategy(sdk.placement_strategy)
                .set_platform_version(sdk.platform_version)
                .set_force_new_deployment(sdk.force_new_deployment)
                .set_health_check_grace_period_seconds(sdk.health_check_grace_period_seconds)
                .set_deployment_controller(sdk.deployment_controller)
                .set_enable_execute_command(sdk.enable_execute_command)
                .set_enable_ecs_managed_tags(sdk.enable_ecs_managed_tags)
                .set_load_balancers(sdk.load_balancers)
                .set_propagate_tags(sdk.propagate_tags)
                .set_service_registries(sdk.service_registries)
                .set_service_connect_configuration(sdk.service_connect_configuration)
                .set_volume_configurations(sdk.volume_configurations)
                .set_vpc_lattice_configurations(sdk.vpc_lattice_configurations)
                .set_gateway_connectors(sdk.gateway_connectors)
                .set_monitoring(sdk.monitoring)
                .send()
        })
        .await?;
    Ok(out.service.unwrap_or_else(|| service.clone()))
}

/// True when the last pass already reported this spec's rollout as failed (one Warning
/// Event per failure, not one per pass).
fn previous_failure(previous: &EcsServiceStatus, desired: &Desired) -> bool {
    previous.rollout.as_ref().is_some_and(|r| {
        r.state == "FAILED" && r.generation == desired.generation && r.task_definition == desired.task_definition
    })
}

fn deferred_fields(deferred: &[crate::plan::Change]) -> Vec<String> {
    deferred.iter().map(|c| c.field.clone()).collect()
}

/// Copies what users look at from ECS's service into status.
fn observe_into(status: &mut EcsServiceStatus, service: &Service) {
    status.service_arn = service.service_arn().map(str::to_owned);
    status.cluster_arn = service.cluster_arn().map(str::to_owned);
    status.task_definition_arn = service.task_definition().map(str::to_owned);
    status.status = service.status().map(str::to_owned);
    status.desired_count = Some(service.desired_count());
    status.running_count = Some(service.running_count());
    status.pending_count = Some(service.pending_count());
    let mut deployments: Vec<DeploymentSummary> = service
        .deployments()
        .iter()
        .map(|d| DeploymentSummary {
            id: d.id().unwrap_or_default().to_string(),
            status: d.status().map(str::to_owned),
            rollout_state: d.rollout_state().map(|s| s.as_str().to_string()),
            rollout_state_reason: d.rollout_state_reason().map(str::to_owned),
            task_definition: d.task_definition().map(str::to_owned),
            desired_count: d.desired_count(),
            running_count: d.running_count(),
            pending_count: d.pending_count(),
            failed_tasks: d.failed_tasks(),
        })
        .collect();
    deployments.sort_by_key(|d| d.status.as_deref() != Some("PRIMARY"));
    status.deployments = deployments;
    let mut task_sets: Vec<TaskSetSummary> = service
        .task_sets()
        .iter()
        .map(|t| TaskSetSummary {
            id: t.id().unwrap_or_default().to_string(),
            status: t.status().map(str::to_owned),
            stability_status: t.stability_status().map(|s| s.as_str().to_string()),
            task_definition: t.task_definition().map(str::to_owned),
            computed_desired_count: t.computed_desired_count(),
            running_count: t.running_count(),
        })
        .collect();
    task_sets.sort_by_key(|t| t.status.as_deref() != Some("PRIMARY"));
    status.task_sets = task_sets;
    status.events = service
        .events()
        .iter()
        .take(EVENTS_KEPT)
        .map(|e| ServiceEventSummary {
            created_at: e.created_at().map(|t| t.to_string()),
            message: e.message().unwrap_or_default().to_string(),
        })
        .collect();
}

/// CreateService's clientToken: derived from the object's UID, so that a create retried
/// after a crash between CreateService and the status write cannot make a second service;
/// and from its generation, so that a service recreated after a replacement is a new
/// request to ECS rather than a replay of the first. 36 characters, ECS's limit.
pub fn client_token(uid: &str, generation: Option<i64>) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{uid}/{}", generation.unwrap_or_default()));
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..36].to_string()
}

fn same_cluster(a: &str, b: &str) -> bool {
    a.rsplit('/').next() == b.rsplit('/').next()
}

/// DescribeServices for one service (name or ARN), tags included. None when ECS reports it
/// MISSING or INACTIVE (INACTIVE counts as gone); a missing cluster means no service either.
pub(crate) async fn describe(ecs: &Ecs, cluster: &str, service: &str) -> Result<Option<Service>, EcsError> {
    Ok(describe_many(ecs, cluster, vec![service.to_string()])
        .await?
        .into_values()
        .next())
}

/// DescribeServices for up to 10 services of one cluster, tags included: the services ECS
/// has, by ARN, INACTIVE ones left out. A missing cluster has none.
async fn describe_many(ecs: &Ecs, cluster: &str, arns: Vec<String>) -> Result<HashMap<String, Service>, EcsError> {
    let described = ecs
        .call("DescribeServices", |c| {
            c.describe_services()
                .cluster(cluster)
                .set_services(Some(arns))
                .include(ServiceField::Tags)
                .send()
        })
        .await
        .found()?;
    Ok(described
        .and_then(|out| out.services)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.status() != Some("INACTIVE"))
        .map(keep_recent_events)
        .filter_map(|s| Some((s.service_arn()?.to_string(), s)))
        .collect())
}

/// The service with only the events status shows. ECS answers each service's last 100
/// events, and a resync holds every service's answer until its reconcile takes it: for
/// 10 000 services, a million events nobody reads.
fn keep_recent_events(mut service: Service) -> Service {
    if let Some(events) = service.events.as_mut() {
        events.truncate(EVENTS_KEPT);
    }
    service
}

/// DeleteService with force (no need to scale to 0 first). Returns the service as ECS
/// reports it afterwards (DRAINING, or INACTIVE), None when it was already gone.
async fn delete(ecs: &Ecs, cluster: &str, service: &str) -> Result<Option<Service>, EcsError> {
    let deleted = ecs
        .call("DeleteService", |c| {
            c.delete_service().cluster(cluster).service(service).force(true).send()
        })
        .await
        .found()?;
    Ok(deleted.and_then(|out| out.service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::Client;
    use aws_sdk_ecs::operation::delete_service::DeleteServiceOutput;
    use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
    use aws_sdk_ecs::types::{Deployment, Failure, Tag};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[test]
    fn a_described_service_keeps_only_the_newest_events_status_shows() {
        // NB: ECS lists a service's events newest first, up to 100.
        let events: Vec<_> = (0..100)
            .rev()
            .map(|i| aws_sdk_ecs::types::ServiceEvent::builder().id(format!("e{i}")).build())
            .collect();
        let service = Service::builder().set_events(Some(events)).build();
        let kept: Vec<_> = keep_recent_events(service)
            .events()
            .iter()
            .filter_map(|e| e.id().map(str::to_owned))
            .collect();
        assert_eq!(kept, ["e99", "e98", "e97", "e96", "e95"]);
    }

    const TD_1: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:1";
    const ARN: &str = "arn:aws:ecs:us-east-1:1:service/prod/web";

    fn object() -> EcsService {
        let mut svc: EcsService = serde_json::from_value(json!({
            "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "generation": 2},
            "spec": {"cluster": "prod", "taskDefinition": "web:2", "desiredCount": 2},
        }))
        .expect("object");
        svc.status = Some(EcsServiceStatus {
            common: CommonStatus {
                observed_generation: Some(2),
                ..Default::default()
            },
            ..Default::default()
        });
        svc
    }

    fn service(status: &str, deployments: Vec<Deployment>) -> Service {
        Service::builder()
            .service_name("web")
            .service_arn(ARN)
            .status(status)
            .task_definition(deployments.first().and_then(|d| d.task_definition()).unwrap_or(TD_1))
            .desired_count(2)
            .running_count(2)
            .set_deployments(Some(deployments))
            .tags(Tag::builder().key(ownership::UID).value("u-1").build())
            .build()
    }

    #[tokio::test]
    async fn deletion_waits_out_draining() {
        let draining = mock!(Client::describe_services).then_output(|| {
            DescribeServicesOutput::builder()
                .services(service("DRAINING", vec![]))
                .build()
        });
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&draining]));
        assert!(matches!(
            object().delete_and_wait(&ecs, "prod", ARN).await,
            Err(Error::Draining(_))
        ));

        let active = mock!(Client::describe_services).then_output(|| {
            DescribeServicesOutput::builder()
                .services(service("ACTIVE", vec![]))
                .build()
        });
        let delete = mock!(Client::delete_service)
            .match_requests(|req| req.force() == Some(true))
            .then_output(|| {
                DeleteServiceOutput::builder()
                    .service(service("DRAINING", vec![]))
                    .build()
            });
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&active, &delete]));
        assert!(matches!(
            object().delete_and_wait(&ecs, "prod", ARN).await,
            Err(Error::Draining(_))
        ));
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn missing_in_failures_and_service_not_found_both_mean_gone() {
        let missing = mock!(Client::describe_services).then_output(|| {
            DescribeServicesOutput::builder()
                .failures(Failure::builder().arn(ARN).reason("MISSING").build())
                .build()
        });
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&missing]));
        assert!(object().delete_and_wait(&ecs, "prod", ARN).await.is_ok());

        let active = mock!(Client::describe_services).then_output(|| {
            DescribeServicesOutput::builder()
                .services(service("ACTIVE", vec![]))
                .build()
        });
        let not_found = mock!(Client::delete_service)
            .sequence()
            .http_status(
                400,
                Some(r#"{"__type":"ServiceNotFoundException","message":"Service not found."}"#.into()),
            )
            .build();
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&active, &not_found]));
        assert!(object().delete_and_wait(&ecs, "prod", ARN).await.is_ok());
    }

    #[tokio::test]
    async fn throttled_reads_are_retried_not_stalled() {
        let throttled = mock!(Client::describe_services)
            .sequence()
            .http_status(
                400,
                Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into()),
            )
            .times(5)
            .build();
        let ecs = Ecs::unlimited(mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[&throttled]));
        let err = object()
            .delete_and_wait(&ecs, "prod", ARN)
            .await
            .expect_err("throttled");
        assert!(!err.is_terminal());
        assert_eq!(err.reason(), "Throttled");
    }

    #[test]
    fn the_client_token_is_stable_per_generation_and_fits_ecs() {
        let uid = "0319410a-003c-402b-8da7-8c6453ab2353";
        assert_eq!(client_token(uid, Some(1)), client_token(uid, Some(1)));
        assert_ne!(client_token(uid, Some(1)), client_token(uid, Some(2)));
        assert_eq!(client_token(uid, Some(1)).len(), 36);
    }
}
