//! ecs-operator: manages Amazon ECS clusters, task definitions and services declaratively
//! from Kubernetes objects.

pub mod api;
pub mod backoff;
pub mod diff;
pub mod ecs;
pub mod export;
pub mod leader;
pub mod plan;
pub mod reconcile;
pub mod rollout;
pub mod server;
pub mod telemetry;
