//! EcsCluster end to end: the operator process against the real apiserver and the ECS
//! endpoint, driven as users drive it, checked in status, Events and ECS itself.

mod common;

use std::collections::BTreeMap;

use common::{
    Operator, admin_client, apply_json, asg_capacity_provider, calls_of, declare_broken, delete_namespace, ecs_calls,
    ecs_client, ecs_writes, event, gone, more_calls, namespace, ready, set_timing, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

fn cluster(name: &str, cluster_name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "clusterName": cluster_name,
        "settings": [{"name": "containerInsights", "value": "enabled"}],
        "tags": [{"key": "env", "value": "test"}],
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster", "metadata": {"name": name}, "spec": spec})
}

/// What ECS reports of a cluster: status, settings by name, capacity providers, tags.
struct EcsView {
    status: String,
    settings: BTreeMap<String, String>,
    capacity_providers: Vec<String>,
    tags: BTreeMap<String, String>,
}

async fn ecs_cluster(name: &str) -> EcsView {
    let out = ecs_client()
        .describe_clusters()
        .clusters(name)
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .include(aws_sdk_ecs::types::ClusterField::Settings)
        .send()
        .await
        .expect("describe clusters");
    let c = out.clusters().first().expect("cluster");
    EcsView {
        status: c.status().unwrap_or_default().into(),
        settings: c
            .settings()
            .iter()
            .map(|s| {
                (
                    s.name().map(|n| n.as_str().to_string()).unwrap_or_default(),
                    s.value().unwrap_or_default().into(),
                )
            })
            .collect(),
        capacity_providers: c.capacity_providers().to_vec(),
        tags: c
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()))
            .collect(),
    }
}

