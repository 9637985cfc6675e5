//! ECS clients: one credential chain (aws-config's default: environment, IRSA web identity,
//! EKS Pod Identity, profiles), one client per region, built on first use and cached.
//! `AWS_ENDPOINT_URL` is honoured by aws-config, which is how tests reach the local endpoint.
//! Each region's client comes with that region's rate limiter ([`Ecs::permit`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use super::limits::{RateLimiter, RateLimits};
use crate::telemetry::Metrics;

/// ECS clients per region, sharing one credential chain.
pub struct EcsClients {
    base: SdkConfig,
    metrics: Arc<Metrics>,
    limits: RateLimits,
    default_region: Option<String>,
    by_region: Mutex<HashMap<String, Ecs>>,
}

/// The ECS client of one account and region, with the rate limiter every call of that
/// account and region shares. Derefs to the SDK client: call [`Ecs::permit`] before `send()`.
#[derive(Clone)]
pub struct Ecs {
    client: aws_sdk_ecs::Client,
    limiter: Arc<RateLimiter>,
    metrics: Option<Arc<Metrics>>,
}

impl Ecs {
    /// A client without rate limiting or metrics (unit tests with scripted responses).
    pub fn unlimited(client: aws_sdk_ecs::Client) -> Self {
        Self {
            client,
            limiter: Arc::new(RateLimiter::new(&RateLimits::off())),
            metrics: None,
        }
    }

    /// Waits for the rate limiter to let one call of `operation` through.
    pub async fn permit(&self, operation: &str) {
        let waited = self.limiter.acquire(operation).await;
        if let Some(metrics) = &self.metrics {
            metrics.rate_limited(operation, waited);
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

impl std::ops::Deref for Ecs {
    type Target = aws_sdk_ecs::Client;

    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl EcsClients {
    /// Loads the default credential chain and region; `default_region` overrides the region
    /// the chain finds (AWS_REGION, profile, ...).
    pub async fn load(default_region: Option<String>, limits: RateLimits, metrics: Arc<Metrics>) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let default_region = default_region.or_else(|| base.region().map(|r| r.to_string()));
        Self {
            base,
            metrics,
            limits,
            default_region,
            by_region: Mutex::new(HashMap::new()),
        }
    }

    /// The region an object lives in: its spec.region, else the operator's default.
    pub fn region(&self, spec_region: Option<&str>) -> Option<String> {
        spec_region.map(str::to_owned).or_else(|| self.default_region.clone())
    }

    /// The client for a region.
    pub fn client(&self, region: &str) -> Ecs {
        let mut cache = self.by_region.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(region.to_string())
            .or_insert_with(|| {
                let config = aws_sdk_ecs::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .interceptor(CountCalls(self.metrics.clone()))
                    .build();
                Ecs {
                    client: aws_sdk_ecs::Client::from_conf(config),
                    limiter: Arc::new(RateLimiter::new(&self.limits)),
                    metrics: Some(self.metrics.clone()),
                }
            })
            .clone()
    }
}

/// Counts every ECS call attempt (retries included: each is a call ECS throttles) by
/// operation and outcome: success, throttled, or error.
struct CountCalls(Arc<Metrics>);

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
        self.0.ecs_call(operation, outcome);
        Ok(())
    }
}
