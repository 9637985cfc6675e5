//! Faults and crashes: the operator keeps converging through an ECS that throttles, fails
//! and drops connections, and through being killed at random moments; it never creates a
//! service twice, never registers more than one revision per spec change, and leaves
//! nothing ACTIVE behind once everything is deleted. Loopback only, bounded in time.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    FaultProxy, Operator, admin_client, apply_json, ecs_client, free_port, http_get, namespace, object, ready_count,
    services_created, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::Api;
use serde_json::{Value, json};

const CLUSTERS: usize = 2;

fn task_definition(ns: &str, i: usize, image: &str) -> Value {
    let spec = json!({"family": format!("{ns}-td{i}"),
                      "containerDefinitions": [{"name": "app", "image": image, "memory": 128}]});
    object("EcsTaskDefinition", &format!("td{i}"), spec)
}

fn service(i: usize) -> Value {
    let spec = json!({"clusterRef": {"name": format!("c{}", i % CLUSTERS)},
                      "taskDefinitionRef": {"name": format!("td{i}")}, "desiredCount": 1});
    object("EcsService", &format!("svc{i}"), spec)
}

/// An application of `count` services, each with its own task definition, in 2 clusters.
async fn apply_application(client: &kube::Client, ns: &str, count: usize) {
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), ns);
    for c in 0..CLUSTERS {
        let spec = json!({"clusterName": format!("{ns}-c{c}")});
        apply_json(&clusters, &object("EcsCluster", &format!("c{c}"), spec)).await;
    }
    for i in 0..count {
        apply_json(&task_definitions, &task_definition(ns, i, "app:1")).await;
        apply_json(&services, &service(i)).await;
    }
}

/// Waits until all clusters, task definitions and services of the namespace are Ready.
async fn all_ready(client: &kube::Client, ns: &str, count: usize, timeout_secs: u64) {
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), ns);
    let total = CLUSTERS + 2 * count;
    wait_for(&format!("{total} objects Ready"), timeout_secs, || async {
        let ready = ready_count(&clusters).await + ready_count(&task_definitions).await + ready_count(&services).await;
        (ready == total).then_some(())
    })
    .await;
}

/// Every revision ECS holds of each of the namespace's families (ACTIVE or INACTIVE).
async fn revisions_per_family(ns: &str, count: usize) -> BTreeMap<String, usize> {
    let ecs = ecs_client();
    let mut revisions = BTreeMap::new();
    for i in 0..count {
        let family = format!("{ns}-td{i}");
        let mut total = 0;
        for status in [
            aws_sdk_ecs::types::TaskDefinitionStatus::Active,
            aws_sdk_ecs::types::TaskDefinitionStatus::Inactive,
        ] {
            let out = ecs
                .list_task_definitions()
                .family_prefix(&family)
                .status(status)
                .send()
                .await
                .expect("list task definitions");
            total += out
                .task_definition_arns()
                .iter()
                .filter(|arn| arn.contains(&format!("/{family}:")))
                .count();
        }
        revisions.insert(family, total);
    }
    revisions
}

/// ECS services and clusters of the namespace still ACTIVE.
async fn active_in_ecs(ns: &str) -> Vec<String> {
    let ecs = ecs_client();
    let mut active = vec![];
    for c in 0..CLUSTERS {
        let cluster = format!("{ns}-c{c}");
        let out = ecs
            .describe_clusters()
            .clusters(&cluster)
            .send()
            .await
            .expect("describe clusters");
        if out.clusters().iter().any(|c| c.status() == Some("ACTIVE")) {
            active.push(cluster.clone());
            let listed = ecs
                .list_services()
                .cluster(&cluster)
                .max_results(100)
                .send()
                .await
                .expect("list services");
            for batch in listed.service_arns().chunks(10) {
                let described = ecs
                    .describe_services()
                    .cluster(&cluster)
                    .set_services(Some(batch.to_vec()))
                    .send()
                    .await
                    .expect("describe services");
                active.extend(
                    described
                        .services()
                        .iter()
                        .filter(|s| s.status() == Some("ACTIVE"))
                        .map(|s| s.service_arn().unwrap_or_default().to_string()),
                );
            }
        }
    }
    active
}

