//! Flux reads health with kstatus (sigs.k8s.io/cli-utils, built from its Go module by
//! tests/testenv/build.sh). Run over live objects the operator reconciled, it says: in sync
//! -> Current, still converging -> InProgress, failed -> Failed.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::{
    Operator, admin_client, apply_json, condition, delete_namespace, kubectl, namespace, ready, root, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::Api;
use serde_json::json;

/// kstatus's verdict for every object of the `ecs` category in a namespace.
fn kstatus(namespace: &str) -> BTreeMap<String, String> {
    let objects = kubectl(&["get", "ecs", "-n", namespace, "-o", "json"], None);
    let mut child = Command::new(root().join(".testenv/bin/kstatus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kstatus (built by make test)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(objects.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kstatus output");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[tokio::test]
async fn flux_sees_current_in_progress_and_failed() {
    let client = admin_client().await;
    let ns = namespace(&client, "kstatus").await;
    let _operator = Operator::start(&ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let object = |kind: &str, name: &str, spec: serde_json::Value| json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec});

    // In sync.
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    ready(&clusters, "main", 60).await;
    // Still converging: its cluster does not exist yet.
    let waiting = json!({"clusterRef": {"name": "later"}, "taskDefinition": "web"});
    apply_json(&services, &object("EcsService", "waiting", waiting)).await;
    // Failed: ECS rejects a Fargate task definition without task-level memory.
    let bad = json!({"family": format!("{ns}-bad"), "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
                     "cpu": "256", "containerDefinitions": [{"name": "app", "image": "app:1"}]});
    apply_json(&task_definitions, &object("EcsTaskDefinition", "bad", bad)).await;
    wait_for("the service to wait and the task definition to stall", 30, || async {
        let service = services.get("waiting").await.ok()?.status?;
        let td = task_definitions.get("bad").await.ok()?.status?;
        let waiting = condition(&service.common.conditions, "Reconciling").is_some_and(|(s, _, _)| s == "True");
        let stalled = condition(&td.common.conditions, "Stalled").is_some_and(|(s, _, _)| s == "True");
        (waiting && stalled).then_some(())
    })
    .await;

    let verdicts = kstatus(&ns);
    assert_eq!(
        verdicts.get("EcsCluster/main").map(String::as_str),
        Some("Current"),
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts.get("EcsService/waiting").map(String::as_str),
        Some("InProgress"),
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts.get("EcsTaskDefinition/bad").map(String::as_str),
        Some("Failed"),
        "{verdicts:?}"
    );
    delete_namespace(&client, &ns).await;
}
