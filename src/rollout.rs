//! `ecs-operator rollout status|approve|rollback|abort NAMESPACE/NAME`: watch and steer an
//! EcsService's service deployment from the command line, in the shape of `kubectl argo
//! rollouts promote`. The commands only read the object's status and write one annotation
//! naming the service deployment; the operator acts on it once (and ignores it on any later
//! deployment), so the same works from Git.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::EcsService;
use crate::api::service::ServiceDeploymentSummary;
use crate::plan::service::{self as planner, ABORT, APPROVE, ROLLBACK};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print where the service deployment stands.
    Status,
    /// Approve the deployment paused at a PAUSE hook.
    Approve,
    /// Roll the deployment back.
    Rollback,
    /// Stop the deployment where it is.
    Abort,
}

/// Carries out `action` on the EcsService `target` (`NAMESPACE/NAME`); `deployment` names
/// the service deployment to act on (default: the current one). Returns what to print.
pub async fn run(action: Action, target: &str, deployment: Option<&str>) -> Result<String, Box<dyn std::error::Error>> {
    let (namespace, name) = target
        .split_once('/')
        .ok_or_else(|| format!("{target}: give the service as NAMESPACE/NAME"))?;
    let client = Client::try_default().await?;
    let api: Api<EcsService> = Api::namespaced(client, namespace);
    let service = api.get(name).await?;
    let current = service
        .status
        .as_ref()
        .and_then(|s| s.service_deployment.as_deref().cloned());
    if action == Action::Status {
        return Ok(describe(&service, current.as_ref()));
    }
    let id = match (deployment, &current) {
        (Some(id), _) => id.to_string(),
        (None, Some(sd)) if planner::in_flight(sd) => sd.id.clone(),
        _ => return Err(format!("{target} has no service deployment in flight to act on").into()),
    };
    let (annotation, verb) = match action {
        Action::Approve => (APPROVE, "approval"),
        Action::Rollback => (ROLLBACK, "rollback"),
        _ => (ABORT, "stop"),
    };
    let patch = json!({"metadata": {"annotations": {annotation: id}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(format!(
        "asked for the {verb} of service deployment {id} of {target} ({annotation}={id}); the operator acts on it once"
    ))
}

/// Where the service's deployment stands, for `rollout status`.
fn describe(service: &EcsService, sd: Option<&ServiceDeploymentSummary>) -> String {
    let target = format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any());
    let ready = service
        .status
        .as_ref()
        .and_then(|s| s.common.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("Ready={} ({}): {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| "not observed yet".into());
    let Some(sd) = sd else {
        return format!(
            "{target}: {ready}\nno service deployment recorded (ROLLING deployments are in status.deployments)"
        );
    };
    let mut lines = vec![
        format!("{target}: {ready}"),
        format!(
            "service deployment {} ({}): {} at {}",
            sd.id,
            sd.strategy.as_deref().unwrap_or("ROLLING"),
            sd.status.as_deref().unwrap_or("unknown"),
            sd.lifecycle_stage.as_deref().unwrap_or("-")
        ),
    ];
    if let Some(hook) = &sd.hook {
        lines.push(format!(
            "hook {} ({}): {}, until {} then {}",
            hook.hook_id,
            hook.target_type.as_deref().unwrap_or("AWS_LAMBDA"),
            hook.status.as_deref().unwrap_or("unknown"),
            hook.expires_at.as_deref().unwrap_or("-"),
            hook.timeout_action.as_deref().unwrap_or("ROLLBACK")
        ));
        if planner::awaiting_approval(hook) {
            lines.push(format!(
                "waiting for you: ecs-operator rollout approve {target}   or   ecs-operator rollout rollback {target}"
            ));
        }
    }
    if let Some(rollback) = &sd.rollback {
        lines.push(format!("rolled back: {rollback}"));
    }
    if let Some(reason) = &sd.status_reason {
        lines.push(format!("reason: {reason}"));
    }
    lines.join("\n")
}
