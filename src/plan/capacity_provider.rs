//! EcsCapacityProvider: what ECS must do for a spec, decided from what
//! DescribeCapacityProviders reported.
//!
//! A provider that does not exist (or only INACTIVE, i.e. deleted) is created. What
//! UpdateCapacityProvider can change is changed with one call carrying every member the spec
//! sets of the provider's kind: managed scaling, termination protection and draining of an
//! Auto Scaling group provider; infrastructure role, launch template, tag propagation,
//! optimisation and auto repair of a Managed Instances provider. The rest (the kind, the
//! Auto Scaling group, a Managed Instances provider's cluster, capacity option type and FIPS
//! mode) only a new provider can change: admission refuses such an edit, and a provider found
//! in ECS that differs there is reported, not fought. Members the spec leaves unset are not
//! fought over (ECS fills in its defaults).

use std::time::Duration;

use aws_sdk_ecs::types::CapacityProvider;
use serde_json::{Map, Value, json};

use super::{Change, State, Write};
use crate::api::ecs_types::CreateCapacityProviderInput;
use crate::ecs::diff::matches;
use crate::ecs::wire::{WireError, from_sdk};

/// How soon a provider still provisioning, updating or deprovisioning is looked at again.
pub const PROVISIONING_RECHECK: Duration = Duration::from_secs(5);

/// UpdateCapacityProvider's AutoScalingGroupProviderUpdate members.
const ASG_UPDATABLE: &[&str] = &["managedScaling", "managedTerminationProtection", "managedDraining"];

/// UpdateManagedInstancesProviderConfiguration's members.
const MANAGED_INSTANCES_UPDATABLE: &[&str] = &[
    "infrastructureRoleArn",
    "instanceLaunchTemplate",
    "propagateTags",
    "infrastructureOptimization",
    "autoRepairConfiguration",
];

/// InstanceLaunchTemplate members InstanceLaunchTemplateUpdate lacks: fixed at creation.
const LAUNCH_TEMPLATE_FIXED: &[&str] = &["capacityOptionType", "fipsEnabled"];

/// Lists ECS keeps as sets (no promised order).
const UNORDERED: &[&str] = &[
    "instanceLaunchTemplate.networkConfiguration.subnets",
    "instanceLaunchTemplate.networkConfiguration.securityGroups",
    "instanceLaunchTemplate.instanceRequirements.cpuManufacturers",
    "instanceLaunchTemplate.instanceRequirements.excludedInstanceTypes",
    "instanceLaunchTemplate.instanceRequirements.allowedInstanceTypes",
    "instanceLaunchTemplate.instanceRequirements.instanceGenerations",
    "instanceLaunchTemplate.instanceRequirements.localStorageTypes",
    "instanceLaunchTemplate.instanceRequirements.acceleratorTypes",
    "instanceLaunchTemplate.instanceRequirements.acceleratorManufacturers",
    "instanceLaunchTemplate.instanceRequirements.acceleratorNames",
];

/// The one thing to do about a capacity provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// CreateCapacityProvider with this input (the executor adds tags).
    Create(Box<CreateCapacityProviderInput>),
    /// UpdateCapacityProvider.
    Update(Update),
    /// UpdateCapacityProvider once ECS has finished the create or update under way (it
    /// answers UpdateInProgressException meanwhile).
    UpdateWhenSettled(Update),
    /// ECS matches the spec.
    InSync,
    /// The provider in ECS differs in what only a new provider can change; why.
    Fixed(String),
}

/// The UpdateCapacityProvider that brings a provider to the spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    /// The members that change.
    pub changes: Vec<Change>,
    /// Its input without name and cluster: `autoScalingGroupProvider` or
    /// `managedInstancesProvider`.
    pub request: Map<String, Value>,
}

impl Plan {
    /// The plan as JSON, as table tests and `diff` show it.
    pub fn summary(&self) -> Value {
        match self {
            Plan::Create(input) => json!({"action": "Create", "request": input}),
            Plan::Update(update) => json!({"action": "Update", "request": update.request}),
            Plan::UpdateWhenSettled(update) => json!({"action": "UpdateWhenSettled", "request": update.request}),
            Plan::InSync => json!({"action": "InSync"}),
            Plan::Fixed(why) => json!({"action": "Fixed", "why": why}),
        }
    }
}

/// The ECS writes `plan` makes for the provider `name` (tags aside).
pub fn writes(plan: &Plan, name: &str) -> Vec<Write> {
    match plan {
        Plan::Create(_) => vec![Write::new("CreateCapacityProvider", name, "no such capacity provider")],
        Plan::Update(update) | Plan::UpdateWhenSettled(update) => {
            vec![Write::new("UpdateCapacityProvider", name, "").changing(update.changes.clone())]
        }
        Plan::InSync | Plan::Fixed(_) => vec![],
    }
}

