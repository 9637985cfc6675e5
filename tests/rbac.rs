//! Both ways of installing, config/default (kustomize) and charts/ecs-operator (Helm,
//! rendered by a helm built from its Go module), render and apply to a real apiserver;
//! their RBAC grants exactly what the operator uses, and is enough: the operator,
//! authenticated with the installed ServiceAccount's token rather than as admin, runs the
//! whole create/update/delete flow.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    Operator, admin_client, apply_json, delete_namespace, gone, kubectl, namespace, parse_manifest, ready, root,
    test_bed,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

/// Every (API group, resource) the operator may touch, with the verbs it needs.
fn allowed() -> BTreeMap<(&'static str, String), BTreeSet<&'static str>> {
    let mut allowed = BTreeMap::new();
    for kind in [
        "ecsclusters",
        "ecstaskdefinitions",
        "ecsservices",
        "ecstasks",
        "ecstaskschedules",
        "ecscapacityproviders",
    ] {
        allowed.insert(
            ("ecs.operator.dev", kind.to_string()),
            BTreeSet::from(["get", "list", "watch", "patch", "update"]),
        );
        allowed.insert(
            ("ecs.operator.dev", format!("{kind}/status")),
            BTreeSet::from(["get", "patch", "update"]),
        );
        allowed.insert(
            ("ecs.operator.dev", format!("{kind}/finalizers")),
            BTreeSet::from(["update"]),
        );
    }
    // NB: ttlSecondsAfterFinished deletes a finished EcsTask.
    allowed
        .get_mut(&("ecs.operator.dev", "ecstasks".to_string()))
        .expect("ecstasks")
        .insert("delete");
    allowed.insert(
        ("ecs.operator.dev", "ecsservices/scale".into()),
        BTreeSet::from(["get", "patch", "update"]),
    );
    allowed.insert(("events.k8s.io", "events".into()), BTreeSet::from(["create", "patch"]));
    allowed.insert(
        ("coordination.k8s.io", "leases".into()),
        BTreeSet::from(["get", "create", "update"]),
    );
    allowed
}

fn kustomize_rendered() -> String {
    kubectl(
        &["kustomize", root().join("config/default").to_str().expect("path")],
        None,
    )
}

/// The chart rendered by `helm template` into `namespace`, with extra `--set` values.
fn chart_rendered(namespace: &str, set: &[&str]) -> String {
    let mut args = vec!["template", "ecs", "charts/ecs-operator", "--namespace", namespace];
    for value in set {
        args.extend(["--set", value]);
    }
    let out = std::process::Command::new(root().join(".testenv/bin/helm"))
        .args(&args)
        .current_dir(root())
        .output()
        .expect("helm (built by make test)");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn the_rendered_roles_grant_nothing_beyond_what_the_operator_uses() {
    let rendered = kubectl(
        &["kustomize", root().join("config/default").to_str().expect("path")],
        None,
    );
    let allowed = allowed();
    let mut roles = 0;
    for obj in parse_manifest(&rendered) {
        let kind = obj.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        roles += 1;
        for rule in obj.data["rules"].as_array().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    let permitted = allowed
                        .iter()
                        .find(|((g, r), _)| *g == group && *r == resource)
                        .map(|(_, verbs)| verbs)
                        .unwrap_or_else(|| panic!("{kind} grants {group}/{resource}, which the operator does not use"));
                    for verb in strings(&rule["verbs"]) {
                        assert!(
                            permitted.contains(verb.as_str()),
                            "{kind} grants {verb} on {group}/{resource}"
                        );
                    }
                }
            }
            assert!(rule.get("nonResourceURLs").is_none(), "{kind} grants non-resource URLs");
        }
    }
    assert_eq!(roles, 2, "one ClusterRole and the leader election Role");
}

/// A kubeconfig for the test bed's apiserver that authenticates with `token`.
fn token_kubeconfig(token: &str, path: &std::path::Path) {
    let admin: Value = serde_json::from_str(&std::fs::read_to_string(test_bed().kubeconfig()).expect("kubeconfig"))
        .expect("kubeconfig JSON");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": admin["clusters"],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "testenv", "user": "operator"}}],
    });
    std::fs::write(path, config.to_string()).expect("write kubeconfig");
}

#[tokio::test]
async fn the_operator_runs_the_whole_flow_with_only_the_kustomize_service_accounts_rights() {
    flow_with_service_account(&kustomize_rendered(), "ecs-operator-system", "rbac-kustomize").await;
}

#[tokio::test]
async fn the_operator_runs_the_whole_flow_with_only_the_charts_service_accounts_rights() {
    let namespace = "ecs-operator-chart";
    kubectl(
        &["create", "namespace", namespace, "--dry-run=client", "-o", "yaml"],
        None,
    );
    let manifest = kubectl(
        &["create", "namespace", namespace, "--dry-run=client", "-o", "yaml"],
        None,
    );
    kubectl(&["apply", "--server-side", "-f", "-"], Some(&manifest));
    flow_with_service_account(&chart_rendered(namespace, &[]), namespace, "rbac-chart").await;
}

