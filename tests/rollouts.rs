//! ECS-native rollouts seen and steered from Kubernetes: a blue/green deployment's stages in
//! status, a canary paused at a PAUSE hook (AwaitingApproval, Argo CD's Suspended) approved
//! with `ecs-operator rollout approve`, another rolled back with `ecs-operator rollout
//! rollback` and not sent again, an approval left from an earlier deployment ignored, and
//! no service-deployment reads at idle.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{
    Operator, admin_client, apply_json, argo_health, calls_of, ecs_calls, ecs_client, endpoint_control, event, kubectl,
    more_calls, namespace, object, ready, test_bed, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::Api;
use serde_json::{Value, json};

/// Each lifecycle stage of a service deployment lasts this long in the endpoint.
fn stage_seconds(cluster: &str, seconds: f64) {
    endpoint_control(
        "/_ecs_operator/timing",
        json!({"cluster": cluster, "rolloutSeconds": 1.0, "stageSeconds": seconds}),
    );
}

fn task_definition(ns: &str, image: &str) -> Value {
    object(
        "EcsTaskDefinition",
        "web",
        json!({"family": format!("{ns}-web"), "containerDefinitions": [{"name": "app", "image": image, "memory": 128}]}),
    )
}

fn service(deployment_configuration: Value) -> Value {
    object(
        "EcsService",
        "web",
        json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 2,
               "deploymentConfiguration": deployment_configuration}),
    )
}

/// A cluster, the task definition on `web:1` and the service with `deployment_configuration`,
/// all Ready.
async fn deployed(client: &kube::Client, ns: &str, deployment_configuration: Value) -> Api<EcsService> {
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), ns);
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), ns);
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    apply_json(&tds, &task_definition(ns, "web:1")).await;
    apply_json(&services, &service(deployment_configuration)).await;
    ready(&services, "web", 60).await;
    services
}

/// Waits until ECS runs `revision` of the family and the service is Ready on it.
async fn ready_on(services: &Api<EcsService>, revision: &str) -> EcsService {
    wait_for(&format!("Ready on {revision}"), 90, || async {
        let obj = services.get("web").await.ok()?;
        let status = obj.status.as_ref()?;
        let on = status
            .task_definition_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(revision));
        let ready = status.common.observed_generation == obj.metadata.generation
            && common::condition(&status.common.conditions, "Ready").is_some_and(|(s, _, _)| s == "True");
        (on && ready).then_some(obj)
    })
    .await
}

/// `ecs-operator rollout ...` as a user runs it, with the test bed's kubeconfig.
fn rollout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-operator"))
        .arg("rollout")
        .args(args)
        .env("KUBECONFIG", test_bed().kubeconfig())
        .output()
        .expect("run ecs-operator rollout");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_blue_green_deployment_goes_through_its_stages_to_ready() {
    let client = admin_client().await;
    let ns = namespace(&client, "ro-bluegreen").await;
    let _operator = Operator::start(&ns);
    let services = deployed(&client, &ns, json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1})).await;
    stage_seconds(&format!("{ns}-main"), 1.0);
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    apply_json(&tds, &task_definition(&ns, "web:2")).await;

    let mut stages = BTreeSet::new();
    let mut wide = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let obj = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "not Ready on revision 2 within 90 s: {stages:?}"
        );
        let Ok(obj) = services.get("web").await else { continue };
        let status = obj.status.clone().unwrap_or_default();
        if let Some(stage) = status
            .service_deployment
            .as_ref()
            .filter(|sd| sd.status.as_deref() == Some("IN_PROGRESS"))
            .and_then(|sd| sd.lifecycle_stage.clone())
            && stages.insert(stage)
            && wide.is_empty()
        {
            wide = kubectl(&["get", "ecsservice", "-n", &ns, "-o", "wide"], None);
        }
        let on_2 = status.task_definition_arn.as_deref().is_some_and(|a| a.ends_with(":2"));
        let ready = common::condition(&status.common.conditions, "Ready").is_some_and(|(s, _, _)| s == "True");
        if on_2 && ready && status.common.observed_generation == obj.metadata.generation {
            break obj;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(stages.len() >= 2, "stages seen in status: {stages:?}");
    assert!(wide.contains("STAGE"), "{wide}");
    assert!(stages.iter().any(|s| wide.contains(s.as_str())), "{wide}");
    let sd = obj
        .status
        .expect("status")
        .service_deployment
        .expect("service deployment");
    assert_eq!(sd.status.as_deref(), Some("SUCCESSFUL"), "{sd:?}");
    assert_eq!(sd.strategy.as_deref(), Some("BLUE_GREEN"));
}

