//! The Kubernetes API as users meet it: CRDs generated from the types and installed into a
//! real kube-apiserver, samples that apply, real ECS task definitions admitted unchanged, and
//! malformed objects rejected at admission with a message naming the field.

mod common;

use std::path::Path;

use common::{admin_client, apply, delete_namespace, namespace, parse_manifest, root, test_bed};
use ecs_operator::api::{self, EcsTaskDefinitionSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

#[test]
fn committed_crds_match_the_types() {
    let dir = root().join("crds");
    let mut expected: Vec<String> = vec![];
    for crd in api::crds() {
        let name = api::crd_file_name(&crd);
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert_eq!(
            committed,
            api::crd_yaml(&crd).expect("YAML"),
            "crds/{name} is out of date: run `make crds`"
        );
        expected.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(present, expected, "crds/ holds exactly one file per kind");
    let kustomization: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization"))
            .expect("YAML");
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    listed.sort();
    assert_eq!(listed, expected, "crds/kustomization.yaml lists every CRD");
    for name in &expected {
        let chart = std::fs::read_to_string(root().join("charts/ecs-operator/crds").join(name)).unwrap_or_default();
        let committed = std::fs::read_to_string(dir.join(name)).expect("crd");
        assert_eq!(
            chart, committed,
            "charts/ecs-operator/crds/{name} is out of date: run `make crds`"
        );
    }
}

#[tokio::test]
async fn crds_are_established_in_the_apiserver_as_generated() {
    let client = admin_client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for generated in api::crds() {
        let name = generated.metadata.name.clone().expect("name");
        let live = crds.get(&name).await.expect("CRD installed");
        let conditions = live.status.and_then(|s| s.conditions).unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conditions.iter().any(|c| c.type_ == wanted && c.status == "True"),
                "{name}: {wanted} is not True: {conditions:?}"
            );
        }
        assert_eq!(live.spec.names.categories, Some(vec!["ecs".to_string()]), "{name}");
        assert_eq!(
            live.spec.versions, generated.spec.versions,
            "{name}: the installed schema differs from crds/"
        );
    }
}

#[tokio::test]
async fn samples_pass_a_server_side_dry_run() {
    let client = admin_client().await;
    let ns = namespace(&client, "samples").await;
    let mut applied = 0;
    for entry in std::fs::read_dir(root().join("config/samples")).expect("config/samples") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        for obj in parse_manifest(&std::fs::read_to_string(&path).expect("read sample")) {
            apply(&client, &ns, &obj, true)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            applied += 1;
        }
    }
    assert_eq!(applied, ecs_operator::api::crds().len(), "one sample per kind");
    delete_namespace(&client, &ns).await;
}

fn task_definition_fixtures() -> Vec<(String, Value)> {
    let dir = root().join("tests/fixtures/task_definitions");
    let mut fixtures: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let json = serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("JSON");
            (p.file_stem().expect("stem").to_string_lossy().into_owned(), json)
        })
        .collect();
    fixtures.sort_by(|a, b| a.0.cmp(&b.0));
    fixtures
}

#[test]
fn ecs_task_definition_json_converts_to_the_spec_type_and_back_unchanged() {
    let fixtures = task_definition_fixtures();
    assert!(fixtures.len() >= 5);
    for (name, json) in fixtures {
        let spec: EcsTaskDefinitionSpec =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut back = serde_json::to_value(&spec).expect("serialize");
        for defaulted in [
            "deletionPolicy",
            "adopt",
            "managementPolicy",
            "revisionHistoryLimit",
            "retiredRevisions",
        ] {
            back.as_object_mut().expect("object").remove(defaulted);
        }
        assert_eq!(back, json, "{name}");
    }
}

#[tokio::test]
async fn real_task_definitions_are_admitted_and_read_back_field_for_field() {
    let client = admin_client().await;
    let ns = namespace(&client, "task-definitions").await;
    for (name, json) in task_definition_fixtures() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ecs.operator.dev/v1alpha1",
            "kind": "EcsTaskDefinition",
            "metadata": {"name": name},
            "spec": json,
        }))
        .expect("object");
        apply(&client, &ns, &obj, false)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stored = common::api_for(&client, &ns, &obj).get(&name).await.expect("read back");
        let mut spec = stored.data["spec"].clone();
        let fields = spec.as_object_mut().expect("spec");
        for (defaulted, value) in [
            ("deletionPolicy", json!("Delete")),
            ("adopt", json!(false)),
            ("managementPolicy", json!("Manage")),
            ("revisionHistoryLimit", json!(3)),
            ("retiredRevisions", json!("Deregister")),
        ] {
            assert_eq!(
                fields.remove(defaulted),
                Some(value),
                "{name}: {defaulted} is defaulted"
            );
        }
        assert_eq!(spec, json, "{name}: the apiserver changed or pruned a field");
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_free_form_member_is_stored_as_written() {
    let client = admin_client().await;
    let ns = namespace(&client, "free-form").await;
    let hook_details = json!({"stage": "canary", "checks": [{"url": "/health", "expect": 200}], "strict": true});
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ecs.operator.dev/v1alpha1",
        "kind": "EcsService",
        "metadata": {"name": "web"},
        "spec": {
            "taskDefinition": "web:1",
            "deploymentConfiguration": {"lifecycleHooks": [{
                "hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:check",
                "roleArn": "arn:aws:iam::123456789012:role/hooks",
                "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
                "hookDetails": hook_details,
            }]},
        },
    }))
    .expect("object");
    apply(&client, &ns, &obj, false).await.expect("admitted");
    let stored = common::api_for(&client, &ns, &obj).get("web").await.expect("read back");
    assert_eq!(
        stored.data["spec"]["deploymentConfiguration"]["lifecycleHooks"][0]["hookDetails"], hook_details,
        "the apiserver pruned a document member"
    );
    delete_namespace(&client, &ns).await;
}