/// True when ECS has no provider for the spec: none, or only a deleted (INACTIVE) one. One
/// whose creation failed is not gone: it is reported, not created again and again.
pub fn gone(observed: Option<&CapacityProvider>) -> bool {
    observed.is_none_or(|p| {
        p.status().map(|s| s.as_str()) == Some("INACTIVE")
            && p.update_status().map(|s| s.as_str()) != Some("CREATE_FAILED")
    })
}

/// True when ECS's last create or update of the provider failed.
pub fn failed(provider: &CapacityProvider) -> bool {
    matches!(
        provider.update_status().map(|s| s.as_str()),
        Some("CREATE_FAILED" | "UPDATE_FAILED")
    )
}

/// Decides what to do about the provider `observed` for the spec. `name` is its ECS name,
/// `cluster` the cluster a Managed Instances provider belongs to (resolved from cluster or
/// clusterRef).
pub fn plan(
    spec: &CreateCapacityProviderInput,
    name: &str,
    cluster: Option<&str>,
    observed: Option<&CapacityProvider>,
) -> Result<Plan, WireError> {
    let Some(provider) = observed.filter(|_| !gone(observed)) else {
        let mut input = spec.clone();
        input.name = Some(name.to_string());
        input.cluster = cluster
            .map(str::to_owned)
            .filter(|_| spec.managed_instances_provider.is_some());
        return Ok(Plan::Create(Box::new(input)));
    };
    if provider.update_status().map(|s| s.as_str()) == Some("CREATE_FAILED") {
        // NB: nothing updates a provider ECS could not create; readiness says so.
        return Ok(Plan::InSync);
    }
    let observed: Value = from_sdk(provider)?;
    let desired = serde_json::to_value(spec).map_err(|e| WireError::Encode("capacity provider", e))?;
    if let Some(why) = fixed_difference(&desired, &observed, name, cluster) {
        return Ok(Plan::Fixed(why));
    }
    let (kind, updatable) = match desired.get("managedInstancesProvider") {
        Some(_) => ("managedInstancesProvider", MANAGED_INSTANCES_UPDATABLE),
        None => ("autoScalingGroupProvider", ASG_UPDATABLE),
    };
    let (want, have) = (&desired[kind], &observed[kind]);
    let mut changes = vec![];
    for member in updatable {
        let wanted = updatable_part(member, &want[*member]);
        if !matches(&wanted, &have[*member], member, UNORDERED) {
            changes.push(Change {
                field: format!("{kind}.{member}"),
                from: have[*member].clone(),
                to: wanted,
            });
        }
    }
    if changes.is_empty() {
        return Ok(Plan::InSync);
    }
    // NB: every updatable member the spec sets is sent, changed or not: the Managed Instances
    // update requires the role and launch template, and one call carries the whole intent.
    let update: Map<String, Value> = updatable
        .iter()
        .map(|member| (member.to_string(), updatable_part(member, &want[*member])))
        .filter(|(_, v)| !v.is_null())
        .collect();
    let update = Update {
        changes,
        request: Map::from_iter([(kind.to_string(), Value::Object(update))]),
    };
    Ok(match busy(provider) {
        true => Plan::UpdateWhenSettled(update),
        false => Plan::Update(update),
    })
}

/// True while ECS is creating, updating or deleting the provider.
pub fn busy(provider: &CapacityProvider) -> bool {
    let status = provider.status().map(|s| s.as_str()).unwrap_or_default();
    let update = provider.update_status().map(|s| s.as_str()).unwrap_or_default();
    matches!(status, "PROVISIONING" | "DEPROVISIONING") || update.ends_with("_IN_PROGRESS")
}

/// The part of a spec member UpdateCapacityProvider can send: the launch template without
/// the members fixed at creation; others whole.
fn updatable_part(member: &str, value: &Value) -> Value {
    let mut value = value.clone();
    if member == "instanceLaunchTemplate"
        && let Some(template) = value.as_object_mut()
    {
        for fixed in LAUNCH_TEMPLATE_FIXED {
            template.remove(*fixed);
        }
    }
    value
}

