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
    // 30 services, re-read every second: 3 DescribeServices a second, more than is left.
    for i in 0..30 {
        apply(object(
            "EcsService",
            &format!("web-{i}"),
            json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 1}),
        ))
        .await;
    }
    for i in 0..30 {
        ready(&services, &format!("web-{i}"), 120).await;
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
