//! `pgwolf-controller`: `crd` prints the CRD, `render -f cluster.yaml`
//! prints every object a cluster gets, offline.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pgwolf_controller::{api, render};
use std::io::Read;
use std::path::PathBuf;

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
    /// Print every object a PostgresCluster manifest gets, as multi-document
    /// YAML, without a Kubernetes cluster. Passwords are freshly generated
    /// on each run.
    Render {
        /// The PostgresCluster manifest; `-` for standard input.
        #[arg(short, long)]
        file: PathBuf,
        /// Namespace of the cluster, when the manifest names none (as
        /// `kubectl apply -n`). Default `default`.
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", api::crd_yaml().context("rendering the CRD")?),
        Command::Render { file, namespace } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let mut cluster =
                render::parse_cluster(&text).with_context(|| format!("{}", file.display()))?;
            if cluster.metadata.namespace.is_none() {
                cluster.metadata.namespace = namespace;
            }
            if cluster.metadata.uid.is_none() {
                eprintln!(
                    "pgwolf-controller: the manifest has no metadata.uid, so the objects carry \
                     no ownerReferences (the controller adds them once the cluster exists)"
                );
            }
            print!("{}", render::render(&cluster, &mut rand::rngs::OsRng)?);
        }
    }
    Ok(())
}
