//! `ecs-operator export`: existing ECS clusters, the task definition families their services
//! run and the services, as manifests that, applied, adopt them unchanged.
//!
//! Read-only and rate-limited like the controller: ListClusters (with `--all-clusters`),
//! DescribeClusters (100 per call), ListServices and DescribeServices (10 per call) per
//! cluster, one DescribeTaskDefinition per family. The output is deterministic (objects in
//! name order, members in ECS's order) and reads like hand-written input: members ECS fills
//! in with its defaults, read-only members and empty lists are left out, and a task
//! definition is only shortened where the operator's normalisation proves the short form
//! equal to the revision ECS has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_ecs::types::{Cluster, ClusterField, Service, ServiceField, TaskDefinition};
use serde_json::{Map, Value, json};

use crate::api::GROUP;
use crate::api::ecs_types::RegisterTaskDefinitionInput;
use crate::ecs::client::{Ecs, EcsClients};
use crate::ecs::limits::RateLimits;
use crate::ecs::normalize::{as_ecs_reports, drop_empty, task_definition_content};
use crate::ecs::ownership::{is_operator_tag, sdk_tag_map};
use crate::ecs::wire::from_sdk;
use crate::plan::task_definition::family_and_revision;
use crate::reconcile::task_definition::{Revision, describe_active};
use crate::telemetry::Metrics;

/// Which clusters to export, and how.
pub struct ExportOptions {
    /// AWS region (default: the SDK's, e.g. AWS_REGION).
    pub region: Option<String>,
    /// Clusters by name or ARN.
    pub clusters: Vec<String>,
    /// Every cluster of the region.
    pub all_clusters: bool,
    /// metadata.namespace of every object (left out when None).
    pub namespace: Option<String>,
    /// managementPolicy: Observe instead of adopt: true.
    pub observe: bool,
}

/// One exported object: comment lines to put above it, and the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// Comment lines (without '#').
    pub comments: Vec<String>,
    /// The object.
    pub object: Value,
}

impl Exported {
    /// The object's kind.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// The object's metadata.name.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The object as a YAML document, its comments above it.
    pub fn yaml(&self) -> Result<String, serde_yaml_ng::Error> {
        let mut out = String::new();
        for line in &self.comments {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&serde_yaml_ng::to_string(&self.object)?);
        Ok(out)
    }
}

/// What ECS has, read for an export.
#[derive(Default)]
pub struct Account {
    /// DescribeClusters' clusters.
    pub clusters: Vec<Cluster>,
    /// DescribeServices' services, by cluster ARN.
    pub services: BTreeMap<String, Vec<Service>>,
    /// The latest ACTIVE revision of each family a service runs, with its tags; None when
    /// the family has no ACTIVE revision left.
    pub families: BTreeMap<String, Option<Revision>>,
}

/// Reads what `options` asks to export.
pub async fn read(options: &ExportOptions) -> Result<Account, Box<dyn std::error::Error>> {
    let clients = EcsClients::load(
        options.region.clone(),
        RateLimits::default(),
        BTreeMap::new(),
        Arc::new(Metrics::new()),
    )
    .await;
    let region = clients
        .region(None)
        .ok_or("no AWS region: set AWS_REGION or pass --region")?;
    let ecs = clients.client_as(None, &region).await;
    let mut names = options.clusters.clone();
    if options.all_clusters {
        names.extend(list_clusters(&ecs).await?);
    }
    if names.is_empty() {
        return Err("name the clusters to export (--cluster NAME, repeated) or pass --all-clusters".into());
    }
    let mut account = Account {
        clusters: describe_clusters(&ecs, names).await?,
        ..Account::default()
    };
    for cluster in &account.clusters {
        let arn = cluster.cluster_arn().unwrap_or_default().to_string();
        let services = describe_services(&ecs, &arn).await?;
        for family in services
            .iter()
            .filter_map(|s| s.task_definition())
            .filter_map(family_and_revision)
            .map(|(family, _)| family.to_string())
        {
            if let std::collections::btree_map::Entry::Vacant(entry) = account.families.entry(family) {
                let family = entry.key().clone();
                entry.insert(describe_active(&ecs, &family).await?);
            }
        }
        account.services.insert(arn, services);
    }
    Ok(account)
}

