//! config/argocd/health.lua, run by a real Lua interpreter (Debian's lua5.4, as Argo CD's
//! gopher-lua runs it) against the statuses the operator writes.

mod common;

use common::argo_health as health;
use serde_json::{Value, json};

fn service(generation: i64, observed: i64, conditions: Value) -> Value {
    json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService",
           "metadata": {"name": "web", "generation": generation},
           "status": {"observedGeneration": observed, "conditions": conditions}})
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message})
}

#[test]
fn ready_for_the_current_generation_is_healthy() {
    let obj = service(
        3,
        3,
        json!([condition("Ready", "True", "Steady", "service web is steady")]),
    );
    assert_eq!(health(&obj), ("Healthy".into(), "service web is steady".into()));
}

#[test]
fn stalled_is_degraded_with_ecs_message() {
    let message = "the deployment of web:2 failed: tasks failed to start";
    let obj = service(
        3,
        3,
        json!([
            condition("Ready", "False", "RolloutFailed", message),
            condition("Stalled", "True", "RolloutFailed", message)
        ]),
    );
    assert_eq!(health(&obj), ("Degraded".into(), message.into()));
}

#[test]
fn rolling_stale_deleting_or_new_objects_are_progressing() {
    let rolling = service(
        3,
        3,
        json!([
            condition("Ready", "False", "RollingOut", "1 of 2 tasks running"),
            condition("Reconciling", "True", "RollingOut", "1 of 2 tasks running")
        ]),
    );
    assert_eq!(health(&rolling).0, "Progressing");
    let stale = service(
        4,
        3,
        json!([condition("Ready", "True", "Steady", "service web is steady")]),
    );
    assert_eq!(
        health(&stale).0,
        "Progressing",
        "Ready for an older generation is not Healthy yet"
    );
    let mut deleting = service(3, 3, json!([condition("Ready", "True", "Steady", "steady")]));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-22T00:00:00Z");
    assert_eq!(health(&deleting), ("Progressing".into(), "Deleting".into()));
    let new = json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster", "metadata": {"name": "main", "generation": 1}});
    assert_eq!(health(&new).0, "Progressing");
}

#[test]
fn a_deployment_paused_for_approval_is_suspended() {
    let message = "service deployment abc is paused at POST_TEST_TRAFFIC_SHIFT until approved or rolled back";
    let paused = service(
        3,
        3,
        json!([
            condition("Ready", "False", "AwaitingApproval", message),
            condition("Reconciling", "True", "AwaitingApproval", message)
        ]),
    );
    assert_eq!(health(&paused), ("Suspended".into(), message.into()));
}

#[test]
fn a_task_run_is_progressing_while_running_healthy_when_complete_degraded_when_failed() {
    let run = |conditions: Value| {
        json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsTask",
               "metadata": {"name": "migrate", "generation": 1},
               "status": {"observedGeneration": 1, "conditions": conditions}})
    };
    let running = run(json!([
        condition("Ready", "False", "Running", "1 of 1 task(s) RUNNING"),
        condition("Reconciling", "True", "Running", "1 of 1 task(s) RUNNING")
    ]));
    assert_eq!(health(&running).0, "Progressing");
    let complete = run(json!([
        condition("Ready", "True", "Complete", "1 task(s) exited 0"),
        condition("Complete", "True", "Complete", "1 task(s) exited 0")
    ]));
    assert_eq!(health(&complete).0, "Healthy");
    let message = "task 1f2e: container app exited with exit code 3";
    let failed = run(json!([
        condition("Ready", "False", "ContainerFailed", message),
        condition("Failed", "True", "ContainerFailed", message),
        condition("Stalled", "True", "ContainerFailed", message)
    ]));
    assert_eq!(health(&failed), ("Degraded".into(), message.into()));
}
