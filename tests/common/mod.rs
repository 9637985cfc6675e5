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
            .map(|(k, v)| (k.to_string(), serde_json::from_str(v).expect("quoted value")))
            .collect();
        TestBed { vars }
    })
}

/// A Kubernetes client for the test bed's admin. Made per test: a client belongs to the
/// runtime it was created on, and every `#[tokio::test]` has its own.
pub async fn admin_client() -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(test_bed().kubeconfig()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// A test's namespace: derefs to its name, and is deleted when dropped, so that a failing
/// assertion does not leave it (and what the operator made for it) behind.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
}

impl std::ops::Deref for TestNamespace {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // NB: synchronous, as Drop is; kubectl asks and returns without waiting.
        let _ = Command::new(root().join(".testenv/bin/kubectl"))
            .arg("--kubeconfig")
            .arg(test_bed().kubeconfig())
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A fresh namespace for one test, named after it.
pub async fn namespace(client: &Client, test: &str) -> TestNamespace {
    let suffix: u32 = rand_suffix();
    let name = format!("{}-{suffix:08x}", test.replace('_', "-"));
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    TestNamespace { name }
}

/// An object of this API as a user writes it.
pub fn object(kind: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion": "ecs.operator.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// Waits until the object's condition `type_` has `status` (and `reason`, when given) for
/// its current generation; returns the condition's reason and message.
pub async fn wait_condition<K: ecs_operator::reconcile::Managed>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    timeout_secs: u64,
) -> (String, String) {
    let what = format!("{name} {type_}={status} {}", reason.unwrap_or(""));
    wait_for(&what, timeout_secs, || async {
        let obj = api.get(name).await.ok()?;
        let mut object_status = obj.status().cloned()?;
        let common = K::common(&mut object_status);
        let current = common.observed_generation == obj.meta().generation;
        let (s, r, m) = condition(&common.conditions, type_)?;
        (current && s == status && reason.is_none_or(|want| want == r)).then_some((r, m))
    })
    .await
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
    let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
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

/// An `ecs-operator run` process watching one namespace, as users run it, with the test
/// bed's environment (loopback ECS endpoint, dummy credentials, no instance metadata).
/// Its ECS calls are counted at the endpoint under the namespace's name.
pub struct Operator {
    child: Option<std::process::Child>,
    namespace: String,
    client_id: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Operator {
    /// Starts an operator for `namespace` that re-observes objects every second.
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// Starts an operator with extra `run` arguments.
    pub fn start_with(namespace: &str, args: &[&str]) -> Self {
        Self::start_as(namespace, namespace, args)
    }

    /// Starts an operator whose ECS calls are counted under `client_id`.
    pub fn start_as(namespace: &str, client_id: &str, args: &[&str]) -> Self {
        Self::start_with_env(namespace, client_id, args, &[])
    }

    /// Starts an operator with environment variables over the test bed's (e.g. KUBECONFIG).
    pub fn start_with_env(namespace: &str, client_id: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut op = Self {
            child: None,
            namespace: namespace.to_string(),
            client_id: client_id.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        op.spawn();
        op
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(std::process::Child::id).unwrap_or_default()
    }

    /// Everything the operator logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(root().join(format!("target/test-logs/{}.log", self.client_id))).unwrap_or_default()
    }

    /// The exit status if the process has exited, None while it runs.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod, and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        child.wait().expect("wait")
    }

    fn spawn(&mut self) {
        let logs = root().join("target/test-logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{}.log", self.client_id)))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecs-operator"));
        cmd.args(["run", "--namespace", &self.namespace, "--log-format", "text"])
            .args(&self.args);
        if !self.args.iter().any(|a| a == "--resync-seconds") {
            cmd.args(["--resync-seconds", "1"]);
        }
        if !self.args.iter().any(|a| a == "--metrics-address") {
            cmd.args(["--metrics-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0"]);
        }
        cmd.envs(&test_bed().vars)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_SDK_UA_APP_ID", &self.client_id)
            // NB: no profile files from the machine running the tests.
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("RUST_LOG", "info,kube=warn")
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start ecs-operator"));
    }

    /// Kills the operator (SIGKILL) and starts it again.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the operator (SIGKILL) until [`Operator::resume`].
    pub fn pause(&mut self) {
        self.kill();
    }

