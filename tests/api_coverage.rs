//! The CRD schemas cover every input member of RegisterTaskDefinition, CreateService and
//! CreateCluster in the pinned aws-sdk-ecs, recursively, and invent none beyond the
//! Kubernetes-only fields listed below.
//!
//! Independent of the generator (which reads botocore's model): this reads the SDK's own
//! Rust source, located with `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ecs_operator::api;
use serde_json::Value;

/// Members of the ECS inputs that the Kubernetes API leaves out on purpose.
const LEFT_OUT: &[(&str, &str, &str)] = &[(
    "CreateServiceInput",
    "client_token",
    "the operator derives it from the object's UID",
)];

/// Fields that exist only in the Kubernetes API, per kind.
const KUBERNETES_ONLY: &[(&str, &[&str])] = &[
    (
        "EcsCluster",
        &[
            "region",
            "deletionPolicy",
            "adopt",
            "managementPolicy",
            "capacityProviderRefs",
        ],
    ),
    (
        "EcsCapacityProvider",
        &["region", "deletionPolicy", "adopt", "managementPolicy", "clusterRef"],
    ),
    (
        "EcsTaskDefinition",
        &[
            "region",
            "deletionPolicy",
            "adopt",
            "managementPolicy",
            "revisionHistoryLimit",
            "retiredRevisions",
        ],
    ),
    (
        "EcsService",
        &[
            "region",
            "deletionPolicy",
            "adopt",
            "managementPolicy",
            "clusterRef",
            "taskDefinitionRef",
            "allowReplacement",
            "redeployTrigger",
        ],
    ),
];

fn sdk_dir() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let ecs = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "aws-sdk-ecs")
        .expect("aws-sdk-ecs in the dependency graph");
    Path::new(ecs["manifest_path"].as_str().expect("manifest path"))
        .parent()
        .expect("crate dir")
        .to_path_buf()
}

/// `pub struct Name { pub field: Type, ... }` of every SDK model struct, by name.
fn sdk_structs(dir: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut files = vec![];
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).expect("read SDK source") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut structs = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(name) = line.strip_prefix("pub struct ").and_then(|l| l.strip_suffix(" {")) else {
                continue;
            };
            let mut fields = vec![];
            for body in lines.by_ref() {
                if body == "}" {
                    break;
                }
                if let Some((field, ty)) = body.trim().strip_prefix("pub ").and_then(|f| f.split_once(": ")) {
                    fields.push((field.to_string(), ty.trim_end_matches(',').to_string()));
                }
            }
            structs.insert(name.to_string(), fields);
        }
    }
    structs
}

