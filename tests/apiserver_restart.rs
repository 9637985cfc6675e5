//! kube-apiserver restarts under a running operator: every watch breaks and every call
//! fails for a while. The operator recovers by itself, without a restart, and acts on the
//! next change through its re-established watches. (Its own test binary: nothing else runs
//! against the test bed while the apiserver is down.)

mod common;

use common::{Operator, admin_client, apply_json, delete_namespace, namespace, object, root, wait_for};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::Api;
use serde_json::{Value, json};

fn task_definition(ns: &str, image: &str) -> Value {
    object(
        "EcsTaskDefinition",
        "web",
        json!({"family": format!("{ns}-web"), "containerDefinitions": [{"name": "app", "image": image, "memory": 128}]}),
    )
}

fn restart_apiserver() {
    let status = std::process::Command::new(root().join(".testenv/venv/bin/python"))
        .arg(root().join("tests/testenv/testenv.py"))
        .arg("restart-apiserver")
        .status()
        .expect("run testenv.py restart-apiserver");
    assert!(status.success(), "restart-apiserver failed");
}

async fn service_on_revision(services: &Api<EcsService>, name: &str, revision: &str) {
    wait_for(&format!("{name} Ready on {revision}"), 120, || async {
        let status = services.get(name).await.ok()?.status?;
        let on = status
            .task_definition_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(revision));
        let ready = common::condition(&status.common.conditions, "Ready").is_some_and(|(s, _, _)| s == "True");
        (on && ready).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_operator_recovers_by_itself_when_the_apiserver_restarts() {
    let client = admin_client().await;
    let ns = namespace(&client, "apiserver-restart").await;
    let mut operator = Operator::start(&ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    apply_json(&task_definitions, &task_definition(&ns, "web:1")).await;
    for i in 0..5 {
        let spec = json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 1});
        apply_json(&services, &object("EcsService", &format!("web-{i}"), spec)).await;
    }
    // Mid-run: the objects are still converging when the apiserver goes away.
    restart_apiserver();
    let client = admin_client().await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    for i in 0..5 {
        service_on_revision(&services, &format!("web-{i}"), &format!("{ns}-web:1")).await;
    }

    // Once more, then a change that only a live watch can deliver in time.
    restart_apiserver();
    let client = admin_client().await;
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    apply_json(&task_definitions, &task_definition(&ns, "web:2")).await;
    for i in 0..5 {
        service_on_revision(&services, &format!("web-{i}"), &format!("{ns}-web:2")).await;
    }
    let exited = operator.try_exit();
    assert!(exited.is_none(), "the operator exited: {exited:?}");
    delete_namespace(&client, &ns).await;
}
