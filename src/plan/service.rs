//! EcsService: what ECS must do for a spec, decided from what DescribeServices reported.
//!
//! It reads top-down like ECS's page for a service:
//! - a service that does not exist is created; a same-name service still DRAINING is
//!   waited out;
//! - serviceName, cluster, launchType (from one launch type to another), schedulingStrategy
//!   and role cannot change in place: the service is replaced, if the spec allows it;
//! - everything else changes through one UpdateService carrying exactly the fields that
//!   differ, compared the way ECS reports them (aliases, upper case, lists without order),
//!   with forceNewDeployment where ECS demands one;
//! - under the CODE_DEPLOY and EXTERNAL deployment controllers UpdateService takes only a
//!   few fields; the rest belongs to that controller and is reported, not fought over;
//! - a rollout of the current spec that failed is never sent again for that spec;
//! - Ready means steady: the spec's deployment (or task set) runs all its tasks.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service, StabilityStatus};
use serde_json::{Map, Value, json};

use super::{Change, State, Write};
use crate::api::ecs_types::{CreateServiceInput, SchedulingStrategy};
use crate::api::service::{HookSummary, RolloutRecord, ServiceDeploymentSummary};
use crate::api::{EcsService, EcsServiceSpec, EcsServiceStatus};
use crate::ecs::diff::matches;
use crate::ecs::wire::{WireError, from_sdk};

/// How soon a rolling or draining service is looked at again.
pub const ROLLING_RECHECK: Duration = Duration::from_secs(5);
/// How soon a task set that is stabilising is looked at again: CodeDeploy and external
/// deployments shift traffic over minutes.
pub const TASK_SET_RECHECK: Duration = Duration::from_secs(15);
/// How soon a service waiting for its deployment controller is looked at again: nothing is
/// in flight, so there is nothing to watch closely.
pub const CONTROLLER_RECHECK: Duration = Duration::from_secs(60);

/// Fields UpdateService can change; each goes into the call only when the spec sets it and
/// ECS reports something else (capacityProviderStrategy, desiredCount and taskDefinition
/// have rules of their own below).
const UPDATABLE: &[&str] = &[
    "deploymentConfiguration",
    "availabilityZoneRebalancing",
    "networkConfiguration",
    "placementConstraints",
    "placementStrategy",
    "platformVersion",
    "healthCheckGracePeriodSeconds",
    "deploymentController",
    "enableExecuteCommand",
    "enableECSManagedTags",
    "loadBalancers",
    "propagateTags",
    "serviceRegistries",
    "serviceConnectConfiguration",
    "volumeConfigurations",
    "vpcLatticeConfigurations",
    "gatewayConnectors",
    "monitoring",
];

/// ECS reports these on the PRIMARY deployment rather than on the service.
const DEPLOYMENT_LEVEL: &[&str] = &[
    "serviceConnectConfiguration",
    "volumeConfigurations",
    "vpcLatticeConfigurations",
];

/// Lists ECS treats as sets: DescribeServices promises no order for them (Terraform keeps
/// them as sets too). Placement strategies are not among them: ECS applies them in order.
const UNORDERED: &[&str] = &[
    "networkConfiguration.awsvpcConfiguration.subnets",
    "networkConfiguration.awsvpcConfiguration.securityGroups",
    "loadBalancers",
    "serviceRegistries",
    "placementConstraints",
    "capacityProviderStrategy",
];

/// What the spec asks of ECS, with its references resolved.
pub struct Desired<'a> {
    /// The spec.
    pub spec: &'a EcsServiceSpec,
    /// The service name: spec.serviceName, else metadata.name.
    pub name: String,
    /// The cluster, by name or ARN.
    pub cluster: String,
    /// The task definition (family, family:revision or ARN); None under EXTERNAL.
    pub task_definition: Option<String>,
    /// metadata.generation.
    pub generation: Option<i64>,
}

impl<'a> Desired<'a> {
    /// What `svc` asks for, given the cluster and task definition its spec resolves to.
    pub fn new(svc: &'a EcsService, cluster: String, task_definition: Option<String>) -> Self {
        Self {
            spec: &svc.spec,
            name: svc.service_name(),
            cluster,
            task_definition,
            generation: svc.metadata.generation,
        }
    }
}

/// The one thing to do about a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// CreateService with this input (the executor adds tags and the clientToken).
    Create {
        /// CreateService's input.
        input: Box<CreateServiceInput>,
        /// desiredCount was unset and is sent as 1.
        desired_count_defaulted: bool,
    },
    /// A previous service of this name is DRAINING; ECS cannot create it again yet.
    WaitForDrain,
    /// A field ECS cannot change in place differs: delete and create anew, if allowed.
    Replace {
        /// The field that differs.
        field: &'static str,
        /// spec.allowReplacement.
        allowed: bool,
    },
    /// One UpdateService.
    Update(Update),
    /// The rollout of this spec failed: nothing is sent until the spec or the task
    /// definition changes.
    RolloutFailed {
        /// The deployment that failed, if ECS still names it.
        deployment: Option<String>,
        /// Why, in ECS's words.
        reason: String,
    },
    /// ECS matches the spec.
    InSync {
        /// Differences left to the CODE_DEPLOY or EXTERNAL deployment controller.
        deferred: Vec<Change>,
    },
}

