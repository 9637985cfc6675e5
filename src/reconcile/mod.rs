//! The reconcile core shared by every kind: finalizer, conditions, status written with
//! server-side apply only when it changed, Events, error classification and requeueing.
//!
//! A kind implements [`Managed`]: `apply` makes ECS match the spec and reports what it
//! observed; `cleanup` removes (or retains) the ECS resource. Everything else is here, once.

pub mod attachments;
mod caches;
pub mod capacity_provider;
pub mod cluster;
mod conditions;
pub mod events;
mod labels;
pub mod observations;
pub mod references;
mod retries;
pub mod schedule;
pub mod service;
pub mod task;
pub mod task_definition;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::api::{
    CommonStatus, EcsCapacityProvider, EcsCluster, EcsService, EcsTask, EcsTaskDefinition, EcsTaskSchedule,
    ManagementOptions,
};
pub use crate::plan::State;

use crate::backoff::Backoff;
use crate::ecs::client::{Ecs, EcsClients};
use crate::ecs::error::{EcsError, ErrorClass};
use crate::ecs::ownership;
use crate::ecs::wire::WireError;
pub use caches::{Cache, Caches};
use events::EventPublisher;
pub use labels::LabelSelector;
use observations::Observations;
use retries::Retries;
use tokio::sync::Semaphore;

use crate::server::Health;
use crate::telemetry::Metrics;

/// The finalizer on every object: the ECS resource is cleaned up before the object goes.
pub const FINALIZER: &str = "ecs.operator.dev/finalizer";
/// The one field manager status is written with.
pub const FIELD_MANAGER: &str = "ecs-operator";

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often an in-sync object is re-observed to catch drift.
    pub resync_interval: Duration,
    /// How long a Stalled object waits before one more try without a spec change.
    pub stalled_retry_interval: Duration,
    /// Watch only these namespaces (all when empty).
    pub namespaces: Vec<String>,
    /// Reconcile only objects matching this label selector (to shard across deployments).
    pub label_selector: Option<LabelSelector>,
    /// At most this many reconciles at once per kind (0: unbounded).
    pub concurrency: u16,
}

/// Everything a reconcile needs.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// ECS clients per region.
    pub ecs: EcsClients,
    /// Publishes events.k8s.io/v1 Events.
    pub events: EventPublisher,
    /// Operator-wide settings.
    pub settings: Settings,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// What the last batched read of each kind saw, for the reconciles of the resync it
    /// precedes.
    pub observed: Observed,
    /// The shared watch caches of every kind.
    pub caches: Caches,
    /// Failures in a row and stalls, per object.
    retries: Retries,
    /// Reconciles of each kind at once, at most `settings.concurrency` (whatever the number
    /// of watched namespaces); absent when unbounded.
    slots: HashMap<String, Arc<Semaphore>>,
}

impl Context {
    /// A context for the controllers.
    pub fn new(client: Client, ecs: EcsClients, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| FIELD_MANAGER.into());
        let events = EventPublisher::new(client.clone(), FIELD_MANAGER, &instance);
        let slots = match settings.concurrency {
            0 => HashMap::new(),
            n => [
                "EcsCluster",
                "EcsTaskDefinition",
                "EcsService",
                "EcsTask",
                "EcsTaskSchedule",
                "EcsCapacityProvider",
            ]
            .into_iter()
            .map(|kind| (kind.to_string(), Arc::new(Semaphore::new(usize::from(n)))))
            .collect(),
        };
        let caches = Caches::new(&settings.namespaces);
        Self {
            client,
            ecs,
            events,
            settings,
            metrics,
            observed: Observed::default(),
            caches,
            retries: Retries::default(),
            slots,
        }
    }

    /// The ECS client and region of an object: its namespace's identity, its region.
    pub async fn ecs_for<K: Managed>(&self, obj: &K) -> Result<(Ecs, String), Error> {
        let options = obj.options();
        let region = self.ecs.region(options.region.as_deref()).ok_or(Error::NoRegion)?;
        let namespace = obj.namespace().unwrap_or_default();
        Ok((self.ecs.client(&namespace, &region).await, region))
    }
}

