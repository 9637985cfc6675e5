//! The reconcile core shared by every kind: finalizer, conditions, status written with
//! server-side apply only when it changed, Events, error classification and requeueing.
//!
//! A kind implements [`Managed`]: `apply` makes ECS match the spec and reports what it
//! observed; `cleanup` removes (or retains) the ECS resource. Everything else is here, once.

pub mod cluster;
mod conditions;
pub mod events;
pub mod observations;
pub mod service;
pub mod task_definition;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::api::{CommonStatus, EcsCluster, EcsTaskDefinition, ManagementOptions};
pub use crate::plan::State;

use crate::ecs::client::{Ecs, EcsClients};
use crate::ecs::error::{EcsError, ErrorClass};
use crate::ecs::ownership;
use crate::ecs::wire::WireError;
use events::EventPublisher;
use observations::Observations;

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
    pub label_selector: Option<String>,
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
    /// What the last batched read saw, for the reconciles of the resync it precedes.
    pub observations: Observations,
    /// Consecutive failures per object UID, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// When each object (by UID) last tried a generation and stalled, and which generation.
    stalled_attempts: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

impl Context {
    /// A context for the controllers.
    pub fn new(client: Client, ecs: EcsClients, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| FIELD_MANAGER.into());
        let events = EventPublisher::new(client.clone(), FIELD_MANAGER, &instance);
        Self {
            client,
            ecs,
            events,
            settings,
            metrics,
            observations: Observations::default(),
            failures: Mutex::new(HashMap::new()),
            stalled_attempts: Mutex::new(HashMap::new()),
        }
    }

    /// The ECS client and region of an object: its namespace's identity, its region.
    pub async fn ecs_for<K: Managed>(&self, obj: &K) -> Result<(Ecs, String), Error> {
        let region = self
            .ecs
            .region(obj.options().region.as_deref())
            .ok_or(Error::NoRegion)?;
        let namespace = obj.namespace().unwrap_or_default();
        Ok((self.ecs.client(&namespace, &region).await, region))
    }
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

    /// The object's status, if any was written.
    fn status(&self) -> Option<&Self::Status>;
    /// observedGeneration and conditions of a status.
    fn common(status: &mut Self::Status) -> &mut CommonStatus;
    /// Region, deletion policy, adoption.
    fn options(&self) -> &ManagementOptions;
    /// Makes ECS match the spec; reports status, readiness and what changed.
    fn apply(&self, ctx: &Context) -> impl Future<Output = Result<Outcome<Self::Status>, Error>> + Send;
    /// Removes (or retains) the ECS resource; Ok once it is gone and the finalizer can go,
    /// [`Error::DeletionBlocked`] while ECS still holds something that must go first.
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Vec<Note>, Error>> + Send;
    /// Before a resync: reads the ECS resources of all `objects` in as few calls as ECS
    /// allows and offers each object's to [`Context::observations`]. Kinds without a batch
    /// read leave it to each reconcile.
    /// `sweep` counts resyncs since the operator started.
    fn observe_all(objects: Vec<Arc<Self>>, sweep: u64, ctx: &Context) -> impl Future<Output = ()> + Send {
        let _ = (objects, sweep, ctx);
        async {}
    }
}

/// Runs the controllers of every kind until a shutdown signal, watching through `watches`
/// (a client whose timeout suits a watch that may rightly stay quiet for minutes); marks
/// `health` ready once each controller's own watch has listed its objects.
pub async fn run(ctx: Arc<Context>, watches: Client, health: Arc<Health>) {
    let scopes: Vec<Option<String>> = match ctx.settings.namespaces.as_slice() {
        [] => vec![None],
        namespaces => namespaces.iter().cloned().map(Some).collect(),
    };
    let config = watch_config(&ctx);
    let mut synced: Vec<Synced> = vec![];
    let mut controllers: Vec<BoxFuture<'static, ()>> = vec![];
    for scope in &scopes {
        let (task_definitions, listed) = controller(api::<EcsTaskDefinition>(&watches, scope), config.clone());
        synced.push(listed);
        let (clusters, listed) = controller(api::<EcsCluster>(&watches, scope), config.clone());
        synced.push(listed);
        let (services, listed) = controller(api(&watches, scope), config.clone());
        synced.push(listed);
        let services = service::controller(services, api(&watches, scope), api(&watches, scope));
        controllers.push(drive(task_definitions, ctx.clone()).boxed());
        controllers.push(drive(clusters, ctx.clone()).boxed());
        controllers.push(drive(services, ctx.clone()).boxed());
    }
    tokio::spawn(async move {
        futures::future::join_all(synced).await;
        info!("watch caches synced");
        health.set_ready(true);
    });
    futures::future::join_all(controllers).await;
}

