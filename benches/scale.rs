//! `make bench`: what the operator costs at scale, measured against the local test bed.
//!
//! For each mode it starts a fresh operator (the optimised build), creates N services, each
//! with its own task definition, spread over a few clusters, and reports the figures below.
//! Modes: `enforced`: the endpoint enforces ECS's buckets for the operator's account
//! (tests/testenv/ecs_buckets.py) and the operator keeps to them with its own; `neighbour`:
//! the same, with another tool spending half of the service read and write budgets;
//! `shards`: ECS's buckets enforced, two operators (`--selector shard=a` and `shard=b`) in
//! the one account, each with half of the fleet and ECS's full rates in its own buckets;
//! `ecs`: the operator's own buckets only, against an endpoint that never throttles;
//! `off`: no limits at all (the operator's own overhead).
//! - time until every object is Ready, and with limits its ratio to the floor those
//!   limits impose (N registrations at 1/s after a burst of 20, ...), and the share of
//!   calls ECS throttled;
//! - ECS calls per converged object by operation, counted by the ECS endpoint;
//! - Kubernetes writes per object, and GETs of the clusters and task definitions services
//!   refer to, counted by the kube-apiserver's own metrics;
//! - the operator's CPU seconds and peak RSS, from /proc (with shards: CPU summed, the
//!   larger RSS);
//! - with shards: the objects each operator counts Ready (its /metrics), and services that
//!   ECS saw created more than once (0 when nothing is reconciled by both);
//! - an idle window of several resync intervals: ECS calls per object per hour, and ECS
//!   and Kubernetes writes (both must be 0).
//!
//! Settings (environment): BENCH_SERVICES (1000), BENCH_CLUSTERS (4),
//! BENCH_RESYNC_SECONDS (30), BENCH_IDLE_RESYNCS (3),
//! BENCH_MODES ("enforced,neighbour,shards,off").
//! Prints a table and writes target/bench/summary.json. Loopback only; every run ends by
//! itself, and deletes what it created.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    Operator, admin_client, calls_of, ecs_buckets, ecs_calls, endpoint_control, namespace, object, ready_count,
};
use ecs_operator::api::{EcsCluster, EcsService, EcsTaskDefinition};
use ecs_operator::ecs::limits::{Category, RateLimits};
use ecs_operator::reconcile::Managed;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Figures of one run.
#[derive(Serialize)]
struct Run {
    rate_limits: String,
    services: u64,
    task_definitions: u64,
    clusters: u64,
    objects: u64,
    seconds_to_ready: f64,
    /// The least time ECS's limits allow for the create path (0 without limits), with the
    /// neighbour's share taken out.
    rate_limit_floor_seconds: f64,
    ready_to_floor_ratio: Option<f64>,
    /// Calls the endpoint's buckets answered ThrottlingException, and their share of all.
    throttled_to_ready: u64,
    throttled_share_to_ready: f64,
    /// The neighbour's attempts and throttles per category, over the whole run.
    neighbour: Value,
    /// Operators sharing the account and the fleet (2 with shards, else 1).
    operators: usize,
    /// Objects each operator counts Ready in its /metrics, once all are Ready.
    ready_per_operator: Vec<u64>,
    /// Services ECS created more than once (a service reconciled by two operators).
    services_created_twice: u64,
    ecs_calls_to_ready: BTreeMap<String, u64>,
    ecs_calls_per_object_to_ready: f64,
    ecs_writes_per_service_besides_registration: f64,
    kube_writes_to_ready: BTreeMap<String, u64>,
    kube_writes_per_object_to_ready: f64,
    /// GETs of the EcsClusters and EcsTaskDefinitions services refer to, on the way to Ready.
    reference_gets_to_ready: BTreeMap<String, u64>,
    reference_gets_per_service_to_ready: f64,
    cpu_seconds_to_ready: f64,
    cpu_ms_per_object_to_ready: f64,
    peak_rss_mib: f64,
    idle_seconds: f64,
    idle_ecs_calls: BTreeMap<String, u64>,
    idle_ecs_calls_per_object_per_hour: f64,
    idle_ecs_writes: u64,
    idle_kube_writes: u64,
    idle_cpu_seconds: f64,
}