/// One case of tests/fixtures/admission: `# expect: <text>` on the first line, then one
/// document (rejected on create) or two (the first is admitted, the second rejected as an
/// update of it).
struct AdmissionCase {
    name: String,
    expect: String,
    documents: Vec<DynamicObject>,
}

fn admission_cases() -> Vec<AdmissionCase> {
    let dir = root().join("tests/fixtures/admission");
    let mut cases: Vec<AdmissionCase> = std::fs::read_dir(&dir)
        .expect("admission fixtures")
        .map(|e| e.expect("entry").path())
        .map(|path: std::path::PathBuf| {
            let text = std::fs::read_to_string(&path).expect("read");
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()))
                .to_string();
            AdmissionCase {
                name: stem(&path),
                expect,
                documents: parse_manifest(&text),
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn stem(path: &Path) -> String {
    path.file_stem().expect("stem").to_string_lossy().into_owned()
}

#[tokio::test]
async fn malformed_objects_are_rejected_at_admission_naming_the_field() {
    let client = admin_client().await;
    let cases = admission_cases();
    assert!(cases.len() >= 50, "at least 50 malformed objects");
    let ns = namespace(&client, "admission").await;
    let mut failures = vec![];
    for case in &cases {
        let (setup, rejected) = case.documents.split_at(case.documents.len() - 1);
        for doc in setup {
            if let Err(e) = apply(&client, &ns, doc, false).await {
                failures.push(format!("{}: the valid first document was rejected: {e}", case.name));
            }
        }
        match apply(&client, &ns, &rejected[0], false).await {
            Ok(_) => failures.push(format!(
                "{}: admitted, expected a rejection with `{}`",
                case.name, case.expect
            )),
            Err(e) if !e.to_string().contains(&case.expect) => failures.push(format!(
                "{}: rejected with `{e}`, expected it to contain `{}`",
                case.name, case.expect
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    delete_namespace(&client, &ns).await;
}

/// Runs the testenv's kubectl against the test bed, as a user would.
fn kubectl(args: &[&str]) -> std::process::Output {
    let bed = test_bed();
    // NB: a private discovery cache, so that no earlier run's cache hides the CRDs.
    let cache = std::env::temp_dir().join(format!("ecs-operator-kubectl-cache-{}", std::process::id()));
    std::process::Command::new(root().join(".testenv/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(bed.kubeconfig())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("run kubectl")
}

#[tokio::test]
async fn kubectl_get_ecs_lists_all_kinds_and_scale_sets_desired_count() {
    let client = admin_client().await;
    let ns = namespace(&client, "kubectl").await;
    for obj in parse_manifest(
        &[
            "ecs_v1alpha1_ecscluster.yaml",
            "ecs_v1alpha1_ecstaskdefinition.yaml",
            "ecs_v1alpha1_ecsservice.yaml",
            "ecs_v1alpha1_ecstask.yaml",
            "ecs_v1alpha1_ecstaskschedule.yaml",
            "ecs_v1alpha1_ecscapacityprovider.yaml",
        ]
        .map(|f| std::fs::read_to_string(root().join("config/samples").join(f)).expect("sample"))
        .join("\n---\n"),
    ) {
        apply(&client, &ns, &obj, false).await.expect("apply sample");
    }

    let out = kubectl(&["get", "ecs", "-n", &ns, "-o", "name"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut listed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "ecscapacityprovider.ecs.operator.dev/managed",
            "ecscluster.ecs.operator.dev/demo",
            "ecsservice.ecs.operator.dev/web",
            "ecstask.ecs.operator.dev/migrate",
            "ecstaskdefinition.ecs.operator.dev/web",
            "ecstaskschedule.ecs.operator.dev/nightly-report",
        ]
    );

    let out = kubectl(&["scale", "-n", &ns, "ecsservice/web", "--replicas=5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kubectl(&["get", "-n", &ns, "ecssvc/web", "-o", "jsonpath={.spec.desiredCount}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5");

    let out = kubectl(&["explain", "ecstaskdefinition.spec.containerDefinitions.image"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("image used to start a container"),
        "{text}"
    );
    let out = kubectl(&["explain", "ecstask.spec.activeDeadlineSeconds"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("StopTask"), "{text}");
    let out = kubectl(&["explain", "ecstaskschedule.spec.roleArn"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("EventBridge Scheduler assumes"),
        "{text}"
    );
    delete_namespace(&client, &ns).await;
}
