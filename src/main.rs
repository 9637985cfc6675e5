//! The `ecs-operator` binary: wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ecs_operator::api;
use ecs_operator::ecs::client::EcsClients;
use ecs_operator::ecs::limits::RateLimits;
use ecs_operator::leader::LeaderElector;
use ecs_operator::reconcile::LabelSelector;
use ecs_operator::reconcile::{self, Context, Settings};
use ecs_operator::rollout;
use ecs_operator::server::{self, Health};
use ecs_operator::telemetry::{self, LogFormat, Metrics};
use ecs_operator::{diff, export};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(name = "ecs-operator", version, about = "Manage Amazon ECS from Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CRD as YAML, or write one file per kind into a directory (crds/).
    Crd {
        /// Write `<group>_<plural>.yaml` files here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run the controllers (the default).
    Run(Box<RunArgs>),
    /// Watch and steer an EcsService's service deployment (BLUE_GREEN, CANARY, LINEAR).
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
    },
    /// Write manifests for existing ECS clusters, their services and the task definition
    /// families those run; applied as is, they adopt everything unchanged. Read-only.
    Export(ExportArgs),
    /// What applying manifests would change in ECS, per object (read-only). Exit code 0: no
    /// change, 1: changes, 2: the diff itself failed, as `kubectl diff`.
    Diff(DiffArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// A cluster to export, by name or ARN (repeat the flag for more).
    #[arg(long = "cluster")]
    clusters: Vec<String>,
    /// Export every cluster of the region.
    #[arg(long)]
    all_clusters: bool,
    /// AWS region (default: the SDK's, e.g. AWS_REGION).
    #[arg(long)]
    region: Option<String>,
    /// metadata.namespace of the objects (left out when unset).
    #[arg(long)]
    namespace: Option<String>,
    /// `-` for one YAML stream on stdout, or a directory for one file per object.
    #[arg(long, default_value = "-")]
    out: PathBuf,
    /// Objects with `managementPolicy: Observe` (read and report drift, never write)
    /// instead of `adopt: true`.
    #[arg(long)]
    observe: bool,
}

#[derive(Args)]
struct DiffArgs {
    /// A manifest file, a directory of them, or `-` for stdin (repeat the flag for more).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Namespace of objects that name none (default: the kubeconfig's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// AWS region of objects without spec.region (default: the SDK's, e.g. AWS_REGION).
    #[arg(long)]
    region: Option<String>,
    /// text for people, json for CI.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: diff::Format,
}

#[derive(Subcommand)]
enum RolloutAction {
    /// Where the service deployment stands: strategy, stage, the hook waiting.
    Status(RolloutTarget),
    /// Approve the deployment paused at a PAUSE hook.
    Approve(RolloutTarget),
    /// Roll the deployment back (at its paused hook, or stopping it).
    Rollback(RolloutTarget),
    /// Stop the deployment where it is (StopServiceDeployment ABORT).
    Abort(RolloutTarget),
}

#[derive(Args)]
struct RolloutTarget {
    /// The EcsService, as NAMESPACE/NAME.
    service: String,
    /// The service deployment to act on (default: the one in flight, from status).
    #[arg(long)]
    deployment: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Watch only these namespaces (repeat the flag, or comma-separate); all when unset.
    #[arg(long = "namespace", env = "ECS_OPERATOR_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Reconcile only objects with these labels (e.g. `shard=a`), to split objects across
    /// several operator deployments.
    #[arg(long, env = "ECS_OPERATOR_SELECTOR")]
    selector: Option<LabelSelector>,
    /// Default AWS region for objects without spec.region (default: the SDK's, e.g. AWS_REGION).
    #[arg(long, env = "ECS_OPERATOR_REGION")]
    region: Option<String>,
    /// At most this many reconciles at once per kind (0: unbounded).
    #[arg(long, env = "ECS_OPERATOR_MAX_CONCURRENT_RECONCILES", default_value_t = 10)]
    max_concurrent_reconciles: u16,
    /// A YAML file mapping namespaces to the IAM role ARNs their objects act as
    /// (`team-a: arn:aws:iam::111122223333:role/ecs-team-a`), assumed through STS from the
    /// operator's own identity. Unmapped namespaces act as the operator itself. Mount it
    /// from a ConfigMap in the operator's namespace: only the cluster administrator sets it.
    #[arg(long, env = "ECS_OPERATOR_NAMESPACE_ROLES")]
    namespace_roles: Option<std::path::PathBuf>,
    /// Client-side ECS rate limits per account and region: `ecs` (ECS's own buckets), `off`,
    /// or ECS's with overrides, e.g. `service-read=50/10,task-definition-modify=10/0.5`
    /// (burst/per second). Lower them to leave headroom for other tools in the account.
    #[arg(long, env = "ECS_OPERATOR_ECS_RATE_LIMITS", default_value = "ecs")]
    ecs_rate_limits: RateLimits,
    /// How often in-sync objects are re-observed to catch drift, in seconds.
    #[arg(long, env = "ECS_OPERATOR_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// How long a Stalled object waits before one retry without a spec change, in seconds.
    #[arg(long, env = "ECS_OPERATOR_STALLED_RETRY_SECONDS", default_value_t = 3600)]
    stalled_retry_seconds: u64,
    /// Address of /metrics.
    #[arg(long, env = "ECS_OPERATOR_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Address of /healthz and /readyz (may equal the metrics address).
    #[arg(long, env = "ECS_OPERATOR_HEALTH_ADDRESS", default_value = "0.0.0.0:8081")]
    health_address: SocketAddr,
    /// Log format: json (default when stdout is not a terminal, as in a pod) or text.
    #[arg(long, env = "ECS_OPERATOR_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Log level, as a tracing filter (e.g. `info` or `debug,kube=info`).
    #[arg(long, env = "ECS_OPERATOR_LOG_LEVEL", default_value = "info,kube=warn")]
    log_level: String,
    /// Elect a leader on a Lease so that several replicas can run; only the leader reconciles.
    #[arg(long, env = "ECS_OPERATOR_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader election Lease (default: the pod's, POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, env = "ECS_OPERATOR_LEASE_NAME", default_value = "ecs-operator")]
    lease_name: String,
    /// How long a leader's lease lasts without renewal, in seconds (the failover time).
    #[arg(long, env = "ECS_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// This replica's identity in the Lease (default: POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// On SIGTERM, how long in-flight reconciles may take before the process exits anyway.
    #[arg(long, env = "ECS_OPERATOR_SHUTDOWN_SECONDS", default_value_t = 30)]
    shutdown_seconds: u64,
}

#[tokio::main]
async fn main() {
    // NB: one line a person can act on, not the Debug form Rust prints for a returned error.
    if let Err(err) = dispatch().await {
        eprintln!("ecs-operator: {err}");
        std::process::exit(1);
    }
}

async fn dispatch() -> Result<(), Box<dyn std::error::Error>> {
    let command = Cli::parse()
        .command
        .unwrap_or_else(|| Command::Run(Box::new(RunArgs::parse_from(["run"]))));
    match command {
        Command::Crd { out_dir: None } => {
            for crd in api::crds() {
                print!("---\n{}", api::crd_yaml(&crd)?);
            }
            Ok(())
        }
        Command::Crd { out_dir: Some(dir) } => {
            for crd in api::crds() {
                std::fs::write(dir.join(api::crd_file_name(&crd)), api::crd_yaml(&crd)?)?;
            }
            Ok(())
        }
        Command::Run(args) => run(*args).await,
        Command::Rollout { action } => {
            let (action, target) = match action {
                RolloutAction::Status(t) => (rollout::Action::Status, t),
                RolloutAction::Approve(t) => (rollout::Action::Approve, t),
                RolloutAction::Rollback(t) => (rollout::Action::Rollback, t),
                RolloutAction::Abort(t) => (rollout::Action::Abort, t),
            };
            println!(
                "{}",
                rollout::run(action, &target.service, target.deployment.as_deref()).await?
            );
            Ok(())
        }
        Command::Export(args) => export(args).await,
        Command::Diff(args) => {
            let region = args.region.clone();
            match diff::run(&args.files, args.namespace.as_deref(), region, args.output).await {
                Ok(code) => std::process::exit(code),
                Err(err) => {
                    eprintln!("ecs-operator: {err}");
                    std::process::exit(2);
                }
            }
        }
    }
}

/// `ecs-operator export`: to stdout, or one file per object into a directory.
async fn export(args: ExportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let options = export::ExportOptions {
        region: args.region,
        clusters: args.clusters,
        all_clusters: args.all_clusters,
        namespace: args.namespace,
        observe: args.observe,
    };
    let account = export::read(&options).await?;
    let exported = export::manifests(&account, &options);
    if args.out == std::path::Path::new("-") {
        print!("{}", export::yaml(&exported, &options)?);
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)?;
    for object in &exported {
        let file = args
            .out
            .join(format!("{}-{}.yaml", object.kind().to_lowercase(), object.name()));
        std::fs::write(&file, object.yaml()?)?;
    }
    eprintln!("wrote {} manifests to {}", exported.len(), args.out.display());
    Ok(())
}

impl RunArgs {
    fn parse_from<'a>(args: impl IntoIterator<Item = &'a str>) -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            run: RunArgs,
        }
        Only::parse_from(args).run
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init_logging(args.log_format, &args.log_level);
    let namespace_roles = match &args.namespace_roles {
        Some(path) => ecs_operator::ecs::roles::read(path)?,
        None => Default::default(),
    };
    info!(namespaces = ?namespace_roles.keys().collect::<Vec<_>>(), "namespaces mapped to IAM roles");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listen = |address, what: &str, flag: &str, env: &str| {
        let what = what.to_string();
        let (flag, env) = (flag.to_string(), env.to_string());
        move |err: std::io::Error| {
            format!("cannot serve {what} on {address}: {err}; choose another address with {flag} ({env})")
        }
    };
    server::serve(args.metrics_address, health.clone(), metrics.clone())
        .await
        .map_err(listen(
            args.metrics_address,
            "/metrics",
            "--metrics-address",
            "ECS_OPERATOR_METRICS_ADDRESS",
        ))?;
    if args.health_address != args.metrics_address {
        server::serve(args.health_address, health.clone(), metrics.clone())
            .await
            .map_err(listen(
                args.health_address,
                "/healthz and /readyz",
                "--health-address",
                "ECS_OPERATOR_HEALTH_ADDRESS",
            ))?;
    }

    let (client, watches) = kubernetes_clients().await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let elector = args.leader_elect.then(|| {
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        LeaderElector::new(
            client.clone(),
            &args.leader_election_namespace,
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_seconds.max(1)),
        )
    });
    if let Some(elector) = &elector {
        // NB: a standby is healthy and ready; it just does not reconcile.
        health.set_ready(true);
        tokio::select! {
            () = elector.acquire() => {}
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        health.set_ready(false);
    }

    let ecs = EcsClients::load(
        args.region.clone(),
        args.ecs_rate_limits.clone(),
        namespace_roles,
        metrics.clone(),
    )
    .await;
    let settings = Settings {
        resync_interval: Duration::from_secs(args.resync_seconds),
        stalled_retry_interval: Duration::from_secs(args.stalled_retry_seconds),
        namespaces: args.namespaces.clone(),
        label_selector: args.selector.clone(),
        concurrency: args.max_concurrent_reconciles,
    };
    info!(?settings, "starting controllers");
    let ctx = Arc::new(Context::new(client, ecs, settings, metrics));
    let shutdown = Duration::from_secs(args.shutdown_seconds);
    let controllers = reconcile::run(ctx, watches, health);
    tokio::pin!(controllers);
    let lost = async {
        match &elector {
            Some(elector) => elector.keep().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = &mut controllers => {}
        () = lost => {
            error!("lost the leader lease; exiting so that only one replica reconciles");
            std::process::exit(1);
        }
        _ = terminate.recv() => {
            // NB: the controllers stop taking work on the same signal and finish what is in
            // flight; bound how long that may take.
            info!("SIGTERM: finishing in-flight reconciles");
            if tokio::time::timeout(shutdown, &mut controllers).await.is_err() {
                warn!(?shutdown, "in-flight reconciles did not finish in time");
            }
        }
    }
    if let Some(elector) = &elector {
        elector.release().await;
    }
    Ok(())
}

/// Two clients of the same apiserver and identity, neither retrying inside the client
/// (kube's built-in retry can hold a call for minutes on 429/503 answers while an apiserver
/// starts; the controllers' own backoff retries instead). One for requests: an answer that
/// does not come within 30 s fails the call, so a dead connection or a restarting
/// apiserver never holds a reconcile for good. One for watches, which may rightly stay
/// quiet for the whole of their 290 s: its timeout only bounds a list that never answers.
async fn kubernetes_clients() -> Result<(kube::Client, kube::Client), kube::Error> {
    let mut config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    // NB: without this, the time a pooled connection sat idle counts against the timeout.
    config.reset_reader_on_write = true;
    config.read_timeout = Some(Duration::from_secs(300));
    let watches = kube::Client::try_from(config.clone())?;
    config.read_timeout = Some(Duration::from_secs(30));
    Ok((kube::Client::try_from(config)?, watches))
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
