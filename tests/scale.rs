//! What the operator costs ECS at scale, counted at the ECS endpoint: resyncs read services
//! ten per DescribeServices call, nothing is written at idle, and every call waits its turn
//! in the client-side rate limiter.

mod common;

use std::time::Instant;

use common::{
    Operator, admin_client, apply_json, calls_of, delete_namespace, ecs_calls, ecs_writes, free_port, http_get,
    more_calls, namespace, object, ready_count, resource_versions, sample, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::Api;
use serde_json::{Value, json};

fn task_definition(ns: &str, name: &str) -> Value {
    object(
        "EcsTaskDefinition",
        name,
        json!({"family": format!("{ns}-{name}"), "containerDefinitions": [{"name": "app", "image": "app:1", "memory": 128}]}),
    )
}

/// Waits until every object of a kind in the namespace is Ready.
async fn every_one_ready<K: ecs_operator::reconcile::Managed>(api: &Api<K>, count: usize) {
    wait_for(&format!("{count} Ready {}s", K::kind(&())), 180, || async {
        (ready_count(api).await == count).then_some(())
    })
    .await
}

#[tokio::test]
async fn idle_resyncs_read_ten_services_per_call_and_write_nothing() {
    const SERVICES: usize = 25;
    let client = admin_client().await;
    let ns = namespace(&client, "scale-idle").await;
    let _operator = Operator::start_with(&ns, &["--resync-seconds", "2"]);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    apply_json(&task_definitions, &task_definition(&ns, "app")).await;
    for i in 0..SERVICES {
        let spec = json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "app"}, "desiredCount": 1});
        apply_json(&services, &object("EcsService", &format!("svc-{i}"), spec)).await;
    }
    every_one_ready(&services, SERVICES).await;
    every_one_ready(&clusters, 1).await;
    every_one_ready(&task_definitions, 1).await;

    // Each resync reads the one cluster once: count resyncs by DescribeClusters, and let
    // two pass first so that the window holds no pass of the way to Ready.
    more_calls(&ns, "DescribeClusters", 2).await;
    let versions = [
        resource_versions(&services).await,
        resource_versions(&clusters).await,
        resource_versions(&task_definitions).await,
    ];
    let before = ecs_calls(&ns);
    more_calls(&ns, "DescribeClusters", 3).await;
    let after = ecs_calls(&ns);
    let resyncs = calls_of(&after, "DescribeClusters") - calls_of(&before, "DescribeClusters");
    let reads = calls_of(&after, "DescribeServices") - calls_of(&before, "DescribeServices");
    // 25 services in one cluster: 3 DescribeServices per resync (10 + 10 + 5); the window
    // may cut one resync's reads in two.
    let per_resync = SERVICES.div_ceil(10) as u64;
    assert!(
        reads >= per_resync * (resyncs - 1) && reads <= per_resync * (resyncs + 1),
        "{reads} DescribeServices over {resyncs} resyncs of {SERVICES} services: {before:?} -> {after:?}"
    );
    assert_eq!(
        calls_of(&after, "ListTagsForResource"),
        0,
        "tags come with the describe"
    );
    assert_eq!(
        ecs_writes(&after),
        ecs_writes(&before),
        "no ECS write at idle: {before:?} -> {after:?}"
    );

    let now = [
        resource_versions(&services).await,
        resource_versions(&clusters).await,
        resource_versions(&task_definitions).await,
    ];
    assert_eq!(now, versions, "no Kubernetes write at idle");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn every_ecs_call_waits_for_the_rate_limiter() {
    const FAMILIES: usize = 5;
    let client = admin_client().await;
    let ns = namespace(&client, "scale-limits").await;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    // Registration: a burst of 1, then 2 per second.
    let _operator = Operator::start_with(
        &ns,
        &[
            "--ecs-rate-limits",
            "task-definition-modify=1/2",
            "--metrics-address",
            &address,
            "--health-address",
            &address,
        ],
    );
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    for i in 0..FAMILIES {
        apply_json(&task_definitions, &task_definition(&ns, &format!("td-{i}"))).await;
    }
    every_one_ready(&task_definitions, FAMILIES).await;
    // 5 registrations, 1 at once and 4 more at 2 per second: at least 2 s.
    let took = started.elapsed().as_secs_f64();
    assert!(took >= 2.0, "{FAMILIES} registrations in {took:.2} s");
    assert_eq!(calls_of(&ecs_calls(&ns), "RegisterTaskDefinition"), FAMILIES as u64);

    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let waited = sample(
        &metrics,
        r#"ecs_operator_ecs_rate_limit_wait_seconds_total{operation="RegisterTaskDefinition"}"#,
    );
    assert!(waited.is_some_and(|s| s >= 1.0), "{metrics}");
    // Every call the operator made (moto neither throttles nor fails these) had a permit.
    let mut calls = std::collections::BTreeMap::<String, f64>::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(r#"ecs_operator_ecs_api_calls_total{operation=""#) else {
            continue;
        };
        let (operation, rest) = rest.split_once('"').expect("label");
        let count: f64 = rest.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("count");
        *calls.entry(operation.to_string()).or_default() += count;
    }
    assert!(calls.len() >= 2, "{metrics}");
    for (operation, count) in calls {
        let permits = sample(
            &metrics,
            &format!(r#"ecs_operator_ecs_rate_limit_permits_total{{operation="{operation}"}}"#),
        );
        assert_eq!(permits, Some(count), "{operation}: {metrics}");
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn fifty_families_through_three_changes_register_once_each_and_spare_revisions_in_use() {
    const FAMILIES: usize = 50;
    const PINNED: usize = 10;
    let client = admin_client().await;
    let ns = namespace(&client, "scale-retire").await;
    // NB: ECS's registration bucket (1 per second) would make this 3 minutes of waiting;
    // what is measured here is how many calls, not how fast.
    let _operator = Operator::start_with(&ns, &["--ecs-rate-limits", "off"]);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let family = |i: usize| format!("{ns}-app-{i}");
    let revision_spec = |i: usize, image: &str| {
        object(
            "EcsTaskDefinition",
            &format!("app-{i}"),
            json!({"family": family(i), "revisionHistoryLimit": 1, "retiredRevisions": "Delete",
                   "containerDefinitions": [{"name": "app", "image": image, "memory": 128}]}),
        )
    };
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    for i in 0..FAMILIES {
        apply_json(&task_definitions, &revision_spec(i, "app:1")).await;
    }
    every_one_ready(&task_definitions, FAMILIES).await;
    // The first ten families each have a service pinned to revision 1.
    for i in 0..PINNED {
        let spec =
            json!({"clusterRef": {"name": "main"}, "taskDefinition": format!("{}:1", family(i)), "desiredCount": 1});
        apply_json(&services, &object("EcsService", &format!("pinned-{i}"), spec)).await;
    }
    every_one_ready(&services, PINNED).await;
    let started = Instant::now();
    for change in 2..=4 {
        for i in 0..FAMILIES {
            apply_json(&task_definitions, &revision_spec(i, &format!("app:{change}"))).await;
        }
        every_one_ready(&task_definitions, FAMILIES).await;
    }
    wait_for("history settled: [1, 4] where pinned, [4] elsewhere", 120, || async {
        let list = task_definitions.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|td| {
                let pinned = td.metadata.name.as_deref().is_some_and(|n| {
                    n.strip_prefix("app-")
                        .and_then(|i| i.parse::<usize>().ok())
                        .is_some_and(|i| i < PINNED)
                });
                let active = td
                    .status
                    .as_ref()
                    .map(|s| s.active_revisions.clone())
                    .unwrap_or_default();
                active == if pinned { vec![1, 4] } else { vec![4] }
            })
            .then_some(())
    })
    .await;
    let calls = ecs_calls(&ns);
    assert_eq!(
        calls_of(&calls, "RegisterTaskDefinition"),
        (FAMILIES * 4) as u64,
        "{calls:?}"
    );
    let ecs = common::ecs_client();
    for i in 0..FAMILIES {
        let status = |revision: i32| {
            let ecs = ecs.clone();
            let name = format!("{}:{revision}", family(i));
            async move {
                match ecs.describe_task_definition().task_definition(&name).send().await {
                    Ok(out) => out
                        .task_definition()
                        .and_then(|t| t.status())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    Err(_) => "GONE".to_string(),
                }
            }
        };
        let first = status(1).await;
        assert_eq!(first == "ACTIVE", i < PINNED, "family {i}: revision 1 is {first}");
        for retired in [2, 3] {
            assert_eq!(status(retired).await, "GONE", "family {i} revision {retired}");
        }
    }
    eprintln!(
        "50 task definitions (10 with a service pinned to revision 1), 3 changes each, revisionHistoryLimit 1, \
         retiredRevisions Delete: {:.1} s for the changes; ECS calls of the whole test: {calls:?}",
        started.elapsed().as_secs_f64()
    );
    delete_namespace(&client, &ns).await;
}