/// The fields of one UpdateService.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    /// What changes.
    pub changes: Vec<Change>,
    /// Why forceNewDeployment is set, when it is.
    pub force_new_deployment: Option<&'static str>,
    /// Differences left to the CODE_DEPLOY or EXTERNAL deployment controller.
    pub deferred: Vec<Change>,
}

impl Update {
    /// UpdateService's members (without cluster and service).
    pub fn request(&self) -> Map<String, Value> {
        let mut request: Map<String, Value> = self.changes.iter().map(|c| (c.field.clone(), c.to.clone())).collect();
        if self.force_new_deployment.is_some() {
            request.insert("forceNewDeployment".into(), json!(true));
        }
        request
    }

    /// The changed fields, for Events: "networkConfiguration, desiredCount (new deployment
    /// forced: ...)".
    pub fn fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self.changes.iter().map(|c| c.field.clone()).collect();
        if let Some(why) = self.force_new_deployment {
            fields.push(format!("new deployment forced: {why}"));
        }
        fields
    }
}

impl Plan {
    /// The plan as JSON, as table tests and `diff` show it.
    pub fn summary(&self) -> Value {
        let deferred = |d: &[Change]| d.iter().map(|c| c.field.clone()).collect::<Vec<_>>();
        match self {
            Plan::Create { input, .. } => json!({"action": "Create", "request": input}),
            Plan::WaitForDrain => json!({"action": "WaitForDrain"}),
            Plan::Replace { field, allowed } => json!({"action": "Replace", "field": field, "allowed": allowed}),
            Plan::Update(update) => {
                json!({"action": "Update", "request": update.request(), "deferred": deferred(&update.deferred)})
            }
            Plan::RolloutFailed { reason, .. } => json!({"action": "RolloutFailed", "reason": reason}),
            Plan::InSync { deferred: d } => json!({"action": "InSync", "deferred": deferred(d)}),
        }
    }
}

/// Decides what to do about the service `observed` (as DescribeServices reported it; None
/// when ECS has none) for `desired`, given the status of the last pass.
pub fn plan(
    desired: &Desired,
    observed: Option<&Service>,
    service_deployment: Option<&ServiceDeploymentSummary>,
    last: &EcsServiceStatus,
) -> Result<Plan, WireError> {
    // DescribeServices keeps reporting a deleted service INACTIVE for a while: it is gone.
    let Some(service) = observed.filter(|s| s.status() != Some("INACTIVE")) else {
        return Ok(create(desired));
    };
    // DeleteService: "If you attempt to create a new service with the same name as an
    // existing service in either ACTIVE or DRAINING status, you receive an error."
    if service.status() == Some("DRAINING") {
        return Ok(Plan::WaitForDrain);
    }
    if let Some(field) = immutable_difference(desired.spec, service) {
        return Ok(Plan::Replace {
            field,
            allowed: desired.spec.allow_replacement,
        });
    }
    let update = differences(desired, service, last)?;
    if let Some((deployment, reason)) = rollout_failure(desired, service, service_deployment, last) {
        return Ok(Plan::RolloutFailed { deployment, reason });
    }
    if update.changes.is_empty() && update.force_new_deployment.is_none() {
        return Ok(Plan::InSync {
            deferred: update.deferred,
        });
    }
    Ok(Plan::Update(update))
}

/// The ECS writes `plan` makes for the service `desired` names (tags aside). A replacement
/// is a DeleteService now and a CreateService once the old service is INACTIVE; a
/// replacement the spec does not allow makes none (the object stalls instead).
pub fn writes(plan: &Plan, desired: &Desired) -> Vec<Write> {
    let cluster = desired.cluster.rsplit('/').next().unwrap_or(&desired.cluster);
    let target = format!("{} in {cluster}", desired.name);
    match plan {
        Plan::Create { .. } => vec![Write::new("CreateService", target, "no such service")],
        Plan::WaitForDrain => vec![Write::new(
            "CreateService",
            target,
            "once the previous service of this name is INACTIVE",
        )],
        Plan::Replace { field, allowed: true } => {
            let why = format!("{field} changed; ECS cannot change it in place");
            vec![
                Write::new("DeleteService", target.clone(), why.clone()),
                Write::new("CreateService", target, why),
            ]
        }
        Plan::Update(update) => {
            let why = update
                .force_new_deployment
                .map(|why| format!("new deployment forced: {why}"))
                .unwrap_or_default();
            vec![Write::new("UpdateService", target, why).changing(update.changes.clone())]
        }
        Plan::Replace { allowed: false, .. } | Plan::RolloutFailed { .. } | Plan::InSync { .. } => vec![],
    }
}

fn create(desired: &Desired) -> Plan {
    let mut input = desired.spec.service.clone();
    input.service_name = Some(desired.name.clone());
    input.cluster = Some(desired.cluster.clone());
    input.task_definition = desired.task_definition.clone();
    // CreateService.desiredCount "is required if schedulingStrategy is REPLICA or isn't
    // specified". Unset in spec means an autoscaler owns it: start at 1 (CloudFormation's
    // rule for the same case); it is never sent again (see `differences`).
    let replica = input.scheduling_strategy != Some(SchedulingStrategy::Daemon);
    let desired_count_defaulted = replica && input.desired_count.is_none();
    if desired_count_defaulted {
        input.desired_count = Some(1);
    }
    Plan::Create {
        input: Box::new(input),
        desired_count_defaulted,
    }
}