/// What the last batched read of each kind saw (see [`observations`]).
#[derive(Default)]
pub struct Observed {
    /// DescribeServices: the service, or None when ECS has none.
    pub services: Observations<Option<aws_sdk_ecs::types::Service>>,
    /// DescribeClusters: the cluster, or None when ECS has none.
    pub clusters: Observations<Option<aws_sdk_ecs::types::Cluster>>,
    /// ListTaskDefinitions: the object's revision is still ACTIVE.
    pub task_definitions: Observations<task_definition::StillActive>,
    /// DescribeTasks: the object's tasks ECS still knows.
    pub tasks: Observations<Vec<aws_sdk_ecs::types::Task>>,
    /// EcsTaskSchedule has no batched read (EventBridge Scheduler has none).
    pub schedules: Observations<()>,
    /// DescribeCapacityProviders: the provider, or None when ECS has none.
    pub capacity_providers: Observations<Option<aws_sdk_ecs::types::CapacityProvider>>,
}

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An ECS call failed.
    #[error(transparent)]
    Ecs(#[from] EcsError),
    /// A Kubernetes call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The spec could not be turned into an ECS request.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The spec asks for something the operator cannot do as it stands.
    #[error("{0}")]
    Invalid(String),
    /// An ECS resource of the wanted name exists and this object does not own it.
    #[error("{0}")]
    NotOwned(String),
    /// No region: neither spec.region nor the operator's default.
    #[error("no AWS region: set spec.region, or run the operator with --region or AWS_REGION")]
    NoRegion,
    /// ECS still holds something that must go first.
    #[error("{0}")]
    DeletionBlocked(String),
    /// A deleted service is still DRAINING in ECS.
    #[error("{0}")]
    Draining(String),
    /// The finalizer helper failed to add or remove the finalizer.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// How many times in a row an AccessDenied is retried before it counts as terminal: IAM
/// changes take seconds to minutes to reach ECS.
pub const DENIED_RETRIES: u32 = 4;

impl Error {
    /// Errors that retrying will not fix: Stalled until the spec changes.
    pub fn is_terminal(&self) -> bool {
        self.is_terminal_after(DENIED_RETRIES)
    }

    /// [`Error::is_terminal`] for the `failures`-th consecutive failure of an object: an
    /// AccessDenied is retried [`DENIED_RETRIES`] times first (IAM propagation).
    pub fn is_terminal_after(&self, failures: u32) -> bool {
        match self {
            Error::Ecs(e) if e.class == ErrorClass::Denied => failures >= DENIED_RETRIES,
            Error::Ecs(e) => e.class == ErrorClass::Terminal,
            Error::Wire(_) | Error::Invalid(_) | Error::NotOwned(_) | Error::NoRegion => true,
            Error::Kube(_) | Error::DeletionBlocked(_) | Error::Draining(_) | Error::Finalizer(_) => false,
        }
    }

    /// A CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Ecs(e) if e.class == ErrorClass::Throttled => "Throttled",
            Error::Ecs(e) if e.class == ErrorClass::Denied => "AccessDenied",
            Error::Ecs(e) if e.class == ErrorClass::Terminal => "EcsRejected",
            Error::Ecs(e) if e.class == ErrorClass::Slow => "EcsBusy",
            Error::Ecs(_) => "EcsUnavailable",
            Error::Kube(_) | Error::Finalizer(_) => "KubernetesError",
            Error::Wire(_) | Error::Invalid(_) => "InvalidSpec",
            Error::NotOwned(_) => "NotOwned",
            Error::NoRegion => "NoRegion",
            Error::DeletionBlocked(_) => "DeletionBlocked",
            Error::Draining(_) => "Draining",
        }
    }
}

/// What a kind reports after making ECS match its spec.
pub struct Outcome<S> {
    /// The kind's status fields (observedGeneration and conditions are set by the core).
    pub status: S,
    /// Ready, or still on its way.
    pub state: State,
    /// What the operator changed, for Events. Empty when nothing changed.
    pub events: Vec<Note>,
}

/// One Event to publish about the object.
#[derive(Debug)]
pub struct Note {
    /// Normal or Warning.
    pub warning: bool,
    /// CamelCase reason, e.g. RevisionRegistered.
    pub reason: &'static str,
    /// What happened, with ECS's words where there are any.
    pub message: String,
}

impl Note {
    /// A Normal event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            message: message.into(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            message: message.into(),
        }
    }

    /// "updated <fields>": Updated when the spec asked for it, DriftCorrected when ECS had
    /// moved away from an unchanged spec. None when nothing changed.
    pub fn changed(asked_for: bool, fields: &[String]) -> Option<Self> {
        let reason = if asked_for { "Updated" } else { "DriftCorrected" };
        (!fields.is_empty()).then(|| Self::normal(reason, format!("updated {}", fields.join(", "))))
    }
}

/// Claims an existing ECS resource for `obj`: fine when its tags say `obj` owns it, taken
/// over (an Adopted note) when `obj` adopts, otherwise [`Error::NotOwned`] saying how to
/// adopt. `what` describes the resource, e.g. "ECS cluster prod".
pub fn claim<K: Managed>(obj: &K, tags: &BTreeMap<String, String>, what: &str) -> Result<Option<Note>, Error> {
    if ownership::owned_by(tags, obj) {
        Ok(None)
    } else if obj.options().adopt {
        Ok(Some(Note::normal("Adopted", format!("took over {what}"))))
    } else {
        Err(Error::NotOwned(format!(
            "{what} was not created by this object; set spec.adopt: true to manage it"
        )))
    }
}

