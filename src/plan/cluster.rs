//! EcsCluster: what ECS must do for a spec, decided from what DescribeClusters reported.
//!
//! A cluster that does not exist is created. Settings, configuration and the Service
//! Connect default namespace change through one UpdateCluster; the capacity providers and
//! the default strategy through one PutClusterCapacityProviders, which replaces both lists;
//! tags in place (by the shared tag code). The name never changes. Ready means ACTIVE with
//! its capacity provider attachments settled.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ecs::types::Cluster;
use serde_json::{Map, Value, json};

use super::{Change, State, Write};
use crate::api::ecs_types::CreateClusterInput;
use crate::api::{EcsClusterStatus, cluster::NamespaceRecord};
use crate::ecs::diff::matches;
use crate::ecs::wire::{WireError, from_sdk};

/// How soon a cluster still provisioning or updating its capacity providers is looked at
/// again.
pub const PROVISIONING_RECHECK: Duration = Duration::from_secs(5);

/// The one thing to do about a cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// CreateCluster with this input (the executor adds tags).
    Create(Box<CreateClusterInput>),
    /// UpdateCluster and/or PutClusterCapacityProviders.
    Update(Update),
    /// ECS matches the spec.
    InSync,
}

/// The calls that bring an existing cluster to the spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    /// UpdateCluster's changed members: settings, configuration, serviceConnectDefaults.
    pub cluster: Vec<Change>,
    /// The changed ones of capacityProviders and defaultCapacityProviderStrategy.
    pub capacity_providers: Vec<Change>,
    /// PutClusterCapacityProviders' input (without cluster): it replaces both lists, so the
    /// one the spec leaves unset is sent as ECS has it.
    pub put_capacity_providers: Option<Map<String, Value>>,
}

impl Update {
    /// UpdateCluster's members (without cluster), if anything there changes.
    pub fn update_cluster(&self) -> Option<Map<String, Value>> {
        (!self.cluster.is_empty()).then(|| self.cluster.iter().map(|c| (c.field.clone(), c.to.clone())).collect())
    }

    /// The changed fields, for Events.
    pub fn fields(&self) -> Vec<String> {
        self.cluster
            .iter()
            .chain(&self.capacity_providers)
            .map(|c| c.field.clone())
            .collect()
    }
}

impl Plan {
    /// The plan as JSON, as table tests and `diff` show it.
    pub fn summary(&self) -> Value {
        match self {
            Plan::Create(input) => json!({"action": "Create", "request": input}),
            Plan::Update(update) => json!({
                "action": "Update",
                "updateCluster": update.update_cluster(),
                "putClusterCapacityProviders": update.put_capacity_providers,
            }),
            Plan::InSync => json!({"action": "InSync"}),
        }
    }
}

/// The ECS writes `plan` makes for the cluster `name` (tags aside).
pub fn writes(plan: &Plan, name: &str) -> Vec<Write> {
    match plan {
        Plan::Create(_) => vec![Write::new("CreateCluster", name, "no such cluster")],
        Plan::Update(update) => {
            let mut writes = vec![];
            if !update.cluster.is_empty() {
                writes.push(Write::new("UpdateCluster", name, "").changing(update.cluster.clone()));
            }
            if update.put_capacity_providers.is_some() {
                writes.push(
                    Write::new("PutClusterCapacityProviders", name, "").changing(update.capacity_providers.clone()),
                );
            }
            writes
        }
        Plan::InSync => vec![],
    }
}