/// The first field ECS cannot change in place that differs from the running service.
fn immutable_difference(spec: &EcsServiceSpec, service: &Service) -> Option<&'static str> {
    let spec = &spec.service;
    // NB: DescribeServices omits launchType for a service on a capacity provider strategy;
    // moving between a launch type and a strategy is an update (see capacity_provider_change).
    if let Some(launch_type) = &spec.launch_type
        && service
            .launch_type()
            .is_some_and(|l| l.as_str() != launch_type.as_str())
    {
        return Some("launchType");
    }
    if let Some(strategy) = &spec.scheduling_strategy
        && service
            .scheduling_strategy()
            .is_some_and(|s| s.as_str() != strategy.as_str())
    {
        return Some("schedulingStrategy");
    }
    if let Some(role) = &spec.role
        && service
            .role_arn()
            .is_some_and(|r| r != role && !r.ends_with(&format!("/{role}")))
    {
        return Some("role");
    }
    None
}

/// Everything the spec sets that ECS reports otherwise, split into what UpdateService may
/// change under the service's deployment controller and what it may not.
fn differences(desired: &Desired, service: &Service, last: &EcsServiceStatus) -> Result<Update, WireError> {
    let observed: Value = from_sdk(service)?;
    let primary = observed["deployments"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["status"] == "PRIMARY").cloned())
        .unwrap_or(Value::Null);
    let spec = serde_json::to_value(&desired.spec.service).map_err(|e| WireError::Encode("service", e))?;
    let mut changes = vec![];
    let mut force_new_deployment = None;
    for field in UPDATABLE {
        let Some(want) = spec.get(*field).filter(|v| !v.is_null()) else {
            continue;
        };
        let have = if DEPLOYMENT_LEVEL.contains(field) {
            &primary[*field]
        } else {
            &observed[*field]
        };
        if !matches(&comparable(field, want), &comparable(field, have), field, UNORDERED) {
            changes.push(change(field, have, want));
        }
    }
    if let Some(change) = capacity_provider_change(&spec, &observed) {
        changes.push(change);
        // UpdateService: "When switching from launch type to capacity provider strategy on
        // an existing service, or making a change to a capacity provider strategy on a
        // service that is already using one, you must force a new deployment."
        force_new_deployment = Some("ECS requires one for a capacity provider strategy change");
    }
    if let Some(count) = desired.spec.service.desired_count
        && service.desired_count() != count
    {
        changes.push(change("desiredCount", &json!(service.desired_count()), &json!(count)));
    }
    if let Some(wanted) = &desired.task_definition {
        let running = service.task_definition().unwrap_or_default();
        if !task_definition_matches(wanted, running) {
            changes.push(change("taskDefinition", &json!(running), &json!(wanted)));
        }
    }
    let trigger = &desired.spec.redeploy_trigger;
    let retrigger = trigger.is_some() && *trigger != last.observed_redeploy_trigger;
    if retrigger {
        force_new_deployment = Some("redeployTrigger changed");
    }
    let controller = controller(service);
    if controller == "ECS" {
        return Ok(Update {
            changes,
            force_new_deployment,
            deferred: vec![],
        });
    }
    let (changes, mut deferred): (Vec<Change>, Vec<Change>) =
        changes.into_iter().partition(|c| updatable_under(controller, &c.field));
    if retrigger {
        deferred.push(change(
            "redeployTrigger",
            &json!(last.observed_redeploy_trigger),
            &json!(trigger),
        ));
    }
    Ok(Update {
        changes,
        force_new_deployment: None,
        deferred,
    })
}

fn change(field: &str, from: &Value, to: &Value) -> Change {
    Change {
        field: field.to_string(),
        from: from.clone(),
        to: to.clone(),
    }
}

/// A service runs on a launch type or on a capacity provider strategy (DescribeServices
/// reports only the one in use). UpdateService has no launchType: the way from a launch
/// type to a strategy is the strategy, and back "Pass an empty list in the
/// capacityProviderStrategy parameter" (botocore, UpdateService.capacityProviderStrategy).
fn capacity_provider_change(spec: &Value, observed: &Value) -> Option<Change> {
    let field = "capacityProviderStrategy";
    let have = &observed[field];
    let in_use = have.as_array().is_some_and(|a| !a.is_empty());
    match spec.get(field).and_then(Value::as_array) {
        Some(want) if !want.is_empty() => {
            let want = Value::Array(want.clone());
            (!matches(&want, have, field, UNORDERED)).then(|| change(field, have, &want))
        }
        // An explicit empty strategy, or a launch type, while a strategy is in use.
        Some(_) if in_use => Some(change(field, have, &json!([]))),
        None if in_use && spec.get("launchType").is_some_and(|l| !l.is_null()) => Some(change(field, have, &json!([]))),
        _ => None,
    }
}