/// A Kubernetes kind the operator manages in ECS.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind's status type.
    type Status: Clone + Debug + Default + PartialEq + Serialize + Send + Sync;
    /// What a batched resync read leaves for one object.
    type Observed: Send + 'static;

    /// Where batched reads of this kind leave what they saw.
    fn observations(ctx: &Context) -> &Observations<Self::Observed>;

    /// The object's status, if any was written.
    fn status(&self) -> Option<&Self::Status>;
    /// observedGeneration and conditions of a status.
    fn common(status: &mut Self::Status) -> &mut CommonStatus;
    /// Region, deletion policy, adoption, management policy.
    fn options(&self) -> ManagementOptions;
    /// Makes ECS match the spec; reports status, readiness and what changed.
    fn apply(&self, ctx: &Context) -> impl Future<Output = Result<Outcome<Self::Status>, Error>> + Send;
    /// Observe-only: reads ECS as `apply` does, reports status and, as [`State::Observed`],
    /// the members where ECS differs from the spec; writes nothing to ECS.
    fn observe(&self, ctx: &Context) -> impl Future<Output = Result<Outcome<Self::Status>, Error>> + Send;
    /// Removes (or retains) the ECS resource; Ok once it is gone and the finalizer can go,
    /// [`Error::DeletionBlocked`] while ECS still holds something that must go first.
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Vec<Note>, Error>> + Send;
    /// How often the kind's poll sweep reads its polled objects together (see
    /// [`Managed::polled`]); None: the kind has no poll sweep.
    fn poll_interval() -> Option<Duration> {
        None
    }
    /// True while the object is in flight in a way its kind's poll sweep follows (a running
    /// EcsTask): it is not requeued by itself.
    fn polled(&self) -> bool {
        false
    }
    /// Before a resync: reads the ECS resources of all `objects` in as few calls as ECS
    /// allows and offers each object's to [`Managed::observations`]. Kinds without a batch
    /// read leave it to each reconcile.
    /// `sweep` counts resyncs since the operator started.
    fn observe_all(objects: Vec<Arc<Self>>, sweep: u64, ctx: &Context) -> impl Future<Output = ()> + Send {
        let _ = (objects, sweep, ctx);
        async {}
    }
    /// How many objects a sweep reads before it hands them to their reconciles, so that a
    /// large fleet's snapshots are not all held at once. A kind whose batch read lists the
    /// whole account (task definitions) reads all of its objects at once.
    const SWEEP_CHUNK: usize = usize::MAX;
    /// What a sweep orders objects by before chunking, so that a chunk's batches stay full
    /// (services: their cluster, since DescribeServices reads one cluster per call).
    fn sweep_key(&self) -> Option<&str> {
        None
    }
}

/// Runs the controllers of every kind until a shutdown signal, watching through `watches`
/// (a client whose timeout suits a watch that may rightly stay quiet for minutes); marks
/// `health` ready once every watch has listed its objects. Each kind is watched once per
/// watched namespace; its store feeds its controller and, for clusters, task definitions
/// and capacity providers, the reference triggers of the controllers that refer to them.
pub async fn run(ctx: Arc<Context>, watches: Client, health: Arc<Health>) {
    // NB: every object is watched, whatever the label selector: a service may refer to a
    // cluster or task definition of another shard. Each controller reconciles only its
    // shard's objects (see `controller`).
    let config = watcher::Config::default();
    let selector = ctx.settings.label_selector.clone();
    let mut synced: Vec<Synced> = vec![];
    let mut tasks: Vec<BoxFuture<'static, ()>> = vec![];
    let mut controllers: Vec<BoxFuture<'static, ()>> = vec![];
    let mut task_definition_writers = ctx.caches.task_definitions.take_writers();
    let mut cluster_writers = ctx.caches.clusters.take_writers();
    let mut service_writers = ctx.caches.services.take_writers();
    let mut task_writers = ctx.caches.tasks.take_writers();
    let mut schedule_writers = ctx.caches.schedules.take_writers();
    let mut provider_writers = ctx.caches.capacity_providers.take_writers();
    for (i, scope) in ctx.caches.scopes.clone().iter().enumerate() {
        let [td_own, td_refs, td_task_refs, td_schedule_refs] = watch(
            api::<EcsTaskDefinition>(&watches, scope),
            &config,
            task_definition_writers.remove(0),
            &mut tasks,
            &mut synced,
        );
        let [
            cluster_own,
            cluster_refs,
            cluster_task_refs,
            cluster_schedule_refs,
            cluster_provider_refs,
        ] = watch(
            api::<EcsCluster>(&watches, scope),
            &config,
            cluster_writers.remove(0),
            &mut tasks,
            &mut synced,
        );
        let [service_own] = watch(
            api::<EcsService>(&watches, scope),
            &config,
            service_writers.remove(0),
            &mut tasks,
            &mut synced,
        );
        let [task_own] = watch(
            api::<EcsTask>(&watches, scope),
            &config,
            task_writers.remove(0),
            &mut tasks,
            &mut synced,
        );
        let [schedule_own] = watch(
            api::<EcsTaskSchedule>(&watches, scope),
            &config,
            schedule_writers.remove(0),
            &mut tasks,
            &mut synced,
        );
        let [provider_own, provider_cluster_refs] = watch(
            api::<EcsCapacityProvider>(&watches, scope),
            &config,
            provider_writers.remove(0),
            &mut tasks,
            &mut synced,
        );
        let task_definitions = controller(td_own, ctx.caches.task_definitions.store(i), &selector);
        let clusters = attachments::woken_by_providers(
            controller(cluster_own, ctx.caches.clusters.store(i), &selector),
            provider_cluster_refs,
            selector.clone(),
        );
        let providers = capacity_provider::controller(
            controller(provider_own, ctx.caches.capacity_providers.store(i), &selector),
            cluster_provider_refs,
            selector.clone(),
        );
        controllers.push(drive(providers, ctx.clone()).boxed());
        let services = service::controller(
            controller(service_own, ctx.caches.services.store(i), &selector),
            cluster_refs,
            td_refs,
            selector.clone(),
        );
        controllers.push(drive(task_definitions, ctx.clone()).boxed());
        controllers.push(drive(clusters, ctx.clone()).boxed());
        let ecs_tasks = task::controller(
            controller(task_own, ctx.caches.tasks.store(i), &selector),
            cluster_task_refs,
            td_task_refs,
            selector.clone(),
        );
        let schedules = schedule::controller(
            controller(schedule_own, ctx.caches.schedules.store(i), &selector),
            cluster_schedule_refs,
            td_schedule_refs,
            selector.clone(),
        );
        controllers.push(drive(services, ctx.clone()).boxed());
        controllers.push(drive(ecs_tasks, ctx.clone()).boxed());
        controllers.push(drive(schedules, ctx.clone()).boxed());
    }
    let caches = ctx.clone();
    tokio::spawn(async move {
        futures::future::join_all(synced).await;
        info!("watch caches synced");
        caches.caches.mark_synced();
        health.set_ready(true);
    });
    // NB: the watches never end; the controllers do, on SIGTERM, once their in-flight
    // reconciles have. Waiting for all of them held every shutdown for its whole bound.
    futures::future::select(futures::future::join_all(controllers), futures::future::join_all(tasks)).await;
}