/// The manifests for what was read: clusters, task definitions, services, each in name
/// order.
pub fn manifests(account: &Account, options: &ExportOptions) -> Vec<Exported> {
    let metadata = |name: &str| match &options.namespace {
        Some(namespace) => json!({"name": name, "namespace": namespace}),
        None => json!({"name": name}),
    };
    let management = |spec: &mut Map<String, Value>| match options.observe {
        true => spec.insert("managementPolicy".into(), json!("Observe")),
        false => spec.insert("adopt".into(), json!(true)),
    };
    let object = |kind: &str, name: &str, mut spec: Map<String, Value>| {
        management(&mut spec);
        json!({"apiVersion": format!("{GROUP}/v1alpha1"), "kind": kind, "metadata": metadata(name), "spec": spec})
    };
    let mut exported = vec![];

    let mut clusters: Vec<&Cluster> = account.clusters.iter().collect();
    clusters.sort_by_key(|c| c.cluster_name().unwrap_or_default().to_string());
    let cluster_names = unique_names(
        clusters
            .iter()
            .map(|c| object_name(c.cluster_name().unwrap_or_default())),
    );
    let cluster_object: BTreeMap<String, String> = clusters
        .iter()
        .zip(&cluster_names)
        .map(|(c, name)| (c.cluster_arn().unwrap_or_default().to_string(), name.clone()))
        .collect();
    for (cluster, name) in clusters.iter().zip(&cluster_names) {
        exported.push(Exported {
            comments: vec![],
            object: object("EcsCluster", name, cluster_spec(cluster)),
        });
    }

    let families: Vec<(&String, &Revision)> = account
        .families
        .iter()
        .filter_map(|(family, latest)| latest.as_ref().map(|l| (family, l)))
        .collect();
    let family_names = unique_names(families.iter().map(|(family, _)| object_name(family)));
    let family_object: BTreeMap<&str, (&str, &str)> = families
        .iter()
        .zip(&family_names)
        .map(|((family, (td, _)), name)| {
            (
                family.as_str(),
                (name.as_str(), td.task_definition_arn().unwrap_or_default()),
            )
        })
        .collect();
    for ((_, (td, tags)), name) in families.iter().zip(&family_names) {
        exported.push(Exported {
            comments: vec![],
            object: object("EcsTaskDefinition", name, task_definition_spec(td, tags)),
        });
    }

    let mut services: Vec<(&str, &Service)> = account
        .services
        .iter()
        .flat_map(|(cluster, services)| services.iter().map(move |s| (cluster.as_str(), s)))
        .collect();
    services.sort_by_key(|(cluster, s)| {
        (
            cluster_object.get(*cluster).cloned(),
            s.service_name().map(str::to_owned),
        )
    });
    let mut clusters_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (cluster, service) in &services {
        clusters_of
            .entry(service.service_name().unwrap_or_default())
            .or_default()
            .insert(cluster);
    }
    let service_names = unique_names(services.iter().map(|(cluster, service)| {
        let name = service.service_name().unwrap_or_default();
        match clusters_of.get(name).is_some_and(|c| c.len() > 1) {
            // NB: the same service name in two clusters: both named after their cluster too.
            true => object_name(&format!(
                "{}-{name}",
                cluster_object.get(*cluster).cloned().unwrap_or_default()
            )),
            false => object_name(name),
        }
    }));
    for ((cluster, service), name) in services.iter().zip(&service_names) {
        let mut comments = vec![];
        // NB: the name and the references first, as a person would write them.
        let mut spec = Map::new();
        spec.insert("serviceName".into(), json!(service.service_name()));
        spec.insert("clusterRef".into(), json!({"name": cluster_object.get(*cluster)}));
        let running = service.task_definition().unwrap_or_default();
        match family_and_revision(running).and_then(|(family, _)| family_object.get(family)) {
            Some((td_name, latest)) if *latest == running => {
                spec.insert("taskDefinitionRef".into(), json!({"name": td_name}));
            }
            Some((td_name, latest)) => {
                let (family, revision) = family_and_revision(running).unwrap_or_default();
                let newest = family_and_revision(latest).map(|(_, r)| r).unwrap_or_default();
                spec.insert("taskDefinition".into(), json!(format!("{family}:{revision}")));
                comments.push(format!(
                    "runs {family}:{revision}, not the family's latest ACTIVE revision ({newest}): pinned, so that applying changes nothing;"
                ));
                comments.push(format!(
                    "replace taskDefinition with `taskDefinitionRef: {{name: {td_name}}}` to deploy the latest."
                ));
            }
            None if !running.is_empty() => {
                spec.insert("taskDefinition".into(), json!(running));
                comments
                    .push("its task definition family has no ACTIVE revision left: pinned to the one it runs.".into());
            }
            None => {}
        }
        spec.extend(service_spec(service));
        exported.push(Exported {
            comments,
            object: object("EcsService", name, spec),
        });
    }
    exported
}

