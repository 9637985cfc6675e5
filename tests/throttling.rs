//! ECS's request throttling: the endpoint's buckets (tests/testenv/ecs_buckets.py) refuse a
//! burst beyond ECS's bucket and refill at its rate, and the operator, sharing the budget
//! with another tool, slows down to what is left instead of being throttled all along.

mod common;

use std::time::{Duration, Instant};

use common::{
    Operator, admin_client, delete_namespace, ecs_buckets, ecs_calls, ecs_client_as, endpoint_control, free_port,
    http_get, namespace, object, ready, sample, wait_for,
};
use ecs_operator::api::EcsService;
use kube::api::Api;
use serde_json::json;

/// Calls ListClusters `n` times in a row: how many ECS let through, and how long it took.
async fn list_clusters(ecs: &aws_sdk_ecs::Client, n: usize) -> (usize, f64) {
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..n {
        match ecs.list_clusters().send().await {
            Ok(_) => admitted += 1,
            Err(err) => {
                let err = err.into_service_error();
                assert_eq!(
                    aws_sdk_ecs::error::ProvideErrorMetadata::code(&err),
                    Some("ThrottlingException")
                );
                assert_eq!(
                    aws_sdk_ecs::error::ProvideErrorMetadata::message(&err),
                    Some("Rate exceeded")
                );
            }
        }
    }
    (admitted, started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn a_burst_beyond_ecs_bucket_is_throttled_and_the_bucket_refills_at_its_rate() {
    let client = admin_client().await;
    let id = namespace(&client, "buckets").await.to_string();
    endpoint_control("/_ecs_operator/buckets", json!({"client": id}));
    let ecs = ecs_client_as(&id);

    // cluster-read: a burst of 50, then 20 per second
    let (admitted, took) = list_clusters(&ecs, 80).await;
    assert!(admitted >= 50, "{admitted} of 80 in {took:.2}s");
    assert!(
        (admitted as f64) <= 50.0 + 20.0 * took + 1.0,
        "{admitted} of 80 in {took:.2}s"
    );

    // NB: the wait is what is measured: one second refills twenty.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (again, took_again) = list_clusters(&ecs, 40).await;
    assert!(again >= 19, "{again} of 40 after a second");
    assert!(
        (again as f64) <= 20.0 + 20.0 * (1.0 + took_again) + 1.0,
        "{again} of 40"
    );

    let refused = ecs_buckets(&id)["throttled"]["ListClusters"].as_u64();
    assert_eq!(refused, Some((120 - admitted - again) as u64));
    // another category's bucket is untouched
    assert!(ecs.list_task_definitions().send().await.is_ok());
    endpoint_control("/_ecs_operator/buckets", json!({"client": id, "enabled": false}));
}

#[tokio::test]
async fn the_operator_yields_the_budget_a_neighbour_spends_and_takes_it_back_after() {
    let client = admin_client().await;
    let ns = namespace(&client, "neighbour").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    // A small account: service reads 10 at once, 2 per second; another tool spends half.
    endpoint_control(
        "/_ecs_operator/buckets",
        json!({"client": ns.to_string(), "limits": {"service-read": [10, 2]},
               "neighbour": {"service-read": 0.5}, "seconds": 600}),
    );
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _operator = Operator::start_with(
        &ns,
        &[
            "--ecs-rate-limits",
            "service-read=10/2",
            "--metrics-address",
            &address,
            "--health-address",
            "127.0.0.1:0",
        ],
    );
    let apply = |obj: serde_json::Value| {
        let client = client.clone();
        let ns = ns.to_string();
        async move {
            let dynamic: kube::api::DynamicObject = serde_json::from_value(obj).expect("object");
            common::apply(&client, &ns, &dynamic, false).await.expect("apply");
        }
    };
    apply(object(
        "EcsCluster",
        "main",
        json!({"clusterName": format!("{ns}-main")}),
    ))
    .await;
    apply(object(
        "EcsTaskDefinition",
        "web",
        json!({"family": format!("{ns}-web"), "containerDefinitions": [{"name": "app", "image": "web:1", "memory": 64}]}),
    ))
    .await;
    // 12 services, re-read every second: 2 DescribeServices a second, more than is left.
    for i in 0..12 {
        apply(object(
            "EcsService",
            &format!("web-{i}"),
            json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 1}),
        ))
        .await;
    }
    for i in 0..12 {
        ready(&services, &format!("web-{i}"), 180).await;
    }
    let rate = || {
        let (_, metrics) = http_get(port, "/metrics")?;
        sample(
            &metrics,
            r#"ecs_operator_ecs_rate_limit_per_second{region="us-east-1",category="service-read"}"#,
        )
    };
    let lowered = wait_for("a lowered service-read rate", 60, || async {
        rate().filter(|r| *r < 2.0)
    })
    .await;
    assert!(lowered >= 0.1, "{lowered}");

    // Over the next 20 s the neighbour keeps nearly all of its share.
    let before = ecs_buckets(&ns)["neighbour"]["service-read"].clone();
    let calls_before = ecs_calls(&ns);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = ecs_buckets(&ns)["neighbour"]["service-read"].clone();
    let attempts = after["attempts"].as_u64().unwrap_or(0) - before["attempts"].as_u64().unwrap_or(0);
    let throttled = after["throttled"].as_u64().unwrap_or(0) - before["throttled"].as_u64().unwrap_or(0);
    assert!(attempts >= 15, "{before} -> {after}");
    assert!(
        (throttled as f64) <= 0.25 * attempts as f64,
        "neighbour throttled {throttled} of {attempts}"
    );
    let reads = |calls: &std::collections::BTreeMap<String, u64>| calls.get("DescribeServices").copied().unwrap_or(0);
    let operator_reads = reads(&ecs_calls(&ns)) - reads(&calls_before);
    eprintln!(
        "neighbour: {attempts} attempts, {throttled} throttled; the operator: {operator_reads} reads in 20 s, at {lowered}/s"
    );
    assert!(
        operator_reads >= 5,
        "the operator still reads: {operator_reads} in 20 s"
    );

    // The neighbour gone, the rate climbs back to the account's within a minute or so.
    endpoint_control(
        "/_ecs_operator/buckets",
        json!({"client": ns.to_string(), "limits": {"service-read": [10, 2]}}),
    );
    wait_for("the service-read rate restored", 120, || async {
        rate().filter(|r| *r >= 2.0)
    })
    .await;
    endpoint_control(
        "/_ecs_operator/buckets",
        json!({"client": ns.to_string(), "enabled": false}),
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn two_shards_in_one_account_split_the_fleet_and_share_its_budget() {
    let client = admin_client().await;
    let ns = namespace(&client, "shards").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    // One account for both operators (one app id): service reads 10 at once, 2 per second.
    endpoint_control(
        "/_ecs_operator/buckets",
        json!({"client": ns.to_string(), "limits": {"service-read": [10, 2]}}),
    );
    let ports = [free_port(), free_port()];
    let operators: Vec<Operator> = ["a", "b"]
        .iter()
        .zip(ports)
        .map(|(shard, port)| {
            let selector = format!("shard={shard}");
            let address = format!("127.0.0.1:{port}");
            Operator::start_as(
                &ns,
                &ns,
                &[
                    "--selector",
                    &selector,
                    "--ecs-rate-limits",
                    "service-read=10/2",
                    "--metrics-address",
                    &address,
                    "--health-address",
                    "127.0.0.1:0",
                ],
            )
        })
        .collect();
    let apply = |obj: serde_json::Value, shard: &str| {
        let client = client.clone();
        let ns = ns.to_string();
        let mut obj = obj;
        obj["metadata"]["labels"] = json!({"shard": shard});
        async move {
            let dynamic: kube::api::DynamicObject = serde_json::from_value(obj).expect("object");
            common::apply(&client, &ns, &dynamic, false).await.expect("apply");
        }
    };
    apply(
        object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
        "a",
    )
    .await;
    apply(
        object(
            "EcsTaskDefinition",
            "web",
            json!({"family": format!("{ns}-web"), "containerDefinitions": [{"name": "app", "image": "web:1", "memory": 64}]}),
        ),
        "a",
    )
    .await;
    // 30 services, half per shard, each shard re-reading its own every second: 4
    // DescribeServices a second together, twice what the account allows.
    for i in 0..30 {
        let spec = json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 1});
        apply(
            object("EcsService", &format!("web-{i}"), spec),
            if i % 2 == 0 { "a" } else { "b" },
        )
        .await;
    }
    for i in 0..30 {
        ready(&services, &format!("web-{i}"), 180).await;
    }
    // Nothing is reconciled by both: each operator counts its own 15, each service was created once.
    for port in ports {
        let ready_services = wait_for("each shard's services counted", 30, || async {
            let (_, metrics) = http_get(port, "/metrics")?;
            sample(&metrics, r#"ecs_operator_objects{kind="EcsService",ready="True"}"#).filter(|n| *n == 15.0)
        })
        .await;
        assert_eq!(ready_services, 15.0);
    }
    let created = common::services_created(&format!("{ns}-main/"));
    assert_eq!(created.len(), 30, "{created:?}");
    assert!(created.values().all(|n| *n == 1), "{created:?}");

    // Together they settle within the account's budget: over 30 s, few reads are throttled.
    let throttled = || ecs_buckets(&ns)["throttled"]["DescribeServices"].as_u64().unwrap_or(0);
    let reads = || ecs_calls(&ns).get("DescribeServices").copied().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (throttled_before, reads_before) = (throttled(), reads());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (refused, made) = (throttled() - throttled_before, reads() - reads_before);
    eprintln!("shards: {made} DescribeServices in 30 s, {refused} throttled");
    assert!(made >= 30, "both shards keep reading: {made} in 30 s");
    assert!(
        (refused as f64) <= 0.2 * made as f64,
        "{refused} of {made} reads throttled"
    );
    drop(operators);
    endpoint_control(
        "/_ecs_operator/buckets",
        json!({"client": ns.to_string(), "enabled": false}),
    );
    delete_namespace(&client, &ns).await;
}
