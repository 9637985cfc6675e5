//! EcsService against the rules real ECS enforces, on the strict endpoint
//! (tests/testenv/strict_ecs.py): capacity provider moves, rewritten answers, desiredCount,
//! failed rollouts of any change, deployment controllers, deletion and transient errors.

mod common;

use std::collections::BTreeMap;

use common::{
    Operator, admin_client, asg_capacity_provider, calls_of, condition, declare_broken, delete_namespace, ecs_calls,
    ecs_client, ecs_requests, event, events_for, inject_error, more_calls, namespace, object, ready, services_created,
    set_timing, vpc, wait_condition, wait_for,
};
use ecs_operator::api::EcsService;
use kube::api::Api;
use serde_json::{Value, json};

fn cluster(ns: &str) -> Value {
    object(
        "EcsCluster",
        "main",
        json!({"clusterName": format!("{ns}-main"), "capacityProviders": ["FARGATE", "FARGATE_SPOT"]}),
    )
}

fn task_definition(ns: &str, name: &str, image: &str) -> Value {
    object(
        "EcsTaskDefinition",
        name,
        json!({"family": format!("{ns}-{name}"), "containerDefinitions": [{"name": "app", "image": image, "memory": 128}]}),
    )
}

fn service(name: &str, spec: Value) -> Value {
    let mut full = json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}});
    if let (Value::Object(full), Value::Object(spec)) = (&mut full, spec) {
        full.extend(spec);
    }
    object("EcsService", name, full)
}

async fn apply(client: &kube::Client, ns: &str, obj: &Value) {
    let dynamic: kube::api::DynamicObject = serde_json::from_value(obj.clone()).expect("object");
    common::apply(client, ns, &dynamic, false).await.expect("apply");
}

/// The service as ECS reports it, as JSON.
async fn described(cluster: &str, name: &str) -> Value {
    let out = ecs_client()
        .describe_services()
        .cluster(cluster)
        .services(name)
        .send()
        .await
        .expect("describe services");
    let service = out.services().first().expect("a service").clone();
    ecs_operator::ecs::wire::from_sdk(&service).expect("service JSON")
}

