//! events.k8s.io/v1 Events about objects.
//!
//! NB: kube's Recorder folds every Event with the same reason into one series and keeps the
//! first note, so "revision 2 registered" would show as a repeat of "revision 1 registered".
//! Here an Event is a repeat only when its note is the same too; repeats within a few
//! minutes bump the series count instead of creating a new Event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// How long an identical Event counts as a repeat of the last one.
const REPEAT_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Publishes Events, folding identical repeats into a series.
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

/// The Events sent within the repeat window, by object UID and a hash of what they said
/// (type, reason and note): at 10 000 objects, every object's `Created` is held for six
/// minutes, and the hash keeps each entry small.
#[derive(Default)]
struct Recent {
    sent: HashMap<(String, u64), Sent>,
    /// When entries older than the window were last dropped (once a minute at most: a
    /// scan of every entry on every Event cost O(n²) while 10 000 objects were created).
    pruned: Option<Instant>,
}

impl Recent {
    /// The Event sent for `key` within the window, if any.
    fn repeat_of(&mut self, key: &(String, u64)) -> Option<&mut Sent> {
        let now = Instant::now();
        if self.pruned.is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY) {
            self.sent.retain(|_, sent| sent.at.elapsed() < REPEAT_WINDOW);
            self.pruned = Some(now);
        }
        self.sent.get_mut(key).filter(|sent| sent.at.elapsed() < REPEAT_WINDOW)
    }
}

/// How often entries older than the repeat window are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// An Event's identity within its object, for folding repeats.
fn what_it_says(warning: bool, reason: &str, note: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (warning, reason, note).hash(&mut hasher);
    hasher.finish()
}

struct Sent {
    name: String,
    count: i32,
    at: Instant,
}

impl EventPublisher {
    /// A publisher reporting as `controller` (and `instance`, e.g. the pod name).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.into(),
            instance: instance.into(),
            recent: Mutex::new(Recent::default()),
        }
    }

    /// Publishes one Event about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = (
            regarding.uid.clone().unwrap_or_default(),
            what_it_says(warning, reason, note),
        );
        let now = MicroTime(Timestamp::now());
        // NB: the map is locked only to decide, never across an API call: one slow call (an
        // apiserver restarting) must not hold up every other object's Events. Two identical
        // Events cannot race, as an object is never reconciled twice at once.
        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.repeat_of(&key).map(|sent| {
                sent.count += 1;
                sent.at = Instant::now();
                (sent.name.clone(), sent.count)
            })
        };
        if let Some((name, count)) = repeat {
            let patch = serde_json::json!({"series": EventSeries { count, last_observed_time: now }});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            return Ok(());
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.clone().unwrap_or_default(),
            Timestamp::now().as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            event_time: Some(now),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            reason: Some(reason.into()),
            action: Some(reason.into()),
            note: Some(note.into()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let sent = Sent {
            name,
            count: 1,
            at: Instant::now(),
        };
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sent
            .insert(key, sent);
        Ok(())
    }
}