#[tokio::test]
async fn through_throttling_server_errors_and_lost_answers_everything_converges_once() {
    const SERVICES: usize = 100;
    let client = admin_client().await;
    let ns = namespace(&client, "faults").await;
    // 30% throttled, 5% server errors, 2% answers lost after ECS acted, up to 20 ms latency.
    let proxy = FaultProxy::start(0.30, 0.05, 0.02, 20);
    let endpoint = proxy.url();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _operator = Operator::start_with_env(
        &ns,
        &ns,
        &[
            "--ecs-rate-limits",
            "off",
            "--resync-seconds",
            "30",
            "--metrics-address",
            &address,
            "--health-address",
            &address,
        ],
        &[("AWS_ENDPOINT_URL", endpoint.as_str())],
    );
    let started = Instant::now();
    apply_application(&client, &ns, SERVICES).await;
    all_ready(&client, &ns, SERVICES, 600).await;
    let converged = started.elapsed();

    // A spec change of 20 task definitions, still through the faults.
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    for i in 0..20 {
        apply_json(&task_definitions, &task_definition(&ns, i, "app:2")).await;
    }
    all_ready(&client, &ns, SERVICES, 600).await;
    let stats = proxy.stats();
    eprintln!(
        "faults: {SERVICES} services converged in {:.1} s, then 20 changes, through {stats:?}",
        converged.as_secs_f64()
    );
    for fault in ["throttle", "error", "reset"] {
        assert!(stats[fault] > 0, "no {fault} injected: {stats:?}");
    }
    // Every throttled call was retried or reported, and counted as throttled in /metrics.
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let throttled: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ecs_operator_ecs_api_calls_total{") && l.contains(r#"outcome="throttled""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(throttled as u64, stats["throttle"], "{metrics}");

    let created = services_created(&format!("{ns}-c"));
    assert_eq!(created.len(), SERVICES, "{created:?}");
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "services created more than once: {twice:?}");

    let revisions = revisions_per_family(&ns, SERVICES).await;
    let wrong: Vec<_> = revisions
        .iter()
        .filter(|(family, n)| {
            let changed = (0..20).any(|i| **family == format!("{ns}-td{i}"));
            **n != if changed { 2 } else { 1 }
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "families with a revision per change other than one: {wrong:?}"
    );
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn killed_ten_times_while_converging_the_operator_finishes_and_cleans_up() {
    const SERVICES: usize = 50;
    let client = admin_client().await;
    let ns = namespace(&client, "crashes").await;
    let mut operator = Operator::start_with(&ns, &["--ecs-rate-limits", "off"]);
    apply_application(&client, &ns, SERVICES).await;
    // kill -9 at random moments while 2 clusters + 100 objects converge
    for _ in 0..10 {
        let pause = Duration::from_millis(200 + fastrand::u64(0..1300));
        tokio::time::sleep(pause).await;
        operator.restart();
    }
    all_ready(&client, &ns, SERVICES, 300).await;

    let created = services_created(&format!("{ns}-c"));
    assert_eq!(created.len(), SERVICES, "{created:?}");
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    let revisions = revisions_per_family(&ns, SERVICES).await;
    assert!(revisions.values().all(|n| *n == 1), "{revisions:?}");

    // Delete everything (killed once more mid-way): nothing the operator made stays ACTIVE.
    common::delete_namespace(&client, &ns).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    operator.restart();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    wait_for("the namespace to be gone", 300, || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    let left = active_in_ecs(&ns).await;
    assert!(left.is_empty(), "still ACTIVE in ECS: {left:?}");
}