/// ECS operations that change something.
fn is_write(operation: &str) -> bool {
    common::ECS_WRITES.contains(&operation)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // NB: fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks / per_second
}

/// CPU seconds of the operators together.
fn cpu_seconds_of(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| cpu_seconds(*pid)).sum()
}

/// Peak resident set size of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Writes to ecs.operator.dev objects (status, finalizers), by verb and resource, from the
/// kube-apiserver's own /metrics. Creates (POST) and deletes are the benchmark's.
async fn object_writes(client: &Client) -> BTreeMap<String, u64> {
    let request = http::Request::get("/metrics").body(vec![]).expect("request");
    let text = client.request_text(request).await.expect("apiserver /metrics");
    let mut writes = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_string())
        };
        let (Some(group), Some(resource), Some(verb)) = (label("group"), label("resource"), label("verb")) else {
            continue;
        };
        if group != "ecs.operator.dev" || !["PATCH", "APPLY", "PUT"].contains(&verb.as_str()) {
            continue;
        }
        let key = match label("subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{verb} {resource}/{sub}"),
            None => format!("{verb} {resource}"),
        };
        let count = line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        *writes.entry(key).or_insert(0) += count;
    }
    writes
}

/// Reads of the kinds services refer to (GET of an EcsCluster or EcsTaskDefinition) and LISTs
/// of EcsServices, from the kube-apiserver's own /metrics. The operator's watches and the
/// benchmark's own readiness polls are LISTs and WATCHes of other verbs or kinds.
async fn reference_reads(client: &Client) -> BTreeMap<String, u64> {
    let request = http::Request::get("/metrics").body(vec![]).expect("request");
    let text = client.request_text(request).await.expect("apiserver /metrics");
    let mut reads = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_string())
        };
        let (Some(group), Some(resource), Some(verb)) = (label("group"), label("resource"), label("verb")) else {
            continue;
        };
        let referenced = ["ecsclusters", "ecstaskdefinitions"].contains(&resource.as_str()) && verb == "GET";
        if group != "ecs.operator.dev" || !referenced || label("subresource").is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let count = line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        *reads.entry(format!("{verb} {resource}")).or_insert(0) += count;
    }
    reads
}

/// Writes of Events in the namespace: one create each, plus one patch per repeat folded
/// into its series.
async fn event_writes(client: &Client, namespace: &str) -> u64 {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&ListParams::default()).await.expect("events");
    list.items
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1) as u64))
        .sum()
}

/// Kubernetes writes the operator made: object writes (global counters, so only one
/// benchmark runs at a time) and the namespace's Events.
async fn kube_writes(client: &Client, namespace: &str) -> BTreeMap<String, u64> {
    let mut writes = object_writes(client).await;
    writes.insert("POST/PATCH events".into(), event_writes(client, namespace).await);
    writes
}

