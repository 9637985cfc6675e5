//! ECS clients: one credential chain (aws-config's default: environment, IRSA web identity,
//! EKS Pod Identity, profiles), one client per region and identity, built on first use and
//! cached. The cluster administrator may map namespaces to IAM roles (`--namespace-roles`):
//! objects in a mapped namespace act as that role, assumed through STS from the operator's
//! own identity; every other namespace acts as the operator itself. The mapping lives in
//! the operator's configuration, never in a field a namespace's users can set.
//! `AWS_ENDPOINT_URL` is honoured by aws-config, which is how tests reach the local endpoint.
//! Each region's client comes with that region's rate limiter ([`Ecs::permit`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

use super::error::{EcsError, ErrorClass};
use super::limits::{RateLimiter, RateLimits};
use crate::telemetry::Metrics;

/// ECS clients per identity and region, sharing one credential chain.
pub struct EcsClients {
    base: SdkConfig,
    metrics: Arc<Metrics>,
    limits: RateLimits,
    default_region: Option<String>,
    namespace_roles: BTreeMap<String, String>,
    /// (role assumed, or None for the operator's own identity; region) -> client.
    clients: Mutex<HashMap<(Option<String>, String), Ecs>>,
}

/// The ECS client of one account and region, with the rate limiter every call of that
/// account and region shares. Every call goes through [`Ecs::call`]; the SDK client itself
/// is not reachable from outside this module.
#[derive(Clone)]
pub struct Ecs {
    client: aws_sdk_ecs::Client,
    /// EventBridge Scheduler, for EcsTaskSchedule: same identity, region and call path.
    scheduler: aws_sdk_scheduler::Client,
    limiter: Arc<RateLimiter>,
    metrics: Option<Arc<Metrics>>,
}

impl Ecs {
    /// A client without rate limiting or metrics (unit tests with scripted responses).
    pub fn unlimited(client: aws_sdk_ecs::Client) -> Self {
        let scheduler = aws_sdk_scheduler::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(client.config().region().cloned())
            .build();
        Self {
            client,
            scheduler: aws_sdk_scheduler::Client::from_conf(scheduler),
            limiter: Arc::new(RateLimiter::new(&RateLimits::off())),
            metrics: None,
        }
    }

    /// One ECS call, the only way to make one: waits for the rate limiter's permit for
    /// `operation` (before the SDK signs the request, so a long wait never outlives a
    /// signature), sends what `send` builds, and turns a failure into an [`EcsError`]
    /// classified by the error table. Attempts are counted by the client's interceptor.
    pub async fn call<T, E, R, F, Fut>(&self, operation: &'static str, send: F) -> Result<T, EcsError>
    where
        F: FnOnce(&aws_sdk_ecs::Client) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        self.permit(operation).await;
        send(&self.client).await.map_err(|e| EcsError::new(operation, e))
    }

    /// One EventBridge Scheduler call, the same way as [`Ecs::call`] (its operations have
    /// no ECS rate-limit category, so the permit is immediate).
    pub async fn scheduler_call<T, E, R, F, Fut>(&self, operation: &'static str, send: F) -> Result<T, EcsError>
    where
        F: FnOnce(&aws_sdk_scheduler::Client) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        self.permit(operation).await;
        send(&self.scheduler).await.map_err(|e| EcsError::new(operation, e))
    }

    async fn permit(&self, operation: &'static str) {
        let waited = self.limiter.acquire(operation).await;
        if let Some(metrics) = &self.metrics {
            metrics.rate_limited(operation, waited);
        }
    }
}

/// Reads a NotFound answer as "absent": `ecs.call(...).await.found()`.
pub trait Found<T> {
    /// Some(value), None when ECS says the resource does not exist, or the error.
    fn found(self) -> Result<Option<T>, EcsError>;
}

impl<T> Found<T> for Result<T, EcsError> {
    fn found(self) -> Result<Option<T>, EcsError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.class == ErrorClass::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }
}