/// The whole export as one YAML stream, with a header saying how to use it.
pub fn yaml(exported: &[Exported], options: &ExportOptions) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::from(HEADER);
    if options.observe {
        out.push_str("# managementPolicy: Observe: the operator only reads and reports drift.\n");
    }
    for object in exported {
        out.push_str("---\n");
        out.push_str(&object.yaml()?);
    }
    Ok(out)
}

const HEADER: &str = "\
# Exported by `ecs-operator export`. Applied as is, every object adopts its ECS resource
# unchanged (only the operator's ownership tags are added). A service whose desiredCount
# Application Auto Scaling manages: remove desiredCount, so that the operator leaves it alone.
";

/// A Kubernetes object name for an ECS name: RFC 1123 (lower-case letters, digits and
/// '-', starting and ending alphanumeric), at most 63 characters.
pub fn object_name(ecs_name: &str) -> String {
    let mut name = String::new();
    for c in ecs_name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let mut name: String = name.trim_matches('-').chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() { "unnamed".into() } else { name }
}

/// `names` made unique in order: a repeated name gets `-2`, `-3`, ... (shortened to fit).
fn unique_names(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut taken = BTreeSet::new();
    let mut unique = vec![];
    for name in names {
        let mut candidate = name.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            let suffix = format!("-{n}");
            let stem: String = name.chars().take(63 - suffix.len()).collect();
            candidate = format!("{}{suffix}", stem.trim_end_matches('-'));
            n += 1;
        }
        taken.insert(candidate.clone());
        unique.push(candidate);
    }
    unique
}

/// An EcsCluster spec for what DescribeClusters reported.
pub fn cluster_spec(cluster: &Cluster) -> Map<String, Value> {
    let reported: Value = from_sdk(cluster).unwrap_or_default();
    let mut spec = pick(
        &reported,
        &[
            "clusterName",
            "settings",
            "configuration",
            "capacityProviders",
            "defaultCapacityProviderStrategy",
        ],
    );
    if let Some(namespace) = reported["serviceConnectDefaults"]["namespace"].as_str() {
        spec.insert("serviceConnectDefaults".into(), json!({"namespace": namespace}));
    }
    // NB: Container Insights off is what a cluster created without settings reports.
    if spec.get("settings") == Some(&json!([{"name": "containerInsights", "value": "disabled"}])) {
        spec.remove("settings");
    }
    insert_tags(&mut spec, &sdk_tag_map(cluster.tags()));
    spec
}

/// An EcsService spec for what DescribeServices reported (without its references).
pub fn service_spec(service: &Service) -> Map<String, Value> {
    let reported: Value = from_sdk(service).unwrap_or_default();
    let mut spec = pick(
        &reported,
        &[
            "serviceName",
            "launchType",
            "capacityProviderStrategy",
            "platformVersion",
            "schedulingStrategy",
            "desiredCount",
            "deploymentController",
            "deploymentConfiguration",
            "networkConfiguration",
            "loadBalancers",
            "serviceRegistries",
            "placementConstraints",
            "placementStrategy",
            "healthCheckGracePeriodSeconds",
            "availabilityZoneRebalancing",
            "enableECSManagedTags",
            "propagateTags",
            "enableExecuteCommand",
        ],
    );
    if let Some(role) = reported["roleArn"].as_str() {
        spec.insert("role".into(), json!(role));
    }
    // NB: ECS reports these on the service's PRIMARY deployment, not on the service.
    let primary = reported["deployments"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["status"] == "PRIMARY"))
        .cloned()
        .unwrap_or_default();
    spec.extend(pick(
        &primary,
        &[
            "serviceConnectConfiguration",
            "volumeConfigurations",
            "vpcLatticeConfigurations",
        ],
    ));
    insert_tags(&mut spec, &sdk_tag_map(service.tags()));
    without_service_defaults(&mut spec);
    spec
}