#[tokio::test]
async fn updates_in_place_with_one_call_each_and_nothing_at_idle() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-lifecycle").await;
    let name = format!("{ns}-main");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);

    apply_json(&api, &cluster("main", &name, json!({}))).await;
    let obj = ready(&api, "main", 60).await;
    let status = obj.status.clone().expect("status");
    assert_eq!(status.status.as_deref(), Some("ACTIVE"));
    assert_eq!(status.active_services_count, Some(0));
    let view = ecs_cluster(&name).await;
    assert_eq!(
        view.settings.get("containerInsights").map(String::as_str),
        Some("enabled")
    );
    assert_eq!(view.tags.get("env").map(String::as_str), Some("test"));
    assert_eq!(view.tags.get("ecs.operator.dev/uid"), obj.metadata.uid.as_ref());

    apply_json(
        &api,
        &cluster(
            "main",
            &name,
            json!({"settings": [{"name": "containerInsights", "value": "disabled"}]}),
        ),
    )
    .await;
    ready(&api, "main", 60).await;
    assert_eq!(ecs_cluster(&name).await.settings["containerInsights"], "disabled");
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateCluster"), 1);

    let providers = json!({
        "settings": [{"name": "containerInsights", "value": "disabled"}],
        "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
        "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
    });
    apply_json(&api, &cluster("main", &name, providers)).await;
    ready(&api, "main", 60).await;
    let view = ecs_cluster(&name).await;
    assert_eq!(view.capacity_providers, vec!["FARGATE", "FARGATE_SPOT"]);
    let calls = ecs_calls(&ns);
    assert_eq!(calls_of(&calls, "PutClusterCapacityProviders"), 1, "{calls:?}");
    assert_eq!(
        calls_of(&calls, "UpdateCluster"),
        1,
        "capacity providers do not go through UpdateCluster"
    );
    event(&client, &ns, "main", "Updated", "capacityProviders").await;

    let before = ecs_calls(&ns);
    let version = api.get("main").await.expect("get").metadata.resource_version;
    more_calls(&ns, "DescribeClusters", 3).await;
    let after = ecs_calls(&ns);
    assert_eq!(
        ecs_writes(&after),
        ecs_writes(&before),
        "no ECS write at idle: {before:?} -> {after:?}"
    );
    assert_eq!(
        api.get("main").await.expect("get").metadata.resource_version,
        version,
        "no Kubernetes write at idle"
    );

    api.delete("main", &DeleteParams::default()).await.expect("delete");
    gone(&api, "main", 60).await;
    assert_eq!(ecs_cluster(&name).await.status, "INACTIVE");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn drift_made_behind_the_operators_back_is_corrected_with_an_event() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-drift").await;
    let name = format!("{ns}-main");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    apply_json(&api, &cluster("main", &name, json!({}))).await;
    ready(&api, "main", 60).await;

    ecs_client()
        .update_cluster()
        .cluster(&name)
        .settings(
            aws_sdk_ecs::types::ClusterSetting::builder()
                .name(aws_sdk_ecs::types::ClusterSettingName::ContainerInsights)
                .value("disabled")
                .build(),
        )
        .send()
        .await
        .expect("update behind the operator's back");
    wait_for("containerInsights back to enabled", 30, || async {
        (ecs_cluster(&name)
            .await
            .settings
            .get("containerInsights")
            .map(String::as_str)
            == Some("enabled"))
        .then_some(())
    })
    .await;
    event(&client, &ns, "main", "DriftCorrected", "settings").await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_unowned_cluster_stalls_until_adopted_and_retain_keeps_it() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-adopt").await;
    let name = format!("{ns}-legacy");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    ecs_client()
        .create_cluster()
        .cluster_name(&name)
        .send()
        .await
        .expect("create by hand");

    apply_json(&api, &cluster("legacy", &name, json!({"deletionPolicy": "Retain"}))).await;
    let (_, message) = wait_condition(&api, "legacy", "Stalled", "True", Some("NotOwned"), 30).await;
    assert!(message.contains("spec.adopt"), "{message}");
    let calls = ecs_calls(&ns);
    assert_eq!(
        ecs_writes(&calls),
        0,
        "nothing is changed on an unowned cluster: {calls:?}"
    );

    apply_json(
        &api,
        &cluster("legacy", &name, json!({"deletionPolicy": "Retain", "adopt": true})),
    )
    .await;
    let obj = ready(&api, "legacy", 60).await;
    let view = ecs_cluster(&name).await;
    assert_eq!(
        view.tags.get("ecs.operator.dev/uid"),
        obj.metadata.uid.as_ref(),
        "adopted means owned"
    );
    assert_eq!(
        view.settings.get("containerInsights").map(String::as_str),
        Some("enabled")
    );

    api.delete("legacy", &DeleteParams::default()).await.expect("delete");
    gone(&api, "legacy", 60).await;
    assert_eq!(ecs_cluster(&name).await.status, "ACTIVE", "Retain leaves the cluster");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn deletion_waits_while_a_service_runs_in_the_cluster() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-blocked").await;
    let name = format!("{ns}-main");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    apply_json(&api, &cluster("main", &name, json!({}))).await;
    ready(&api, "main", 60).await;

    let ecs = ecs_client();
    ecs.register_task_definition()
        .family(format!("{ns}-svc"))
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("c")
                .image("i")
                .memory(64)
                .build(),
        )
        .send()
        .await
        .expect("register");
    ecs.create_service()
        .cluster(&name)
        .service_name("blocker")
        .task_definition(format!("{ns}-svc"))
        .desired_count(0)
        .send()
        .await
        .expect("create service");

    api.delete("main", &DeleteParams::default()).await.expect("delete");
    let (_, message) = wait_condition(&api, "main", "Ready", "False", Some("DeletionBlocked"), 30).await;
    assert!(message.contains("blocker"), "the blocking service is named: {message}");
    assert_eq!(ecs_cluster(&name).await.status, "ACTIVE");

    ecs.delete_service()
        .cluster(&name)
        .service("blocker")
        .send()
        .await
        .expect("delete service");
    gone(&api, "main", 60).await;
    assert_eq!(ecs_cluster(&name).await.status, "INACTIVE");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn deleting_the_namespace_leaves_nothing_active_in_ecs() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-app").await;
    let name = format!("{ns}-app");
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);

    apply_json(&clusters, &cluster("app", &name, json!({}))).await;
    for td in ["api", "worker"] {
        let obj = json!({
            "apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsTaskDefinition", "metadata": {"name": td},
            "spec": {"family": format!("{ns}-{td}"), "containerDefinitions": [{"name": td, "image": "app:1", "memory": 64}]},
        });
        task_definitions
            .patch(td, &PatchParams::apply("tests").force(), &Patch::Apply(&obj))
            .await
            .expect("apply");
    }
    ready(&clusters, "app", 60).await;
    wait_for("both task definitions registered", 60, || async {
        let list = task_definitions.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|t| t.status.as_ref().and_then(|s| s.revision).is_some())
            .then_some(())
    })
    .await;

    delete_namespace(&client, &ns).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    wait_for("the namespace to be gone", 90, || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(ecs_cluster(&name).await.status, "INACTIVE");
    for td in ["api", "worker"] {
        let listed = ecs_client()
            .list_task_definitions()
            .family_prefix(format!("{ns}-{td}"))
            .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
            .send()
            .await
            .expect("list");
        assert!(
            listed.task_definition_arns().is_empty(),
            "{td}: {:?}",
            listed.task_definition_arns()
        );
    }
}