/// Resolves when a watch has listed its objects for the first time.
pub type Synced = BoxFuture<'static, ()>;

/// Starts one watch feeding `writer`'s store: pushes the watch itself to `tasks` (it must be
/// polled for the store and its subscribers to see anything) and its first listing to
/// `synced`; returns `N` subscriptions to the objects it applies.
fn watch<K: Managed, const N: usize>(
    api: Api<K>,
    config: &watcher::Config,
    writer: Writer<K>,
    tasks: &mut Vec<BoxFuture<'static, ()>>,
    synced: &mut Vec<Synced>,
) -> [ReflectHandle<K>; N] {
    // NB: a store made with store_shared always has a dispatcher to subscribe to.
    let subscriptions = std::array::from_fn(|_| writer.subscribe().expect("a shared store"));
    // NB: not Store::wait_until_ready: its readiness wakes only the last task that polled
    // it, and the controller waits on it too; a second waiter could leave it asleep.
    let (listed, first_listing) = tokio::sync::oneshot::channel();
    let mut listed = Some(listed);
    let kind = K::kind(&()).to_string();
    let root = watcher::watcher(api, config.clone())
        .backoff(WatchBackoff::default())
        .modify(slim)
        .reflect_shared(writer)
        .for_each(move |event| {
            match &event {
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = listed.take() {
                        let _ = listed.send(());
                    }
                }
                Err(err) => debug!(kind, error = %err, "watch failed; backing off"),
                Ok(_) => {}
            }
            futures::future::ready(())
        });
    tasks.push(root.boxed());
    synced.push(
        async move {
            // NB: a dropped sender means the watch ended with the operator; never ready then.
            if first_listing.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        .boxed(),
    );
    subscriptions
}

/// A controller of `K` woken by changes to spec, finalizers or labels, not by status alone:
/// its own status writes must not cost another pass (and another ECS read) per object.
// NB: marking an object for deletion bumps its generation, so cleanup still starts at once.
pub fn controller<K: Managed>(
    objects: ReflectHandle<K>,
    store: Store<K>,
    selector: &Option<LabelSelector>,
) -> Controller<K> {
    let significant = predicates::generation
        .combine(predicates::finalizers)
        .combine(predicates::labels)
        .combine(operator_annotations);
    let selector = selector.clone();
    let selected = objects.filter(move |obj| futures::future::ready(selects(&selector, obj.as_ref())));
    Controller::for_shared_stream(changes(selected, significant, store.clone()), store)
}

/// The annotations addressed to the operator (`ecs.operator.dev/...`, e.g. an approval of a
/// paused deployment): a change wakes the object at once.
fn operator_annotations<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    obj.annotations()
        .iter()
        .filter(|(k, _)| k.starts_with("ecs.operator.dev/"))
        .for_each(|entry| entry.hash(&mut hasher));
    Some(hasher.finish())
}

/// True when the operator's label selector (if any) selects the object.
pub fn selects<K: Resource>(selector: &Option<LabelSelector>, obj: &K) -> bool {
    selector.as_ref().is_none_or(|s| s.matches(obj.labels()))
}

/// The objects of `stream` whose `predicate` value changed since they last passed (or that
/// it cannot tell about): kube's predicate filter, for shared streams. `store` is the
/// stream's watch cache, where objects no longer there are forgotten.
pub fn changes<K: Managed, P: Predicate<K> + Send + 'static>(
    stream: impl Stream<Item = Arc<K>> + Send + 'static,
    predicate: P,
    store: Store<K>,
) -> impl Stream<Item = Arc<K>> + Send + 'static {
    let mut seen: HashMap<String, u64> = HashMap::new();
    stream.filter(move |obj| {
        let changed = match predicate.hash_property(obj.as_ref()) {
            Some(value) => {
                let key = obj.meta().uid.clone().unwrap_or_default();
                seen.insert(key, value) != Some(value)
            }
            None => true,
        };
        forget_deleted(&mut seen, &store);
        futures::future::ready(changed)
    })
}