/// Decides what to do about the cluster `observed` (None when ECS has none, or only an
/// INACTIVE one) for the spec, given the status of the last pass.
///
/// `scoped` names the Managed Instances providers of this cluster: ECS attaches them when
/// they are created and refuses them in PutClusterCapacityProviders ("Cannot associate
/// Managed Instances capacity provider to clusters using this API", terraform-provider-aws
/// #44783), so they are neither sent nor counted as a difference.
pub fn plan(
    spec: &CreateClusterInput,
    name: &str,
    observed: Option<&Cluster>,
    last: &EcsClusterStatus,
    scoped: &BTreeSet<String>,
) -> Result<Plan, WireError> {
    // DescribeClusters reports a deleted cluster INACTIVE for a while: it is gone.
    let Some(cluster) = observed.filter(|c| c.status() != Some("INACTIVE")) else {
        let mut input = spec.clone();
        input.cluster_name = Some(name.to_string());
        if let Some(providers) = input.capacity_providers.as_mut() {
            providers.retain(|p| !scoped.contains(p));
        }
        return Ok(Plan::Create(Box::new(input)));
    };
    let mut observed: Value = from_sdk(cluster)?;
    let mut desired = serde_json::to_value(spec).map_err(|e| WireError::Encode("cluster", e))?;
    for providers in [
        desired.get_mut("capacityProviders"),
        observed.get_mut("capacityProviders"),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(names) = providers.as_array_mut() {
            names.retain(|n| n.as_str().is_none_or(|n| !scoped.contains(n)));
        }
    }
    let mut update = Update::default();
    if let Some(settings) = desired.get("settings")
        && !settings_match(settings, &observed["settings"])
    {
        update.cluster.push(change("settings", &observed["settings"], settings));
    }
    if let Some(configuration) = desired.get("configuration")
        && !matches(configuration, &observed["configuration"], "", &[])
    {
        update
            .cluster
            .push(change("configuration", &observed["configuration"], configuration));
    }
    if let Some(defaults) = desired.get("serviceConnectDefaults")
        && !namespace_in_place(defaults, &observed, last)
    {
        update.cluster.push(change(
            "serviceConnectDefaults",
            &observed["serviceConnectDefaults"],
            defaults,
        ));
    }
    // Capacity providers are a set; the default strategy is a set of items with ECS's
    // defaults (base 0, weight 0) filled in.
    for field in ["capacityProviders", "defaultCapacityProviderStrategy"] {
        if let Some(want) = desired.get(field)
            && !same_set(field, want, &observed[field])
        {
            update.capacity_providers.push(change(field, &observed[field], want));
        }
    }
    if !update.capacity_providers.is_empty() {
        // NB: PutClusterCapacityProviders replaces both lists.
        let pick = |key: &str| {
            desired
                .get(key)
                .cloned()
                .unwrap_or_else(|| observed.get(key).cloned().filter(|v| !v.is_null()).unwrap_or(json!([])))
        };
        let providers = pick("capacityProviders");
        let mut strategy = pick("defaultCapacityProviderStrategy");
        if desired.get("defaultCapacityProviderStrategy").is_none() {
            // NB: a strategy kept as ECS has it may only name providers still attached:
            // "A capacity provider must be associated with the cluster to be used in a
            // capacity provider strategy" (PutClusterCapacityProviders).
            let attached =
                |p: &str| scoped.contains(p) || providers.as_array().is_some_and(|l| l.iter().any(|n| n == p));
            if let Some(items) = strategy.as_array_mut() {
                items.retain(|i| i["capacityProvider"].as_str().is_some_and(attached));
            }
        }
        update.put_capacity_providers = Some(Map::from_iter([
            ("capacityProviders".to_string(), providers),
            ("defaultCapacityProviderStrategy".to_string(), strategy),
        ]));
    }
    if update.cluster.is_empty() && update.capacity_providers.is_empty() {
        return Ok(Plan::InSync);
    }
    Ok(Plan::Update(update))
}

fn change(field: &str, from: &Value, to: &Value) -> Change {
    Change {
        field: field.to_string(),
        from: from.clone(),
        to: to.clone(),
    }
}

/// Every setting the spec names has the spec's value in ECS (others are not fought over).
fn settings_match(desired: &Value, observed: &Value) -> bool {
    let value_of = |name: &str| {
        observed
            .as_array()
            .and_then(|items| items.iter().find(|s| s["name"] == name))
            .map(|s| &s["value"])
    };
    desired.as_array().is_none_or(|items| {
        items
            .iter()
            .all(|s| value_of(s["name"].as_str().unwrap_or_default()) == Some(&s["value"]))
    })
}

/// Lists ECS keeps as sets, with the strategy's defaults filled in.
fn same_set(field: &str, desired: &Value, observed: &Value) -> bool {
    let with_defaults = |v: &Value| -> Value {
        let mut v = v.clone();
        if field == "defaultCapacityProviderStrategy" {
            for item in v.as_array_mut().into_iter().flatten() {
                for key in ["base", "weight"] {
                    if item.get(key).is_none_or(Value::is_null) {
                        item[key] = json!(0);
                    }
                }
            }
        }
        v
    };
    let (want, have) = (with_defaults(desired), with_defaults(observed));
    want.as_array().map(Vec::len) == have.as_array().map(Vec::len).or(Some(0)) && matches(&want, &have, field, &[field])
}

/// The Service Connect default namespace is in place. ECS reports it as an ARN:
/// - `""` asks for none ("To remove the default namespace, specify an empty string",
///   UpdateCluster's serviceConnectDefaults);
/// - an ARN must be the one ECS reports;
/// - a name is in place when the last pass applied that very name and ECS still reports
///   the ARN it answered with (the name of a Cloud Map namespace cannot be read back from
///   its ARN without Cloud Map): a renamed namespace is applied, and so is one changed
///   behind the operator's back.
fn namespace_in_place(desired: &Value, observed: &Value, last: &EcsClusterStatus) -> bool {
    let have = observed["serviceConnectDefaults"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty());
    let Some(want) = desired["namespace"].as_str() else {
        return true;
    };
    if want.is_empty() {
        return have.is_none();
    }
    if want.starts_with("arn:") {
        return have == Some(want);
    }
    last.service_connect_namespace
        .as_ref()
        .is_some_and(|applied| applied.name == want && Some(applied.arn.as_str()) == have)
}