#[tokio::test]
async fn capacity_provider_moves_force_a_deployment_and_an_empty_strategy_returns_to_the_launch_type() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-capacity").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let cluster_name = format!("{ns}-main");
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns)).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    apply(
        &client,
        &ns,
        &service("web", json!({"desiredCount": 2, "launchType": "FARGATE"})),
    )
    .await;
    ready(&services, "web", 60).await;

    // Launch type -> strategy, then one strategy -> another: each an UpdateService that
    // forces a new deployment, as ECS requires.
    for provider in ["FARGATE", "FARGATE_SPOT"] {
        let strategy = json!([{"capacityProvider": provider, "weight": 1}]);
        apply(
            &client,
            &ns,
            &service("web", json!({"desiredCount": 2, "capacityProviderStrategy": strategy})),
        )
        .await;
        ready(&services, "web", 60).await;
        let ecs = described(&cluster_name, "web").await;
        assert_eq!(
            ecs["capacityProviderStrategy"][0]["capacityProvider"], provider,
            "{ecs}"
        );
        assert!(ecs["launchType"].is_null(), "{ecs}");
        let last = ecs_requests(&ns, "UpdateService").pop().expect("an UpdateService");
        assert_eq!(last["forceNewDeployment"], true, "{last}");
        assert_eq!(
            last["capacityProviderStrategy"][0]["capacityProvider"], provider,
            "{last}"
        );
    }

    // Back to the launch type: UpdateService has no launchType; an empty strategy does it.
    apply(
        &client,
        &ns,
        &service("web", json!({"desiredCount": 2, "launchType": "FARGATE"})),
    )
    .await;
    ready(&services, "web", 60).await;
    let ecs = described(&cluster_name, "web").await;
    assert_eq!(ecs["launchType"], "FARGATE", "{ecs}");
    assert!(ecs["capacityProviderStrategy"].is_null(), "{ecs}");
    let last = ecs_requests(&ns, "UpdateService").pop().expect("an UpdateService");
    assert_eq!(last["capacityProviderStrategy"], json!([]), "{last}");
    assert_eq!(last["forceNewDeployment"], true, "{last}");
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateService"), 3);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_fleet_ecs_reports_rewritten_costs_no_update_over_ten_idle_resyncs() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-rewrites").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let (subnets, groups) = vpc(3, 2);
    let (asg_a, asg_b) = (format!("{ns}-asg-a"), format!("{ns}-asg-b"));
    asg_capacity_provider(&asg_a).await;
    asg_capacity_provider(&asg_b).await;
    let mut with_groups = cluster(&ns);
    with_groups["spec"]["capacityProviders"] = json!(["FARGATE", "FARGATE_SPOT", asg_a, asg_b]);
    apply(&client, &ns, &with_groups).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    let names: Vec<String> = (0..6).map(|i| format!("web-{i}")).collect();
    for name in &names {
        let spec = json!({
            "desiredCount": 2,
            "capacityProviderStrategy": [
                {"capacityProvider": asg_a, "weight": 1, "base": 1},
                {"capacityProvider": asg_b, "weight": 3}
            ],
            "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                  {"type": "spread", "field": "host"}, {"type": "binpack", "field": "memory"}],
            "placementConstraints": [{"type": "distinctInstance"},
                                     {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ m7g.*"}],
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": groups}},
            "loadBalancers": [
                {"targetGroupArn": format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}-a/1"),
                 "containerName": "app", "containerPort": 80},
                {"targetGroupArn": format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}-b/2"),
                 "containerName": "app", "containerPort": 8080}
            ],
        });
        apply(&client, &ns, &service(name, spec)).await;
    }
    for name in &names {
        ready(&services, name, 90).await;
    }
    let ecs = described(&format!("{ns}-main"), "web-0").await;
    assert_eq!(
        ecs["placementStrategy"][1]["field"], "instanceId",
        "the endpoint rewrites: {ecs}"
    );
    assert_ne!(
        ecs["networkConfiguration"]["awsvpcConfiguration"]["subnets"],
        json!(subnets),
        "the endpoint reorders: {ecs}"
    );
    let settled = ecs_calls(&ns);
    // Each resync describes all six in one batched call: ten of them.
    more_calls(&ns, "DescribeServices", 10).await;
    let idle = ecs_calls(&ns);
    assert_eq!(calls_of(&idle, "UpdateService"), 0, "{settled:?} -> {idle:?}");
    for name in &names {
        let drift: Vec<(String, String)> = events_for(&client, &ns, name)
            .await
            .into_iter()
            .filter(|(r, _)| r == "DriftCorrected" || r == "Updated")
            .collect();
        assert!(drift.is_empty(), "{name}: {drift:?}");
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_unset_desired_count_starts_at_one_and_is_never_sent_again() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-count").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let cluster_name = format!("{ns}-main");
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns)).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    apply(&client, &ns, &service("web", json!({}))).await;
    ready(&services, "web", 60).await;
    let created = ecs_requests(&ns, "CreateService");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["desiredCount"], 1, "{}", created[0]);
    event(&client, &ns, "web", "Created", "desiredCount 1").await;

    // An autoscaler scales it: left alone through resyncs and a later spec change.
    ecs_client()
        .update_service()
        .cluster(&cluster_name)
        .service("web")
        .desired_count(3)
        .send()
        .await
        .expect("scale");
    apply(
        &client,
        &ns,
        &service("web", json!({"healthCheckGracePeriodSeconds": 30})),
    )
    .await;
    ready(&services, "web", 60).await;
    more_calls(&ns, "DescribeServices", 4).await;
    assert_eq!(described(&cluster_name, "web").await["desiredCount"], 3);
    let updates = ecs_requests(&ns, "UpdateService");
    assert!(updates.iter().all(|u| u.get("desiredCount").is_none()), "{updates:?}");
    delete_namespace(&client, &ns).await;
}

/// A service with the deployment circuit breaker (rollback on) in a VPC; Ready.
async fn guarded_service(client: &kube::Client, ns: &str, services: &Api<EcsService>, subnet: &str, image: &str) {
    apply(client, ns, &cluster(ns)).await;
    apply(client, ns, &task_definition(ns, "web", image)).await;
    apply(client, ns, &guarded("web", subnet, json!({}))).await;
    ready(services, "web", 60).await;
}

fn guarded(name: &str, subnet: &str, extra: Value) -> Value {
    let mut spec = json!({
        "desiredCount": 2,
        "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": [subnet]}},
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}},
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    service(name, spec)
}