/// The deployment controller ECS reports: ECS, CODE_DEPLOY or EXTERNAL.
fn controller(service: &Service) -> &str {
    service
        .deployment_controller()
        .map(|c| c.r#type().as_str())
        .unwrap_or("ECS")
}

/// UpdateService: "For services using the blue/green (CODE_DEPLOY) deployment controller,
/// only the desired count, deployment configuration, health check grace period, task
/// placement constraints and strategies, enable ECS managed tags option, and propagate tags
/// can be updated using this API"; under EXTERNAL the same, without the deployment
/// configuration. The task definition, network, load balancers and platform version reach
/// such a service through CodeDeploy or a new task set.
fn updatable_under(controller: &str, field: &str) -> bool {
    let common = [
        "desiredCount",
        "healthCheckGracePeriodSeconds",
        "placementConstraints",
        "placementStrategy",
        "enableECSManagedTags",
        "propagateTags",
    ];
    common.contains(&field) || (controller == "CODE_DEPLOY" && field == "deploymentConfiguration")
}

/// A value as ECS compares it. DescribeServices reports a placement strategy's `field`
/// `host` as `instanceId` and `memory`/`cpu` as `MEMORY`/`CPU` (Terraform's
/// flattenPlacementStrategy maps them back too); and it reports a Service Connect namespace
/// as an ARN, so a namespace given by name is left out (it cannot be checked without Cloud
/// Map).
fn comparable(field: &str, value: &Value) -> Value {
    let mut value = value.clone();
    match field {
        "placementStrategy" => {
            for item in value.as_array_mut().into_iter().flatten() {
                if let Some(name) = item.get("field").and_then(Value::as_str) {
                    let canonical = match name.to_ascii_lowercase().as_str() {
                        "host" | "instanceid" => "instanceId".to_string(),
                        "memory" => "MEMORY".to_string(),
                        "cpu" => "CPU".to_string(),
                        _ => name.to_string(),
                    };
                    item["field"] = json!(canonical);
                }
            }
        }
        "serviceConnectConfiguration" => {
            if let Some(config) = value.as_object_mut()
                && config
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.starts_with("arn:"))
            {
                config.remove("namespace");
            }
        }
        _ => {}
    }
    value
}

/// True when ECS's task definition ARN is what the spec asks for: an ARN or family:revision
/// must match exactly; a bare family means its latest revision at the time of the last
/// update, so any revision of that family is in place (comparing a family with a revision
/// ARN is how other controllers redeploy on every poll).
pub fn task_definition_matches(wanted: &str, observed: &str) -> bool {
    if wanted.starts_with("arn:") {
        return wanted == observed;
    }
    let observed_family_revision = observed.rsplit('/').next().unwrap_or(observed);
    match wanted.split_once(':') {
        Some(_) => observed_family_revision == wanted,
        None => observed_family_revision.split(':').next() == Some(wanted),
    }
}

/// The failed rollout of the current spec, which must not be sent again: returns the
/// deployment and ECS's reason.
///
/// A deployment circuit breaker with rollback returns the service to "the last service
/// revision that completed successfully" (task definition, network, load balancers,
/// Service Connect, volumes), so after a failed change of any of them ECS runs the old
/// configuration and the spec differs again; re-sending it would deploy, fail and roll back
/// forever. The status records the deployment the operator started for each spec
/// (generation and task definition); its failure holds until either changes.
fn rollout_failure(
    desired: &Desired,
    service: &Service,
    service_deployment: Option<&ServiceDeploymentSummary>,
    last: &EcsServiceStatus,
) -> Option<(Option<String>, String)> {
    let record = last
        .rollout
        .as_ref()
        .filter(|r| r.generation == desired.generation && r.task_definition == desired.task_definition);
    if let Some(record) = record {
        let id = Some(record.deployment_id.clone());
        if record.state == "FAILED" {
            return Some((id, record.reason.clone().unwrap_or_else(|| "no reason given".into())));
        }
        // The service deployment it belongs to was rolled back or stopped (a lifecycle hook
        // failed, an approval was refused, a user stopped it).
        if let Some(sd) = service_deployment.filter(|sd| record.service_deployment_arn.as_deref() == Some(&sd.arn))
            && let Some(reason) = ended_without_success(sd)
        {
            return Some((id, reason));
        }
        return match service
            .deployments()
            .iter()
            .find(|d| d.id() == Some(&record.deployment_id))
        {
            Some(d) if d.rollout_state() == Some(&DeploymentRolloutState::Failed) => {
                Some((id, d.rollout_state_reason().unwrap_or("no reason given").to_string()))
            }
            Some(_) => None,
            // Gone before the operator saw it complete: a newer deployment replaced it, and
            // on a service only the operator deploys that is ECS rolling back (a forced
            // redeploy rolled back even leaves the configuration as the spec asks).
            None if record.state == "IN_PROGRESS" => Some((
                id,
                format!(
                    "ECS replaced deployment {} before it completed and runs the previous configuration (a deployment circuit breaker rollback)",
                    record.deployment_id
                ),
            )),
            None => None,
        };
    }
    // No record for this spec (a status from an older operator, or a lost status write): a
    // FAILED deployment of the wanted task definition that no newer one superseded.
    let wanted = desired.task_definition.as_deref()?;
    let on_target = |d: &Deployment| {
        d.task_definition()
            .is_some_and(|td| task_definition_matches(wanted, td))
    };
    let primary = service.deployments().iter().find(|d| d.status() == Some("PRIMARY"));
    let superseded = |failed: &Deployment| {
        primary.is_some_and(|p| {
            on_target(p)
                && p.rollout_state() != Some(&DeploymentRolloutState::Failed)
                && p.created_at() > failed.created_at()
        })
    };
    let failed = service
        .deployments()
        .iter()
        .find(|d| d.rollout_state() == Some(&DeploymentRolloutState::Failed) && on_target(d) && !superseded(d))?;
    Some((
        failed.id().map(str::to_owned),
        failed.rollout_state_reason().unwrap_or("no reason given").to_string(),
    ))
}

