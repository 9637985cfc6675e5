//! `ecs-operator diff -f FILE|DIR|-`: what applying manifests would do to ECS, object by
//! object, from the same reads, planners and previews the controllers use. Read-only: only
//! Describe calls reach ECS, and only GETs reach Kubernetes.
//!
//! Each object is compared with ECS as the controller would compare it: with the status the
//! live object has in Kubernetes (its ARNs, the revisions it registered), when there is one,
//! else as a new object. References resolve to the objects in the same manifests first, then
//! to live ones; a task definition that would register a revision is referred to as
//! `family:(new revision)`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{EcsCapacityProvider, EcsCluster, EcsService, EcsTask, EcsTaskDefinition, EcsTaskSchedule, GROUP};
use crate::ecs::client::{Ecs, EcsClients};
use crate::ecs::limits::RateLimits;
use crate::plan::Write;
use crate::plan::service::Desired;
use crate::plan::task as task_planner;
use crate::plan::task_definition as td_planner;
use crate::reconcile::attachments::{self, KnownProvider, Providers};
use crate::reconcile::references::Refers;
use crate::reconcile::{Error, capacity_provider, cluster, schedule, service};
use crate::telemetry::Metrics;

/// How `diff` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: one line per write, the changed fields under it.
    Text,
    /// For CI bots: `{"objects": [{kind, namespace, name, writes, stall}], "changes": N}`.
    Json,
}

/// What applying one object would do.
#[derive(Debug, Serialize)]
pub struct ObjectDiff {
    /// EcsCluster, EcsTaskDefinition, EcsService, EcsTask or EcsTaskSchedule.
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The ECS writes, in order.
    pub writes: Vec<Write>,
    /// What the object would stall with instead (ECS's or the operator's words).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<String>,
}

impl ObjectDiff {
    fn changes(&self) -> bool {
        !self.writes.is_empty() || self.stall.is_some()
    }
}

/// The objects of the manifests, by kind.
#[derive(Default)]
struct Manifests {
    capacity_providers: Vec<EcsCapacityProvider>,
    clusters: Vec<EcsCluster>,
    task_definitions: Vec<EcsTaskDefinition>,
    services: Vec<EcsService>,
    tasks: Vec<EcsTask>,
    schedules: Vec<EcsTaskSchedule>,
}

/// Runs `diff` over `paths` (files, directories of .yaml/.yml/.json, or `-` for stdin);
/// objects without a namespace go to `namespace`. Prints the result and returns the exit
/// code: 0 nothing to do, 1 something to do (or an object would stall), as `kubectl diff`.
pub async fn run(
    paths: &[PathBuf],
    namespace: Option<&str>,
    region: Option<String>,
    format: Format,
) -> Result<i32, Box<dyn std::error::Error>> {
    let kube = Client::try_default().await.ok();
    let namespace = namespace
        .map(str::to_owned)
        .or_else(|| kube.as_ref().map(|c| c.default_namespace().to_string()))
        .unwrap_or_else(|| "default".into());
    let manifests = read_manifests(paths, &namespace)?;
    let clients = EcsClients::load(region, RateLimits::default(), BTreeMap::new(), Arc::new(Metrics::new())).await;
    let diffs = Differ { kube, clients }.diff(&manifests).await?;
    let changed = diffs.iter().filter(|d| d.changes()).count();
    match format {
        Format::Text => print!("{}", text(&diffs)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"objects": diffs, "changes": changed}))?
        ),
    }
    Ok(if changed > 0 { 1 } else { 0 })
}

/// The diff as people read it; objects in sync print nothing.
pub fn text(diffs: &[ObjectDiff]) -> String {
    let mut out = String::new();
    for diff in diffs.iter().filter(|d| d.changes()) {
        let object = format!("{} {}/{}", diff.kind, diff.namespace, diff.name);
        if let Some(stall) = &diff.stall {
            out.push_str(&format!("{object}: would stall: {stall}\n"));
        }
        for write in &diff.writes {
            let why = if write.why.is_empty() {
                String::new()
            } else {
                format!(" ({})", write.why)
            };
            out.push_str(&format!("{object}: {} {}{why}\n", write.operation, write.target));
            for change in &write.changes {
                out.push_str(&format!("    {}: {} -> {}\n", change.field, change.from, change.to));
            }
        }
    }
    out
}

