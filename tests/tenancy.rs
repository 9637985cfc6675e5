//! Ownership and tenancy: which AWS account a namespace acts in is the cluster
//! administrator's choice (--namespace-roles, assumed through STS), never a field a
//! namespace's users can set; unmapped namespaces act as the operator itself. The ECS
//! endpoint keeps one isolated account per role, as AWS does.

mod common;

use common::{
    Operator, admin_client, apply_json, delete_namespace, ecs_calls, ecs_client, ecs_writes, gone, namespace, ready,
    wait_for,
};
use ecs_operator::api::EcsCluster;
use kube::api::{Api, DeleteParams};
use serde_json::json;

const OPERATOR_ACCOUNT: &str = "123456789012";

fn cluster(name: &str, cluster_name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"clusterName": cluster_name});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster", "metadata": {"name": name}, "spec": spec})
}

/// The cluster's tags as the ECS endpoint holds them in `account` (None when it has none).
async fn tags_in_account(account: &str, cluster_name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let account = account.to_string();
    let out = ecs_client()
        .describe_clusters()
        .clusters(cluster_name)
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .customize()
        .mutate_request(move |request| {
            request.headers_mut().insert("x-moto-account-id", account.clone());
        })
        .send()
        .await
        .expect("describe clusters");
    let cluster = out.clusters().iter().find(|c| c.status() == Some("ACTIVE"))?;
    Some(
        cluster
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn each_namespace_acts_in_the_account_its_administrator_mapped_it_to() {
    let client = admin_client().await;
    let team_a = namespace(&client, "tenant-a").await;
    let team_b = namespace(&client, "tenant-b").await;
    let unmapped = namespace(&client, "tenant-c").await;
    let roles = tempfile::NamedTempFile::new().expect("roles file");
    std::fs::write(
        roles.path(),
        format!(
            "{team_a}: arn:aws:iam::111111111111:role/ecs-team-a\n{team_b}: arn:aws:iam::222222222222:role/ecs-team-b\n"
        ),
    )
    .expect("write roles");
    let roles_path = roles.path().display().to_string();
    let _operator = Operator::start_with(
        &team_a,
        &[
            "--namespace",
            &team_b,
            "--namespace",
            &unmapped,
            "--namespace-roles",
            &roles_path,
        ],
    );

    // The same cluster name in all three namespaces: three accounts, three clusters.
    let shared = format!("{team_a}-shared");
    let mut arns = vec![];
    for ns in [&team_a, &team_b, &unmapped] {
        let api: Api<EcsCluster> = Api::namespaced(client.clone(), ns);
        apply_json(&api, &cluster("main", &shared, json!({}))).await;
        let obj = ready(&api, "main", 60).await;
        arns.push(obj.status.and_then(|s| s.cluster_arn).expect("arn"));
    }
    for (arn, account) in arns.iter().zip(["111111111111", "222222222222", OPERATOR_ACCOUNT]) {
        assert!(
            arn.contains(&format!(":{account}:cluster/")),
            "{arn} is not in {account}"
        );
    }
    for (ns, account) in [
        (&team_a, "111111111111"),
        (&team_b, "222222222222"),
        (&unmapped, OPERATOR_ACCOUNT),
    ] {
        let tags = tags_in_account(account, &shared)
            .await
            .expect("the cluster in its account");
        assert_eq!(
            tags.get("ecs.operator.dev/namespace").map(String::as_str),
            Some(&**ns),
            "{account}: {tags:?}"
        );
    }

    // The unmapped namespace cannot reach team A's account, even by adopting its cluster by
    // name: it adopts (or creates) in its own account; team A's cluster keeps its owner.
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &unmapped);
    apply_json(&api, &cluster("grab", &shared, json!({"adopt": true}))).await;
    ready(&api, "grab", 60).await;
    let a_tags = tags_in_account("111111111111", &shared)
        .await
        .expect("team A's cluster");
    assert_eq!(
        a_tags.get("ecs.operator.dev/namespace").map(String::as_str),
        Some(&*team_a),
        "{a_tags:?}"
    );

    for ns in [&team_a, &team_b, &unmapped] {
        delete_namespace(&client, ns).await;
    }
}

#[tokio::test]
async fn an_unowned_cluster_is_neither_changed_nor_deleted() {
    let client = admin_client().await;
    let ns = namespace(&client, "cl-unowned").await;
    let name = format!("{ns}-theirs");
    let api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    ecs_client()
        .create_cluster()
        .cluster_name(&name)
        .tags(aws_sdk_ecs::types::Tag::builder().key("team").value("platform").build())
        .send()
        .await
        .expect("create by hand");

    // Default deletionPolicy (Delete), no adopt: Stalled, and nothing written.
    apply_json(
        &api,
        &cluster(
            "theirs",
            &name,
            json!({"settings": [{"name": "containerInsights", "value": "enabled"}]}),
        ),
    )
    .await;
    common::wait_condition(&api, "theirs", "Stalled", "True", Some("NotOwned"), 30).await;
    api.delete("theirs", &DeleteParams::default()).await.expect("delete");
    gone(&api, "theirs", 60).await;
    let calls = ecs_calls(&ns);
    assert_eq!(ecs_writes(&calls), 0, "nothing changed or deleted: {calls:?}");
    let tags = tags_in_account(OPERATOR_ACCOUNT, &name).await.expect("still ACTIVE");
    assert_eq!(tags.get("team").map(String::as_str), Some("platform"));
    assert!(!tags.keys().any(|k| k.starts_with("ecs.operator.dev/")), "{tags:?}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn no_credential_reaches_logs_events_or_status_on_any_error_path() {
    let client = admin_client().await;
    let ns = namespace(&client, "no-secrets").await;
    let unique = format!("{:08x}", fastrand::u32(..));
    let access_key = format!("AKIATESTONLY{}", unique.to_uppercase());
    let secret = format!("wJalrXUtnFEMI/K7MDENG/bPxRfiCY{unique}");
    let token = format!("IQoJb3JpZ2luX2VjEXAMPLETOKEN{unique}");
    let credentials = [
        ("AWS_ACCESS_KEY_ID", access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ("AWS_SESSION_TOKEN", token.as_str()),
    ];
    // Debug logging, and an ECS endpoint that is not there for a second operator.
    let working = Operator::start_with_env(&ns, &ns, &["--log-level", "debug"], &credentials);
    let mut unreachable = credentials.to_vec();
    unreachable.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
    let other = namespace(&client, "no-secrets-down").await;
    let broken = Operator::start_with_env(&other, &other, &["--log-level", "debug"], &unreachable);

    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let services: Api<ecs_operator::api::EcsService> = Api::namespaced(client.clone(), &ns);
    // ECS rejects: a service of a task definition that does not exist.
    apply_json(&clusters, &cluster("main", &format!("{ns}-main"), json!({}))).await;
    ready(&clusters, "main", 60).await;
    let service = json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService", "metadata": {"name": "web"},
                         "spec": {"clusterRef": {"name": "main"}, "taskDefinition": "missing-family:7", "desiredCount": 1}});
    apply_json(&services, &service).await;
    common::wait_condition(&services, "web", "Stalled", "True", None, 60).await;
    // ECS unreachable: retried with backoff, reported in conditions and Events.
    let down: Api<EcsCluster> = Api::namespaced(client.clone(), &other);
    apply_json(&down, &cluster("main", &format!("{other}-main"), json!({}))).await;
    wait_for("the unreachable endpoint reported", 90, || async {
        let status = down.get("main").await.ok()?.status?;
        common::condition(&status.common.conditions, "Ready").filter(|(s, r, _)| s == "False" && r == "EcsUnavailable")
    })
    .await;

    let mut seen = working.log_text() + &broken.log_text();
    for namespace in [&ns, &other] {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
        let list = events.list(&Default::default()).await.expect("events");
        seen.push_str(&serde_json::to_string(&list.items).expect("json"));
    }
    seen.push_str(
        &serde_json::to_string(&clusters.list(&Default::default()).await.expect("list").items).expect("json"),
    );
    seen.push_str(
        &serde_json::to_string(&services.list(&Default::default()).await.expect("list").items).expect("json"),
    );
    seen.push_str(&serde_json::to_string(&down.list(&Default::default()).await.expect("list").items).expect("json"));
    assert!(
        seen.contains("missing-family"),
        "the evidence holds the errors: {}",
        seen.len()
    );
    for (name, value) in credentials {
        assert!(!seen.contains(value), "{name} leaked");
    }
    delete_namespace(&client, &ns).await;
    delete_namespace(&client, &other).await;
}
