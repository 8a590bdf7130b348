//! `pgwolf-controller`: `crd` prints the CRD.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pgwolf_controller::api;

#[derive(Parser)]
#[command(
    name = "pgwolf-controller",
    version,
    about = "Kubernetes controller for PostgreSQL clusters with the pgwolf pooler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the PostgresCluster CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", api::crd_yaml().context("rendering the CRD")?),
    }
    Ok(())
}