struct Differ {
    kube: Option<Client>,
    clients: EcsClients,
}

/// What a service's reference resolves to: an ARN or name ECS takes.
type Resolved = BTreeMap<(String, String), String>;

impl Differ {
    async fn diff(&self, manifests: &Manifests) -> Result<Vec<ObjectDiff>, Box<dyn std::error::Error>> {
        let mut diffs = vec![];
        for obj in &manifests.capacity_providers {
            let (obj, _) = self.as_applied(obj).await?;
            let ecs = self.ecs(obj.spec.options.region.as_deref()).await?;
            let preview = match self.provider_cluster(manifests, &obj).await? {
                Ok(cluster) => {
                    let observed = capacity_provider::describe(&ecs, &obj.provider_name(), cluster.as_deref()).await?;
                    obj.preview(observed.as_ref(), cluster.as_deref())
                }
                Err(waiting) => Err(Error::Invalid(waiting)),
            };
            diffs.push(outcome(&obj, "EcsCapacityProvider", preview));
        }
        let mut clusters = Resolved::new();
        for obj in &manifests.clusters {
            let (obj, previous) = self.as_applied(obj).await?;
            let obj = &obj;
            let ecs = self.ecs(obj.spec.options.region.as_deref()).await?;
            let observed =
                cluster::describe(&ecs, previous.cluster_arn.as_deref().unwrap_or(&obj.cluster_name())).await?;
            let arn = observed
                .as_ref()
                .filter(|c| c.status() != Some("INACTIVE"))
                .and_then(|c| c.cluster_arn())
                .map_or_else(|| obj.cluster_name(), str::to_owned);
            clusters.insert(key(obj), arn);
            let preview = match self
                .cluster_providers(manifests, obj, observed.as_ref(), &previous)
                .await?
            {
                Ok(providers) => obj.preview(observed.as_ref(), &previous, &providers),
                Err(waiting) => Err(Error::Invalid(waiting)),
            };
            diffs.push(outcome(obj, "EcsCluster", preview));
        }
        let services_in_use = self.services_in_use(manifests).await?;
        let mut task_definitions = Resolved::new();
        for obj in &manifests.task_definitions {
            let (obj, previous) = self.as_applied(obj).await?;
            let obj = &obj;
            let ecs = self.ecs(obj.spec.options.region.as_deref()).await?;
            let current = obj.current_revision(&ecs, &previous).await?;
            let in_use = td_planner::revisions_in_use(services_in_use.iter(), &obj.family());
            let preview = obj.preview(current.as_ref(), &previous, &in_use);
            let registers = preview
                .as_ref()
                .is_ok_and(|w| w.iter().any(|w| w.operation == "RegisterTaskDefinition"));
            let resolved = match &current {
                Some((td, _)) if !registers => td.task_definition_arn().unwrap_or_default().to_string(),
                _ => format!("{}:(new revision)", obj.family()),
            };
            task_definitions.insert(key(obj), resolved);
            diffs.push(outcome(obj, "EcsTaskDefinition", preview));
        }
        for obj in &manifests.services {
            let (obj, previous) = self.as_applied(obj).await?;
            let obj = &obj;
            let ecs = self.ecs(obj.spec.options.region.as_deref()).await?;
            let (cluster, task_definition) = match self.targets(obj, &clusters, &task_definitions).await? {
                Ok(target) => target,
                Err(missing) => {
                    diffs.push(ObjectDiff {
                        stall: Some(missing),
                        ..ObjectDiff::of(obj, "EcsService")
                    });
                    continue;
                }
            };
            let desired = Desired::new(obj, cluster, task_definition);
            let observed = service::describe(&ecs, &desired.cluster, &desired.name).await?;
            diffs.push(outcome(
                obj,
                "EcsService",
                obj.preview(&desired, observed.as_ref(), &previous),
            ));
        }
        for obj in &manifests.tasks {
            let (obj, previous) = self.as_applied(obj).await?;
            let obj = &obj;
            let targets = self.targets(obj, &clusters, &task_definitions).await?;
            let Some((cluster, task_definition)) = runs(obj, "EcsTask", targets, &mut diffs) else {
                continue;
            };
            let desired = task_planner::Desired::new(obj, cluster, task_definition);
            let plan = task_planner::plan(&desired, &previous, k8s_openapi::jiff::Timestamp::now());
            diffs.push(outcome(obj, "EcsTask", Ok(task_planner::writes(&plan, &desired))));
        }
        for obj in &manifests.schedules {
            let (obj, _) = self.as_applied(obj).await?;
            let obj = &obj;
            let ecs = self.ecs(obj.spec.region.as_deref()).await?;
            let targets = self.targets(obj, &clusters, &task_definitions).await?;
            let Some((cluster, task_definition)) = runs(obj, "EcsTaskSchedule", targets, &mut diffs) else {
                continue;
            };
            let reported = schedule::get_schedule(&ecs, obj).await?;
            let preview = obj
                .wanted(&cluster, &task_definition)
                .and_then(|wanted| obj.preview(&wanted, reported.as_ref()))
                .map(|(plan, _)| obj.writes(&plan));
            diffs.push(outcome(obj, "EcsTaskSchedule", preview));
        }
        Ok(diffs)
    }