/// A service spec without what ECS reports for members left unset at creation. Safe for
/// the round trip: a member the spec leaves out is never compared nor sent.
fn without_service_defaults(spec: &mut Map<String, Value>) {
    for (key, default) in [
        ("schedulingStrategy", json!("REPLICA")),
        ("deploymentController", json!({"type": "ECS"})),
        ("enableECSManagedTags", json!(false)),
        ("propagateTags", json!("NONE")),
        ("enableExecuteCommand", json!(false)),
        ("healthCheckGracePeriodSeconds", json!(0)),
        ("platformVersion", json!("LATEST")),
    ] {
        remove_if(spec, key, &default);
    }
    if let Some(awsvpc) = spec
        .get_mut("networkConfiguration")
        .and_then(|n| n.get_mut("awsvpcConfiguration"))
        .and_then(Value::as_object_mut)
    {
        remove_if(awsvpc, "assignPublicIp", &json!("DISABLED"));
    }
    if let Some(deployment) = spec.get_mut("deploymentConfiguration").and_then(Value::as_object_mut) {
        for (key, default) in [
            ("maximumPercent", json!(200)),
            ("minimumHealthyPercent", json!(100)),
            ("deploymentCircuitBreaker", json!({"enable": false, "rollback": false})),
            ("strategy", json!("ROLLING")),
        ] {
            remove_if(deployment, key, &default);
        }
        if deployment.is_empty() {
            spec.remove("deploymentConfiguration");
        }
    }
}

/// An EcsTaskDefinition spec for a revision: RegisterTaskDefinition's members, with the
/// defaults ECS fills in left out where that provably changes nothing.
pub fn task_definition_spec(td: &TaskDefinition, tags: &BTreeMap<String, String>) -> Map<String, Value> {
    let input: RegisterTaskDefinitionInput = from_sdk(td).unwrap_or_default();
    let full = serde_json::to_value(&input).unwrap_or_default();
    let short = without_defaults(full.clone());
    // NB: only where the operator compares the short form equal to the revision: applying
    // it must register nothing.
    let same = |value: &Value| {
        serde_json::from_value::<RegisterTaskDefinitionInput>(value.clone())
            .map(|input| as_ecs_reports(&task_definition_content(&input)))
            .ok()
    };
    let chosen = if same(&short).is_some() && same(&short) == same(&full) {
        short
    } else {
        drop_empty(full).unwrap_or_default()
    };
    let mut spec = match chosen {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    spec.remove("tags");
    insert_tags(&mut spec, tags);
    spec
}

/// The members of `value` named in `keys`, in that order, empty ones left out.
fn pick(value: &Value, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| drop_empty(value[*k].clone()).map(|v| (k.to_string(), v)))
        .collect()
}

/// The user's tags, as spec.tags: not ECS's own (`aws:`) nor the operator's.
fn insert_tags(spec: &mut Map<String, Value>, tags: &BTreeMap<String, String>) {
    let user: Vec<Value> = tags
        .iter()
        .filter(|(k, _)| !k.starts_with("aws:") && !is_operator_tag(k))
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    if !user.is_empty() {
        spec.insert("tags".into(), Value::Array(user));
    }
}

/// A task definition without the members ECS fills in when they are not given: a
/// container's `essential: true` and `cpu: 0`, a port's `protocol: tcp` and (under awsvpc
/// and host networking) `hostPort` equal to `containerPort`, a health check's interval,
/// timeout, retries and start period defaults, `networkMode: bridge` outside Fargate; and
/// every empty list and object.
fn without_defaults(mut td: Value) -> Value {
    let network_mode = td["networkMode"].as_str().map(str::to_owned);
    let fargate = td["requiresCompatibilities"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c == "FARGATE"));
    if network_mode.as_deref() == Some("bridge")
        && !fargate
        && let Some(map) = td.as_object_mut()
    {
        map.remove("networkMode");
    }
    for container in td["containerDefinitions"].as_array_mut().into_iter().flatten() {
        let Some(container) = container.as_object_mut() else {
            continue;
        };
        remove_if(container, "essential", &json!(true));
        remove_if(container, "cpu", &json!(0));
        for port in container
            .get_mut("portMappings")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(port) = port.as_object_mut() else { continue };
            remove_if(port, "protocol", &json!("tcp"));
            if matches!(network_mode.as_deref(), Some("awsvpc" | "host"))
                && port.get("hostPort") == port.get("containerPort")
            {
                port.remove("hostPort");
            }
        }
        if let Some(check) = container.get_mut("healthCheck").and_then(Value::as_object_mut) {
            for (key, default) in [("interval", 30), ("timeout", 5), ("retries", 3), ("startPeriod", 0)] {
                remove_if(check, key, &json!(default));
            }
        }
    }
    drop_empty(td).unwrap_or_default()
}

fn remove_if(map: &mut Map<String, Value>, key: &str, default: &Value) {
    if map.get(key) == Some(default) {
        map.remove(key);
    }
}