/// Drops the entries of objects gone from `store`, once there are twice as many entries
/// as objects (amortised: a scan per as many objects as the store holds). A shared stream
/// never passes on a deletion, so without this every object ever deleted kept its entry.
fn forget_deleted<K: Managed>(seen: &mut HashMap<String, u64>, store: &Store<K>) {
    if seen.len() <= 2 * store.len() + 64 {
        return;
    }
    let present = store.state();
    let present: HashSet<&str> = present.iter().filter_map(|obj| obj.meta().uid.as_deref()).collect();
    seen.retain(|uid, _| present.contains(uid.as_str()));
}

/// What the operator never reads is not kept in its watch cache: managedFields and
/// kubectl's last-applied copy of the object can be larger than the object itself.
fn slim<K: Managed>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// The API of a kind in one watched namespace, or in all.
fn api<K: Managed>(client: &Client, namespace: &Option<String>) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn drive<K: Managed>(controller: Controller<K>, ctx: Arc<Context>) {
    // NB: kube's limit holds per controller, and there is one per watched namespace; the
    // per-kind limit is the Context's slots. kube's limit is still needed: the controller
    // polls every reconcile it runs whenever one may have finished, so unbounded, 10 000
    // objects due at once cost 10 000 polls per finished reconcile (most of the CPU spent
    // creating 3000 services, by perf). Objects beyond the limit wait in its queue.
    let config = kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency);
    let mut sweeps = resyncs(controller.store(), ctx.clone()).boxed();
    if let Some(poll) = K::poll_interval() {
        sweeps = futures::stream::select(sweeps, polls(controller.store(), ctx.clone(), poll)).boxed();
    }
    controller
        .with_config(config)
        .trigger_backoff(EachWatchBacksOffAlone)
        .reconcile_on(sweeps)
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                Err(err) => debug!(error = %err, "reconcile failed"),
            }
        })
        .await;
}

/// How a watch waits after an error: 0.5 s doubling to 8 s, ±50% jitter, and from the start
/// again after a quiet minute. kube's default waits up to 30 s, then as long again when the
/// apiserver says the watch's place in history is gone, so a controller stayed blind for a
/// minute after an apiserver restart; the operator has few watches (four per watched
/// namespace), so retrying sooner costs the apiserver little.
#[derive(Default)]
pub struct WatchBackoff {
    errors: u32,
    last_error: Option<tokio::time::Instant>,
}

impl WatchBackoff {
    const BACKOFF: Backoff = Backoff {
        first: Duration::from_millis(500),
        most: Duration::from_secs(8),
    };
    const QUIET: Duration = Duration::from_secs(60);
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = tokio::time::Instant::now();
        if self.last_error.is_some_and(|at| now - at > Self::QUIET) {
            self.errors = 0;
        }
        self.last_error = Some(now);
        self.errors = self.errors.saturating_add(1);
        Some(Self::BACKOFF.delay(self.errors))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    // NB: kube's watcher yields Ok(Init) before every list, and a stream backs off anew on
    // any Ok, so a list failing again and again (RBAC, a CRD not served) would be retried
    // twice a second: the wait starts over only after a quiet minute (see `next`).
    fn reset(&mut self) {}
}

/// kube's controllers back off on the stream of all their triggers together: after an
/// error in any one watch, every watch and the resyncs pause, up to 30 s a time and again
/// for each error. After an apiserver restart (each watch erring on its way back) that held
/// a controller for minutes. Every watch here backs off by itself ([`WatchBackoff`]), so
/// the merged stream does not wait at all.
struct EachWatchBacksOffAlone;