/// What status records of the deployment for the current spec after `plan` was carried
/// out and ECS answered `service`: the deployment a create or update started, or the last
/// record brought up to date.
pub fn rollout_record(
    desired: &Desired,
    plan: &Plan,
    service: &Service,
    last: &EcsServiceStatus,
) -> Option<RolloutRecord> {
    let primary = service.deployments().iter().find(|d| d.status() == Some("PRIMARY"));
    let seen = |d: &Deployment| RolloutRecord {
        deployment_id: d.id().unwrap_or_default().to_string(),
        generation: desired.generation,
        task_definition: desired.task_definition.clone(),
        state: d
            .rollout_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "IN_PROGRESS".into()),
        reason: d
            .rollout_state()
            .filter(|s| **s == DeploymentRolloutState::Failed)
            .and(d.rollout_state_reason().map(str::to_owned)),
        service_deployment_arn: service.current_service_deployment().map(str::to_owned),
    };
    match plan {
        Plan::Create { .. } | Plan::Update(_) => primary.map(seen).or_else(|| last.rollout.as_deref().cloned()),
        Plan::RolloutFailed { deployment, reason } => Some(RolloutRecord {
            deployment_id: deployment.clone().unwrap_or_default(),
            generation: desired.generation,
            task_definition: desired.task_definition.clone(),
            state: "FAILED".into(),
            reason: Some(reason.clone()),
            service_deployment_arn: last.rollout.as_ref().and_then(|r| r.service_deployment_arn.clone()),
        }),
        _ => {
            let mut record = last.rollout.as_deref().cloned()?;
            if let Some(now) = service
                .deployments()
                .iter()
                .find(|d| d.id() == Some(&record.deployment_id))
            {
                let seen = seen(now);
                record.state = seen.state;
                record.reason = seen.reason;
            }
            Some(record)
        }
    }
}

/// Where the service stands once the plan is carried out: steady, rolling, or failed.
pub fn readiness(
    desired: &Desired,
    plan: &Plan,
    service: &Service,
    service_deployment: Option<&ServiceDeploymentSummary>,
) -> State {
    if let Plan::RolloutFailed { deployment, reason } = plan {
        let which = deployment.as_deref().unwrap_or("of this spec");
        let rolled_back = service_deployment.is_some_and(|sd| {
            sd.status
                .as_deref()
                .is_some_and(|s| s.starts_with("ROLLBACK_") && s != "ROLLBACK_FAILED")
        });
        return State::Failed {
            reason: if rolled_back { "RolledBack" } else { "RolloutFailed" },
            message: format!(
                "deployment {which} failed: {reason}; it is not retried until the spec or the task definition changes"
            ),
        };
    }
    if let Some(state) = service_deployment.and_then(|sd| stage_readiness(service, sd)) {
        return state;
    }
    match controller(service) {
        "ECS" => deployment_readiness(desired, service),
        other => task_set_readiness(other, plan, service),
    }
}

/// How soon a service deployment paused at a PAUSE hook is looked at again: it can wait
/// up to the hook's timeout (24 hours by default); an approval wakes the object at once.
pub const PAUSED_RECHECK: Duration = Duration::from_secs(60);

/// While the current service deployment is in flight: paused for an approval, or moving
/// through its lifecycle stages. None once it has ended (readiness then rests on the
/// deployments, or on the plan's failure).
fn stage_readiness(service: &Service, sd: &ServiceDeploymentSummary) -> Option<State> {
    if !in_flight(sd) || service.current_service_deployment() != Some(sd.arn.as_str()) {
        return None;
    }
    let stage = sd.lifecycle_stage.as_deref().unwrap_or("PENDING");
    if let Some(hook) = sd.hook.as_ref().filter(|h| awaiting_approval(h)) {
        let until = hook.expires_at.as_deref().unwrap_or("its timeout");
        let then = hook.timeout_action.as_deref().unwrap_or("ROLLBACK");
        return Some(State::InProgress {
            reason: "AwaitingApproval",
            message: format!(
                "service deployment {} is paused at {stage} until approved or rolled back (ecs-operator rollout approve|rollback); at {until} ECS will {}",
                sd.id,
                then.to_lowercase().replace('_', " ")
            ),
            recheck: PAUSED_RECHECK,
        });
    }
    Some(State::InProgress {
        reason: "RollingOut",
        message: format!(
            "service deployment {} ({}) is {} at {stage}",
            sd.id,
            sd.strategy.as_deref().unwrap_or("ROLLING"),
            sd.status.as_deref().unwrap_or("IN_PROGRESS")
        ),
        recheck: ROLLING_RECHECK,
    })
}

/// True for a hook waiting on a person: a PAUSE hook AWAITING_ACTION.
pub fn awaiting_approval(hook: &HookSummary) -> bool {
    hook.target_type.as_deref() == Some("PAUSE") && hook.status.as_deref() == Some("AWAITING_ACTION")
}

/// True while a service deployment has not ended.
pub fn in_flight(sd: &ServiceDeploymentSummary) -> bool {
    !matches!(
        sd.status.as_deref(),
        Some("SUCCESSFUL" | "STOPPED" | "ROLLBACK_SUCCESSFUL" | "ROLLBACK_FAILED")
    )
}