/// Resolves when a controller's watch has listed its objects for the first time.
pub type Synced = BoxFuture<'static, ()>;

/// A controller of `K` woken by changes to spec, finalizers or labels, not by status alone:
/// its own status writes must not cost another pass (and another ECS read) per object.
// NB: marking an object for deletion bumps its generation, so cleanup still starts at once.
pub fn controller<K: Managed>(api: Api<K>, config: watcher::Config) -> (Controller<K>, Synced) {
    let (reader, writer) = reflector::store();
    // NB: not Store::wait_until_ready: its readiness wakes only the last task that polled
    // it, and the controller waits on it too; a second waiter could leave it asleep.
    let (listed, synced) = tokio::sync::oneshot::channel();
    let mut listed = Some(listed);
    let changes = watcher::watcher(api, config)
        .backoff(WatchBackoff::default())
        .modify(slim)
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone))
                && let Some(listed) = listed.take()
            {
                let _ = listed.send(());
            }
        })
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::finalizers)
                .combine(predicates::labels),
            Default::default(),
        );
    let synced = async move {
        // NB: a dropped sender means the watch ended with the operator; never ready then.
        if synced.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    (Controller::for_stream(changes, reader), synced.boxed())
}

/// What the operator never reads is not kept in its watch cache: managedFields and
/// kubectl's last-applied copy of the object can be larger than the object itself.
fn slim<K: Managed>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// The watch configuration: the label selector, if the operator shards by one.
fn watch_config(ctx: &Context) -> watcher::Config {
    match &ctx.settings.label_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    }
}

/// The API of a kind in one watched namespace, or in all.
fn api<K: Managed>(client: &Client, namespace: &Option<String>) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn drive<K: Managed>(controller: Controller<K>, ctx: Arc<Context>) {
    let config = kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency);
    let resyncs = resyncs(controller.store(), ctx.clone());
    controller
        .with_config(config)
        .trigger_backoff(EachWatchBacksOffAlone)
        .reconcile_on(resyncs)
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
/// minute after an apiserver restart; the operator has few watches (five per watched
/// namespace), so retrying sooner costs the apiserver little.
pub struct WatchBackoff {
    next: Duration,
    last_error: Option<tokio::time::Instant>,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(8);
    const QUIET: Duration = Duration::from_secs(60);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: Self::FIRST,
            last_error: None,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = tokio::time::Instant::now();
        if self.last_error.is_some_and(|at| now - at > Self::QUIET) {
            self.next = Self::FIRST;
        }
        self.last_error = Some(now);
        let wait = self.next;
        self.next = (wait * 2).min(Self::MAX);
        Some(wait.mul_f64(0.5 + fastrand::f64()))
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
    futures::stream::unfold((store, ctx, 1u64), |(store, ctx, sweep)| async move {
        tokio::time::sleep(ctx.settings.resync_interval).await;
        let began = ctx.observations.sweep_begins();
        let settled: Vec<Arc<K>> = store
            .state()
            .into_iter()
            .filter(|obj| obj.meta().deletion_timestamp.is_none() && conditions::settled(obj.as_ref()))
            .collect();
        let due: Vec<ObjectRef<K>> = settled.iter().map(|obj| ObjectRef::from_obj(obj.as_ref())).collect();
        K::observe_all(settled, sweep, &ctx).await;
        ctx.observations.sweep_done(began);
        Some((futures::stream::iter(due), (store, ctx, sweep + 1)))
    })
    .flatten()
}

