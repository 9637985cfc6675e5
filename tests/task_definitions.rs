//! EcsTaskDefinition end to end: the operator process against the real apiserver and the
//! ECS endpoint, driven as users drive it (apply, edit, delete), checked in status, Events
//! and ECS itself, with ECS calls counted at the endpoint.

mod common;

use common::{
    Operator, admin_client, apply_json, calls_of, condition, delete_namespace, ecs_calls, ecs_client, ecs_writes,
    event, events_for, gone, inject_error_where, more_calls, namespace, ready, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

fn task_definition(name: &str, family: &str, image: &str, extra: Value) -> Value {
    let mut spec = json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "web",
            "image": image,
            "portMappings": [{"containerPort": 8080}],
            "healthCheck": {"command": ["CMD-SHELL", "true"]},
        }],
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsTaskDefinition", "metadata": {"name": name}, "spec": spec})
}

/// ECS's status of a revision and its tags; ("GONE", {}) once ECS deleted it.
async fn ecs_revision(family_revision: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let result = ecs_client()
        .describe_task_definition()
        .task_definition(family_revision)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await;
    let out = match result {
        Ok(out) => out,
        Err(err) if format!("{err:?}").contains("Unable to describe task definition") => {
            return ("GONE".into(), Default::default());
        }
        Err(err) => panic!("describe {family_revision}: {err:?}"),
    };
    let td = out.task_definition().expect("task definition");
    let tags = out
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()));
    (
        td.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
        tags.collect(),
    )
}