/// Why the provider in ECS cannot become the spec by UpdateCapacityProvider, if it cannot.
fn fixed_difference(desired: &Value, observed: &Value, name: &str, cluster: Option<&str>) -> Option<String> {
    let wants_asg = desired.get("autoScalingGroupProvider").is_some();
    let has_asg = observed.get("autoScalingGroupProvider").is_some_and(|v| !v.is_null());
    if wants_asg != has_asg {
        let kind = |asg: bool| {
            if asg {
                "an Auto Scaling group"
            } else {
                "a Managed Instances"
            }
        };
        return Some(format!(
            "ECS capacity provider {name} is {} provider and the spec asks for {} one; delete it or choose another name",
            kind(has_asg),
            kind(wants_asg)
        ));
    }
    if wants_asg {
        let want = desired["autoScalingGroupProvider"]["autoScalingGroupArn"]
            .as_str()
            .unwrap_or_default();
        let have = observed["autoScalingGroupProvider"]["autoScalingGroupArn"]
            .as_str()
            .unwrap_or_default();
        // NB: the spec may name the group; ECS reports its ARN, ending in autoScalingGroupName/<name>.
        let same = want == have || have.ends_with(&format!(":autoScalingGroupName/{want}"));
        return (!same).then(|| {
            format!("ECS capacity provider {name} uses Auto Scaling group {have}, not {want}; an Auto Scaling group cannot be changed in place")
        });
    }
    let short = |c: &str| c.rsplit('/').next().unwrap_or(c).to_string();
    if let (Some(want), Some(have)) = (cluster, observed["cluster"].as_str())
        && short(want) != short(have)
    {
        return Some(format!(
            "ECS capacity provider {name} belongs to cluster {}, not {}; a Managed Instances provider stays in its cluster",
            short(have),
            short(want)
        ));
    }
    let template = |v: &Value, member: &str| v["managedInstancesProvider"]["instanceLaunchTemplate"][member].clone();
    for (member, default) in [
        ("capacityOptionType", json!("ON_DEMAND")),
        ("fipsEnabled", json!(false)),
    ] {
        let want = template(desired, member);
        let have = Some(template(observed, member))
            .filter(|v| !v.is_null())
            .unwrap_or(default);
        if !want.is_null() && want != have {
            return Some(format!(
                "ECS capacity provider {name} has {member} {have}, not {want}; it is fixed at creation"
            ));
        }
    }
    None
}

/// ACTIVE with its last create or update complete is Ready; provisioning, updating and
/// deprovisioning are Reconciling; a failed create or update is Stalled with ECS's reason.
pub fn readiness(name: &str, provider: &CapacityProvider) -> State {
    let status = provider.status().map(|s| s.as_str()).unwrap_or_default();
    let update = provider.update_status().map(|s| s.as_str()).unwrap_or_default();
    let reason = provider
        .update_status_reason()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    match (status, update) {
        (_, "CREATE_FAILED") => State::Failed {
            reason: "CreateFailed",
            message: format!(
                "ECS could not create capacity provider {name} (CREATE_FAILED){reason}; delete the EcsCapacityProvider and create it again"
            ),
        },
        ("ACTIVE", "UPDATE_FAILED") => State::Failed {
            reason: "UpdateFailed",
            message: format!("ECS could not update capacity provider {name} (UPDATE_FAILED){reason}"),
        },
        ("ACTIVE", "UPDATE_IN_PROGRESS") => State::InProgress {
            reason: "Updating",
            message: format!("capacity provider {name} is updating (UPDATE_IN_PROGRESS)"),
            recheck: PROVISIONING_RECHECK,
        },
        ("ACTIVE", _) => State::Ready {
            reason: "Active",
            message: format!("capacity provider {name} is ACTIVE"),
        },
        (other, update) => State::InProgress {
            reason: "Provisioning",
            message: format!("capacity provider {name} is {other} ({update}){reason}"),
            recheck: PROVISIONING_RECHECK,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::describe_capacity_providers::DescribeCapacityProvidersOutput;
    use serde::Deserialize;

    /// One case of tests/fixtures/capacity_providers/plans.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Case {
        spec: Value,
        #[serde(default)]
        cluster: Option<String>,
        describe_capacity_providers: Value,
        plan: Value,
        #[serde(default)]
        ready: Option<String>,
    }

    #[test]
    fn every_fixture_gets_exactly_the_plan_it_names() {
        let cases = crate::plan::fixtures::<Case>("capacity_providers");
        assert!(cases.len() >= 8, "{} fixtures", cases.len());
        for (name, case) in cases {
            let spec: CreateCapacityProviderInput = serde_json::from_value(case.spec.clone()).expect("spec");
            let answer = crate::ecs::wire::to_sdk(
                &case.describe_capacity_providers,
                DescribeCapacityProvidersOutput::deserialize,
            )
            .expect("a DescribeCapacityProviders answer");
            let observed = answer.capacity_providers().first();
            let plan = plan(&spec, "cp", case.cluster.as_deref(), observed).expect("a plan");
            let mut summary = plan.summary();
            if let Some(fields) = summary.as_object_mut() {
                fields.retain(|_, v| !v.is_null());
            }
            assert_eq!(summary, case.plan, "{name}");
            if let (Some(expected), Some(provider)) = (&case.ready, observed) {
                let state = readiness("cp", provider);
                assert_eq!(state.reason(), expected, "{name}: {state:?}");
            }
        }
    }
}
