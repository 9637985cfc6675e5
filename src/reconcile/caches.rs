//! The watch caches every controller shares. One watch per kind and watched namespace
//! feeds one store; that kind's controller, the controllers that refer to it (services to
//! clusters and task definitions) and the reconciles that resolve references all read it,
//! so no object is fetched from the apiserver twice and no kind is watched twice.

use std::sync::{Arc, Mutex};

use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use tokio::sync::watch;

use super::Managed;
use crate::api::{EcsCapacityProvider, EcsCluster, EcsService, EcsTask, EcsTaskDefinition, EcsTaskSchedule};

/// How many objects a slow subscriber may lag behind its watch before the watch waits.
const SUBSCRIBER_BUFFER: usize = 1024;

/// The stores of one kind, one per watched scope (a namespace, or all of them).
pub struct Cache<K: Managed> {
    stores: Vec<Store<K>>,
    writers: Mutex<Vec<Writer<K>>>,
}

impl<K: Managed> Cache<K> {
    fn new(scopes: usize) -> Self {
        let (stores, writers) = (0..scopes).map(|_| reflector::store_shared(SUBSCRIBER_BUFFER)).unzip();
        Self {
            stores,
            writers: Mutex::new(writers),
        }
    }

    /// The object `namespace/name`, as last watched.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = ObjectRef::new(name).within(namespace);
        self.stores.iter().find_map(|store| store.get(&key))
    }

    /// Every object of the kind, as last watched.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(Store::state).collect()
    }

    /// The store of scope `i`.
    pub fn store(&self, i: usize) -> Store<K> {
        self.stores[i].clone()
    }

    /// The writers that the watches feed, once (the controllers' start takes them).
    pub fn take_writers(&self) -> Vec<Writer<K>> {
        std::mem::take(&mut *self.writers.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The caches of every kind.
pub struct Caches {
    /// Watched scopes: namespaces, or None for all.
    pub scopes: Vec<Option<String>>,
    /// EcsClusters.
    pub clusters: Cache<EcsCluster>,
    /// EcsTaskDefinitions.
    pub task_definitions: Cache<EcsTaskDefinition>,
    /// EcsServices.
    pub services: Cache<EcsService>,
    /// EcsTasks.
    pub tasks: Cache<EcsTask>,
    /// EcsTaskSchedules.
    pub schedules: Cache<EcsTaskSchedule>,
    /// EcsCapacityProviders.
    pub capacity_providers: Cache<EcsCapacityProvider>,
    synced: (watch::Sender<bool>, watch::Receiver<bool>),
}

impl Caches {
    /// Empty caches for `namespaces` (all when empty).
    pub fn new(namespaces: &[String]) -> Self {
        let scopes: Vec<Option<String>> = match namespaces {
            [] => vec![None],
            namespaces => namespaces.iter().cloned().map(Some).collect(),
        };
        let n = scopes.len();
        Self {
            scopes,
            clusters: Cache::new(n),
            task_definitions: Cache::new(n),
            services: Cache::new(n),
            tasks: Cache::new(n),
            schedules: Cache::new(n),
            capacity_providers: Cache::new(n),
            synced: watch::channel(false),
        }
    }

    /// Marks every cache as having listed its objects.
    pub fn mark_synced(&self) {
        let _ = self.synced.0.send(true);
    }

    /// Waits until every cache has listed its objects: before that, a reference would look
    /// missing and a service would report waiting for it.
    pub async fn synced(&self) {
        let mut synced = self.synced.1.clone();
        // NB: the sender lives as long as the caches; an error cannot happen while we wait.
        let _ = synced.wait_for(|done| *done).await;
    }
}