impl Iterator for EachWatchBacksOffAlone {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // NB: None would end the stream; zero resumes it at once.
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for EachWatchBacksOffAlone {
    fn reset(&mut self) {}
}

/// Every resync interval: one batched read of the ECS resources of every settled object
/// (see [`conditions::settled`]), then a reconcile of each, which finds its snapshot and,
/// when in sync, writes nothing.
// NB: settled objects are not requeued one by one; reconciling them together is what lets
// their reads be batched (DescribeServices takes 10 services per call).
fn resyncs<K: Managed>(store: Store<K>, ctx: Arc<Context>) -> impl futures::Stream<Item = ObjectRef<K>> + Send {
    let every = ctx.settings.resync_interval;
    sweeps(store, ctx, every, |obj: &K| conditions::settled(obj))
}

/// A kind's poll sweep (see [`Managed::polled`]): every `poll` (or resync interval, if
/// shorter), one batched read of its polled objects, then a reconcile of each.
fn polls<K: Managed>(
    store: Store<K>,
    ctx: Arc<Context>,
    poll: Duration,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send {
    let every = poll.min(ctx.settings.resync_interval);
    sweeps(store, ctx, every, K::polled)
}

/// Every `every`: the objects `due` says (not being deleted, in this shard), read together
/// by [`Managed::observe_all`], then handed to the controller.
fn sweeps<K: Managed>(
    store: Store<K>,
    ctx: Arc<Context>,
    every: Duration,
    due: fn(&K) -> bool,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send {
    futures::stream::unfold((store, ctx, 1u64), move |(store, ctx, sweep)| async move {
        tokio::time::sleep(every).await;
        let mut swept: Vec<Arc<K>> = store
            .state()
            .into_iter()
            .filter(|obj| obj.meta().deletion_timestamp.is_none() && due(obj.as_ref()))
            .filter(|obj| selects(&ctx.settings.label_selector, obj.as_ref()))
            .collect();
        swept.sort_by(|a, b| a.sweep_key().cmp(&b.sweep_key()));
        let chunks: Vec<Vec<Arc<K>>> = swept.chunks(K::SWEEP_CHUNK).map(<[_]>::to_vec).collect();
        let reading = ctx.clone();
        let handed = futures::stream::iter(chunks)
            .then(move |chunk| observe_chunk(chunk, sweep, reading.clone()))
            .flatten();
        Some((handed, (store, ctx, sweep + 1)))
    })
    .flatten()
}

/// One chunk of a sweep: once most of the last chunk's snapshots are taken, its objects
/// read together, then handed to their reconciles (the next chunk is read while they run).
async fn observe_chunk<K: Managed>(
    chunk: Vec<Arc<K>>,
    sweep: u64,
    ctx: Arc<Context>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send {
    K::observations(&ctx).room_for(K::SWEEP_CHUNK).await;
    let began = K::observations(&ctx).sweep_begins();
    let refs: Vec<ObjectRef<K>> = chunk.iter().map(|obj| queued(obj.as_ref())).collect();
    K::observe_all(chunk, sweep, &ctx).await;
    K::observations(&ctx).sweep_done(began);
    handed_in_groups(refs, ctx)
}

/// How many objects of a sweep the controller is handed at once.
const HANDOFF: usize = 200;

/// The longest a sweep waits for half of the last group to be reconciled (objects deleted
/// meanwhile are never reconciled; slow reconciles only slow the handoff).
const HANDOFF_WAIT: Duration = Duration::from_secs(10);

/// Hands `refs` to the controller [`HANDOFF`] at a time, each group once half of the last
/// was reconciled. The controller's queue holds two copies of each reference handed and
/// never shrinks: with all 20 000 objects of 10 000 services handed at once, the first
/// resync raised RSS by 16 MiB; in groups, by 9.5 MiB.
fn handed_in_groups<K: Managed>(refs: Vec<ObjectRef<K>>, ctx: Arc<Context>) -> impl Stream<Item = ObjectRef<K>> + Send {
    futures::stream::unfold((refs.into_iter(), None), move |(mut refs, handed_at)| {
        let ctx = ctx.clone();
        async move {
            let group: Vec<ObjectRef<K>> = refs.by_ref().take(HANDOFF).collect();
            if group.is_empty() {
                return None;
            }
            let observations = K::observations(&ctx);
            if let Some(mark) = handed_at {
                observations
                    .reconciles_after(mark, (HANDOFF / 2) as u64, HANDOFF_WAIT)
                    .await;
            }
            let mark = observations.reconciles_ended();
            Some((futures::stream::iter(group), (refs, Some(mark))))
        }
    })
    .flatten()
}

/// A reference for the controller's queue: name and namespace, all the reconcile looks the
/// object up by. Not [`ObjectRef::from_obj`]: its uid and resourceVersion are two more
/// strings per queued object, held twice by the queue, and never read from it.
pub fn queued<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<K> {
    let name = obj.meta().name.clone().unwrap_or_default();
    match obj.meta().namespace.as_deref() {
        Some(namespace) => ObjectRef::new(&name).within(namespace),
        None => ObjectRef::new(&name),
    }
}

/// One reconcile's outcome and duration, recorded in the metrics when it ends, however it
/// ends: an error unless the reconcile says otherwise.
struct Recorded<'a> {
    metrics: &'a Metrics,
    kind: String,
    started: Instant,
    outcome: Mutex<&'static str>,
}

impl<'a> Recorded<'a> {
    fn start(metrics: &'a Metrics, kind: &str) -> Self {
        Self {
            metrics,
            kind: kind.to_string(),
            started: Instant::now(),
            outcome: Mutex::new("error"),
        }
    }

    /// success, stalled (or error, the default).
    fn finished(&self, outcome: &'static str) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = outcome;
    }
}

impl Drop for Recorded<'_> {
    fn drop(&mut self) {
        let outcome = *self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        self.metrics.reconciled(&self.kind, outcome, self.started.elapsed());
    }
}

async fn reconcile<K: Managed>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&());
    // NB: nothing is decided before every cache has listed: a reference would look missing.
    ctx.caches.synced().await;
    let _slot = match ctx.slots.get(kind.as_ref()) {
        Some(slots) => Some(slots.clone().acquire_owned().await),
        None => None,
    };
    // NB: with several watched namespaces, each namespace's controller may start objects
    // that then wait here for the kind's slot; boxing the work keeps a waiting object's
    // task small. Unboxed, a reconcile's state (about 20 KiB) was held by every waiting
    // task: 43 of the 57 MB of heap when 2004 objects were created unbounded.
    Box::pin(reconcile_in_slot(obj, ctx)).await
}