/// The SDK model type a field refers to (`crate::types::X` inside Option/Vec/HashMap).
fn referenced_type(ty: &str) -> Option<String> {
    let start = ty.find("crate::types::")? + "crate::types::".len();
    let rest = &ty[start..];
    let end = rest.find(|c: char| !c.is_alphanumeric()).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

fn normalise(name: &str) -> String {
    name.trim_start_matches("r#").replace('_', "").to_lowercase()
}

/// The object schema under a property: itself, its list items, or its map values.
fn object_schema(prop: &Value) -> &Value {
    if prop["type"] == "array" {
        object_schema(&prop["items"])
    } else if prop.get("additionalProperties").is_some_and(|v| v.is_object()) {
        object_schema(&prop["additionalProperties"])
    } else {
        prop
    }
}

/// Walks an SDK struct and the CRD schema of the same shape side by side, recording SDK
/// members the schema lacks and schema properties that are no SDK member (`allowed` names
/// the Kubernetes-only fields at this level).
fn compare(
    structs: &BTreeMap<String, Vec<(String, String)>>,
    sdk_type: &str,
    schema: &Value,
    path: &str,
    allowed: &[&str],
    mismatches: &mut Vec<String>,
) {
    let fields = structs.get(sdk_type).unwrap_or_else(|| panic!("SDK struct {sdk_type}"));
    let props = schema["properties"].as_object().cloned().unwrap_or_default();
    for (field, ty) in fields {
        if LEFT_OUT.iter().any(|(t, f, _)| *t == sdk_type && f == field) {
            continue;
        }
        let Some((prop_name, prop)) = props.iter().find(|(k, _)| normalise(k) == normalise(field)) else {
            mismatches.push(format!("missing: {path}.{field} ({sdk_type})"));
            continue;
        };
        // NB: a botocore "document" member is free-form JSON; a schema that does not keep
        // unknown fields lets the apiserver prune what the user wrote.
        if ty.contains("Document") && prop["x-kubernetes-preserve-unknown-fields"] != true {
            mismatches.push(format!("document member loses data: {path}.{prop_name} ({sdk_type})"));
        }
        if let Some(nested) = referenced_type(ty).filter(|t| structs.contains_key(t)) {
            compare(
                structs,
                &nested,
                object_schema(prop),
                &format!("{path}.{prop_name}"),
                &[],
                mismatches,
            );
        }
    }
    let sdk: BTreeSet<String> = fields.iter().map(|(f, _)| normalise(f)).collect();
    for prop in props.keys() {
        if !sdk.contains(&normalise(prop)) && !allowed.contains(&prop.as_str()) {
            mismatches.push(format!("not an ECS input member: {path}.{prop} ({sdk_type})"));
        }
    }
}

fn spec_schema(kind: &str) -> Value {
    let crd = api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("CRD of kind");
    let json = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema JSON");
    json["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn crd_schemas_match_the_ecs_inputs_member_for_member() {
    let structs = sdk_structs(&sdk_dir());
    let mut mismatches = vec![];
    for (kind, input) in [
        ("EcsTaskDefinition", "RegisterTaskDefinitionInput"),
        ("EcsService", "CreateServiceInput"),
        ("EcsCluster", "CreateClusterInput"),
        ("EcsCapacityProvider", "CreateCapacityProviderInput"),
    ] {
        let allowed = KUBERNETES_ONLY.iter().find(|(k, _)| *k == kind).expect("kind").1;
        compare(
            &structs,
            input,
            &spec_schema(kind),
            &format!("{kind}.spec"),
            allowed,
            &mut mismatches,
        );
    }
    assert!(
        mismatches.is_empty(),
        "CRD schemas and aws-sdk-ecs inputs differ:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn every_nested_property_has_a_description() {
    fn walk(schema: &Value, path: &str, undocumented: &mut Vec<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                if prop["description"].as_str().is_none_or(str::is_empty) {
                    undocumented.push(here.clone());
                }
                walk(object_schema(prop), &here, undocumented);
            }
        }
    }
    let mut undocumented = vec![];
    for crd in api::crds() {
        let json = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema JSON");
        walk(
            &json["openAPIV3Schema"]["properties"]["spec"],
            &crd.spec.names.kind,
            &mut undocumented,
        );
        walk(
            &json["openAPIV3Schema"]["properties"]["status"],
            &crd.spec.names.kind,
            &mut undocumented,
        );
    }
    assert!(
        undocumented.is_empty(),
        "fields without a description:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn a_document_member_reaches_the_sdk_whole() {
    use aws_sdk_ecs::operation::create_service::CreateServiceInput;
    use aws_smithy_types::Document;
    let hook_details =
        serde_json::json!({"stage": "canary", "checks": [{"url": "/health", "expect": 200}], "strict": true});
    let spec: ecs_operator::api::EcsServiceSpec = serde_json::from_value(serde_json::json!({
        "serviceName": "web",
        "taskDefinition": "web:1",
        "deploymentConfiguration": {"lifecycleHooks": [{
            "hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:check",
            "roleArn": "arn:aws:iam::123456789012:role/hooks",
            "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "hookDetails": hook_details,
        }]},
    }))
    .expect("spec");
    let sdk = ecs_operator::ecs::wire::to_sdk(&spec.service, CreateServiceInput::deserialize).expect("to the SDK");
    let hook = &sdk
        .deployment_configuration
        .as_ref()
        .and_then(|d| d.lifecycle_hooks.as_deref())
        .expect("hooks")[0];
    let object =
        |pairs: Vec<(&str, Document)>| Document::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    let expected = object(vec![
        ("stage", Document::String("canary".into())),
        (
            "checks",
            Document::Array(vec![object(vec![
                ("url", Document::String("/health".into())),
                ("expect", Document::Number(aws_smithy_types::Number::PosInt(200))),
            ])]),
        ),
        ("strict", Document::Bool(true)),
    ]);
    assert_eq!(hook.hook_details.as_ref(), Some(&expected));
}