/// Applies a rendered installation, then runs the operator with a token of its
/// ServiceAccount (`ecs-operator` in `sa_namespace`) through create, rollout and delete.
async fn flow_with_service_account(rendered: &str, sa_namespace: &str, test: &str) {
    let client = admin_client().await;
    kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=rbac-test",
            "-f",
            "-",
        ],
        Some(rendered),
    );
    let token = kubectl(
        &["create", "token", "ecs-operator", "-n", sa_namespace, "--duration=1h"],
        None,
    );
    let ns = namespace(&client, test).await;
    let kubeconfig = std::env::temp_dir().join(format!("{ns}.kubeconfig"));
    token_kubeconfig(token.trim(), &kubeconfig);

    let election = [
        "--leader-elect",
        "--leader-election-namespace",
        sa_namespace,
        "--lease-name",
        &ns,
    ];
    let kubeconfig_path = kubeconfig.to_str().expect("path");
    let _operator = Operator::start_with_env(&ns, &ns, &election, &[("KUBECONFIG", kubeconfig_path)]);

    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let task_definitions: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let object = |kind: &str, name: &str, spec: Value| json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec});
    let td = |image: &str| {
        object(
            "EcsTaskDefinition",
            "web",
            json!({"family": format!("{ns}-web"), "containerDefinitions": [{"name": "web", "image": image, "memory": 128}]}),
        )
    };
    apply_json(
        &clusters,
        &object("EcsCluster", "main", json!({"clusterName": format!("{ns}-main")})),
    )
    .await;
    apply_json(&task_definitions, &td("web:1")).await;
    let service = object(
        "EcsService",
        "web",
        json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 1}),
    );
    apply_json(&services, &service).await;
    ready(&services, "web", 60).await;

    apply_json(&task_definitions, &td("web:2")).await;
    common::wait_for("the service on revision 2", 60, || async {
        let status = services.get("web").await.ok()?.status?;
        status
            .task_definition_arn
            .filter(|arn| arn.ends_with(&format!("{ns}-web:2")))
            .map(|_| ())
    })
    .await;
    let events = common::events_for(&client, &ns, "web").await;
    assert!(
        !events.is_empty(),
        "Events were published with the operator's own rights"
    );

    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    gone(&services, "web", 60).await;
    task_definitions
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete task definition");
    clusters
        .delete("main", &DeleteParams::default())
        .await
        .expect("delete cluster");
    gone(&task_definitions, "web", 60).await;
    gone(&clusters, "main", 60).await;
    let _ = std::fs::remove_file(&kubeconfig);
    delete_namespace(&client, &ns).await;
}

#[test]
fn the_chart_runs_locked_down_and_validates_its_values() {
    let rendered = chart_rendered("ecs-operator-chart", &[]);
    let objects = parse_manifest(&rendered);
    let deployment = objects
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "Deployment"))
        .expect("a Deployment");
    let pod = &deployment.data["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        json!("RuntimeDefault")
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], json!(true));
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], json!(false));
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], json!("/healthz"));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], json!("/readyz"));
    assert!(container["resources"]["requests"].is_object() && container["resources"]["limits"].is_object());
    let kinds = |text: &str| -> Vec<String> {
        parse_manifest(text)
            .iter()
            .filter_map(|o| o.types.as_ref().map(|t| t.kind.clone()))
            .collect()
    };
    assert!(
        !kinds(&rendered)
            .iter()
            .any(|k| k == "ServiceMonitor" || k == "PodDisruptionBudget"),
        "both optional"
    );
    let optional = chart_rendered(
        "ecs-operator-chart",
        &[
            "metrics.serviceMonitor.enabled=true",
            "podDisruptionBudget.enabled=true",
        ],
    );
    let optional_kinds = kinds(&optional);
    assert!(
        optional_kinds.iter().any(|k| k == "ServiceMonitor"),
        "{optional_kinds:?}"
    );
    assert!(
        optional_kinds.iter().any(|k| k == "PodDisruptionBudget"),
        "{optional_kinds:?}"
    );
    let irsa = chart_rendered(
        "ecs-operator-chart",
        &["serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/ecs"],
    );
    assert!(
        irsa.contains("eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/ecs"),
        "{irsa}"
    );

    let bad = std::process::Command::new(root().join(".testenv/bin/helm"))
        .args(["template", "ecs", "charts/ecs-operator", "--set", "replicaCount=0"])
        .current_dir(root())
        .output()
        .expect("helm");
    assert!(!bad.status.success(), "values.schema.json rejects replicaCount 0");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("replicaCount"));
}

#[test]
fn the_chart_mounts_the_namespace_roles_its_values_map() {
    let rendered = chart_rendered(
        "ecs-operator-chart",
        &["namespaceRoles.team-a=arn:aws:iam::111111111111:role/ecs-team-a"],
    );
    let objects = parse_manifest(&rendered);
    let config_map = objects
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "ConfigMap"))
        .expect("a ConfigMap");
    let file = config_map.data["data"]["namespace-roles.yaml"]
        .as_str()
        .expect("the file");
    // The operator reads exactly what the chart renders.
    let path = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(path.path(), file).expect("write");
    let roles = ecs_operator::ecs::roles::read(path.path()).expect("a valid mapping");
    assert_eq!(roles["team-a"], "arn:aws:iam::111111111111:role/ecs-team-a");
    let deployment = objects
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "Deployment"))
        .expect("a Deployment");
    let pod = &deployment.data["spec"]["template"]["spec"];
    let args = strings(&pod["containers"][0]["args"]);
    assert!(
        args.contains(&"--namespace-roles=/etc/ecs-operator/namespace-roles.yaml".to_string()),
        "{args:?}"
    );
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"].as_str(),
        config_map.metadata.name.as_deref()
    );
    assert!(
        !chart_rendered("ecs-operator-chart", &[]).contains("namespace-roles"),
        "no mapping by default"
    );

    let bad = std::process::Command::new(root().join(".testenv/bin/helm"))
        .args([
            "template",
            "ecs",
            "charts/ecs-operator",
            "--set",
            "namespaceRoles.team-a=admin",
        ])
        .current_dir(root())
        .output()
        .expect("helm");
    assert!(
        !bad.status.success(),
        "values.schema.json rejects a role that is not an ARN"
    );
}