    /// What a service's, task's or schedule's cluster and task definition resolve to; Err
    /// when a reference cannot be resolved (the object would wait for it).
    async fn targets<K: Refers>(
        &self,
        obj: &K,
        clusters: &Resolved,
        task_definitions: &Resolved,
    ) -> Result<Result<(String, Option<String>), String>, kube::Error> {
        let namespace = obj.namespace().unwrap_or_default();
        let cluster = match (obj.cluster_ref(), obj.cluster()) {
            (Some(name), _) => self.reference::<EcsCluster>(clusters, &namespace, name).await?,
            (None, Some(c)) => Ok(c.to_string()),
            (None, None) => Ok("default".to_string()),
        };
        let task_definition = match (obj.task_definition_ref(), obj.task_definition()) {
            (Some(name), _) => self
                .reference::<EcsTaskDefinition>(task_definitions, &namespace, name)
                .await?
                .map(Some),
            (None, td) => Ok(td.map(str::to_owned)),
        };
        Ok(match (cluster, task_definition) {
            (Ok(c), Ok(t)) => Ok((c, t)),
            (Err(missing), _) | (_, Err(missing)) => Err(missing),
        })
    }

    /// The ECS client of a region (the object's, else the default).
    async fn ecs(&self, region: Option<&str>) -> Result<Ecs, String> {
        let region = self
            .clients
            .region(region)
            .ok_or("no AWS region: set AWS_REGION or pass --region")?;
        Ok(self.clients.client_as(None, &region).await)
    }

    /// The manifest's object as it would be once applied, with the status the controller
    /// would start from: the live object's UID (its ownership tags name it), generation (one
    /// more when the spec changes) and status; a new object has none of them.
    async fn as_applied<K: crate::reconcile::Managed>(&self, manifest: &K) -> Result<(K, K::Status), kube::Error> {
        let Some(client) = &self.kube else {
            return Ok((manifest.clone(), K::Status::default()));
        };
        let api: Api<K> = Api::namespaced(client.clone(), &manifest.namespace().unwrap_or_default());
        let Some(live) = api.get_opt(&manifest.name_any()).await? else {
            return Ok((manifest.clone(), K::Status::default()));
        };
        let spec = |obj: &K| serde_json::to_value(obj).map(|v| v["spec"].clone()).ok();
        let changed = spec(manifest) != spec(&live);
        let mut applied = manifest.clone();
        applied.meta_mut().uid = live.meta().uid.clone();
        applied.meta_mut().generation = live.meta().generation.map(|g| g + i64::from(changed));
        Ok((applied, live.status().cloned().unwrap_or_default()))
    }

