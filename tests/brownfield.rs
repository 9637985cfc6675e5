//! Existing ECS brought under Git: `ecs-operator export` writes manifests that, applied,
//! adopt everything with no ECS write but the ownership tags and no new revision;
//! `ecs-operator diff` makes no write itself and predicts exactly the writes the operator
//! then makes; an observe-only object reports drift, never writes, and never deletes.

mod common;

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, ClusterSetting, ClusterSettingName, Compatibility, ContainerDefinition, KeyValuePair,
    LaunchType, NetworkConfiguration, NetworkMode, PlacementStrategy, PlacementStrategyType, PortMapping, Tag,
};
use common::{
    Operator, admin_client, calls_of, cli, condition, ecs_calls, ecs_client, ecs_requests, ecs_writes, event, kubectl,
    more_calls, namespace, parse_manifest, ready, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

/// What another tool made in ECS before the operator came: two clusters, two task
/// definition families (web at revisions 1 and 2), and three services, one of them on an
/// older revision, two of them named `web`.
struct Brownfield {
    shop: String,
    ops: String,
    web: String,
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

async fn brownfield(ns: &str) -> Brownfield {
    let ecs = ecs_client();
    let (subnets, groups) = common::vpc(2, 1);
    let (shop, ops, web, worker) = (
        format!("{ns}-shop"),
        format!("{ns}-ops"),
        format!("{ns}-web"),
        format!("{ns}-worker"),
    );
    let insights = ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value("enabled")
        .build();
    ecs.create_cluster()
        .cluster_name(&shop)
        .settings(insights)
        .tags(tag("team", "shop"))
        .send()
        .await
        .expect("create shop");
    ecs.create_cluster()
        .cluster_name(&ops)
        .send()
        .await
        .expect("create ops");
    for image in ["web:1", "web:2"] {
        let container = ContainerDefinition::builder()
            .name("web")
            .image(image)
            .port_mappings(PortMapping::builder().container_port(80).build())
            .environment(KeyValuePair::builder().name("MODE").value("shop").build())
            .build();
        ecs.register_task_definition()
            .family(&web)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .container_definitions(container)
            .tags(tag("team", "shop"))
            .send()
            .await
            .expect("register web");
    }
    let container = ContainerDefinition::builder()
        .name("worker")
        .image("worker:1")
        .memory(128)
        .build();
    ecs.register_task_definition()
        .family(&worker)
        .container_definitions(container)
        .send()
        .await
        .expect("register worker");
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .set_subnets(Some(subnets))
                .set_security_groups(Some(groups))
                .build()
                .expect("awsvpc"),
        )
        .build();
    for (cluster, revision, count) in [(&shop, 2, 2), (&ops, 1, 1)] {
        ecs.create_service()
            .cluster(cluster)
            .service_name("web")
            .task_definition(format!("{web}:{revision}"))
            .desired_count(count)
            .launch_type(LaunchType::Fargate)
            .network_configuration(network.clone())
            .tags(tag("team", "shop"))
            .send()
            .await
            .expect("create web");
    }
    let spread = PlacementStrategy::builder()
        .r#type(PlacementStrategyType::Spread)
        .field("attribute:ecs.availability-zone")
        .build();
    ecs.create_service()
        .cluster(&shop)
        .service_name("worker")
        .task_definition(format!("{worker}:1"))
        .desired_count(1)
        .launch_type(LaunchType::Ec2)
        .placement_strategy(spread)
        .send()
        .await
        .expect("create worker");
    Brownfield { shop, ops, web }
}

/// `ecs-operator export` of both clusters into `ns` (extra flags in `more`).
fn export(ns: &str, bf: &Brownfield, more: &[&str]) -> String {
    let mut args = vec!["export", "--cluster", &bf.shop, "--cluster", &bf.ops, "--namespace", ns];
    args.extend(more);
    let (code, out, err) = cli(&args, &format!("{ns}-export"), None);
    assert_eq!(code, 0, "{err}");
    out
}

/// `ecs-operator diff -f -` of `manifests`: exit code and output.
fn diff(ns: &str, manifests: &str, format: &str) -> (i32, String) {
    let (code, out, err) = cli(
        &["diff", "-f", "-", "-o", format],
        &format!("{ns}-diff"),
        Some(manifests),
    );
    assert!(code == 0 || code == 1, "diff failed ({code}): {err}");
    (code, out)
}

/// The exported object of `kind` named `name`.
fn find(objects: &[Value], kind: &str, name: &str) -> Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objects:?}"))
        .clone()
}