/// Why a service deployment ended (or is ending) without success: rolled back or stopped.
fn ended_without_success(sd: &ServiceDeploymentSummary) -> Option<String> {
    let status = sd.status.as_deref()?;
    let failed = status.starts_with("ROLLBACK_") || status.starts_with("STOP");
    failed.then(|| {
        let why = sd
            .rollback
            .clone()
            .or_else(|| sd.status_reason.clone())
            .unwrap_or_else(|| "no reason given".into());
        format!("service deployment {} is {status}: {why}", sd.id)
    })
}

/// The service deployment to read this pass, if any: under a strategy with lifecycle
/// stages (BLUE_GREEN, CANARY, LINEAR), the current one, unless status already holds it
/// ended. A ROLLING deployment is followed through the service's deployments alone, and
/// nothing is read at idle.
pub fn service_deployment_to_read<'a>(
    desired: &Desired,
    service: &'a Service,
    last: &EcsServiceStatus,
) -> Option<&'a str> {
    let strategy = desired
        .spec
        .service
        .deployment_configuration
        .as_ref()
        .and_then(|d| d.strategy.as_ref())
        .map(|s| s.as_str());
    if matches!(strategy, None | Some("ROLLING")) {
        return None;
    }
    let current = service.current_service_deployment()?;
    let recorded = last.service_deployment.as_deref().filter(|sd| sd.arn == current);
    recorded.is_none_or(in_flight).then_some(current)
}

/// The annotation that approves a service deployment paused at a PAUSE hook; its value
/// names the service deployment (the last part of its ARN, or the ARN).
pub const APPROVE: &str = "ecs.operator.dev/approve";
/// The annotation that rolls a service deployment back (at its PAUSE hook, or stopping it).
pub const ROLLBACK: &str = "ecs.operator.dev/rollback";
/// The annotation that stops a service deployment where it is (StopServiceDeployment ABORT).
pub const ABORT: &str = "ecs.operator.dev/abort";

/// One act a steering annotation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Steer {
    /// ContinueServiceDeployment(CONTINUE) of the paused hook.
    Approve { arn: String, hook_id: String },
    /// ContinueServiceDeployment(ROLLBACK) of the paused hook.
    RollBackAtHook { arn: String, hook_id: String },
    /// StopServiceDeployment(ROLLBACK).
    RollBack { arn: String },
    /// StopServiceDeployment(ABORT).
    Abort { arn: String },
    /// Nothing to do, and why (an annotation left from an earlier deployment, ...).
    Ignore(String),
}

/// What the steering annotations ask of the current service deployment, each once: an
/// annotation already acted on (`steered` holds `verb=value`) asks for nothing, and one
/// naming another deployment than the current one is ignored, so that an approval left
/// from an earlier deployment never approves the next. An approval of the current
/// deployment before it pauses waits for the pause.
pub fn steering(
    annotations: &BTreeMap<String, String>,
    sd: Option<&ServiceDeploymentSummary>,
    steered: &[String],
) -> Vec<(String, Steer)> {
    let mut steps = vec![];
    for (annotation, verb) in [(APPROVE, "approve"), (ROLLBACK, "rollback"), (ABORT, "abort")] {
        let Some(named) = annotations.get(annotation).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            continue;
        };
        let key = format!("{verb}={named}");
        if steered.contains(&key) {
            continue;
        }
        let current = sd.filter(|sd| sd.id == named || sd.arn == named);
        let step = match current {
            None => Steer::Ignore(format!(
                "{annotation}={named} names a service deployment that is not the current one ({})",
                sd.map_or("none", |sd| sd.id.as_str())
            )),
            Some(sd) if !in_flight(sd) => Steer::Ignore(format!(
                "{annotation}={named}: service deployment {} has ended ({})",
                sd.id,
                sd.status.as_deref().unwrap_or("unknown")
            )),
            Some(sd) => {
                let paused = sd.hook.as_ref().filter(|h| awaiting_approval(h));
                let arn = sd.arn.clone();
                match (verb, paused) {
                    ("approve", Some(hook)) => Steer::Approve {
                        arn,
                        hook_id: hook.hook_id.clone(),
                    },
                    // NB: not paused yet: the approval waits for the pause.
                    ("approve", None) => continue,
                    ("rollback", Some(hook)) => Steer::RollBackAtHook {
                        arn,
                        hook_id: hook.hook_id.clone(),
                    },
                    ("rollback", None) => Steer::RollBack { arn },
                    _ => Steer::Abort { arn },
                }
            }
        };
        steps.push((key, step));
    }
    steps
}