    /// A reference's ARN: from the manifests' objects, else the live object's status; Err
    /// when neither has one (the service would wait for it).
    async fn reference<K: crate::reconcile::Managed>(
        &self,
        resolved: &Resolved,
        namespace: &str,
        name: &str,
    ) -> Result<Result<String, String>, kube::Error> {
        let kind = K::kind(&());
        if let Some(arn) = resolved.get(&(namespace.to_string(), name.to_string())) {
            return Ok(Ok(arn.clone()));
        }
        let Some(client) = &self.kube else {
            return Ok(Err(format!(
                "{kind} {name} is neither in the manifests nor reachable in Kubernetes"
            )));
        };
        let live: Option<K> = Api::namespaced(client.clone(), namespace).get_opt(name).await?;
        let arn = live
            .and_then(|obj| obj.status().and_then(|s| serde_json::to_value(s).ok()))
            .and_then(|s| {
                ["clusterArn", "taskDefinitionArn"]
                    .iter()
                    .find_map(|f| s[*f].as_str().map(str::to_owned))
            });
        Ok(arn.ok_or_else(|| format!("{kind} {name} does not exist or has no ARN yet")))
    }

    /// A cluster's providers resolved as the controller resolves them, against the
    /// manifests' EcsCapacityProviders (as they will be once made) and the live ones its
    /// references name.
    async fn cluster_providers(
        &self,
        manifests: &Manifests,
        cluster: &EcsCluster,
        observed: Option<&aws_sdk_ecs::types::Cluster>,
        previous: &crate::api::EcsClusterStatus,
    ) -> Result<Result<Providers, String>, kube::Error> {
        let mut known = vec![];
        for provider in &manifests.capacity_providers {
            let cluster = self.provider_cluster(manifests, provider).await?.ok().flatten();
            known.push(KnownProvider::from_spec(provider, cluster));
        }
        let namespace = cluster.namespace().unwrap_or_default();
        for reference in &cluster.spec.capacity_provider_refs {
            let object = format!("{namespace}/{}", reference.name);
            if known.iter().any(|p| p.object == object) {
                continue;
            }
            let Some(live) = self
                .object::<EcsCapacityProvider>(&[], &namespace, &reference.name)
                .await?
            else {
                return Ok(Err(format!(
                    "EcsCapacityProvider {} is neither in the manifests nor in Kubernetes",
                    reference.name
                )));
            };
            let cluster = self.provider_cluster(manifests, &live).await?.ok().flatten();
            known.push(KnownProvider::from_spec(&live, cluster));
        }
        Ok(attachments::resolve(cluster, &known, observed, previous).map_err(|e| e.to_string()))
    }

    /// The cluster a Managed Instances provider belongs to, by name (its clusterRef resolved
    /// from the manifests first, then the live EcsCluster).
    async fn provider_cluster(
        &self,
        manifests: &Manifests,
        provider: &EcsCapacityProvider,
    ) -> Result<Result<Option<String>, String>, kube::Error> {
        let Some(reference) = &provider.spec.cluster_ref else {
            return Ok(Ok(provider.spec.provider.cluster.clone()));
        };
        let namespace = provider.namespace().unwrap_or_default();
        Ok(
            match self
                .object::<EcsCluster>(&manifests.clusters, &namespace, &reference.name)
                .await?
            {
                Some(cluster) => Ok(Some(cluster.cluster_name())),
                None => Err(format!(
                    "EcsCluster {} is neither in the manifests nor in Kubernetes",
                    reference.name
                )),
            },
        )
    }