fn as_json(text: &str) -> Vec<Value> {
    parse_manifest(text)
        .into_iter()
        .map(|o| serde_json::to_value(o).expect("JSON"))
        .collect()
}

fn yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).expect("YAML")))
        .collect()
}

/// Applies the export and waits until every object is Ready.
async fn apply_and_wait(client: &kube::Client, ns: &str, manifests: &str) {
    kubectl(&["apply", "-f", "-"], Some(manifests));
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), ns);
    let tds: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), ns);
    for object in as_json(manifests) {
        let name = object["metadata"]["name"].as_str().expect("name");
        match object["kind"].as_str() {
            Some("EcsCluster") => drop(ready(&clusters, name, 60).await),
            Some("EcsTaskDefinition") => drop(ready(&tds, name, 60).await),
            _ => drop(ready(&services, name, 60).await),
        }
    }
}

/// The write calls in `after` that are not in `before`, by operation.
fn new_writes(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    common::ECS_WRITES
        .iter()
        .map(|op| (op.to_string(), calls_of(after, op) - calls_of(before, op)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The writes `diff -o json` predicts, by operation.
fn predicted(json_out: &str) -> BTreeMap<String, u64> {
    let parsed: Value = serde_json::from_str(json_out).expect("diff JSON");
    let mut writes = BTreeMap::new();
    for object in parsed["objects"].as_array().expect("objects") {
        assert!(object.get("stall").is_none(), "{object}");
        for write in object["writes"].as_array().expect("writes") {
            *writes
                .entry(write["operation"].as_str().expect("operation").to_string())
                .or_insert(0) += 1;
        }
    }
    writes
}

#[tokio::test]
async fn an_export_applied_adopts_everything_with_no_ecs_write_but_ownership_tags() {
    let client = admin_client().await;
    let ns = namespace(&client, "bf-export").await;
    let bf = brownfield(&ns).await;

    let exported = export(&ns, &bf, &[]);
    assert_eq!(
        export(&ns, &bf, &[]),
        exported,
        "the same account exports the same text"
    );
    let calls = ecs_calls(&format!("{ns}-export"));
    assert_eq!(ecs_writes(&calls), 0, "export only reads: {calls:?}");

    // Names a person would choose, references wired, ECS's defaults left out.
    let objects = as_json(&exported);
    assert_eq!(objects.len(), 7, "{exported}");
    let shop_web = find(&objects, "EcsService", &format!("{}-web", bf.shop));
    assert_eq!(shop_web["spec"]["clusterRef"]["name"], json!(bf.shop));
    assert_eq!(shop_web["spec"]["taskDefinitionRef"]["name"], json!(bf.web));
    assert_eq!(shop_web["spec"]["adopt"], json!(true));
    let ops_web = find(&objects, "EcsService", &format!("{}-web", bf.ops));
    assert_eq!(
        ops_web["spec"]["taskDefinition"],
        json!(format!("{}:1", bf.web)),
        "pinned to what it runs"
    );
    assert!(
        exported.contains("pinned, so that applying changes nothing"),
        "{exported}"
    );
    find(&objects, "EcsService", "worker");
    let web = find(&objects, "EcsTaskDefinition", &bf.web);
    let container = &web["spec"]["containerDefinitions"][0];
    assert_eq!(container["image"], "web:2", "the family's latest revision");
    for default in ["essential", "cpu", "mountPoints", "volumesFrom"] {
        assert!(
            container.get(default).is_none(),
            "{default} is ECS's default: {container}"
        );
    }
    assert_eq!(container["portMappings"], json!([{"containerPort": 80}]), "{container}");
    assert_eq!(web["spec"]["tags"], json!([{"key": "team", "value": "shop"}]));

    // Applied: everything Ready, nothing written but the ownership tags of the clusters and
    // services (adopted task definition revisions are never tagged as the operator's).
    let _operator = Operator::start(&ns);
    apply_and_wait(&client, &ns, &exported).await;
    more_calls(&ns, "DescribeServices", 2).await;
    let calls = ecs_calls(&ns);
    let writes = new_writes(&BTreeMap::new(), &calls);
    assert_eq!(writes, BTreeMap::from([("TagResource".to_string(), 5)]), "{calls:?}");

    // One file per object with --out.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("path");
    let (code, _, err) = cli(
        &["export", "--cluster", &bf.shop, "--cluster", &bf.ops, "--out", out],
        &format!("{ns}-export"),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 7, "{files:?}");
    assert!(files.contains(&"ecsservice-worker.yaml".to_string()), "{files:?}");
}

#[tokio::test]
async fn diff_writes_nothing_and_predicts_exactly_what_the_operator_then_does() {
    let client = admin_client().await;
    let ns = namespace(&client, "bf-diff").await;
    let bf = brownfield(&ns).await;
    let exported = export(&ns, &bf, &[]);
    let _operator = Operator::start(&ns);
    apply_and_wait(&client, &ns, &exported).await;

    // In sync: exit code 0 and nothing printed.
    let (code, out) = diff(&ns, &exported, "text");
    assert_eq!((code, out.as_str()), (0, ""));

    // A new image: a new revision, and the service that follows the family moves to it.
    let mut objects = as_json(&exported);
    for object in objects
        .iter_mut()
        .filter(|o| o["kind"] == "EcsTaskDefinition" && o["metadata"]["name"] == json!(bf.web))
    {
        object["spec"]["containerDefinitions"][0]["image"] = json!("web:3");
    }
    let image_change = yaml(&objects);
    let (code, text) = diff(&ns, &image_change, "text");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("RegisterTaskDefinition") && text.contains("containerDefinitions[web].image"),
        "{text}"
    );
    assert!(
        text.contains("UpdateService web in") && text.contains("taskDefinition:"),
        "{text}"
    );
    let (_, json_out) = diff(&ns, &image_change, "json");
    let prediction = predicted(&json_out);
    assert_eq!(
        prediction,
        BTreeMap::from([("RegisterTaskDefinition".into(), 1), ("UpdateService".into(), 1)])
    );
    let before = ecs_calls(&ns);
    kubectl(&["apply", "-f", "-"], Some(&image_change));
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    wait_for("the shop's web on revision 3", 60, || async {
        let svc = services.get(&format!("{}-web", bf.shop)).await.ok()?;
        let status = svc.status?;
        let ready = condition(&status.common.conditions, "Ready").is_some_and(|(s, _, _)| s == "True");
        (ready && status.task_definition_arn?.ends_with(":3")).then_some(())
    })
    .await;
    more_calls(&ns, "DescribeServices", 2).await;
    assert_eq!(
        new_writes(&before, &ecs_calls(&ns)),
        prediction,
        "what diff predicted is what was done"
    );

    // Spec edits of a service and a cluster: the same, field by field.
    let mut objects = as_json(&image_change);
    for object in objects.iter_mut() {
        if object["kind"] == "EcsService" && object["metadata"]["name"] == "worker" {
            object["spec"]["desiredCount"] = json!(3);
            object["spec"]["tags"] = json!([{"key": "team", "value": "ops"}]);
        }
        if object["kind"] == "EcsCluster" && object["metadata"]["name"] == json!(bf.shop) {
            object["spec"]["settings"] = json!([{"name": "containerInsights", "value": "disabled"}]);
        }
    }
    let edits = yaml(&objects);
    let (code, text) = diff(&ns, &edits, "text");
    assert_eq!(code, 1);
    assert!(text.contains("desiredCount: 1 -> 3"), "{text}");
    assert!(text.contains("UpdateCluster") && text.contains("TagResource"), "{text}");
    let prediction = predicted(&diff(&ns, &edits, "json").1);
    let before = ecs_calls(&ns);
    kubectl(&["apply", "-f", "-"], Some(&edits));
    wait_for("worker updated", 60, || async {
        let svc = services.get("worker").await.ok()?;
        let status = svc.status?;
        let ready = condition(&status.common.conditions, "Ready").is_some_and(|(s, _, _)| s == "True");
        (ready && status.common.observed_generation == svc.metadata.generation).then_some(())
    })
    .await;
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    wait_for("the shop cluster updated", 60, || async {
        let cluster = clusters.get(&bf.shop).await.ok()?;
        (cluster.status?.common.observed_generation == cluster.metadata.generation).then_some(())
    })
    .await;
    more_calls(&ns, "DescribeServices", 2).await;
    assert_eq!(
        new_writes(&before, &ecs_calls(&ns)),
        prediction,
        "what diff predicted is what was done"
    );
    let last = ecs_requests(&ns, "UpdateService").pop().expect("an UpdateService");
    assert_eq!(last["desiredCount"], 3, "{last}");

    // diff itself never wrote.
    let calls = ecs_calls(&format!("{ns}-diff"));
    assert_eq!(ecs_writes(&calls), 0, "{calls:?}");
}

#[tokio::test]
async fn an_observe_only_object_reports_drift_and_never_writes_or_deletes() {
    let client = admin_client().await;
    let ns = namespace(&client, "bf-observe").await;
    let bf = brownfield(&ns).await;
    let observed = export(&ns, &bf, &["--observe"]);
    assert!(!observed.contains("adopt: true") && observed.contains("managementPolicy: Observe"));

    // The spec asks for 4 tasks where ECS runs 2: Ready (observed), Drifted naming the
    // member, a Drifted Event.
    let mut objects = as_json(&observed);
    let shop_web = format!("{}-web", bf.shop);
    for object in objects.iter_mut().filter(|o| o["metadata"]["name"] == json!(shop_web)) {
        object["spec"]["desiredCount"] = json!(4);
    }
    let _operator = Operator::start(&ns);
    apply_and_wait(&client, &ns, &yaml(&objects)).await;
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let (reason, message) = wait_condition(&services, &shop_web, "Drifted", "True", None, 30).await;
    assert_eq!(reason, "Drifted");
    assert!(message.contains("desiredCount"), "{message}");
    let svc = services.get(&shop_web).await.expect("get");
    assert_eq!(
        svc.status.expect("status").common.drift,
        vec!["desiredCount".to_string()]
    );
    event(&client, &ns, &shop_web, "Drifted", "desiredCount").await;
    wait_condition(&services, "worker", "Drifted", "False", Some("InSync"), 30).await;

    // ECS comes to the spec by other hands: in sync again.
    ecs_client()
        .update_service()
        .cluster(&bf.shop)
        .service("web")
        .desired_count(4)
        .send()
        .await
        .expect("scale");
    wait_condition(&services, &shop_web, "Drifted", "False", Some("InSync"), 30).await;
    event(&client, &ns, &shop_web, "InSync", "").await;

    // Nothing written, not even the ownership tags; deleting the object leaves ECS alone.
    more_calls(&ns, "DescribeServices", 2).await;
    let calls = ecs_calls(&ns);
    assert_eq!(ecs_writes(&calls), 0, "{calls:?}");
    services
        .delete(&shop_web, &DeleteParams::default())
        .await
        .expect("delete");
    common::gone(&services, &shop_web, 30).await;
    let running = ecs_client()
        .describe_services()
        .cluster(&bf.shop)
        .services("web")
        .send()
        .await
        .expect("describe");
    assert_eq!(running.services()[0].status(), Some("ACTIVE"), "left in ECS");
    assert_eq!(ecs_writes(&ecs_calls(&ns)), 0);

    // Switched to Manage (with adopt): the operator takes over and scales.
    let mut managed = find(&objects, "EcsService", &shop_web);
    managed["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("managementPolicy");
    managed["spec"]["adopt"] = json!(true);
    managed["spec"]["desiredCount"] = json!(5);
    kubectl(&["apply", "-f", "-"], Some(&yaml(&[managed])));
    wait_for("ECS at 5 tasks", 60, || async {
        let out = ecs_client()
            .describe_services()
            .cluster(&bf.shop)
            .services("web")
            .send()
            .await
            .ok()?;
        (out.services()[0].desired_count() == 5).then_some(())
    })
    .await;
    ready(&services, &shop_web, 60).await;
}