async fn reconcile<K: Managed>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(obj) => apply(&*obj, &ctx, &api).await,
            finalizer::Event::Cleanup(obj) => cleanup(&*obj, &ctx, &api).await,
        }
    })
    .await
    .map_err(|err| match err {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.observations.touched(&uid);
    action
}

async fn apply<K: Managed>(obj: &K, ctx: &Context, api: &Api<K>) -> Result<Action, Error> {
    let started = Instant::now();
    let kind = K::kind(&());
    let uid = obj.uid().unwrap_or_default();
    let generation = obj.meta().generation;
    let last_attempt = ctx
        .stalled_attempts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&uid)
        .filter(|(tried, _)| *tried == generation)
        .map(|(_, at)| *at);
    if let Some(wait) = conditions::stalled_hold_off(obj, ctx.settings.stalled_retry_interval, last_attempt) {
        debug!(object = %obj.name_any(), "stalled on this generation; not retrying yet");
        return Ok(Action::requeue(wait));
    }
    match obj.apply(ctx).await {
        Ok(outcome) => {
            forget_failures(ctx, obj);
            ctx.stalled_attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
            // NB: Ready and Failed objects are looked at again by the next resync, together.
            let next = match &outcome.state {
                State::Ready { .. } | State::Failed { .. } => Action::await_change(),
                State::InProgress { recheck, .. } => Action::requeue(*recheck),
            };
            let conditions = conditions::from_state(&outcome.state);
            write_status(obj, ctx, api, outcome.status, conditions).await?;
            publish(ctx, obj, outcome.events).await;
            ctx.metrics.reconciled(&kind, "success", started.elapsed());
            Ok(next)
        }
        Err(err) => {
            let failures = ctx
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&uid)
                .copied()
                .unwrap_or(0);
            let terminal = err.is_terminal_after(failures);
            report_error(obj, ctx, api, &err, terminal).await?;
            if terminal {
                ctx.stalled_attempts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(uid, (generation, Instant::now()));
                warn!(object = %obj.name_any(), error = %err, "stalled");
                Ok(Action::requeue(ctx.settings.stalled_retry_interval))
            } else {
                Err(err)
            }
        }
    }
}

async fn cleanup<K: Managed>(obj: &K, ctx: &Context, api: &Api<K>) -> Result<Action, Error> {
    let started = Instant::now();
    let kind = K::kind(&());
    match obj.cleanup(ctx).await {
        Ok(events) => {
            publish(ctx, obj, events).await;
            forget_failures(ctx, obj);
            if let Some(uid) = obj.uid() {
                ctx.stalled_attempts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&uid);
            }
            ctx.metrics.object_ready(&obj.uid().unwrap_or_default(), &kind, None);
            ctx.metrics.reconciled(&kind, "success", started.elapsed());
            Ok(Action::await_change())
        }
        Err(err) => {
            report_error(obj, ctx, api, &err, err.is_terminal()).await?;
            ctx.metrics.reconciled(&kind, "error", started.elapsed());
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

fn forget_failures<K: Managed>(ctx: &Context, obj: &K) {
    if let Some(uid) = obj.uid() {
        ctx.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&uid);
    }
}

/// Retryable failures back off exponentially (2 s doubling to 1 min; AccessDenied 15 s
/// doubling to 2 min) with ±50% jitter: the client-side rate limiter already keeps the
/// total pace of calls within ECS's limits.
fn error_policy<K: Managed>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    match err {
        Error::DeletionBlocked(_) => return Action::requeue(Duration::from_secs(10)),
        Error::Draining(_) => return Action::requeue(Duration::from_secs(5)),
        _ => {}
    }
    let attempts = {
        let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(obj.uid().unwrap_or_default()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    // NB: an AccessDenied waits for IAM: 15 s doubling to 2 min, about 4 minutes in all
    // before it counts as terminal.
    // A Slow error (ECS busy with the resource) waits 10 s doubling to 2 min.
    let (first, most) = match err {
        Error::Ecs(e) if e.class == ErrorClass::Denied => (Duration::from_millis(7500), Duration::from_secs(120)),
        Error::Ecs(e) if e.class == ErrorClass::Slow => (Duration::from_secs(5), Duration::from_secs(120)),
        _ => (Duration::from_secs(1), Duration::from_secs(60)),
    };
    let base = first.saturating_mul(1 << attempts.min(9)).min(most);
    let jittered = base.mul_f64(0.5 + fastrand::f64());
    warn!(object = %obj.name_any(), error = %err, retry_in = ?jittered, "reconcile failed; retrying");
    Action::requeue(jittered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

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
}