/// What status keeps of a service deployment ECS described.
pub fn summarize(sd: &aws_sdk_ecs::types::ServiceDeployment) -> ServiceDeploymentSummary {
    let arn = sd.service_deployment_arn().unwrap_or_default().to_string();
    let monitor = |status: Option<&aws_sdk_ecs::types::ServiceDeploymentRollbackMonitorsStatus>| {
        status.map(|s| s.as_str().to_string())
    };
    let hook = sd
        .lifecycle_hook_details()
        .iter()
        .rev()
        .find(|h| matches!(h.status().map(|s| s.as_str()), Some("AWAITING_ACTION" | "IN_PROGRESS")))
        .map(|h| HookSummary {
            hook_id: h.hook_id().unwrap_or_default().to_string(),
            target_type: h.target_type().map(|t| t.as_str().to_string()),
            status: h.status().map(|s| s.as_str().to_string()),
            expires_at: h.expires_at().map(|t| t.to_string()),
            timeout_action: h.timeout_action().map(|a| a.as_str().to_string()),
        });
    let alarms = sd.alarms().map(|a| {
        let status = monitor(a.status()).unwrap_or_default();
        match a.triggered_alarm_names() {
            [] => status,
            triggered => format!("{status} ({})", triggered.join(", ")),
        }
    });
    ServiceDeploymentSummary {
        id: arn.rsplit('/').next().unwrap_or_default().to_string(),
        arn,
        status: sd.status().map(|s| s.as_str().to_string()),
        status_reason: sd.status_reason().map(str::to_owned),
        lifecycle_stage: sd.lifecycle_stage().map(|s| s.as_str().to_string()),
        strategy: sd
            .deployment_configuration()
            .and_then(|c| c.strategy())
            .map(|s| s.as_str().to_string()),
        source_service_revisions: sd
            .source_service_revisions()
            .iter()
            .filter_map(|r| r.arn().map(str::to_owned))
            .collect(),
        target_service_revision: sd.target_service_revision().and_then(|r| r.arn()).map(str::to_owned),
        rollback: sd.rollback().map(|r| {
            let to = r.service_revision_arn().unwrap_or("the previous service revision");
            format!("{} (back to {to})", r.reason().unwrap_or("rolled back"))
        }),
        circuit_breaker: sd.deployment_circuit_breaker().and_then(|c| monitor(c.status())),
        alarms,
        hook,
    }
}

/// Ready only when steady: the PRIMARY deployment runs the wanted task definition, its
/// rollout is COMPLETED, it is the only one, and running == desired.
fn deployment_readiness(desired: &Desired, service: &Service) -> State {
    let name = service.service_name().unwrap_or_default();
    let Some(primary) = service.deployments().iter().find(|d| d.status() == Some("PRIMARY")) else {
        return State::InProgress {
            reason: "RollingOut",
            message: format!("service {name} has no PRIMARY deployment yet"),
            recheck: ROLLING_RECHECK,
        };
    };
    let on_target = desired.task_definition.as_deref().is_none_or(|wanted| {
        primary
            .task_definition()
            .is_some_and(|td| task_definition_matches(wanted, td))
    });
    let completed = primary
        .rollout_state()
        .is_none_or(|s| *s == DeploymentRolloutState::Completed);
    let counts_match = service.running_count() == service.desired_count();
    if on_target && completed && counts_match && service.deployments().len() == 1 {
        return State::Ready {
            reason: "Steady",
            message: format!("service {name} is steady"),
        };
    }
    State::InProgress {
        reason: "RollingOut",
        message: format!(
            "deployment {} of {}: {}, {} of {} tasks running",
            primary.id().unwrap_or_default(),
            primary.task_definition().unwrap_or_default(),
            primary.rollout_state().map(|s| s.as_str()).unwrap_or("IN_PROGRESS"),
            primary.running_count(),
            primary.desired_count()
        ),
        recheck: ROLLING_RECHECK,
    }
}