#[tokio::test]
async fn registers_once_per_change_and_nothing_at_idle_or_restart() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-lifecycle").await;
    let family = format!("{ns}-web");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let mut operator = Operator::start(&ns);

    apply_json(&api, &task_definition("web", &family, "nginx:1.27", json!({}))).await;
    let obj = ready(&api, "web", 60).await;
    let status = obj.status.clone().expect("status");
    assert_eq!(status.revision, Some(1));
    assert_eq!(status.active_revisions, vec![1]);
    let (ecs_status, tags) = ecs_revision(&format!("{family}:1")).await;
    assert_eq!(ecs_status, "ACTIVE");
    assert_eq!(
        tags.get("ecs.operator.dev/uid"),
        obj.metadata.uid.as_ref(),
        "ownership tags: {tags:?}"
    );
    assert_eq!(calls_of(&ecs_calls(&ns), "RegisterTaskDefinition"), 1);

    // An image change: exactly one new revision.
    apply_json(&api, &task_definition("web", &family, "nginx:1.28", json!({}))).await;
    let obj = ready(&api, "web", 60).await;
    assert_eq!(obj.status.as_ref().and_then(|s| s.revision), Some(2));
    assert_eq!(calls_of(&ecs_calls(&ns), "RegisterTaskDefinition"), 2);
    event(
        &client,
        &ns,
        "web",
        "RevisionRegistered",
        "containerDefinitions[web].image",
    )
    .await;

    // The same spec written with ECS's defaults spelled out is the same content.
    let explicit = task_definition(
        "web",
        &family,
        "nginx:1.28",
        json!({"containerDefinitions": [{"name": "web", "image": "nginx:1.28", "essential": true, "cpu": 0,
            "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
            "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 30, "timeout": 5, "retries": 3}}]}),
    );
    apply_json(&api, &explicit).await;
    ready(&api, "web", 60).await;

    // Idle: several resyncs pass (each lists the ACTIVE revisions) without a write anywhere.
    let before = ecs_calls(&ns);
    let version = api.get("web").await.expect("get").metadata.resource_version;
    more_calls(&ns, "ListTaskDefinitions", 3).await;
    let after = ecs_calls(&ns);
    assert_eq!(
        ecs_writes(&after),
        ecs_writes(&before),
        "no ECS write at idle: {before:?} -> {after:?}"
    );
    assert_eq!(
        api.get("web").await.expect("get").metadata.resource_version,
        version,
        "no Kubernetes write at idle"
    );

    // A restart (kill -9) changes nothing either.
    operator.restart();
    more_calls(&ns, "ListTaskDefinitions", 2).await;
    let after_restart = ecs_calls(&ns);
    assert_eq!(
        calls_of(&after_restart, "RegisterTaskDefinition"),
        2,
        "{after_restart:?}"
    );
    assert_eq!(ecs_writes(&after_restart), ecs_writes(&after));
    assert_eq!(api.get("web").await.expect("get").metadata.resource_version, version);

    // Delete: this object's revisions are deregistered and deleted.
    api.delete("web", &DeleteParams::default()).await.expect("delete");
    gone(&api, "web", 60).await;
    for revision in 1..=2 {
        let (ecs_status, _) = ecs_revision(&format!("{family}:{revision}")).await;
        assert_ne!(ecs_status, "ACTIVE", "revision {revision} is still ACTIVE");
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn old_revisions_beyond_the_history_limit_are_retired_and_others_left_alone() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-history").await;
    let family = format!("{ns}-app");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);

    // Someone else's revision in the same family, registered before the object exists.
    let foreign = ecs_client()
        .register_task_definition()
        .family(&family)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("other")
                .image("busybox")
                .memory(64)
                .build(),
        )
        .send()
        .await
        .expect("register foreign revision");
    let foreign_revision = foreign.task_definition().expect("td").revision();

    let limit = json!({"revisionHistoryLimit": 2, "adopt": true});
    for (i, image) in ["app:1", "app:2", "app:3", "app:4"].iter().enumerate() {
        apply_json(&api, &task_definition("app", &family, image, limit.clone())).await;
        let obj = ready(&api, "app", 60).await;
        assert_eq!(
            obj.status.as_ref().and_then(|s| s.revision),
            Some(foreign_revision + 1 + i as i32)
        );
    }
    let status = api.get("app").await.expect("get").status.expect("status");
    assert_eq!(
        status.active_revisions,
        vec![foreign_revision + 3, foreign_revision + 4]
    );
    for retired in [foreign_revision + 1, foreign_revision + 2] {
        let (ecs_status, _) = ecs_revision(&format!("{family}:{retired}")).await;
        assert_ne!(ecs_status, "ACTIVE", "revision {retired} should be retired");
    }
    let (foreign_status, _) = ecs_revision(&format!("{family}:{foreign_revision}")).await;
    assert_eq!(
        foreign_status, "ACTIVE",
        "a revision this object did not register is never touched"
    );
    let calls = ecs_calls(&ns);
    assert_eq!(calls_of(&calls, "RegisterTaskDefinition"), 4, "{calls:?}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn tags_change_in_place_and_drift_is_corrected() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-tags").await;
    let family = format!("{ns}-api");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);

    apply_json(
        &api,
        &task_definition(
            "api",
            &family,
            "api:1",
            json!({"tags": [{"key": "team", "value": "a"}]}),
        ),
    )
    .await;
    let obj = ready(&api, "api", 60).await;
    let arn = obj.status.and_then(|s| s.task_definition_arn).expect("arn");

    apply_json(
        &api,
        &task_definition(
            "api",
            &family,
            "api:1",
            json!({"tags": [{"key": "team", "value": "b"}]}),
        ),
    )
    .await;
    wait_for("the tag to change in place", 30, || async {
        let (_, tags) = ecs_revision(&arn).await;
        (tags.get("team").map(String::as_str) == Some("b")).then_some(())
    })
    .await;
    let calls = ecs_calls(&ns);
    assert_eq!(
        calls_of(&calls, "RegisterTaskDefinition"),
        1,
        "a tag change registers nothing: {calls:?}"
    );
    assert_eq!(calls_of(&calls, "TagResource"), 1, "{calls:?}");

    // Behind the operator's back: the tag is removed; the resync that describes this
    // revision (one in 24: within 24 s here) puts it back.
    ecs_client()
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("team")
        .send()
        .await
        .expect("untag");
    wait_for("drift to be corrected", 60, || async {
        let (_, tags) = ecs_revision(&arn).await;
        (tags.get("team").map(String::as_str) == Some("b")).then_some(())
    })
    .await;
    event(&client, &ns, "api", "DriftCorrected", "team").await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_unowned_family_stalls_until_adopted_and_retain_leaves_revisions() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-adopt").await;
    let family = format!("{ns}-legacy");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);

    ecs_client()
        .register_task_definition()
        .family(&family)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("web")
                .image("legacy:1")
                .memory(64)
                .build(),
        )
        .send()
        .await
        .expect("register");

    apply_json(
        &api,
        &task_definition("legacy", &family, "legacy:2", json!({"deletionPolicy": "Retain"})),
    )
    .await;
    let stalled = wait_condition(&api, "legacy", "Stalled", "True", Some("NotOwned"), 30).await;
    assert!(
        stalled.1.contains("spec.adopt"),
        "the message says how to adopt: {}",
        stalled.1
    );
    assert_eq!(calls_of(&ecs_calls(&ns), "RegisterTaskDefinition"), 0);

    apply_json(
        &api,
        &task_definition(
            "legacy",
            &family,
            "legacy:2",
            json!({"deletionPolicy": "Retain", "adopt": true}),
        ),
    )
    .await;
    let obj = ready(&api, "legacy", 60).await;
    let revision = obj.status.and_then(|s| s.revision).expect("revision");
    assert_eq!(revision, 2);

    api.delete("legacy", &DeleteParams::default()).await.expect("delete");
    gone(&api, "legacy", 60).await;
    let (ecs_status, _) = ecs_revision(&format!("{family}:2")).await;
    assert_eq!(ecs_status, "ACTIVE", "Retain leaves the revision in ECS");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_ecs_rejection_stalls_with_ecs_message_and_is_not_retried_until_the_spec_changes() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-rejected").await;
    let family = format!("{ns}-bad");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);

    // Fargate needs task-level memory; ECS (and moto) reject the registration.
    let mut bad = task_definition("bad", &family, "app:1", json!({}));
    bad["spec"].as_object_mut().expect("spec").remove("memory");
    apply_json(&api, &bad).await;
    let (reason, message) = wait_condition(&api, "bad", "Stalled", "True", None, 30).await;
    assert_eq!(reason, "EcsRejected");
    assert!(message.contains("RegisterTaskDefinition"), "{message}");

    // Touch the object without changing the spec, several times: no new attempt.
    for i in 0..5 {
        let patch = json!({"metadata": {"annotations": {"touched": i.to_string()}}});
        api.patch("bad", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }
    // Fixing the spec is acted on at once.
    let mut fixed = bad.clone();
    fixed["spec"]["memory"] = json!("512");
    apply_json(&api, &fixed).await;
    ready(&api, "bad", 60).await;
    let calls = ecs_calls(&ns);
    assert_eq!(
        calls_of(&calls, "RegisterTaskDefinition"),
        2,
        "one rejected attempt, one success: {calls:?}"
    );
    let events = events_for(&client, &ns, "bad").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "EcsRejected" && m.contains("RegisterTaskDefinition")),
        "{events:?}"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_revision_deregistered_behind_the_operators_back_is_registered_again_at_resync() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-drift").await;
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let family = format!("{ns}-web");
    apply_json(&api, &task_definition("web", &family, "nginx:1.28", json!({}))).await;
    let first = ready(&api, "web", 60).await;
    let first = first.status.and_then(|s| s.task_definition_arn).expect("revision");

    ecs_client()
        .deregister_task_definition()
        .task_definition(&first)
        .send()
        .await
        .expect("deregister");
    // Nothing in Kubernetes changed: only the resync's listing can notice.
    let second = wait_for("a new revision", 30, || async {
        let arn = api.get("web").await.ok()?.status?.task_definition_arn?;
        (arn != first).then_some(arn)
    })
    .await;
    assert!(second.ends_with(&format!("{family}:2")), "{second}");
    event(&client, &ns, "web", "RevisionRegistered", "no longer ACTIVE").await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_revision_a_service_pins_survives_three_newer_registrations_with_history_limit_one() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-pinned").await;
    let family = format!("{ns}-web");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    // The strongest retirement: deleted for good, one revision kept.
    let limit = json!({"revisionHistoryLimit": 1, "retiredRevisions": "Delete"});
    apply_json(&api, &task_definition("web", &family, "web:1", limit.clone())).await;
    ready(&api, "web", 60).await;
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let cluster = json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsCluster",
                         "metadata": {"name": "main"}, "spec": {"clusterName": format!("{ns}-main")}});
    apply_json(&clusters, &cluster).await;
    let pinned = json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": "EcsService", "metadata": {"name": "pinned"},
                        "spec": {"clusterRef": {"name": "main"}, "taskDefinition": format!("{family}:1"),
                                 "desiredCount": 1, "launchType": "FARGATE",
                                 "networkConfiguration": {"awsvpcConfiguration": {"subnets": common::vpc(1, 0).0}}}});
    apply_json(&services, &pinned).await;
    ready(&services, "pinned", 60).await;

    for (i, image) in ["web:2", "web:3", "web:4"].iter().enumerate() {
        apply_json(&api, &task_definition("web", &family, image, limit.clone())).await;
        let obj = ready(&api, "web", 60).await;
        assert_eq!(obj.status.as_ref().and_then(|s| s.revision), Some(2 + i as i32));
    }
    // Revisions 2 and 3 go (deleted for good); revision 1 stays, for the service on it.
    let obj = wait_for("revisions 2 and 3 retired", 30, || async {
        let obj = api.get("web").await.ok()?;
        (obj.status.as_ref()?.active_revisions == [1, 4]).then_some(obj)
    })
    .await;
    assert_eq!(ecs_revision(&format!("{family}:1")).await.0, "ACTIVE");
    for retired in [2, 3] {
        assert_eq!(
            ecs_revision(&format!("{family}:{retired}")).await.0,
            "GONE",
            "revision {retired}"
        );
    }
    let (_, _, message) = condition(&obj.status.expect("status").common.conditions, "Ready").expect("Ready");
    assert!(message.contains("revision 1 is kept while service"), "{message}");
    let service = services.get("pinned").await.expect("get").status.expect("status");
    assert!(
        service
            .task_definition_arn
            .is_some_and(|a| a.ends_with(&format!("{family}:1")))
    );

    // Once no service uses it, it is retired too.
    services
        .delete("pinned", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&services, "pinned", 60).await;
    wait_for("revision 1 retired", 30, || async {
        let status = api.get("web").await.ok()?.status?;
        (status.active_revisions == [4]).then_some(())
    })
    .await;
    assert_eq!(ecs_revision(&format!("{family}:1")).await.0, "GONE");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn by_default_retired_revisions_are_deregistered_not_deleted() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-deregister").await;
    let family = format!("{ns}-web");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    let limit = json!({"revisionHistoryLimit": 1});
    for image in ["web:1", "web:2"] {
        apply_json(&api, &task_definition("web", &family, image, limit.clone())).await;
        ready(&api, "web", 60).await;
    }
    wait_for("revision 1 retired", 30, || async {
        (api.get("web").await.ok()?.status?.active_revisions == [2]).then_some(())
    })
    .await;
    assert_eq!(ecs_revision(&format!("{family}:1")).await.0, "INACTIVE");
    assert_eq!(calls_of(&ecs_calls(&ns), "DeleteTaskDefinitions"), 0);
    event(&client, &ns, "web", "RevisionsRetired", "deregistered revisions [1]").await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_registration_racing_another_is_retried_and_registers_once() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-race").await;
    let family = format!("{ns}-web");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let _operator = Operator::start(&ns);
    inject_error_where(
        "RegisterTaskDefinition",
        ("family", &family),
        "ClientException",
        "Too many concurrent attempts to create a new revision of the specified family.",
        2,
    );
    apply_json(&api, &task_definition("web", &family, "web:1", json!({}))).await;
    let obj = ready(&api, "web", 60).await;
    assert_eq!(obj.status.and_then(|s| s.revision), Some(1), "one revision");
    assert_eq!(
        calls_of(&ecs_calls(&ns), "RegisterTaskDefinition"),
        3,
        "two refused, one registered"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_revision_ecs_refuses_to_retire_stays_says_why_and_is_retried() {
    let client = admin_client().await;
    let ns = namespace(&client, "td-refused").await;
    let family = format!("{ns}-web");
    let api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    // NB: resyncs 3 s apart, so that the pass that was refused can be read before the next.
    let _operator = Operator::start_with(&ns, &["--resync-seconds", "3"]);
    let limit = json!({"revisionHistoryLimit": 1});
    apply_json(&api, &task_definition("web", &family, "web:1", limit.clone())).await;
    ready(&api, "web", 60).await;
    inject_error_where(
        "DeregisterTaskDefinition",
        ("taskDefinition", &format!("{family}:1")),
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/ecs-operator/x is not authorized to perform: ecs:DeregisterTaskDefinition",
        1,
    );
    apply_json(&api, &task_definition("web", &family, "web:2", limit)).await;
    let obj = ready(&api, "web", 60).await;
    let status = obj.status.expect("status");
    assert_eq!(status.revision, Some(2), "the new revision reaches status regardless");
    assert_eq!(
        status.active_revisions,
        vec![1, 2],
        "the refused revision stays in status"
    );
    let (_, _, message) = condition(&status.common.conditions, "Ready").expect("Ready");
    assert!(message.contains("AccessDeniedException"), "{message}");
    event(&client, &ns, "web", "RetireFailed", "AccessDeniedException").await;
    // The next pass (a resync) tries again and succeeds.
    wait_for("revision 1 retired on a later pass", 30, || async {
        (api.get("web").await.ok()?.status?.active_revisions == [2]).then_some(())
    })
    .await;
    assert_eq!(ecs_revision(&format!("{family}:1")).await.0, "INACTIVE");
    assert_eq!(
        calls_of(&ecs_calls(&ns), "DeregisterTaskDefinition"),
        2,
        "refused once, then done"
    );
    delete_namespace(&client, &ns).await;
}

/// The endpoint lists task definitions as ECS does, in pages of at most 100 ordered by
/// family and revision, so the operator's resync listing is paged and counted as on ECS.
#[tokio::test]
async fn the_endpoint_lists_task_definitions_in_pages_of_100() {
    let ecs = ecs_client();
    let family = format!("paged-{}", std::process::id());
    for i in 0..130 {
        ecs.register_task_definition()
            .family(&family)
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("app")
                    .image(format!("app:{i}"))
                    .memory(64)
                    .build(),
            )
            .send()
            .await
            .expect("register");
    }
    let list = |token: Option<String>, max: Option<i32>| {
        ecs.list_task_definitions()
            .family_prefix(&family)
            .set_max_results(max)
            .set_next_token(token)
            .send()
    };
    let revision = |arn: &String| arn.rsplit(':').next().and_then(|r| r.parse::<i32>().ok());
    let first = list(None, None).await.expect("first page");
    let revisions: Vec<_> = first.task_definition_arns().iter().filter_map(revision).collect();
    assert_eq!(revisions, (1..=100).collect::<Vec<_>>(), "100 by default, oldest first");
    let second = list(first.next_token.clone(), None).await.expect("second page");
    let revisions: Vec<_> = second.task_definition_arns().iter().filter_map(revision).collect();
    assert_eq!(revisions, (101..=130).collect::<Vec<_>>());
    assert!(second.next_token.is_none(), "the last page has no nextToken");
    let refused = list(None, Some(101)).await.expect_err("maxResults over 100");
    assert!(format!("{:?}", refused).contains("maxResults"), "{refused:?}");
}