impl std::fmt::Debug for Ecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ecs")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl EcsClients {
    /// Loads the default credential chain and region; `default_region` overrides the region
    /// the chain finds (AWS_REGION, profile, ...). `namespace_roles` maps namespaces to the
    /// IAM role ARNs their objects act as.
    pub async fn load(
        default_region: Option<String>,
        limits: RateLimits,
        namespace_roles: BTreeMap<String, String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let default_region = default_region.or_else(|| base.region().map(|r| r.to_string()));
        Self {
            base,
            metrics,
            limits,
            default_region,
            namespace_roles,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The role objects in `namespace` act as; None: the operator's own identity.
    pub fn role_for(&self, namespace: &str) -> Option<&str> {
        self.namespace_roles.get(namespace).map(String::as_str)
    }

    /// The region an object lives in: its spec.region, else the operator's default.
    pub fn region(&self, spec_region: Option<&str>) -> Option<String> {
        spec_region.map(str::to_owned).or_else(|| self.default_region.clone())
    }

    /// The client objects in `namespace` use in `region`.
    pub async fn client(&self, namespace: &str, region: &str) -> Ecs {
        self.client_as(self.role_for(namespace), region).await
    }

    /// The client acting as `role` (None: the operator's own identity) in `region`, with
    /// that account and region's rate limiter.
    pub async fn client_as(&self, role: Option<&str>, region: &str) -> Ecs {
        let key = (role.map(str::to_owned), region.to_string());
        if let Some(ecs) = self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return ecs.clone();
        }
        let metrics = self.metrics.clone();
        let label = region.to_string();
        let limiter = Arc::new(
            RateLimiter::new(&self.limits).reporting(Box::new(move |category, rate| {
                metrics.ecs_rate(&label, category.name(), rate)
            })),
        );
        let count = || CountCalls {
            metrics: self.metrics.clone(),
            limiter: limiter.clone(),
        };
        let mut config = aws_sdk_ecs::config::Builder::from(&self.base)
            .region(Region::new(region.to_string()))
            .interceptor(count());
        let mut scheduler = aws_sdk_scheduler::config::Builder::from(&self.base)
            .region(Region::new(region.to_string()))
            .interceptor(count());
        if let Some(role) = role {
            // NB: the provider caches the session and refreshes it before it expires.
            let assumed = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("ecs-operator")
                .region(Region::new(region.to_string()))
                .configure(&self.base)
                .build()
                .await;
            let assumed = aws_sdk_ecs::config::SharedCredentialsProvider::new(assumed);
            config = config.credentials_provider(assumed.clone());
            scheduler = scheduler.credentials_provider(assumed);
        }
        let ecs = Ecs {
            scheduler: aws_sdk_scheduler::Client::from_conf(scheduler.build()),
            client: aws_sdk_ecs::Client::from_conf(config.build()),
            limiter,
            metrics: Some(self.metrics.clone()),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.entry(key).or_insert(ecs).clone()
    }
}

/// Counts every ECS call attempt (retries included: each is a call ECS throttles) by
/// operation and outcome: success, throttled, or error; a throttled attempt also slows the
/// limiter's bucket for that operation (see [`RateLimiter`]).
struct CountCalls {
    metrics: Arc<Metrics>,
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for CountCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountCalls")
    }
}

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map(|m| m.name()).unwrap_or("unknown");
        let outcome = match context.response() {
            Some(r) if r.status().is_success() => "success",
            Some(r)
                if r.headers()
                    .get("x-amzn-errortype")
                    .is_some_and(|t| t.starts_with("Throttling")) =>
            {
                "throttled"
            }
            _ => "error",
        };
        if outcome == "throttled" {
            self.limiter.throttled(operation, std::time::Instant::now());
        }
        self.metrics.ecs_call(operation, outcome);
        Ok(())
    }
}