/// A reconcile that holds its kind's slot.
async fn reconcile_in_slot<K: Managed>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&());
    let recorded = Recorded::start(&ctx.metrics, &kind);
    let namespace = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(obj) => apply(&*obj, &ctx, &api, &recorded).await,
            finalizer::Event::Cleanup(obj) => cleanup(&*obj, &ctx, &api, &recorded).await,
        }
    })
    .await
    .map_err(|err| match err {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    K::observations(&ctx).touched(&uid);
    action
}

async fn apply<K: Managed>(obj: &K, ctx: &Context, api: &Api<K>, recorded: &Recorded<'_>) -> Result<Action, Error> {
    let uid = obj.uid().unwrap_or_default();
    let generation = obj.meta().generation;
    let last_attempt = ctx.retries.last_stall(&uid, generation);
    if let Some(wait) = conditions::stalled_hold_off(obj, ctx.settings.stalled_retry_interval, last_attempt) {
        debug!(object = %obj.name_any(), "stalled on this generation; not retrying yet");
        recorded.finished("stalled");
        return Ok(Action::requeue(wait));
    }
    let applied = match obj.options().observe_only() {
        true => obj.observe(ctx).await,
        false => obj.apply(ctx).await,
    };
    match applied {
        Ok(mut outcome) => {
            ctx.retries.forget(&uid);
            record_drift(obj, &mut outcome);
            // NB: Ready and Failed objects are looked at again by the next resync, together;
            // an object in progress is never looked at less often than they are.
            let next = match &outcome.state {
                State::Ready { .. } | State::Failed { .. } | State::Observed { .. } => Action::await_change(),
                State::Finished { recheck, .. } => recheck.map_or_else(Action::await_change, Action::requeue),
                // NB: a kind's poll sweep looks at its polled objects, together.
                State::InProgress { .. } if obj.polled() => Action::await_change(),
                State::InProgress { recheck, .. } => Action::requeue((*recheck).min(ctx.settings.resync_interval)),
            };
            let conditions = conditions::from_state(&outcome.state);
            write_status(obj, ctx, api, outcome.status, conditions).await?;
            publish(ctx, obj, outcome.events).await;
            recorded.finished("success");
            Ok(next)
        }
        Err(err) => {
            let terminal = err.is_terminal_after(ctx.retries.failures(&uid));
            report_error(obj, ctx, api, &err, terminal).await?;
            if terminal {
                ctx.retries.stalled(&uid, generation);
                warn!(object = %obj.name_any(), error = %err, "stalled");
                recorded.finished("stalled");
                Ok(Action::requeue(ctx.settings.stalled_retry_interval))
            } else {
                Err(err)
            }
        }
    }
}

/// Where an observe-only object stands when ECS has no resource for it: Stalled (nothing
/// is created), looked at again on every resync in case another tool creates it.
pub fn not_in_ecs(what: String) -> State {
    State::Failed {
        reason: "NotFoundInEcs",
        message: format!("observe-only: {what}; the operator creates nothing"),
    }
}

/// Puts an observe-only pass's drift into status, with an Event when it changes: Drifted
/// naming the members, or InSync once ECS matches the spec again.
fn record_drift<K: Managed>(obj: &K, outcome: &mut Outcome<K::Status>) {
    let drift = match &outcome.state {
        State::Observed { drift } => drift.clone(),
        _ => vec![],
    };
    let mut previous = obj.status().cloned().unwrap_or_default();
    let before = std::mem::take(&mut K::common(&mut previous).drift);
    if drift != before {
        if drift.is_empty() {
            outcome
                .events
                .push(Note::normal("InSync", "ECS matches the spec again"));
        } else {
            outcome.events.push(Note::warning(
                "Drifted",
                format!("ECS differs from the spec in {}", drift.join(", ")),
            ));
        }
    }
    K::common(&mut outcome.status).drift = drift;
}

async fn cleanup<K: Managed>(obj: &K, ctx: &Context, api: &Api<K>, recorded: &Recorded<'_>) -> Result<Action, Error> {
    let cleaned = match obj.options().observe_only() {
        true => Ok(vec![Note::normal(
            "Retained",
            "observe-only: the ECS resource is left as it is",
        )]),
        false => obj.cleanup(ctx).await,
    };
    match cleaned {
        Ok(events) => {
            publish(ctx, obj, events).await;
            let uid = obj.uid().unwrap_or_default();
            ctx.retries.forget(&uid);
            ctx.metrics.object_ready(&uid, &K::kind(&()), None);
            recorded.finished("success");
            Ok(Action::await_change())
        }
        Err(err) => {
            report_error(obj, ctx, api, &err, err.is_terminal()).await?;
            Err(err)
        }
    }
}

/// Puts a failed reconcile into the conditions (keeping the kind's status fields) and a
/// Warning Event carrying the error's own words.
// NB: a retryable failure to re-observe a Ready object (throttled at resync) says nothing
// about the object: it stays Ready, so GitOps health does not flap and nothing is written.
async fn report_error<K: Managed>(
    obj: &K,
    ctx: &Context,
    api: &Api<K>,
    err: &Error,
    terminal: bool,
) -> Result<(), Error> {
    if terminal || !conditions::ready(obj) {
        let status = obj.status().cloned().unwrap_or_default();
        write_status(obj, ctx, api, status, conditions::from_error(err, terminal)).await?;
    }
    let note = Note {
        warning: true,
        reason: err.reason(),
        message: err.to_string(),
    };
    publish(ctx, obj, vec![note]).await;
    Ok(())
}

/// Writes status with server-side apply, unless nothing but timestamps would change.
async fn write_status<K: Managed>(
    obj: &K,
    ctx: &Context,
    api: &Api<K>,
    mut status: K::Status,
    conditions: Vec<conditions::Wanted>,
) -> Result<(), Error> {
    let mut previous = obj.status().cloned();
    let previous_conditions = previous
        .as_mut()
        .map(|s| K::common(s).conditions.clone())
        .unwrap_or_default();
    let common = K::common(&mut status);
    common.observed_generation = obj.meta().generation;
    common.conditions = conditions::merge(&previous_conditions, conditions, obj.meta().generation);
    let ready = common
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone());
    ctx.metrics.object_ready(
        &obj.uid().unwrap_or_default(),
        &K::kind(&()),
        Some(ready.as_deref().unwrap_or("Unknown")),
    );
    if previous.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish<K: Managed>(ctx: &Context, obj: &K, notes: Vec<Note>) {
    let reference = obj.object_ref(&());
    for note in notes {
        info!(object = %obj.name_any(), reason = note.reason, "{}", note.message);
        let message = truncate(&note.message, 1000);
        if let Err(err) = ctx
            .events
            .publish(&reference, note.warning, note.reason, &message)
            .await
        {
            warn!(error = %err, "could not publish an Event");
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// How long an object waits after a retryable failure: 2 s doubling to 1 min; ECS busy
/// with the resource 10 s doubling to 2 min; an AccessDenied (IAM propagating) 15 s
/// doubling to 2 min, about four minutes before it counts as terminal; all ±50%. The
/// client-side rate limiter already keeps the total pace of calls within ECS's limits.
fn error_policy<K: Managed>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    match err {
        Error::DeletionBlocked(_) => return Action::requeue(Duration::from_secs(10)),
        Error::Draining(_) => return Action::requeue(Duration::from_secs(5)),
        _ => {}
    }
    let failures = ctx.retries.failed(&obj.uid().unwrap_or_default());
    let wait = backoff_after(err).delay(failures);
    warn!(object = %obj.name_any(), error = %err, retry_in = ?wait, "reconcile failed; retrying");
    Action::requeue(wait)
}

/// How an object backs off after a failed reconcile, by what failed.
fn backoff_after(err: &Error) -> Backoff {
    let (first, most) = match err {
        Error::Ecs(e) if e.class == ErrorClass::Denied => (15, 120),
        Error::Ecs(e) if e.class == ErrorClass::Slow => (10, 120),
        // NB: ECS throttled the call through all of the SDK's retries: the account's bucket is
        // empty for now. The rate limiter has already slowed that category, and it paces
        // the retry; a long backoff only leaves the budget unspent. With two operators
        // sharing an account, objects waited up to a minute while the bucket refilled.
        Error::Ecs(e) if e.class == ErrorClass::Throttled => (1, 8),
        _ => (2, 60),
    };
    Backoff {
        first: Duration::from_secs(first),
        most: Duration::from_secs(most),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn a_throttled_object_retries_within_seconds_where_other_failures_back_off_to_a_minute() {
        let ecs = |code: &str| {
            Error::Ecs(EcsError {
                operation: "RegisterTaskDefinition",
                code: Some(code.to_string()),
                message: "Rate exceeded".to_string(),
                class: crate::ecs::error::classify("RegisterTaskDefinition", Some(code), "Rate exceeded"),
            })
        };
        let throttled = backoff_after(&ecs("ThrottlingException"));
        let failed = backoff_after(&ecs("ServerException"));
        assert_eq!(throttled.base(1), Duration::from_secs(1));
        assert_eq!(throttled.base(10), Duration::from_secs(8));
        assert_eq!(failed.base(10), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_waits_half_a_second_at_first_up_to_eight_and_starts_over_after_a_quiet_minute() {
        let mut backoff = WatchBackoff::default();
        let mut waits = vec![];
        for _ in 0..10 {
            let wait = backoff.next().unwrap_or_default();
            waits.push(wait);
            tokio::time::advance(wait).await;
            // the list it retries fails at once and says Ok(Init) first: no fresh start
            backoff.reset();
        }
        assert!((250..=750).contains(&waits[0].as_millis()), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(12)), "{waits:?}");
        assert!(waits[9] >= Duration::from_secs(4), "{waits:?}");
        tokio::time::advance(Duration::from_secs(61)).await;
        let first = backoff.next().unwrap_or_default();
        assert!((250..=750).contains(&first.as_millis()), "{first:?}");
    }

    #[test]
    fn the_change_filter_forgets_deleted_objects() {
        let (store, mut writer) = kube::runtime::reflector::store::<crate::api::EcsCluster>();
        let cluster = |i: usize| -> crate::api::EcsCluster {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster",
                "metadata": {"name": format!("c{i}"), "namespace": "shop", "uid": format!("uid-{i}")},
                "spec": {},
            }))
            .expect("cluster")
        };
        // 10 objects still exist, 290 were created, seen and deleted since
        for i in 0..10 {
            writer.apply_watcher_event(&watcher::Event::Apply(cluster(i)));
        }
        let mut seen: HashMap<String, u64> = (0..300).map(|i| (format!("uid-{i}"), 1)).collect();
        forget_deleted(&mut seen, &store);
        let mut kept: Vec<&String> = seen.keys().collect();
        kept.sort();
        let existing: Vec<String> = (0..10).map(|i| format!("uid-{i}")).collect();
        assert_eq!(kept, existing.iter().collect::<Vec<_>>());
    }
}