fn difference(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn create_all<K: Managed>(api: &Api<K>, objects: Vec<Value>) {
    futures::stream::iter(objects)
        .map(|obj| async move {
            let obj: K = serde_json::from_value(obj).expect("object");
            api.create(&PostParams::default(), &obj).await.expect("create");
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// The neighbour's share of the categories it spends, in `neighbour` mode.
const NEIGHBOUR: &[(Category, f64)] = &[(Category::ServiceRead, 0.5), (Category::ServiceModify, 0.5)];

/// The least time ECS's buckets allow for `calls` of a category, after its burst, when a
/// neighbour spends `taken` of its sustained rate.
fn floor_seconds(category: Category, calls: u64, taken: f64) -> f64 {
    let limit = category.ecs_limit();
    calls.saturating_sub(u64::from(limit.burst)) as f64 / (limit.per_second * (1.0 - taken))
}

/// What the endpoint enforces for a mode: (ECS's buckets, neighbour shares).
fn enforcement(mode: &str) -> Option<Value> {
    let shares: serde_json::Map<String, Value> = NEIGHBOUR
        .iter()
        .map(|(c, s)| (c.name().to_string(), json!(s)))
        .collect();
    match mode {
        "enforced" | "shards" => Some(json!({})),
        "neighbour" => Some(json!({"neighbour": shares, "seconds": 3600})),
        _ => None,
    }
}

async fn run(mode: &str, services: u64, clusters: u64, resync: u64, idle_resyncs: u64) -> Run {
    let client = admin_client().await;
    let ns = namespace(&client, &format!("bench-{mode}")).await;
    let enforced = enforcement(mode);
    let client_limits = if enforced.is_some() { "ecs" } else { mode };
    let limits: RateLimits = client_limits.parse().expect("rate limits");
    if let Some(mut buckets) = enforced.clone() {
        buckets["client"] = json!(ns.to_string());
        endpoint_control("/_ecs_operator/buckets", buckets);
    }
    eprintln!("bench: {services} services in {clusters} clusters, mode {mode}, namespace {ns}");
    let shards: &[&str] = if mode == "shards" { &["a", "b"] } else { &[""] };
    let mut operators: Vec<(Operator, u16)> = shards
        .iter()
        .map(|shard| {
            let port = common::free_port();
            let (selector, metrics) = (format!("shard={shard}"), format!("127.0.0.1:{port}"));
            let resync = resync.to_string();
            let mut args = vec![
                "--ecs-rate-limits",
                client_limits,
                "--resync-seconds",
                &resync,
                "--log-level",
                "warn",
                "--metrics-address",
                &metrics,
                "--health-address",
                "127.0.0.1:0",
            ];
            if !shard.is_empty() {
                args.extend(["--selector", &selector]);
            }
            // NB: one app id, so the endpoint counts both shards against one account.
            (Operator::start_as(&ns, &ns, &args), port)
        })
        .collect();
    let pids: Vec<u32> = operators.iter().map(|(op, _)| op.pid()).collect();
    // Object i goes to shard i % 2 (with shards).
    let label = |mut obj: Value, i: u64| {
        if shards.len() > 1 {
            obj["metadata"]["labels"] = json!({"shard": shards[(i % 2) as usize]});
        }
        obj
    };
    let cluster_api: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let td_api: Api<EcsTaskDefinition> = Api::namespaced(client.clone(), &ns);
    let service_api: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let writes_before = kube_writes(&client, &ns).await;
    let reads_before = reference_reads(&client).await;
    let started = Instant::now();

    let cluster_objects = (0..clusters)
        .map(|c| {
            let spec = json!({"clusterName": format!("{ns}-c{c}")});
            label(object("EcsCluster", &format!("c{c}"), spec), c)
        })
        .collect();
    create_all(&cluster_api, cluster_objects).await;
    let td_objects = (0..services)
        .map(|i| {
            let spec = json!({"family": format!("{ns}-td{i}"),
                              "containerDefinitions": [{"name": "app", "image": format!("app:{i}"), "memory": 128}]});
            label(object("EcsTaskDefinition", &format!("td{i}"), spec), i)
        })
        .collect();
    create_all(&td_api, td_objects).await;
    let service_objects = (0..services)
        .map(|i| {
            let spec = json!({"clusterRef": {"name": format!("c{}", i % clusters)},
                              "taskDefinitionRef": {"name": format!("td{i}")}, "desiredCount": 1});
            label(object("EcsService", &format!("svc{i}"), spec), i)
        })
        .collect();
    create_all(&service_api, service_objects).await;
    eprintln!(
        "bench: created {} objects in {:.1} s",
        clusters + 2 * services,
        started.elapsed().as_secs_f64()
    );

    let total = (clusters + 2 * services) as usize;
    // NB: listing 20 000 objects is work for the apiserver too: poll less often at scale.
    let poll = Duration::from_millis((total as u64 / 5).max(500));
    let deadline = Instant::now() + Duration::from_secs(3 * 3600);
    let mut last_report = Instant::now();
    loop {
        let ready = ready_count(&cluster_api).await + ready_count(&td_api).await + ready_count(&service_api).await;
        if ready == total {
            break;
        }
        assert!(Instant::now() < deadline, "not Ready within 3 hours: {ready}/{total}");
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "bench: {ready}/{total} Ready after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(poll).await;
    }
    let seconds_to_ready = started.elapsed().as_secs_f64();
    let cpu_to_ready = cpu_seconds_of(&pids);
    let ready_per_operator = ready_per_operator(&operators).await;
    let created = common::services_created(&format!("{ns}-c"));
    let services_created_twice = created.values().filter(|n| **n > 1).count() as u64;
    let calls_to_ready = ecs_calls(&ns);
    let throttled_to_ready: u64 = ecs_buckets(&ns)["throttled"]
        .as_object()
        .map(|t| t.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let writes_to_ready = difference(&kube_writes(&client, &ns).await, &writes_before);
    let reads_to_ready = difference(&reference_reads(&client).await, &reads_before);
    eprintln!("bench: all {total} Ready after {seconds_to_ready:.1} s; idle for {idle_resyncs} resyncs");

    // Idle: let the in-flight passes settle for one interval, then count over several.
    tokio::time::sleep(Duration::from_secs(resync)).await;
    let idle_calls_before = ecs_calls(&ns);
    let idle_writes_before = kube_writes(&client, &ns).await;
    let idle_cpu_before = cpu_seconds_of(&pids);
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(resync * idle_resyncs)).await;
    let idle_seconds = idle_started.elapsed().as_secs_f64();
    let idle_calls = difference(&ecs_calls(&ns), &idle_calls_before);
    let idle_writes = difference(&kube_writes(&client, &ns).await, &idle_writes_before);
    let idle_cpu = cpu_seconds_of(&pids) - idle_cpu_before;
    let peak_rss = pids.iter().map(|pid| peak_rss_mib(*pid)).fold(0.0, f64::max);

    let objects = clusters + 2 * services;
    let taken = |category: Category| match mode {
        "neighbour" => NEIGHBOUR.iter().find(|(c, _)| *c == category).map_or(0.0, |(_, s)| *s),
        _ => 0.0,
    };
    let floor = if limits == RateLimits::off() {
        0.0
    } else {
        [
            floor_seconds(
                Category::TaskDefinitionModify,
                services,
                taken(Category::TaskDefinitionModify),
            ),
            floor_seconds(Category::ServiceModify, services, taken(Category::ServiceModify)),
            floor_seconds(Category::ClusterModify, clusters, taken(Category::ClusterModify)),
        ]
        .into_iter()
        .fold(0.0, f64::max)
    };
    let neighbour = ecs_buckets(&ns)["neighbour"].clone();
    if enforced.is_some() {
        endpoint_control(
            "/_ecs_operator/buckets",
            json!({"client": ns.to_string(), "enabled": false}),
        );
    }
    let create_path_writes: u64 = calls_to_ready
        .iter()
        .filter(|(op, _)| is_write(op) && op.as_str() != "RegisterTaskDefinition")
        .map(|(_, n)| n)
        .sum();
    let idle_calls_total: u64 = idle_calls.values().sum();
    let result = Run {
        rate_limits: mode.to_string(),
        throttled_to_ready,
        throttled_share_to_ready: throttled_to_ready as f64 / calls_to_ready.values().sum::<u64>().max(1) as f64,
        neighbour,
        operators: operators.len(),
        ready_per_operator,
        services_created_twice,
        services,
        task_definitions: services,
        clusters,
        objects,
        seconds_to_ready,
        rate_limit_floor_seconds: floor,
        ready_to_floor_ratio: (floor > 0.0).then(|| seconds_to_ready / floor),
        ecs_calls_per_object_to_ready: calls_to_ready.values().sum::<u64>() as f64 / objects as f64,
        ecs_writes_per_service_besides_registration: create_path_writes as f64 / (services + clusters) as f64,
        ecs_calls_to_ready: calls_to_ready,
        kube_writes_per_object_to_ready: writes_to_ready.values().sum::<u64>() as f64 / objects as f64,
        kube_writes_to_ready: writes_to_ready,
        reference_gets_per_service_to_ready: reads_to_ready.values().sum::<u64>() as f64 / services as f64,
        reference_gets_to_ready: reads_to_ready,
        cpu_seconds_to_ready: cpu_to_ready,
        cpu_ms_per_object_to_ready: cpu_to_ready * 1000.0 / objects as f64,
        peak_rss_mib: peak_rss,
        idle_seconds,
        idle_ecs_calls_per_object_per_hour: idle_calls_total as f64 / objects as f64 * 3600.0 / idle_seconds,
        idle_ecs_writes: idle_calls.iter().filter(|(op, _)| is_write(op)).map(|(_, n)| n).sum(),
        idle_kube_writes: idle_writes.values().sum(),
        idle_ecs_calls: idle_calls,
        idle_cpu_seconds: idle_cpu,
    };

    // NB: the figures are kept before the clean-up, which can take minutes at scale.
    let json = serde_json::to_string_pretty(&result).expect("json");
    std::fs::write(bench_dir().join(format!("run-{mode}.json")), json).expect("write the run");

    // Clean up with limits lifted, so that deleting does not take as long as creating.
    for (operator, _) in &mut operators {
        let _ = operator.terminate();
    }
    let _cleaner = Operator::start_as(&ns, &format!("{ns}-cleanup"), &["--ecs-rate-limits", "off"]);
    common::delete_namespace(&client, &ns).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for _ in 0..1200 {
        if namespaces.get_opt(&ns).await.ok().flatten().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let left = calls_of(&ecs_calls(&format!("{ns}-cleanup")), "DeleteService");
    eprintln!("bench: cleaned up ({left} services deleted)");
    result
}

/// The objects of the three kinds each operator counts Ready, from its /metrics (the
/// gauge is refreshed as objects change; it is polled until it stops moving).
async fn ready_per_operator(operators: &[(Operator, u16)]) -> Vec<u64> {
    let mut counts = vec![];
    for (_, port) in operators {
        let count = || {
            let (_, metrics) = common::http_get(*port, "/metrics").unwrap_or_default();
            ["EcsCluster", "EcsTaskDefinition", "EcsService"]
                .iter()
                .filter_map(|kind| {
                    common::sample(
                        &metrics,
                        &format!(r#"ecs_operator_objects{{kind="{kind}",ready="True"}}"#),
                    )
                })
                .sum::<f64>() as u64
        };
        let mut last = count();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = count();
            if now == last {
                break;
            }
            last = now;
        }
        counts.push(last);
    }
    counts
}

/// target/bench, where each run's figures and summary.json go.
fn bench_dir() -> std::path::PathBuf {
    let dir = common::root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    dir
}

fn print_table(runs: &[Run]) {
    let row = |name: &str, value: &dyn Fn(&Run) -> String| {
        let values: Vec<String> = runs.iter().map(|r| format!("{:>22}", value(r))).collect();
        println!("{name:<46}{}", values.join(""));
    };
    println!();
    row("rate limits", &|r| r.rate_limits.clone());
    row("services / task definitions / clusters", &|r| {
        format!("{}/{}/{}", r.services, r.task_definitions, r.clusters)
    });
    row("time to all Ready (s)", &|r| format!("{:.1}", r.seconds_to_ready));
    row("rate-limit floor (s)", &|r| {
        format!("{:.1}", r.rate_limit_floor_seconds)
    });
    row("ratio to floor", &|r| {
        r.ready_to_floor_ratio
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "-".into())
    });
    row("calls ECS throttled (share)", &|r| {
        format!("{} ({:.2}%)", r.throttled_to_ready, r.throttled_share_to_ready * 100.0)
    });
    row("neighbour attempts / throttled", &|r| {
        let spent = r.neighbour.as_object().cloned().unwrap_or_default();
        let sum = |key: &str| spent.values().filter_map(|v| v[key].as_u64()).sum::<u64>();
        if spent.is_empty() {
            "-".into()
        } else {
            format!("{}/{}", sum("attempts"), sum("throttled"))
        }
    });
    row("objects each operator counts Ready", &|r| {
        r.ready_per_operator
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" + ")
    });
    row("services ECS created twice", &|r| r.services_created_twice.to_string());
    row("ECS calls per object to Ready", &|r| {
        format!("{:.2}", r.ecs_calls_per_object_to_ready)
    });
    let operations: std::collections::BTreeSet<&String> =
        runs.iter().flat_map(|r| r.ecs_calls_to_ready.keys()).collect();
    for op in operations {
        row(&format!("  {op} per object"), &|r| {
            format!(
                "{:.3}",
                r.ecs_calls_to_ready.get(op).copied().unwrap_or(0) as f64 / r.objects as f64
            )
        });
    }
    row("ECS writes per service/cluster (no register)", &|r| {
        format!("{:.3}", r.ecs_writes_per_service_besides_registration)
    });
    row("Kubernetes writes per object to Ready", &|r| {
        format!("{:.2}", r.kube_writes_per_object_to_ready)
    });
    let kinds: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.kube_writes_to_ready.keys()).collect();
    for kind in kinds {
        row(&format!("  {kind}"), &|r| {
            r.kube_writes_to_ready.get(kind).copied().unwrap_or(0).to_string()
        });
    }
    row("GETs of referenced objects per service", &|r| {
        format!("{:.2}", r.reference_gets_per_service_to_ready)
    });
    row("operator CPU to Ready (s)", &|r| {
        format!("{:.2}", r.cpu_seconds_to_ready)
    });
    row("operator CPU per object (ms)", &|r| {
        format!("{:.3}", r.cpu_ms_per_object_to_ready)
    });
    row("operator peak RSS (MiB)", &|r| format!("{:.1}", r.peak_rss_mib));
    row("idle window (s)", &|r| format!("{:.0}", r.idle_seconds));
    row("idle ECS calls per object per hour", &|r| {
        format!("{:.1}", r.idle_ecs_calls_per_object_per_hour)
    });
    row("idle ECS calls", &|r| {
        format!("{:?}", r.idle_ecs_calls).replace('"', "")
    });
    row("idle ECS writes", &|r| r.idle_ecs_writes.to_string());
    row("idle Kubernetes writes", &|r| r.idle_kube_writes.to_string());
    row("idle operator CPU (s)", &|r| format!("{:.2}", r.idle_cpu_seconds));
}

#[tokio::main]
async fn main() {
    // NB: `cargo test --all-targets` runs bench targets too, without `--bench`: a benchmark
    // of half an hour is not a test, so it only runs under `cargo bench` (`make bench`).
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/scale.rs: run it with `make bench`");
        return;
    }
    let services = setting("BENCH_SERVICES", 1000);
    let clusters = setting("BENCH_CLUSTERS", 4).max(1);
    let resync = setting("BENCH_RESYNC_SECONDS", 30).max(1);
    let idle_resyncs = setting("BENCH_IDLE_RESYNCS", 3).max(1);
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "enforced,neighbour,shards,off".into());
    let dir = bench_dir();
    let mut runs = vec![];
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        runs.push(run(mode, services, clusters, resync, idle_resyncs).await);
    }
    print_table(&runs);
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let summary = json!({"machine": {"cpu": machine, "cores": cores}, "runs": runs});
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("json"),
    )
    .expect("write summary.json");
    println!("\nwrote target/bench/summary.json");
}