/// Under CODE_DEPLOY and EXTERNAL, ECS reports task sets instead of deployments: steady is
/// one PRIMARY task set in STEADY_STATE running all its tasks. While nothing is in flight
/// the service is looked at slowly.
fn task_set_readiness(controller: &str, plan: &Plan, service: &Service) -> State {
    let name = service.service_name().unwrap_or_default();
    let sets = service.task_sets();
    let in_flight = sets.len() > 1
        || sets
            .iter()
            .any(|t| t.stability_status() == Some(&StabilityStatus::Stabilizing));
    let deferred = match plan {
        Plan::InSync { deferred } => deferred.as_slice(),
        Plan::Update(update) => update.deferred.as_slice(),
        _ => &[],
    };
    let left = if deferred.is_empty() {
        String::new()
    } else {
        let fields: Vec<&str> = deferred.iter().map(|c| c.field.as_str()).collect();
        format!(
            "; {} differ from the spec and are left to the {controller} deployment controller",
            fields.join(", ")
        )
    };
    match sets.iter().find(|t| t.status() == Some("PRIMARY")) {
        None if controller == "EXTERNAL" && !in_flight => State::Ready {
            reason: "Steady",
            message: format!(
                "service {name} has no task set yet: the EXTERNAL deployment controller creates them{left}"
            ),
        },
        None => State::InProgress {
            reason: "WaitingForTaskSet",
            message: format!("service {name} has no PRIMARY task set yet"),
            recheck: CONTROLLER_RECHECK,
        },
        Some(primary) if !in_flight && primary.running_count() == primary.computed_desired_count() => State::Ready {
            reason: "Steady",
            message: format!(
                "service {name} is steady on task set {}{left}",
                primary.id().unwrap_or_default()
            ),
        },
        Some(primary) => State::InProgress {
            reason: "TaskSetStabilizing",
            message: format!(
                "task set {} of {}: {}, {} of {} tasks running",
                primary.id().unwrap_or_default(),
                primary.task_definition().unwrap_or_default(),
                primary.stability_status().map(|s| s.as_str()).unwrap_or("STABILIZING"),
                primary.running_count(),
                primary.computed_desired_count()
            ),
            recheck: TASK_SET_RECHECK,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
    use serde::Deserialize;

    /// One case of tests/fixtures/services/plans: a spec, the DescribeServices answer as ECS
    /// gives it, the status of the last pass, and the plan expected.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Case {
        spec: Value,
        #[serde(default)]
        generation: Option<i64>,
        #[serde(default)]
        resolved_task_definition: Option<String>,
        describe_services: Value,
        #[serde(default)]
        status: Value,
        plan: Value,
        #[serde(default)]
        ready: Option<String>,
        /// The current service deployment as status summarises it.
        #[serde(default)]
        service_deployment: Option<ServiceDeploymentSummary>,
    }

    fn object(case: &Case) -> EcsService {
        serde_json::from_value(json!({
            "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "generation": case.generation.unwrap_or(1)},
            "spec": case.spec,
        }))
        .expect("an EcsService")
    }

    fn observed(case: &Case) -> Option<Service> {
        let answer = crate::ecs::wire::to_sdk(&case.describe_services, DescribeServicesOutput::deserialize)
            .expect("a DescribeServices answer");
        answer.services().first().cloned()
    }

    #[test]
    fn every_fixture_gets_exactly_the_plan_it_names() {
        let cases = crate::plan::fixtures::<Case>("services");
        assert!(cases.len() >= 10, "{} fixtures", cases.len());
        for (name, case) in cases {
            let svc = object(&case);
            let task_definition = case
                .resolved_task_definition
                .clone()
                .or_else(|| svc.spec.service.task_definition.clone());
            let cluster = svc.spec.service.cluster.clone().unwrap_or_else(|| "prod".into());
            let desired = Desired::new(&svc, cluster, task_definition);
            let last: EcsServiceStatus = serde_json::from_value(case.status.clone()).unwrap_or_default();
            let service = observed(&case);
            let plan = plan(&desired, service.as_ref(), case.service_deployment.as_ref(), &last).expect("a plan");
            let mut summary = plan.summary();
            if summary["deferred"].as_array().is_some_and(Vec::is_empty) {
                summary.as_object_mut().map(|s| s.remove("deferred"));
            }
            assert_eq!(summary, case.plan, "{name}");
            if let (Some(expected), Some(service)) = (&case.ready, &service) {
                let state = readiness(&desired, &plan, service, case.service_deployment.as_ref());
                assert_eq!(state.reason(), expected, "{name}: {state:?}");
            }
        }
    }

    fn paused(id: &str) -> ServiceDeploymentSummary {
        ServiceDeploymentSummary {
            arn: format!("arn:aws:ecs:us-east-1:1:service-deployment/prod/web/{id}"),
            id: id.into(),
            status: Some("IN_PROGRESS".into()),
            lifecycle_stage: Some("POST_TEST_TRAFFIC_SHIFT".into()),
            hook: Some(HookSummary {
                hook_id: "hook-1".into(),
                target_type: Some("PAUSE".into()),
                status: Some("AWAITING_ACTION".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn steering_acts_once_on_the_current_deployment_and_ignores_older_ones() {
        let annotations = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let current = paused("sd-2");
        let approve = steering(&annotations(&[(APPROVE, "sd-2")]), Some(&current), &[]);
        assert_eq!(
            approve,
            [(
                "approve=sd-2".to_string(),
                Steer::Approve {
                    arn: current.arn.clone(),
                    hook_id: "hook-1".into()
                }
            )]
        );
        assert!(
            steering(
                &annotations(&[(APPROVE, "sd-2")]),
                Some(&current),
                &["approve=sd-2".into()]
            )
            .is_empty(),
            "acted on once"
        );
        let left_over = steering(&annotations(&[(APPROVE, "sd-1")]), Some(&current), &[]);
        assert!(matches!(left_over[0].1, Steer::Ignore(_)), "{left_over:?}");

        let mut shifting = current.clone();
        shifting.hook = None;
        shifting.lifecycle_stage = Some("TEST_TRAFFIC_SHIFT".into());
        assert!(
            steering(&annotations(&[(APPROVE, "sd-2")]), Some(&shifting), &[]).is_empty(),
            "an approval waits for the pause"
        );
        let rollback = steering(&annotations(&[(ROLLBACK, "sd-2")]), Some(&shifting), &[]);
        assert!(matches!(rollback[0].1, Steer::RollBack { .. }), "{rollback:?}");
        let at_hook = steering(&annotations(&[(ROLLBACK, &current.arn)]), Some(&current), &[]);
        assert!(matches!(at_hook[0].1, Steer::RollBackAtHook { .. }), "{at_hook:?}");

        let mut ended = current.clone();
        ended.status = Some("SUCCESSFUL".into());
        let late = steering(&annotations(&[(ABORT, "sd-2")]), Some(&ended), &[]);
        assert!(matches!(late[0].1, Steer::Ignore(_)), "{late:?}");
    }

    #[test]
    fn a_family_matches_any_of_its_revisions_and_a_revision_only_itself() {
        let arn = "arn:aws:ecs:us-east-1:1:task-definition/web:7";
        assert!(task_definition_matches("web", arn));
        assert!(task_definition_matches("web:7", arn));
        assert!(!task_definition_matches("web:6", arn));
        assert!(task_definition_matches(arn, arn));
        assert!(!task_definition_matches(
            "arn:aws:ecs:us-east-1:1:task-definition/web:6",
            arn
        ));
        assert!(!task_definition_matches("webapp", arn));
    }
}