    /// Starts a paused operator again.
    pub fn resume(&mut self) {
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// ECS operations that change something.
pub const ECS_WRITES: &[&str] = &[
    "CreateCluster",
    "UpdateCluster",
    "DeleteCluster",
    "PutClusterCapacityProviders",
    "RegisterTaskDefinition",
    "DeregisterTaskDefinition",
    "DeleteTaskDefinitions",
    "TagResource",
    "UntagResource",
    "CreateService",
    "UpdateService",
    "DeleteService",
];

/// ECS calls made by the operator of `namespace`, by operation, as the endpoint counted them.
pub fn ecs_calls(namespace: &str) -> BTreeMap<String, u64> {
    let endpoint = test_bed().ecs_endpoint().trim_start_matches("http://").to_string();
    let body = http_get_from(&endpoint, &format!("/_ecs_operator/calls?client={namespace}"));
    serde_json::from_str(&body).expect("counts JSON")
}

/// What the endpoint's ECS buckets (tests/testenv/ecs_buckets.py) refused of a client: calls
/// throttled by operation, and the neighbour's attempts and throttles by category.
pub fn ecs_buckets(client: &str) -> serde_json::Value {
    let endpoint = test_bed().ecs_endpoint().trim_start_matches("http://").to_string();
    let body = http_get_from(&endpoint, &format!("/_ecs_operator/buckets?client={client}"));
    serde_json::from_str(&body).expect("buckets JSON")
}

/// An ECS client counted as `app_id` at the endpoint (the account the endpoint's buckets
/// meter), making each call once: no SDK retries.
pub fn ecs_client_as(app_id: &str) -> aws_sdk_ecs::Client {
    let config = ecs_client()
        .config()
        .to_builder()
        .app_name(aws_sdk_ecs::config::AppName::new(app_id.to_string()).expect("an app id"))
        .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ecs::Client::from_conf(config)
}

/// How often CreateService really created each service whose "cluster/name" starts with
/// `prefix` (the endpoint answers a repeated clientToken without creating anything).
pub fn services_created(prefix: &str) -> BTreeMap<String, u64> {
    let endpoint = test_bed().ecs_endpoint().trim_start_matches("http://").to_string();
    let body = http_get_from(&endpoint, &format!("/_ecs_operator/created?prefix={prefix}"));
    serde_json::from_str(&body).expect("created JSON")
}

/// The body of a plain HTTP GET to `host:port`.
fn http_get_from(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// tests/testenv/fault_proxy.py in front of the ECS endpoint, stopped on drop.
pub struct FaultProxy {
    child: std::process::Child,
    port: u16,
}

impl FaultProxy {
    /// Starts the proxy with the given fault rates (see fault_proxy.py).
    pub fn start(throttle: f64, error: f64, reset: f64, latency_ms: u64) -> Self {
        let port = free_port();
        let upstream = test_bed().ecs_endpoint().trim_start_matches("http://").to_string();
        let child = Command::new(root().join(".testenv/venv/bin/python"))
            .arg(root().join("tests/testenv/fault_proxy.py"))
            .args(["--upstream", &upstream, "--port", &port.to_string()])
            .args(["--throttle", &throttle.to_string(), "--error", &error.to_string()])
            .args(["--reset", &reset.to_string(), "--latency-ms", &latency_ms.to_string()])
            .args(["--seed", "7", "--lifetime", "900"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the fault proxy");
        let proxy = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the fault proxy did not start");
    }

    /// The endpoint URL to give the operator instead of the ECS endpoint's.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the proxy injected: requests, throttle, error, reset, delayed.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let body = http_get_from(&format!("127.0.0.1:{}", self.port), "/_fault_proxy/stats");
        serde_json::from_str(&body).expect("stats JSON")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ecs-operator ARGS` as a user runs it against the test bed (its kubeconfig, its ECS
/// endpoint), with its ECS calls counted as `client_id`'s: the exit code, stdout, stderr.
pub fn cli(args: &[&str], client_id: &str, stdin: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecs-operator"));
    command
        .args(args)
        .envs(&test_bed().vars)
        .env("AWS_SDK_UA_APP_ID", client_id)
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    let out = output_of(command, stdin);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `command` to the end with `stdin` piped in; its exit status and output.
fn output_of(mut command: Command, stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("output")
}

/// The count of one operation.
pub fn calls_of(counts: &BTreeMap<String, u64>, operation: &str) -> u64 {
    counts.get(operation).copied().unwrap_or(0)
}

/// The number of write calls in a count.
pub fn ecs_writes(counts: &BTreeMap<String, u64>) -> u64 {
    ECS_WRITES.iter().map(|op| calls_of(counts, op)).sum()
}

/// An ECS client for acting behind the operator's back, as another user or tool would.
pub fn ecs_client() -> aws_sdk_ecs::Client {
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .region(aws_sdk_ecs::config::Region::new(test_bed().vars["AWS_REGION"].clone()))
        .endpoint_url(test_bed().ecs_endpoint())
        .credentials_provider(aws_sdk_ecs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .build();
    aws_sdk_ecs::Client::from_conf(config)
}

/// Creates an Auto Scaling group capacity provider named `name` in ECS, as another tool
/// would: ECS attaches only providers that exist.
pub async fn asg_capacity_provider(name: &str) {
    let group = aws_sdk_ecs::types::AutoScalingGroupProvider::builder()
        .auto_scaling_group_arn(format!(
            "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:0a1b2c3d:autoScalingGroupName/{name}"
        ))
        .build()
        .expect("an Auto Scaling group provider");
    ecs_client()
        .create_capacity_provider()
        .name(name)
        .auto_scaling_group_provider(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create capacity provider {name}: {e:?}"));
}

/// Polls `check` every 200 ms until it returns Some, or panics after `timeout_secs`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout_secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout_secs}s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A condition of an object's status as (status, reason, message).
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Events about an object, as (reason, message), oldest first.
pub async fn events_for(client: &Client, namespace: &str, name: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::events::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut list: Vec<Event> = events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    list.into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Server-side applies a JSON manifest through a typed API, as `kubectl apply --server-side`.
pub async fn apply_json<K>(api: &Api<K>, obj: &serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj["metadata"]["name"].as_str().expect("metadata.name");
    api.patch(
        name,
        &PatchParams::apply("ecs-operator-tests").force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// Waits until an object is Ready=True for its current generation, and returns it.
pub async fn ready<K: ecs_operator::reconcile::Managed>(api: &Api<K>, name: &str, timeout_secs: u64) -> K {
    wait_for(&format!("{name} Ready"), timeout_secs, || async {
        let obj = api.get(name).await.ok()?;
        let mut status = obj.status().cloned()?;
        let common = K::common(&mut status);
        let current = common.observed_generation == obj.meta().generation;
        (current && condition(&common.conditions, "Ready").is_some_and(|(s, _, _)| s == "True")).then_some(obj)
    })
    .await
}

/// Waits until an object is gone (its finalizer released).
pub async fn gone<K>(api: &Api<K>, name: &str, timeout_secs: u64)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} to go"), timeout_secs, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Waits until the operator of `namespace` has made `more` further calls of `operation`
/// (for example three resyncs' worth of reads).
pub async fn more_calls(namespace: &str, operation: &str, more: u64) {
    let start = calls_of(&ecs_calls(namespace), operation);
    wait_for(&format!("{more} more {operation} calls"), 30, || async {
        (calls_of(&ecs_calls(namespace), operation) >= start + more).then_some(())
    })
    .await;
}

/// How many objects of a kind in the namespace of `api` are Ready on their current generation.
pub async fn ready_count<K: ecs_operator::reconcile::Managed>(api: &Api<K>) -> usize {
    let Ok(list) = api.list(&Default::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|obj| {
            let status = obj
                .status()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_default();
            status["observedGeneration"].as_i64() == obj.meta().generation
                && status["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count()
}

/// The resourceVersion of every object of a kind in the namespace of `api`.
pub async fn resource_versions<K: ecs_operator::reconcile::Managed>(api: &Api<K>) -> Vec<String> {
    let list = api.list(&Default::default()).await.expect("list");
    list.items
        .iter()
        .map(|o| o.meta().resource_version.clone().unwrap_or_default())
        .collect()
}

/// The value of one Prometheus sample line `name{labels} value`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Waits for an Event about `name` with `reason` whose message contains `text`.
pub async fn event(client: &Client, namespace: &str, name: &str, reason: &str, text: &str) {
    wait_for(
        &format!("a {reason} event about {name} mentioning {text}"),
        30,
        || async {
            let events = events_for(client, namespace, name).await;
            events
                .iter()
                .any(|(r, m)| r == reason && m.contains(text))
                .then_some(())
        },
    )
    .await;
}

/// A free loopback port (bound and released; fine for a test's own server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// GET http://127.0.0.1:port/path: the status code and body, or None if nothing listens yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// Runs the test bed's kubectl as a user would, with `stdin` piped in; returns stdout, or
/// panics with stderr.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    // NB: a private discovery cache, so that no earlier run's cache hides the CRDs.
    let cache = std::env::temp_dir().join(format!("ecs-operator-kubectl-cache-{}", std::process::id()));
    let mut command = Command::new(root().join(".testenv/bin/kubectl"));
    command
        .arg("--kubeconfig")
        .arg(test_bed().kubeconfig())
        .arg("--cache-dir")
        .arg(cache)
        .args(args);
    let out = output_of(command, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// POSTs a JSON body to one of the ECS endpoint's test controls (tests/testenv/strict_ecs.py).
pub fn endpoint_control(path: &str, body: serde_json::Value) {
    use std::io::{Read, Write};
    let address = test_bed().ecs_endpoint().trim_start_matches("http://").to_string();
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "{response}"
    );
}

/// How long ECS takes in one cluster of the endpoint: a deployment's rollout, a deleted
/// service's DRAINING, and how long after INACTIVE its name stays "not idempotent".
pub fn set_timing(cluster: &str, rollout: f64, draining: f64, recreate_blocked: f64) {
    endpoint_control(
        "/_ecs_operator/timing",
        serde_json::json!({"cluster": cluster, "rolloutSeconds": rollout, "drainingSeconds": draining,
                           "recreateBlockedSeconds": recreate_blocked}),
    );
}

/// The next `times` calls of `operation` naming `cluster` fail with ECS's `code` and `message`.
pub fn inject_error(operation: &str, cluster: &str, code: &str, message: &str, times: u32) {
    inject_error_where(operation, ("cluster", cluster), code, message, times);
}

/// The next `times` calls of `operation` whose request member `key` is `value` (e.g.
/// ("family", "web")) fail with ECS's `code` and `message`.
pub fn inject_error_where(operation: &str, (key, value): (&str, &str), code: &str, message: &str, times: u32) {
    let mut fault = serde_json::json!({"operation": operation, "code": code, "message": message, "times": times});
    fault[key] = serde_json::json!(value);
    endpoint_control("/_ecs_operator/inject", fault);
}

/// From now on, deployments whose images, subnets, security groups or target groups
/// mention `value` cannot start their tasks (an image tag moved to a crashing build).
pub fn declare_broken(value: &str) {
    endpoint_control("/_ecs_operator/broken", serde_json::json!({"value": value}));
}

/// The request bodies of `operation` (CreateService, UpdateService, DeleteService) the
/// operator of `namespace` sent, oldest first.
pub fn ecs_requests(namespace: &str, operation: &str) -> Vec<serde_json::Value> {
    let endpoint = test_bed().ecs_endpoint().trim_start_matches("http://").to_string();
    let body = http_get_from(
        &endpoint,
        &format!("/_ecs_operator/requests?client={namespace}&operation={operation}"),
    );
    serde_json::from_str(&body).expect("requests JSON")
}

/// A VPC in the endpoint's EC2 with `subnets` subnets and `security_groups` security groups
/// (ECS checks that awsvpc subnets and security groups exist): their IDs.
pub fn vpc(subnets: usize, security_groups: usize) -> (Vec<String>, Vec<String>) {
    let script = format!(
        r#"
import json, os, boto3, uuid
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"],
                   aws_access_key_id="testing", aws_secret_access_key="testing")
vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{{i}}.0/24")["Subnet"]["SubnetId"] for i in range({subnets})]
groups = [ec2.create_security_group(GroupName=f"sg-{{i}}-{{uuid.uuid4().hex[:8]}}", Description="test", VpcId=vpc)["GroupId"]
          for i in range({security_groups})]
print(json.dumps([subnets, groups]))
"#
    );
    let out = Command::new(root().join(".testenv/venv/bin/python"))
        .arg("-c")
        .arg(script)
        .envs(&test_bed().vars)
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("subnets and groups")
}

/// A Lua table literal for a JSON value (what Argo CD hands the script as `obj`).
fn lua(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "nil".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(", ")),
        serde_json::Value::Object(map) => {
            let fields: Vec<String> = map.iter().map(|(k, v)| format!("[{k:?}] = {}", lua(v))).collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// The health config/argocd/health.lua reports for an object, run by Debian's lua5.4 as
/// Argo CD's gopher-lua runs it: (status, message).
pub fn argo_health(obj: &serde_json::Value) -> (String, String) {
    let script = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, '\\n', hs.message or '')",
        lua(obj),
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/argocd/health.lua")
    );
    let out = Command::new("lua5.4")
        .args(["-e", &script])
        .output()
        .expect("lua5.4 (installed by make test)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}
