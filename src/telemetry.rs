//! Logging and metrics.
//!
//! Metrics (Prometheus text at /metrics): reconciles by kind and outcome, reconcile
//! duration by kind, ECS API calls by operation and outcome (throttles apart), and objects
//! by kind and Ready status.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default when stdout is not a terminal, as in a pod).
    Json,
    /// Human-readable lines (the default on a terminal).
    Text,
}

/// Sets up logging: `level` is a tracing filter (e.g. `info` or `info,kube=warn`).
pub fn init_logging(format: Option<LogFormat>, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(with_sdk_capped(level)).unwrap_or_else(|_| "info".into());
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The AWS SDK's orchestrator logs the resolved identity (the access key ID) at debug level:
/// unless a filter names the SDK explicitly, it stays at info whatever the overall level.
fn with_sdk_capped(level: &str) -> String {
    if level.contains("aws_smithy") {
        level.to_string()
    } else {
        format!("{level},aws_smithy_runtime=info,aws_smithy_runtime_api=info")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLabels {
    region: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EcsCallLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    kind: String,
    ready: String,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_seconds: HistogramFamily,
    ecs_calls: Family<EcsCallLabels, Counter>,
    rate_limit_permits: Family<OperationLabels, Counter>,
    rate_limit_wait: Family<OperationLabels, Counter<f64>>,
    objects: Family<ObjectLabels, Gauge>,
    ecs_rates: Family<RateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Each object's kind and Ready status, so that a change moves it between gauges.
    ready_by_uid: Mutex<ReadyByUid>,
}

/// Each object's labels in `objects`, shared: a handful of label sets (kinds x True, False,
/// Unknown) for every object, not two strings per object (20 000 at 10 000 services).
#[derive(Default)]
struct ReadyByUid {
    by_uid: HashMap<String, Arc<ObjectLabels>>,
    sets: Vec<Arc<ObjectLabels>>,
}

impl ReadyByUid {
    /// The shared label set of `kind` and `ready`.
    fn labels(&mut self, kind: &str, ready: &str) -> Arc<ObjectLabels> {
        if let Some(set) = self.sets.iter().find(|s| s.kind == kind && s.ready == ready) {
            return set.clone();
        }
        let set = Arc::new(ObjectLabels {
            kind: kind.into(),
            ready: ready.into(),
        });
        self.sets.push(set.clone());
        set
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ecs_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ecs_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and outcome (success, error, stalled)",
            reconciles.clone(),
        );
        let reconcile_seconds: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14)));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by kind",
            reconcile_seconds.clone(),
        );
        let ecs_calls = Family::<EcsCallLabels, Counter>::default();
        registry.register(
            "ecs_api_calls",
            "ECS API calls (each attempt) by operation and outcome (success, throttled, error)",
            ecs_calls.clone(),
        );
        let rate_limit_permits = Family::<OperationLabels, Counter>::default();
        registry.register(
            "ecs_rate_limit_permits",
            "Calls let through the client-side rate limiter, by ECS operation",
            rate_limit_permits.clone(),
        );
        let rate_limit_wait = Family::<OperationLabels, Counter<f64>>::default();
        registry.register(
            "ecs_rate_limit_wait_seconds",
            "Time calls waited in the client-side rate limiter, by ECS operation",
            rate_limit_wait.clone(),
        );
        let objects = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "objects",
            "Objects by kind and Ready status (True, False, Unknown)",
            objects.clone(),
        );
        let ecs_rates = Family::<RateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "ecs_rate_limit_per_second",
            "The client-side rate limiter's current rate per ECS category and region: ECS's own, lower for a minute after ECS throttled",
            ecs_rates.clone(),
        );
        Self {
            registry,
            ecs_rates,
            reconciles,
            reconcile_seconds,
            ecs_calls,
            rate_limit_permits,
            rate_limit_wait,
            objects,
            ready_by_uid: Mutex::new(ReadyByUid::default()),
        }
    }

    /// Counts one reconcile of `kind` with its outcome and duration.
    pub fn reconciled(&self, kind: &str, outcome: &str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    /// Counts one call let through the rate limiter after waiting `waited`.
    pub fn rate_limited(&self, operation: &str, waited: Duration) {
        let labels = OperationLabels {
            operation: operation.into(),
        };
        self.rate_limit_permits.get_or_create(&labels).inc();
        self.rate_limit_wait.get_or_create(&labels).inc_by(waited.as_secs_f64());
    }

    /// Records the rate a category of ECS calls is held to in a region.
    pub fn ecs_rate(&self, region: &str, category: &str, per_second: f64) {
        self.ecs_rates
            .get_or_create(&RateLabels {
                region: region.into(),
                category: category.into(),
            })
            .set(per_second);
    }

    /// Counts one ECS API call attempt.
    pub fn ecs_call(&self, operation: &str, outcome: &str) {
        self.ecs_calls
            .get_or_create(&EcsCallLabels {
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records an object's Ready status (None: the object is gone).
    pub fn object_ready(&self, uid: &str, kind: &str, ready: Option<&str>) {
        let mut state = self.ready_by_uid.lock().unwrap_or_else(|p| p.into_inner());
        let now = ready.map(|ready| state.labels(kind, ready));
        if let (Some(was), Some(now)) = (state.by_uid.get(uid), &now)
            && Arc::ptr_eq(was, now)
        {
            return;
        }
        if let Some(was) = state.by_uid.remove(uid) {
            self.objects.get_or_create(&was).dec();
        }
        if let Some(now) = now {
            self.objects.get_or_create(&now).inc();
            state.by_uid.insert(uid.into(), now);
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // NB: writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(metrics: &Metrics, kind: &str, ready: &str) -> String {
        let series = format!(r#"ecs_operator_objects{{kind="{kind}",ready="{ready}"}} "#);
        let text = metrics.encode();
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or("absent")
            .to_string()
    }

    #[test]
    fn an_object_moves_between_the_ready_gauges_and_leaves_them_when_gone() {
        let metrics = Metrics::new();
        metrics.object_ready("a", "EcsService", Some("Unknown"));
        metrics.object_ready("b", "EcsService", Some("Unknown"));
        metrics.object_ready("a", "EcsService", Some("True"));
        metrics.object_ready("a", "EcsService", Some("True"));
        assert_eq!(objects(&metrics, "EcsService", "True"), "1");
        assert_eq!(objects(&metrics, "EcsService", "Unknown"), "1");
        metrics.object_ready("a", "EcsService", None);
        metrics.object_ready("b", "EcsService", None);
        assert_eq!(objects(&metrics, "EcsService", "True"), "0");
        assert_eq!(objects(&metrics, "EcsService", "Unknown"), "0");
    }
}
