//! The `ecs-operator` binary: wiring only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ecs_operator::api;
use ecs_operator::ecs::client::EcsClients;
use ecs_operator::reconcile::{self, Context, Settings};

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
    Run(RunArgs),
}

#[derive(Args, Default)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "ECS_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Default AWS region for objects without spec.region (default: the SDK's, e.g. AWS_REGION).
    #[arg(long, env = "ECS_OPERATOR_REGION")]
    region: Option<String>,
    /// How often in-sync objects are re-observed to catch drift, in seconds.
    #[arg(long, env = "ECS_OPERATOR_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// How long a Stalled object waits before one retry without a spec change, in seconds.
    #[arg(long, env = "ECS_OPERATOR_STALLED_RETRY_SECONDS", default_value_t = 3600)]
    stalled_retry_seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command.unwrap_or(Command::Run(RunArgs::default())) {
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
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let client = kube::Client::try_default().await?;
    let ecs = EcsClients::load(args.region).await;
    let settings = Settings {
        resync_interval: Duration::from_secs(args.resync_seconds),
        stalled_retry_interval: Duration::from_secs(args.stalled_retry_seconds),
        namespace: args.namespace,
    };
    tracing::info!(?settings, "starting controllers");
    reconcile::run(Arc::new(Context::new(client, ecs, settings))).await;
    Ok(())
}
