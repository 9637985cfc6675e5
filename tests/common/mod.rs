//! Shared helpers of the integration tests: the local test bed (a real kube-apiserver,
//! etcd and kube-controller-manager, and moto's ECS server, started by tests/testenv) and a
//! namespace per test.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.testenv/env` of a running test bed, as key/value pairs.
pub struct TestBed {
    pub vars: BTreeMap<String, String>,
}

impl TestBed {
    pub fn kubeconfig(&self) -> &Path {
        Path::new(&self.vars["KUBECONFIG"])
    }
    pub fn ecs_endpoint(&self) -> &str {
        &self.vars["AWS_ENDPOINT_URL"]
    }
}

/// Starts the test bed once per test binary, or reuses the one `make testenv` started.
pub fn test_bed() -> &'static TestBed {
    static BED: OnceLock<TestBed> = OnceLock::new();
    BED.get_or_init(|| {
        let python = root().join(".testenv/venv/bin/python");
        assert!(
            python.exists(),
            "the test bed is not installed: run `make testenv` (or `make test`) first"
        );
        let status = Command::new(python)
            .arg(root().join("tests/testenv/testenv.py"))
            .arg("up")
            .status()
            .expect("run tests/testenv/testenv.py");
        assert!(status.success(), "tests/testenv/testenv.py up failed");
        let text = std::fs::read_to_string(root().join(".testenv/env")).expect("read .testenv/env");
        let vars = text
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::from_str(v).expect("quoted value"),
                )
            })
            .collect();
        TestBed { vars }
    })
}

/// A Kubernetes client for the test bed's admin. Made per test: a client belongs to the
/// runtime it was created on, and every `#[tokio::test]` has its own.
pub async fn admin_client() -> Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(test_bed().kubeconfig()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// A fresh namespace for one test, named after it.
pub async fn namespace(client: &Client, test: &str) -> String {
    let suffix: u32 = rand_suffix();
    let name = format!("{}-{suffix:08x}", test.replace('_', "-"));
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Deletes a test's namespace (the controller-manager removes what is in it).
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

/// Parses a (possibly multi-document) YAML manifest into objects, skipping empty documents.
pub fn parse_manifest(text: &str) -> Vec<DynamicObject> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).expect("YAML"))
        .filter(|value| !value.is_null())
        .map(|value| serde_yaml_ng::from_value(value).expect("a Kubernetes object"))
        .collect()
}

/// The namespaced API of an object's kind, derived from its apiVersion and kind.
pub fn api_for(client: &Client, namespace: &str, obj: &DynamicObject) -> Api<DynamicObject> {
    let types = obj.types.as_ref().expect("apiVersion and kind");
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", &types.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk))
}

/// Server-side applies an object as a user would with `kubectl apply --server-side`.
pub async fn apply(
    client: &Client,
    namespace: &str,
    obj: &DynamicObject,
    dry_run: bool,
) -> kube::Result<DynamicObject> {
    let name = obj.metadata.name.clone().expect("metadata.name");
    let mut params = PatchParams::apply("ecs-operator-tests").force();
    params.dry_run = dry_run;
    api_for(client, namespace, obj)
        .patch(&name, &params, &Patch::Apply(obj))
        .await
}