#[tokio::test]
async fn a_paused_canary_is_approved_another_rolled_back_and_an_old_approval_ignored() {
    let client = admin_client().await;
    let ns = namespace(&client, "ro-canary").await;
    let _operator = Operator::start(&ns);
    let canary = json!({
        "strategy": "CANARY",
        "canaryConfiguration": {"canaryPercent": 10, "canaryBakeTimeInMinutes": 1},
        "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}],
    });
    let services = deployed(&client, &ns, canary).await;
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let target = format!("{ns}/web");

    // Revision 2 pauses at the hook: AwaitingApproval, which Argo CD shows as Suspended.
    apply_json(&tds, &task_definition(&ns, "web:2")).await;
    let (_, message) = wait_condition(&services, "web", "Ready", "False", Some("AwaitingApproval"), 60).await;
    assert!(message.contains("POST_TEST_TRAFFIC_SHIFT"), "{message}");
    let live = serde_json::to_value(services.get("web").await.expect("get")).expect("JSON");
    assert_eq!(argo_health(&live).0, "Suspended", "{live}");
    let shown = rollout(&["status", &target]);
    assert!(
        shown.contains("AWAITING_ACTION") && shown.contains("rollout approve"),
        "{shown}"
    );
    let first = live["status"]["serviceDeployment"]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Approved from the command line: it finishes.
    rollout(&["approve", &target]);
    ready_on(&services, ":2").await;
    event(&client, &ns, "web", "Approved", &first).await;
    assert_eq!(calls_of(&ecs_calls(&ns), "ContinueServiceDeployment"), 1);

    // Idle: no service-deployment reads.
    let settled = ecs_calls(&ns);
    more_calls(&ns, "DescribeServices", 3).await;
    let idle = ecs_calls(&ns);
    for operation in ["DescribeServiceDeployments", "ListServiceDeployments"] {
        assert_eq!(
            calls_of(&idle, operation),
            calls_of(&settled, operation),
            "{operation}: {idle:?}"
        );
    }

    // Revision 3 pauses too; the approval annotation still names the first deployment and
    // approves nothing.
    apply_json(&tds, &task_definition(&ns, "web:3")).await;
    wait_condition(&services, "web", "Ready", "False", Some("AwaitingApproval"), 60).await;
    more_calls(&ns, "DescribeServices", 3).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "ContinueServiceDeployment"),
        1,
        "the old approval did not approve the new deployment"
    );
    let updates = calls_of(&ecs_calls(&ns), "UpdateService");

    // Rolled back from the command line: Stalled RolledBack, revision 2 runs again, and
    // revision 3 is not sent again.
    rollout(&["rollback", &target]);
    let (_, message) = wait_condition(&services, "web", "Stalled", "True", Some("RolledBack"), 60).await;
    assert!(message.contains("ROLLBACK"), "{message}");
    let running = ecs_client()
        .describe_services()
        .cluster(format!("{ns}-main"))
        .services("web")
        .send()
        .await
        .expect("describe")
        .services()[0]
        .task_definition()
        .unwrap_or_default()
        .to_string();
    assert!(running.ends_with(":2"), "the previous revision runs again: {running}");
    more_calls(&ns, "DescribeServices", 4).await;
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateService"), updates, "not sent again");
    event(&client, &ns, "web", "RollbackRequested", "").await;
}