/// The Cloud Map namespace ARN ECS reports as the cluster's Service Connect default.
async fn ecs_namespace(name: &str) -> Option<String> {
    let out = ecs_client()
        .describe_clusters()
        .clusters(name)
        .send()
        .await
        .expect("describe clusters");
    let cluster = out.clusters().first().expect("cluster");
    cluster
        .service_connect_defaults()
        .and_then(|d| d.namespace())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_service_connect_namespace_given_by_name_is_renamed_and_removed() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-namespace").await;
    let name = format!("{ns}-main");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let by_name = |namespace: &str| {
        cluster(
            "main",
            &name,
            json!({"serviceConnectDefaults": {"namespace": namespace}}),
        )
    };

    apply_json(&api, &by_name("shop")).await;
    let obj = ready(&api, "main", 60).await;
    let first = ecs_namespace(&name).await.expect("a namespace");
    assert!(
        first.starts_with("arn:aws:servicediscovery:"),
        "ECS reports an ARN: {first}"
    );
    let record = obj.status.expect("status").service_connect_namespace.expect("recorded");
    assert_eq!((record.name.as_str(), record.arn.as_str()), ("shop", first.as_str()));
    more_calls(&ns, "DescribeClusters", 3).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "UpdateCluster"),
        0,
        "a name and its ARN are in sync"
    );

    apply_json(&api, &by_name("shop-v2")).await;
    ready(&api, "main", 60).await;
    let renamed = ecs_namespace(&name).await.expect("a namespace");
    assert_ne!(renamed, first, "the renamed namespace is applied");
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateCluster"), 1);

    apply_json(&api, &by_name("")).await;
    ready(&api, "main", 60).await;
    assert_eq!(ecs_namespace(&name).await, None, "an empty name removes the default");
    more_calls(&ns, "DescribeClusters", 3).await;
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateCluster"), 2);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn capacity_providers_attach_over_time_and_a_failed_attachment_stalls() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-attach").await;
    let name = format!("{ns}-main");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    set_timing(&name, 3.0, 2.0, 2.0);
    let _operator = Operator::start(&ns);
    let providers = |list: Value| cluster("main", &name, json!({"capacityProviders": list}));
    apply_json(&api, &providers(json!(["FARGATE"]))).await;
    ready(&api, "main", 60).await;

    let asg = format!("{ns}-asg");
    asg_capacity_provider(&asg).await;
    apply_json(&api, &providers(json!(["FARGATE", asg]))).await;
    let message = wait_condition(
        &api,
        "main",
        "Reconciling",
        "True",
        Some("UpdatingCapacityProviders"),
        60,
    )
    .await
    .1;
    assert!(message.contains("UPDATE_IN_PROGRESS"), "{message}");
    let obj = ready(&api, "main", 60).await;
    assert_eq!(
        obj.status.expect("status").attachments_status.as_deref(),
        Some("UPDATE_COMPLETE")
    );

    let broken = format!("{ns}-broken");
    asg_capacity_provider(&broken).await;
    declare_broken(&broken);
    apply_json(&api, &providers(json!(["FARGATE", asg, broken]))).await;
    let message = wait_condition(&api, "main", "Stalled", "True", Some("CapacityProvidersFailed"), 60)
        .await
        .1;
    assert!(
        message.contains(&broken),
        "ECS's attachment details reach the user: {message}"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn removing_a_provider_a_service_uses_is_retried_slowly_with_ecs_words() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-inuse").await;
    let name = format!("{ns}-main");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let providers = |list: Value| cluster("main", &name, json!({"capacityProviders": list}));
    apply_json(&api, &providers(json!(["FARGATE", "FARGATE_SPOT"]))).await;
    ready(&api, "main", 60).await;
    apply_json(
        &tds,
        &json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsTaskDefinition", "metadata": {"name": "web"},
                "spec": {"family": format!("{ns}-web"), "containerDefinitions": [{"name": "web", "image": "web:1", "memory": 64}]}}),
    )
    .await;
    let spot = json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService", "metadata": {"name": "spot"},
                      "spec": {"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 1,
                               "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}});
    apply_json(&services, &spot).await;
    ready(&services, "spot", 60).await;

    apply_json(&api, &providers(json!(["FARGATE"]))).await;
    let message = wait_condition(&api, "main", "Reconciling", "True", Some("EcsBusy"), 60)
        .await
        .1;
    assert!(
        message.contains("ResourceInUseException") && message.contains("in use"),
        "{message}"
    );
    let first = calls_of(&ecs_calls(&ns), "PutClusterCapacityProviders");
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    let retried = calls_of(&ecs_calls(&ns), "PutClusterCapacityProviders") - first;
    assert!(
        retried <= 2,
        "retried slowly, not in a hot loop: {retried} more calls in 15 s"
    );

    services.delete("spot", &DeleteParams::default()).await.expect("delete");
    gone(&services, "spot", 60).await;
    ready(&api, "main", 120).await;
    assert_eq!(ecs_cluster(&name).await.capacity_providers, vec!["FARGATE".to_string()]);
    delete_namespace(&client, &ns).await;
}
