//! Running the operator the way platform teams do: health and readiness endpoints,
//! Prometheus metrics, leader election between two replicas, graceful shutdown.

mod common;

use common::{
    Operator, admin_client, apply_json, calls_of, delete_namespace, ecs_calls, ecs_writes, free_port, http_get,
    namespace, ready, sample, wait_for,
};
use ecs_operator::api::EcsCluster;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

fn cluster(ns: &str, name: &str) -> serde_json::Value {
    json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster", "metadata": {"name": name},
           "spec": {"clusterName": format!("{ns}-{name}")}})
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let client = admin_client().await;
    let ns = namespace(&client, "rt-metrics").await;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _operator = Operator::start_with(&ns, &["--metrics-address", &address, "--health-address", &address]);

    wait_for("/healthz", 30, || async {
        (http_get(port, "/healthz")?.0 == 200).then_some(())
    })
    .await;
    wait_for("/readyz", 30, || async {
        (http_get(port, "/readyz")?.0 == 200).then_some(())
    })
    .await;

    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    apply_json(&clusters, &cluster(&ns, "main")).await;
    ready(&clusters, "main", 60).await;
    let metrics = wait_for("metrics of the reconciled cluster", 30, || async {
        let (code, body) = http_get(port, "/metrics")?;
        (code == 200 && body.contains(r#"ecs_operator_objects{kind="EcsCluster",ready="True"} 1"#)).then_some(body)
    })
    .await;
    let reconciles = sample(
        &metrics,
        r#"ecs_operator_reconciles_total{kind="EcsCluster",outcome="success"}"#,
    );
    assert!(reconciles.is_some_and(|n| n >= 1.0), "{metrics}");
    let creates = sample(
        &metrics,
        r#"ecs_operator_ecs_api_calls_total{operation="CreateCluster",outcome="success"}"#,
    );
    assert_eq!(creates, Some(1.0), "{metrics}");
    assert_eq!(
        Some(1.0),
        Some(calls_of(&ecs_calls(&ns), "CreateCluster") as f64),
        "the endpoint agrees"
    );
    let timed = sample(
        &metrics,
        r#"ecs_operator_reconcile_duration_seconds_count{kind="EcsCluster"}"#,
    );
    assert!(timed.is_some_and(|n| n >= 1.0), "{metrics}");
    delete_namespace(&client, &ns).await;
}

async fn lease_holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn only_the_leader_reconciles_and_the_standby_takes_over_when_it_dies() {
    let client = admin_client().await;
    let ns = namespace(&client, "rt-leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let election = [
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--lease-name",
        "ecs-operator",
        "--lease-seconds",
        "3",
    ];
    let (a, b) = (format!("{ns}-a"), format!("{ns}-b"));
    let mut first = Operator::start_as(&ns, &a, &[&election[..], &["--identity", &a]].concat());
    wait_for("a to lead", 30, || async {
        (lease_holder(&leases, "ecs-operator").await? == a).then_some(())
    })
    .await;
    let mut second = Operator::start_as(&ns, &b, &[&election[..], &["--identity", &b]].concat());

    apply_json(&clusters, &cluster(&ns, "one")).await;
    ready(&clusters, "one", 60).await;
    assert_eq!(
        ecs_writes(&ecs_calls(&b)),
        0,
        "the standby made no ECS call that changes anything"
    );
    assert_eq!(calls_of(&ecs_calls(&b), "DescribeClusters"), 0, "nor any read");

    // kill -9 the leader: the standby takes over once the lease expires, and finishes the work.
    drop(first);
    apply_json(&clusters, &cluster(&ns, "two")).await;
    ready(&clusters, "two", 60).await;
    assert_eq!(lease_holder(&leases, "ecs-operator").await.as_deref(), Some(b.as_str()));
    assert_eq!(calls_of(&ecs_calls(&b), "CreateCluster"), 1);

    // SIGTERM: the leader finishes, releases the lease and exits cleanly.
    let status = second.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(lease_holder(&leases, "ecs-operator").await, None, "released on SIGTERM");
    first = Operator::start_as(&ns, &a, &[&election[..], &["--identity", &a]].concat());
    wait_for("a to lead again", 30, || async {
        (lease_holder(&leases, "ecs-operator").await? == a).then_some(())
    })
    .await;
    drop(first);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_standby_judges_the_lease_by_its_own_clock_not_the_holders() {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let client = admin_client().await;
    let ns = namespace(&client, "rt-skew").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    // A holder whose clock is years behind: its renewTime is always long past.
    let lease = |second: u32| Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("ecs-operator".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("skewed-holder".into()),
            lease_duration_seconds: Some(3),
            renew_time: Some(MicroTime(
                format!("2020-01-01T00:{:02}:{:02}Z", second / 60, second % 60)
                    .parse()
                    .expect("time"),
            )),
            ..Default::default()
        }),
    };
    leases
        .create(&Default::default(), &lease(0))
        .await
        .expect("create the lease");
    let renewing = tokio::spawn({
        let leases = leases.clone();
        async move {
            for second in 1..=10u32 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let mut current = leases.get("ecs-operator").await.expect("lease");
                current.spec = lease(second).spec;
                leases
                    .replace("ecs-operator", &Default::default(), &current)
                    .await
                    .expect("renew");
            }
        }
    });
    let me = format!("{ns}-standby");
    let _standby = Operator::start_as(
        &ns,
        &me,
        &[
            "--leader-elect",
            "--leader-election-namespace",
            &ns,
            "--lease-name",
            "ecs-operator",
            "--lease-seconds",
            "3",
            "--identity",
            &me,
        ],
    );
    // While the holder renews (10 s, over three lease durations), it keeps the lease.
    renewing.await.expect("renewing");
    assert_eq!(
        lease_holder(&leases, "ecs-operator").await.as_deref(),
        Some("skewed-holder"),
        "a renewed lease is not taken over, whatever its renewTime says"
    );
    // It stops renewing: the standby takes over about a lease duration later.
    let stopped = std::time::Instant::now();
    wait_for("the standby to take over", 20, || async {
        (lease_holder(&leases, "ecs-operator").await? == me).then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() >= std::time::Duration::from_secs(2),
        "not before the lease had a chance to expire: {:?}",
        stopped.elapsed()
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn failed_and_stalled_reconciles_are_counted_in_metrics() {
    let client = admin_client().await;
    let ns = namespace(&client, "rt-outcomes").await;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _operator = Operator::start_with(&ns, &["--metrics-address", &address, "--health-address", &address]);

    // Throttled: more attempts than the SDK makes (3), so that one reconcile fails.
    common::inject_error_where(
        "CreateCluster",
        ("clusterName", &format!("{ns}-main")),
        "ThrottlingException",
        "Rate exceeded",
        3,
    );
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    apply_json(&clusters, &cluster(&ns, "main")).await;
    ready(&clusters, "main", 60).await;
    // Rejected: a task definition ECS does not have.
    let services: Api<ecs_operator::api::EcsService> = Api::namespaced(client.clone(), &ns);
    let rejected = json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService", "metadata": {"name": "web"},
                          "spec": {"clusterRef": {"name": "main"}, "taskDefinition": format!("{ns}-nothing:1"), "desiredCount": 1}});
    apply_json(&services, &rejected).await;

    let metrics = wait_for("the stalled reconcile in /metrics", 30, || async {
        let (code, body) = http_get(port, "/metrics")?;
        let stalled = sample(
            &body,
            r#"ecs_operator_reconciles_total{kind="EcsService",outcome="stalled"}"#,
        );
        (code == 200 && stalled.is_some_and(|n| n >= 1.0)).then_some(body)
    })
    .await;
    let failed = sample(
        &metrics,
        r#"ecs_operator_reconciles_total{kind="EcsCluster",outcome="error"}"#,
    );
    assert!(failed.is_some_and(|n| n >= 1.0), "{metrics}");
    let throttled = sample(
        &metrics,
        r#"ecs_operator_ecs_api_calls_total{operation="CreateCluster",outcome="throttled"}"#,
    );
    assert_eq!(throttled, Some(3.0), "{metrics}");
    let timed = sample(
        &metrics,
        r#"ecs_operator_reconcile_duration_seconds_count{kind="EcsService"}"#,
    );
    assert!(timed.is_some_and(|n| n >= 1.0), "{metrics}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_port_in_use_is_one_line_naming_the_flag_to_change() {
    let client = admin_client().await;
    let ns = namespace(&client, "rt-port").await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = held.local_addr().expect("address").to_string();
    let mut operator = Operator::start_with(&ns, &["--metrics-address", &address]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = operator.try_exit() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running after 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{status:?}");
    let log = operator.log_text();
    let line = log
        .lines()
        .find(|l| l.starts_with("ecs-operator: "))
        .unwrap_or_else(|| panic!("no error line in:\n{log}"));
    assert!(
        line.contains(&address) && line.contains("--metrics-address") && line.contains("in use"),
        "{line}"
    );
    drop(held);
}

#[tokio::test]
async fn an_identical_event_is_counted_in_its_series_and_a_different_note_is_a_new_event() {
    use ecs_operator::reconcile::events::EventPublisher;
    use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{ListParams, PostParams};

    let client = admin_client().await;
    let ns = namespace(&client, "rt-events").await;
    let object = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "about"}})).unwrap(),
        )
        .await
        .expect("an object to report on");
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: object.metadata.name.clone(),
        namespace: Some(ns.to_string()),
        uid: object.metadata.uid.clone(),
        ..Default::default()
    };
    let events = EventPublisher::new(client.clone(), "ecs-operator-test", "test");
    for note in ["rate exceeded", "rate exceeded", "rate exceeded", "access denied"] {
        events
            .publish(&regarding, true, "EcsRejected", note)
            .await
            .expect("published");
    }

    let listed = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("events");
    let mut seen: Vec<(String, i32)> = listed
        .items
        .iter()
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (e.note.clone().unwrap_or_default(), count)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("access denied".to_string(), 1), ("rate exceeded".to_string(), 3)]
    );
}

#[tokio::test]
async fn sigterm_with_nothing_in_flight_exits_without_waiting_out_the_shutdown_bound() {
    let client = admin_client().await;
    let ns = namespace(&client, "rt-shutdown").await;
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let mut operator = Operator::start(&ns);
    apply_json(&clusters, &cluster(&ns, "idle")).await;
    ready(&clusters, "idle", 60).await;

    let status = operator.terminate();
    assert!(status.success(), "{status:?}");
    let log = operator.log_text();
    // NB: the bound (30 s by default) is for reconciles still running; with none, waiting it
    // out only delays a rollout of the operator's own Deployment.
    assert!(!log.contains("did not finish in time"), "{log}");
    delete_namespace(&client, &ns).await;
}
