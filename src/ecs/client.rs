//! ECS clients: one credential chain (aws-config's default: environment, IRSA web identity,
//! EKS Pod Identity, profiles), one client per region, built on first use and cached.
//! `AWS_ENDPOINT_URL` is honoured by aws-config, which is how tests reach the local endpoint.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// ECS clients per region, sharing one credential chain.
pub struct EcsClients {
    base: SdkConfig,
    default_region: Option<String>,
    by_region: Mutex<HashMap<String, aws_sdk_ecs::Client>>,
}

impl EcsClients {
    /// Loads the default credential chain and region; `default_region` overrides the region
    /// the chain finds (AWS_REGION, profile, ...).
    pub async fn load(default_region: Option<String>) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let default_region = default_region.or_else(|| base.region().map(|r| r.to_string()));
        Self {
            base,
            default_region,
            by_region: Mutex::new(HashMap::new()),
        }
    }

    /// The region an object lives in: its spec.region, else the operator's default.
    pub fn region(&self, spec_region: Option<&str>) -> Option<String> {
        spec_region.map(str::to_owned).or_else(|| self.default_region.clone())
    }

    /// The client for a region.
    pub fn client(&self, region: &str) -> aws_sdk_ecs::Client {
        let mut cache = self.by_region.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(region.to_string())
            .or_insert_with(|| {
                let config = aws_sdk_ecs::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .build();
                aws_sdk_ecs::Client::from_conf(config)
            })
            .clone()
    }
}
