//! EcsService end to end: the operator process against the real apiserver and the ECS
//! endpoint, driven as users drive it, checked in status, Events and ECS itself.

mod common;

use common::{
    Operator, admin_client, calls_of, condition, delete_namespace, ecs_calls, ecs_client, ecs_writes, event, gone,
    more_calls, namespace, object, ready, services_created, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

fn cluster(ns: &str) -> Value {
    object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")}))
}

fn task_definition(ns: &str, name: &str, image: &str) -> Value {
    object(
        "EcsTaskDefinition",
        name,
        json!({"family": format!("{ns}-{name}"), "containerDefinitions": [{"name": "app", "image": image, "memory": 128}]}),
    )
}

fn service(name: &str, task_definition: &str, extra: Value) -> Value {
    let mut spec =
        json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": task_definition}, "desiredCount": 2});
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    object("EcsService", name, spec)
}

async fn apply(client: &kube::Client, ns: &str, obj: &Value) {
    let dynamic: kube::api::DynamicObject = serde_json::from_value(obj.clone()).expect("object");
    common::apply(client, ns, &dynamic, false).await.expect("apply");
}

/// A cluster, a task definition "web" and a service "web" using both, applied and Ready.
async fn web_service(client: &kube::Client, ns: &str, services: &Api<EcsService>) {
    apply(client, ns, &cluster(ns)).await;
    apply(client, ns, &task_definition(ns, "web", "web:1")).await;
    apply(client, ns, &service("web", "web", json!({}))).await;
    ready(services, "web", 60).await;
}

/// The service as ECS reports it: (status, desiredCount, taskDefinition, PRIMARY deployment id).
async fn ecs_service(cluster: &str, name: &str) -> (String, i32, String, String) {
    let out = ecs_client()
        .describe_services()
        .cluster(cluster)
        .services(name)
        .send()
        .await
        .expect("describe services");
    let s = out.services().first().expect("service");
    let primary = s
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .unwrap_or_default();
    (
        s.status().unwrap_or_default().into(),
        s.desired_count(),
        s.task_definition().unwrap_or_default().into(),
        primary.into(),
    )
}

#[tokio::test]
async fn a_service_applied_before_its_references_converges_as_soon_as_they_are_ready() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-order").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    // NB: resyncs every 10 minutes, far beyond the timeouts below: only watches can help.
    let _operator = Operator::start_with(&ns, &["--resync-seconds", "600"]);

    apply(&client, &ns, &service("web", "web", json!({}))).await;
    wait_for("WaitingForCluster", 30, || async {
        let status = services.get("web").await.ok()?.status?;
        condition(&status.common.conditions, "Ready").filter(|(s, r, m)| {
            s == "False" && r == "WaitingForCluster" && m.contains("EcsCluster main does not exist")
        })
    })
    .await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    apply(&client, &ns, &cluster(&ns)).await;
    let obj = ready(&services, "web", 30).await;
    let status = obj.status.expect("status");
    assert!(
        status
            .task_definition_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(&format!("{ns}-web:1"))),
        "{status:?}"
    );
    assert_eq!(status.running_count, Some(2));
    let calls = ecs_calls(&ns);
    assert_eq!(calls_of(&calls, "CreateService"), 1, "{calls:?}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_image_change_is_one_registration_and_one_update_and_idle_writes_nothing() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-rollout").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    web_service(&client, &ns, &services).await;
    let before = ecs_calls(&ns);

    apply(&client, &ns, &task_definition(&ns, "web", "web:2")).await;
    let revision_2 = format!("{ns}-web:2");
    let obj = wait_for("the service on revision 2", 30, || async {
        let obj = services.get("web").await.ok()?;
        let status = obj.status.as_ref()?;
        let on_2 = status
            .task_definition_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(&revision_2));
        let ready = condition(&status.common.conditions, "Ready").is_some_and(|(s, _, _)| s == "True");
        (on_2 && ready).then_some(obj)
    })
    .await;
    let (_, _, running, _) = ecs_service(&format!("{ns}-main"), "web").await;
    assert!(running.ends_with(&revision_2), "ECS runs {running}");
    let after = ecs_calls(&ns);
    assert_eq!(
        calls_of(&after, "RegisterTaskDefinition") - calls_of(&before, "RegisterTaskDefinition"),
        1
    );
    assert_eq!(
        calls_of(&after, "UpdateService") - calls_of(&before, "UpdateService"),
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(obj.status.expect("status").deployments.len(), 1);

    // Idle: several resyncs of every kind, not a single write.
    let version = services.get("web").await.expect("get").metadata.resource_version;
    more_calls(&ns, "DescribeServices", 3).await;
    let idle = ecs_calls(&ns);
    assert_eq!(
        ecs_writes(&idle),
        ecs_writes(&after),
        "no ECS write at idle: {after:?} -> {idle:?}"
    );
    assert_eq!(
        services.get("web").await.expect("get").metadata.resource_version,
        version,
        "no Kubernetes write at idle"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn desired_count_is_enforced_when_set_and_left_alone_when_not() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-scale").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let cluster_name = format!("{ns}-main");
    web_service(&client, &ns, &services).await;

    // kubectl scale goes through the scale subresource to spec.desiredCount.
    let scale = json!({"spec": {"replicas": 3}});
    services
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scale");
    wait_for("ECS desiredCount 3", 30, || async {
        (ecs_service(&cluster_name, "web").await.1 == 3).then_some(())
    })
    .await;

    // Set in spec: a change behind the operator's back is reverted.
    ecs_client()
        .update_service()
        .cluster(&cluster_name)
        .service("web")
        .desired_count(7)
        .send()
        .await
        .expect("scale by hand");
    wait_for("desiredCount back to 3", 30, || async {
        (ecs_service(&cluster_name, "web").await.1 == 3).then_some(())
    })
    .await;
    event(&client, &ns, "web", "DriftCorrected", "desiredCount").await;

    // Unset in spec (an autoscaler owns it): a change is left alone.
    let unset = object(
        "EcsService",
        "auto",
        json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}}),
    );
    apply(&client, &ns, &unset).await;
    ready(&services, "auto", 60).await;
    ecs_client()
        .update_service()
        .cluster(&cluster_name)
        .service("auto")
        .desired_count(4)
        .send()
        .await
        .expect("scale by hand");
    more_calls(&ns, "DescribeServices", 6).await;
    assert_eq!(
        ecs_service(&cluster_name, "auto").await.1,
        4,
        "an unset desiredCount is not fought over"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn each_redeploy_trigger_change_forces_exactly_one_deployment() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-redeploy").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let cluster_name = format!("{ns}-main");
    web_service(&client, &ns, &services).await;
    let (_, _, _, first) = ecs_service(&cluster_name, "web").await;
    let updates = calls_of(&ecs_calls(&ns), "UpdateService");

    for (i, trigger) in ["2026-11-22T10:00:00Z", "2026-11-22T11:00:00Z"].iter().enumerate() {
        apply(
            &client,
            &ns,
            &service("web", "web", json!({"redeployTrigger": trigger})),
        )
        .await;
        ready(&services, "web", 30).await;
        more_calls(&ns, "DescribeServices", 2).await;
        assert_eq!(
            calls_of(&ecs_calls(&ns), "UpdateService"),
            updates + 1 + i as u64,
            "one forced deployment per change"
        );
    }
    let (_, _, _, last) = ecs_service(&cluster_name, "web").await;
    assert_ne!(first, last, "a new deployment was started");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn deleting_a_namespace_with_a_whole_application_leaves_nothing_active() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-app").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns)).await;
    for name in ["api", "worker"] {
        apply(&client, &ns, &task_definition(&ns, name, &format!("{name}:1"))).await;
        apply(&client, &ns, &service(name, name, json!({}))).await;
    }
    apply(
        &client,
        &ns,
        &service("kept", "api", json!({"deletionPolicy": "Retain", "desiredCount": 1})),
    )
    .await;
    for name in ["api", "worker", "kept"] {
        ready(&services, name, 60).await;
    }
    let cluster_name = format!("{ns}-main");

    delete_namespace(&client, &ns).await;
    // The retained service keeps the cluster busy: its deletion waits, naming it.
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    wait_for("the cluster to wait for the retained service", 60, || async {
        let status = clusters.get("main").await.ok()?.status?;
        condition(&status.common.conditions, "Ready").filter(|(_, r, m)| r == "DeletionBlocked" && m.contains("kept"))
    })
    .await;
    ecs_client()
        .delete_service()
        .cluster(&cluster_name)
        .service("kept")
        .force(true)
        .send()
        .await
        .expect("delete kept");

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    wait_for("the namespace to be gone", 90, || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    for name in ["api", "worker", "kept"] {
        assert_eq!(ecs_service(&cluster_name, name).await.0, "INACTIVE", "{name}");
    }
    let out = ecs_client()
        .describe_clusters()
        .clusters(&cluster_name)
        .send()
        .await
        .expect("describe");
    assert_eq!(out.clusters().first().and_then(|c| c.status()), Some("INACTIVE"));
    for name in ["api", "worker"] {
        let listed = ecs_client()
            .list_task_definitions()
            .family_prefix(format!("{ns}-{name}"))
            .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
            .send()
            .await
            .expect("list");
        assert!(
            listed.task_definition_arns().is_empty(),
            "{name}: {:?}",
            listed.task_definition_arns()
        );
    }
}

#[tokio::test]
async fn retain_leaves_the_service_running() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-retain").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns)).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    apply(
        &client,
        &ns,
        &service("web", "web", json!({"deletionPolicy": "Retain"})),
    )
    .await;
    ready(&services, "web", 60).await;
    services.delete("web", &DeleteParams::default()).await.expect("delete");
    gone(&services, "web", 30).await;
    let (status, desired, _, _) = ecs_service(&format!("{ns}-main"), "web").await;
    assert_eq!(
        (status.as_str(), desired),
        ("ACTIVE", 2),
        "Retain leaves the service running and untouched"
    );
    ecs_client()
        .delete_service()
        .cluster(format!("{ns}-main"))
        .service("web")
        .force(true)
        .send()
        .await
        .expect("clean up");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn with_allow_replacement_a_launch_type_or_name_change_recreates_the_service() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-replace").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let cluster_name = format!("{ns}-main");
    apply(&client, &ns, &cluster(&ns)).await;
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    let ec2 = json!({"allowReplacement": true, "launchType": "EC2"});
    apply(&client, &ns, &service("web", "web", ec2)).await;
    ready(&services, "web", 60).await;

    let fargate = json!({"allowReplacement": true, "launchType": "FARGATE"});
    apply(&client, &ns, &service("web", "web", fargate)).await;
    ready(&services, "web", 60).await;
    let out = ecs_client()
        .describe_services()
        .cluster(&cluster_name)
        .services("web")
        .send()
        .await
        .expect("describe");
    let launch_type = out
        .services()
        .first()
        .and_then(|s| s.launch_type())
        .map(|l| l.as_str().to_string());
    assert_eq!(launch_type.as_deref(), Some("FARGATE"));
    // NB: a CreateService ECS answers "not idempotent" while the old service settles
    // creates nothing and is retried; what counts is one deletion and one new service.
    let calls = ecs_calls(&ns);
    assert_eq!(calls_of(&calls, "DeleteService"), 1, "{calls:?}");
    let created = services_created(&format!("{cluster_name}/web"));
    assert_eq!(created.get(&format!("{cluster_name}/web")), Some(&2), "{created:?}");

    let renamed = json!({"allowReplacement": true, "launchType": "FARGATE", "serviceName": "web-v2"});
    apply(&client, &ns, &service("web", "web", renamed)).await;
    let obj = ready(&services, "web", 60).await;
    assert!(
        obj.status
            .and_then(|s| s.service_arn)
            .is_some_and(|arn| arn.ends_with("/web-v2"))
    );
    assert_eq!(
        ecs_service(&cluster_name, "web").await.0,
        "INACTIVE",
        "the old service is gone, not leaked"
    );
    assert_eq!(ecs_service(&cluster_name, "web-v2").await.0, "ACTIVE");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_service_ecs_rejects_is_stalled_with_ecs_words_after_at_most_three_calls() {
    let client = admin_client().await;
    let ns = namespace(&client, "svc-rejected").await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns)).await;
    // Passes admission; ECS has no such revision.
    let rejected = object(
        "EcsService",
        "web",
        json!({"clusterRef": {"name": "main"}, "taskDefinition": format!("{ns}-nothing:3"), "desiredCount": 1}),
    );
    apply(&client, &ns, &rejected).await;
    let (reason, message) = wait_condition(&services, "web", "Stalled", "True", None, 30).await;
    assert_eq!(reason, "EcsRejected");
    assert!(message.contains("Unable to describe task definition"), "{message}");
    event(&client, &ns, "web", "EcsRejected", "Unable to describe task definition").await;

    // Several resyncs later (each reads the cluster once), not one more call for the service.
    let stalled = ecs_calls(&ns);
    more_calls(&ns, "DescribeClusters", 4).await;
    let later = ecs_calls(&ns);
    let service_calls = |calls: &std::collections::BTreeMap<String, u64>| {
        ["DescribeServices", "CreateService", "UpdateService"]
            .iter()
            .map(|op| calls_of(calls, op))
            .sum::<u64>()
    };
    assert!(
        service_calls(&stalled) <= 3,
        "calls for the rejected generation: {stalled:?}"
    );
    assert_eq!(
        service_calls(&later),
        service_calls(&stalled),
        "no retry loop: {later:?}"
    );

    // Fixing the spec is acted on at once.
    apply(&client, &ns, &task_definition(&ns, "web", "web:1")).await;
    apply(&client, &ns, &service("web", "web", json!({"desiredCount": 1}))).await;
    ready(&services, "web", 60).await;
    delete_namespace(&client, &ns).await;
}