    /// The object `namespace/name` of a kind: from the manifests, else the live one.
    async fn object<K: crate::reconcile::Managed>(
        &self,
        manifests: &[K],
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, kube::Error> {
        let listed = manifests
            .iter()
            .find(|o| o.namespace().as_deref() == Some(namespace) && o.name_any() == name);
        if let Some(obj) = listed {
            return Ok(Some(obj.clone()));
        }
        match &self.kube {
            Some(client) => Api::namespaced(client.clone(), namespace).get_opt(name).await,
            None => Ok(None),
        }
    }

    /// The services whose revisions count as in use: the manifests' and the live ones of
    /// their namespaces.
    async fn services_in_use(&self, manifests: &Manifests) -> Result<Vec<EcsService>, kube::Error> {
        let mut services = manifests.services.clone();
        let Some(client) = &self.kube else { return Ok(services) };
        let mut namespaces: Vec<String> = manifests
            .task_definitions
            .iter()
            .map(|td| td.namespace().unwrap_or_default())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        for namespace in namespaces {
            let api: Api<EcsService> = Api::namespaced(client.clone(), &namespace);
            services.extend(api.list(&ListParams::default()).await?.items);
        }
        Ok(services)
    }
}

impl ObjectDiff {
    fn of<K: ResourceExt>(obj: &K, kind: &'static str) -> Self {
        Self {
            kind,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            writes: vec![],
            stall: None,
        }
    }
}

/// The cluster and task definition a task or schedule runs, or None: when a reference cannot
/// be resolved (the stall goes to `diffs`), or when it names no task definition (admission
/// rejects that).
fn runs<K: ResourceExt>(
    obj: &K,
    kind: &'static str,
    targets: Result<(String, Option<String>), String>,
    diffs: &mut Vec<ObjectDiff>,
) -> Option<(String, String)> {
    match targets {
        Ok((cluster, task_definition)) => Some((cluster, task_definition?)),
        Err(missing) => {
            diffs.push(ObjectDiff {
                stall: Some(missing),
                ..ObjectDiff::of(obj, kind)
            });
            None
        }
    }
}

fn key<K: ResourceExt>(obj: &K) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// A preview's writes, or the error the object would stall with.
fn outcome<K: ResourceExt>(obj: &K, kind: &'static str, preview: Result<Vec<Write>, Error>) -> ObjectDiff {
    match preview {
        Ok(writes) => ObjectDiff {
            writes,
            ..ObjectDiff::of(obj, kind)
        },
        Err(err) => ObjectDiff {
            stall: Some(err.to_string()),
            ..ObjectDiff::of(obj, kind)
        },
    }
}

/// Reads every manifest under `paths`: this API's kinds, in the order they are applied
/// (clusters, task definitions, then what uses them); other kinds are skipped.
fn read_manifests(paths: &[PathBuf], namespace: &str) -> Result<Manifests, Box<dyn std::error::Error>> {
    let mut manifests = Manifests::default();
    for (source, text) in sources(paths)? {
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document).map_err(|e| format!("{source}: {e}"))?;
            // NB: `kubectl get -o yaml` of several objects is one List.
            let objects = match value["kind"].as_str() {
                Some("List") => value["items"].as_array().cloned().unwrap_or_default(),
                _ => vec![value],
            };
            for value in objects {
                manifests.add(value, &source, namespace)?;
            }
        }
    }
    Ok(manifests)
}

impl Manifests {
    /// Adds one object of this API (others are skipped), in `namespace` if it names none.
    fn add(&mut self, mut value: Value, source: &str, namespace: &str) -> Result<(), String> {
        if value.is_null() {
            return Ok(());
        }
        let group = value["apiVersion"].as_str().unwrap_or_default();
        if group.split('/').next() != Some(GROUP) {
            return Ok(());
        }
        if value["metadata"]["namespace"].is_null() {
            value["metadata"]["namespace"] = json!(namespace);
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let invalid = |e: serde_json::Error| format!("{source}: {kind}: {e}");
        match kind.as_str() {
            "EcsCluster" => self.clusters.push(serde_json::from_value(value).map_err(invalid)?),
            "EcsCapacityProvider" => self
                .capacity_providers
                .push(serde_json::from_value(value).map_err(invalid)?),
            "EcsTaskDefinition" => self
                .task_definitions
                .push(serde_json::from_value(value).map_err(invalid)?),
            "EcsService" => self.services.push(serde_json::from_value(value).map_err(invalid)?),
            "EcsTask" => self.tasks.push(serde_json::from_value(value).map_err(invalid)?),
            "EcsTaskSchedule" => self.schedules.push(serde_json::from_value(value).map_err(invalid)?),
            _ => {}
        }
        Ok(())
    }
}

/// The text of each manifest: files as given, a directory's .yaml/.yml/.json files in name
/// order, `-` for stdin.
fn sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let mut texts = vec![];
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            texts.push(("stdin".to_string(), text));
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            files.sort();
            for file in files {
                texts.push((file.display().to_string(), std::fs::read_to_string(&file)?));
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            texts.push((path.display().to_string(), text));
        }
    }
    Ok(texts)
}