/// Every cluster ARN of the region (ListClusters, 100 per page).
async fn list_clusters(ecs: &Ecs) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut arns = vec![];
    let mut token = None;
    loop {
        let page = ecs
            .call("ListClusters", |c| {
                c.list_clusters().max_results(100).set_next_token(token).send()
            })
            .await?;
        arns.extend(page.cluster_arns().iter().cloned());
        token = page.next_token;
        if token.is_none() {
            return Ok(arns);
        }
    }
}

/// DescribeClusters of `names` (100 per call) with tags, settings and configuration; a
/// cluster ECS does not have is an error naming it.
async fn describe_clusters(ecs: &Ecs, names: Vec<String>) -> Result<Vec<Cluster>, Box<dyn std::error::Error>> {
    let mut clusters = vec![];
    for batch in names.chunks(100) {
        let out = ecs
            .call("DescribeClusters", |c| {
                c.describe_clusters()
                    .set_clusters(Some(batch.to_vec()))
                    .include(ClusterField::Tags)
                    .include(ClusterField::Settings)
                    .include(ClusterField::Configurations)
                    .send()
            })
            .await?;
        if let Some(failure) = out.failures().first() {
            return Err(format!(
                "cluster {}: {}",
                failure.arn().unwrap_or_default(),
                failure.reason().unwrap_or("not found")
            )
            .into());
        }
        clusters.extend(
            out.clusters()
                .iter()
                .filter(|c| c.status() != Some("INACTIVE"))
                .cloned(),
        );
    }
    Ok(clusters)
}

/// The ACTIVE services of a cluster (ListServices, then DescribeServices 10 at a time,
/// with tags).
async fn describe_services(ecs: &Ecs, cluster: &str) -> Result<Vec<Service>, Box<dyn std::error::Error>> {
    let mut arns = vec![];
    let mut token = None;
    loop {
        let page = ecs
            .call("ListServices", |c| {
                c.list_services()
                    .cluster(cluster)
                    .max_results(100)
                    .set_next_token(token)
                    .send()
            })
            .await?;
        arns.extend(page.service_arns().iter().cloned());
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let mut services = vec![];
    for batch in arns.chunks(10) {
        let out = ecs
            .call("DescribeServices", |c| {
                c.describe_services()
                    .cluster(cluster)
                    .set_services(Some(batch.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
            })
            .await?;
        services.extend(out.services().iter().filter(|s| s.status() == Some("ACTIVE")).cloned());
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_valid_kubernetes_names() {
        assert_eq!(object_name("My_Cluster.prod"), "my-cluster-prod");
        assert_eq!(object_name("--web--"), "web");
        assert_eq!(object_name("___"), "unnamed");
        let long = "a".repeat(70) + "-b";
        assert_eq!(object_name(&long).len(), 63);
    }

    #[test]
    fn repeated_names_get_a_number() {
        let names = unique_names(["web", "web", "api", "web"].into_iter().map(String::from));
        assert_eq!(names, ["web", "web-2", "api", "web-3"]);
        let long = "a".repeat(63);
        let names = unique_names([long.clone(), long].into_iter());
        assert_eq!(names[1].len(), 63);
        assert!(names[1].ends_with("-2"));
    }

    #[test]
    fn ecs_defaults_are_left_out_of_a_service() {
        let mut spec = match json!({"serviceName": "web", "schedulingStrategy": "REPLICA", "desiredCount": 2,
            "deploymentController": {"type": "ECS"}, "propagateTags": "SERVICE", "enableExecuteCommand": false,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}},
            "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": false, "rollback": false}}})
        {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        without_service_defaults(&mut spec);
        assert_eq!(
            Value::Object(spec),
            json!({"serviceName": "web", "desiredCount": 2, "propagateTags": "SERVICE",
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}})
        );
    }

    #[test]
    fn ecs_defaults_are_left_out_of_a_task_definition() {
        let reported = json!({
            "family": "web", "networkMode": "awsvpc", "cpu": "256", "memory": "512",
            "requiresCompatibilities": ["FARGATE"], "volumes": [], "placementConstraints": [],
            "containerDefinitions": [{"name": "web", "image": "nginx", "cpu": 0, "essential": true,
                "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
                "environment": [], "mountPoints": [], "volumesFrom": []}]
        });
        let short = without_defaults(reported);
        assert_eq!(
            short,
            json!({"family": "web", "networkMode": "awsvpc", "cpu": "256", "memory": "512",
                "requiresCompatibilities": ["FARGATE"],
                "containerDefinitions": [{"name": "web", "image": "nginx", "portMappings": [{"containerPort": 80}]}]})
        );
    }
}
