//! The `ecs-operator` binary: wiring only.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ecs_operator::api;

#[derive(Parser)]
#[command(
    name = "ecs-operator",
    version,
    about = "Manage Amazon ECS from Kubernetes"
)]
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
    Run,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command.unwrap_or(Command::Run) {
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
        Command::Run => Err("the controllers are not implemented yet (issue 3)".into()),
    }
}