#[tokio::test]
async fn a_network_change_the_circuit_breaker_rolls_back_is_stalled_and_never_sent_again() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-netfail").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let cluster_name = format!("{ns}-main");
    let _operator = Operator::start(&ns);
    let (subnets, _) = vpc(3, 0);
    guarded_service(&client, &ns, &services, &subnets[0], "web:1").await;

    // Tasks cannot start in the new subnet: ECS fails the deployment and rolls back.
    declare_broken(&subnets[1]);
    apply(&client, &ns, &guarded("web", &subnets[1], json!({}))).await;
    let message = wait_condition(&services, "web", "Stalled", "True", Some("RolloutFailed"), 60)
        .await
        .1;
    assert!(
        message.contains("circuit breaker"),
        "ECS's reason reaches the user: {message}"
    );
    event(&client, &ns, "web", "RolloutFailed", "circuit breaker").await;
    let ecs = described(&cluster_name, "web").await;
    assert_eq!(
        ecs["networkConfiguration"]["awsvpcConfiguration"]["subnets"],
        json!([subnets[0]]),
        "ECS runs the previous network again: {ecs}"
    );
    let after_failure = calls_of(&ecs_calls(&ns), "UpdateService");
    assert_eq!(after_failure, 1, "one attempt");
    // Resyncs see ECS differ from the spec again, and send nothing.
    more_calls(&ns, "DescribeServices", 6).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "UpdateService"),
        after_failure,
        "no redeploy loop"
    );
    let obj = services.get("web").await.expect("get");
    let ready_now = condition(&obj.status.expect("status").common.conditions, "Ready");
    assert!(
        ready_now.is_some_and(|(s, _, _)| s == "False"),
        "never Ready on a failed rollout"
    );

    // Fixing the spec is acted on at once.
    apply(&client, &ns, &guarded("web", &subnets[2], json!({}))).await;
    ready(&services, "web", 60).await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_forced_redeploy_of_a_broken_image_is_stalled_not_ready() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-redeployfail").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    // ECS fails the deployment and finishes rolling back within a second: by the time the
    // operator looks again, the failed deployment is gone and ECS runs what the spec says.
    set_timing(&format!("{ns}-main"), 0.5, 2.0, 2.0);
    let _operator = Operator::start(&ns);
    let (subnets, _) = vpc(1, 0);
    let image = format!("registry.example/{ns}:latest");
    guarded_service(&client, &ns, &services, &subnets[0], &image).await;

    // The mutable tag now points at a build that crashes; a redeploy pulls it.
    declare_broken(&image);
    let trigger = json!({"redeployTrigger": "2026-11-30T10:00:00Z"});
    apply(&client, &ns, &guarded("web", &subnets[0], trigger)).await;
    let message = wait_condition(&services, "web", "Stalled", "True", Some("RolloutFailed"), 60)
        .await
        .1;
    assert!(message.contains("circuit breaker"), "{message}");
    more_calls(&ns, "DescribeServices", 4).await;
    let updates = ecs_requests(&ns, "UpdateService");
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["forceNewDeployment"], true);
    let status = services.get("web").await.expect("get").status.expect("status");
    let rollout = status.rollout.expect("the rollout is recorded");
    assert_eq!(rollout.state, "FAILED", "{rollout:?}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn code_deploy_and_external_services_are_ready_and_only_sent_what_ecs_accepts() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-controllers").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    // NB: resyncs 10 minutes apart: what the operator reads after Ready is its own pacing.
    let _operator = Operator::start_with(&ns, &["--resync-seconds", "600"]);
    apply(&client, &ns, &cluster(&ns)).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    let blue_green = |count: i32| {
        service(
            "web",
            json!({"desiredCount": count, "deploymentController": {"type": "CODE_DEPLOY"}}),
        )
    };
    apply(&client, &ns, &blue_green(2)).await;
    let obj = ready(&services, "web", 60).await;
    let status = obj.status.expect("status");
    assert_eq!(status.task_sets.len(), 1, "{status:?}");
    assert_eq!(status.task_sets[0].stability_status.as_deref(), Some("STEADY_STATE"));

    // The count is UpdateService's to change; the task definition is CodeDeploy's.
    apply(&client, &ns, &blue_green(3)).await;
    ready(&services, "web", 60).await;
    let updates = ecs_requests(&ns, "UpdateService");
    assert_eq!(updates.len(), 1, "{updates:?}");
    let mut keys: Vec<&String> = updates[0].as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["cluster", "desiredCount", "service"], "{updates:?}");
    apply(&client, &ns, &task_definition(&ns, "web", "web:2")).await;
    let obj = wait_for("the new revision left to CodeDeploy", 60, || async {
        let obj = services.get("web").await.ok()?;
        let status = obj.status.as_ref()?;
        (status.left_to_deployment_controller == ["taskDefinition"]).then_some(obj)
    })
    .await;
    let (ready_status, _, message) = condition(&obj.status.expect("status").common.conditions, "Ready").expect("Ready");
    assert_eq!(ready_status, "True");
    assert!(message.contains("CODE_DEPLOY"), "{message}");
    assert_eq!(
        ecs_requests(&ns, "UpdateService").len(),
        1,
        "nothing sent for the revision"
    );

    // Steady and nothing in flight: no polling.
    let reads = calls_of(&ecs_calls(&ns), "DescribeServices");
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "DescribeServices"),
        reads,
        "no polling at steady state"
    );

    // EXTERNAL: no task definition at all.
    let external = object(
        "EcsService",
        "ext",
        json!({"clusterRef": {"name": "main"}, "desiredCount": 1, "deploymentController": {"type": "EXTERNAL"}}),
    );
    apply(&client, &ns, &external).await;
    ready(&services, "ext", 60).await;
    let created = ecs_requests(&ns, "CreateService");
    let ext = created.iter().find(|c| c["serviceName"] == "ext").expect("created");
    assert!(ext.get("taskDefinition").is_none(), "{ext}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_replacement_waits_out_draining_and_retries_until_the_name_is_free() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-recreate").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let cluster_name = format!("{ns}-main");
    // ECS keeps the old service DRAINING for 3 s, then its name "not idempotent" for 8 s.
    set_timing(&cluster_name, 1.0, 3.0, 8.0);
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns)).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    let launch = |l: &str| {
        service(
            "web",
            json!({"desiredCount": 1, "launchType": l, "allowReplacement": true}),
        )
    };
    apply(&client, &ns, &launch("EC2")).await;
    ready(&services, "web", 60).await;

    apply(&client, &ns, &launch("FARGATE")).await;
    let obj = ready(&services, "web", 90).await;
    assert_eq!(described(&cluster_name, "web").await["launchType"], "FARGATE");
    let created = services_created(&format!("{cluster_name}/web"));
    assert_eq!(created.values().sum::<u64>(), 2, "{created:?}");
    let calls = ecs_calls(&ns);
    assert!(
        calls_of(&calls, "CreateService") > 2,
        "ECS answered 'not idempotent' at least once: {calls:?}"
    );
    let stalled = condition(&obj.status.expect("status").common.conditions, "Stalled");
    assert!(stalled.is_none(), "{stalled:?}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn transient_ecs_answers_and_access_denied_while_iam_propagates_are_retried() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-transient").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let cluster_name = format!("{ns}-main");
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns)).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    ready(
        &Api::<ecs_operator::api::EcsCluster>::namespaced(client.clone(), &ns),
        "main",
        60,
    )
    .await;

    inject_error(
        "CreateService",
        &cluster_name,
        "InvalidParameterException",
        "Unable to assume the service linked role. Please verify that the ECS service linked role exists.",
        2,
    );
    apply(&client, &ns, &service("web", json!({"desiredCount": 1}))).await;
    ready(&services, "web", 60).await;
    assert_eq!(calls_of(&ecs_calls(&ns), "CreateService"), 3);

    inject_error(
        "CreateService",
        &cluster_name,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/ecs-operator/x is not authorized to perform: ecs:CreateService",
        1,
    );
    apply(&client, &ns, &service("api", json!({"desiredCount": 1}))).await;
    let retrying = wait_for("Reconciling while IAM propagates", 30, || async {
        let status = services.get("api").await.ok()?.status?;
        let conditions: BTreeMap<String, (String, String, String)> = ["Reconciling", "Stalled"]
            .iter()
            .filter_map(|t| Some((t.to_string(), condition(&status.common.conditions, t)?)))
            .collect();
        let retrying = conditions
            .get("Reconciling")
            .is_some_and(|(s, r, _)| s == "True" && r == "AccessDenied");
        retrying.then_some(conditions)
    })
    .await;
    assert!(!retrying.contains_key("Stalled"), "{retrying:?}");
    ready(&services, "api", 60).await;

    // An UpdateService that meets the service DRAINING is looked at again, not Stalled.
    inject_error(
        "UpdateService",
        &cluster_name,
        "ServiceNotActiveException",
        "Service was not ACTIVE.",
        1,
    );
    apply(&client, &ns, &service("api", json!({"desiredCount": 2}))).await;
    ready(&services, "api", 60).await;
    assert_eq!(ecs_requests(&ns, "UpdateService").len(), 2, "tried again");
    delete_namespace(&client, &ns).await;
}