/// What status records of a namespace the spec gives by name, once ECS answered `cluster`.
pub fn namespace_record(spec: &CreateClusterInput, cluster: &Cluster) -> Option<NamespaceRecord> {
    let name = spec.service_connect_defaults.as_ref()?.namespace.clone();
    let arn = cluster.service_connect_defaults()?.namespace()?.to_string();
    (!name.is_empty() && !name.starts_with("arn:")).then_some(NamespaceRecord { name, arn })
}

/// ACTIVE with its capacity provider attachments settled is Ready; attachments updating
/// are Reconciling; attachments that failed, or a FAILED cluster, are Stalled with what ECS
/// says (attachmentsStatus: UPDATE_IN_PROGRESS, UPDATE_COMPLETE or UPDATE_FAILED).
pub fn readiness(name: &str, cluster: &Cluster) -> State {
    match cluster.status().unwrap_or_default() {
        "ACTIVE" => match cluster.attachments_status() {
            Some("UPDATE_IN_PROGRESS") => State::InProgress {
                reason: "UpdatingCapacityProviders",
                message: format!("cluster {name} is attaching its capacity providers (UPDATE_IN_PROGRESS)"),
                recheck: PROVISIONING_RECHECK,
            },
            Some("UPDATE_FAILED") => State::Failed {
                reason: "CapacityProvidersFailed",
                message: format!(
                    "ECS could not attach the capacity providers of cluster {name} (UPDATE_FAILED): {}",
                    attachment_failures(cluster)
                ),
            },
            _ => State::Ready {
                reason: "Active",
                message: format!("cluster {name} is ACTIVE"),
            },
        },
        // NB: FAILED (capacity provider setup failed) does not heal by polling.
        "FAILED" => State::Failed {
            reason: "ClusterFailed",
            message: format!("ECS reports cluster {name} FAILED; delete and recreate the EcsCluster"),
        },
        other => State::InProgress {
            reason: "Provisioning",
            message: format!("cluster {name} is {other}"),
            recheck: PROVISIONING_RECHECK,
        },
    }
}

/// What ECS says about the attachments that did not attach.
fn attachment_failures(cluster: &Cluster) -> String {
    let failed: Vec<String> = cluster
        .attachments()
        .iter()
        .filter(|a| a.status().is_some_and(|s| s.contains("FAIL")))
        .map(|a| {
            let details: Vec<String> = a
                .details()
                .iter()
                .map(|d| format!("{}={}", d.name().unwrap_or_default(), d.value().unwrap_or_default()))
                .collect();
            format!(
                "{} {} ({})",
                a.r#type().unwrap_or("attachment"),
                a.status().unwrap_or_default(),
                details.join(", ")
            )
        })
        .collect();
    if failed.is_empty() {
        "ECS gave no details".to_string()
    } else {
        failed.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::describe_clusters::DescribeClustersOutput;
    use serde::Deserialize;

    /// One case of tests/fixtures/clusters/plans.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Case {
        spec: Value,
        describe_clusters: Value,
        #[serde(default)]
        status: Value,
        plan: Value,
        #[serde(default)]
        ready: Option<String>,
        /// The cluster's own Managed Instances providers.
        #[serde(default)]
        scoped: Value,
    }

    #[test]
    fn every_fixture_gets_exactly_the_plan_it_names() {
        let cases = crate::plan::fixtures::<Case>("clusters");
        assert!(cases.len() >= 8, "{} fixtures", cases.len());
        for (name, case) in cases {
            let spec: CreateClusterInput = serde_json::from_value(case.spec.clone()).expect("spec");
            let answer = crate::ecs::wire::to_sdk(&case.describe_clusters, DescribeClustersOutput::deserialize)
                .expect("a DescribeClusters answer");
            let observed = answer.clusters().first();
            let last: EcsClusterStatus = serde_json::from_value(case.status.clone()).unwrap_or_default();
            let scoped: BTreeSet<String> = serde_json::from_value(case.scoped.clone()).unwrap_or_default();
            let plan = plan(&spec, "prod", observed, &last, &scoped).expect("a plan");
            let mut summary = plan.summary();
            if let Some(fields) = summary.as_object_mut() {
                fields.retain(|_, v| !v.is_null());
            }
            assert_eq!(summary, case.plan, "{name}");
            if let (Some(expected), Some(cluster)) = (&case.ready, observed) {
                let state = readiness("prod", cluster);
                assert_eq!(state.reason(), expected, "{name}: {state:?}");
            }
        }
    }
}
