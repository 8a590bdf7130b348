//! `pgwolf-controller`: `run` reconciles in a Kubernetes cluster, `crd`
//! prints the CRD, `render -f cluster.yaml` prints every object a cluster
//! gets, offline.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pgwolf_controller::{api, render, run};
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
    /// Reconcile PostgresClusters in the Kubernetes cluster this runs in
    /// (in-cluster config, else the kubeconfig).
    Run {
        /// Where /healthz, /readyz and /metrics are served.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_listen: String,
        /// Watch this namespace only [default: all namespaces].
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Run without a leader Lease: only safe with one replica.
        #[arg(long)]
        no_leader_election: bool,
        /// Namespace of the leader Lease [default: $POD_NAMESPACE].
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        #[arg(long, default_value = "pgwolf-controller")]
        lease_name: String,
        /// Seconds a leader may go without renewing before another takes over.
        #[arg(long, default_value_t = 15)]
        lease_duration: u64,
        /// This replica's name in the Lease [default: $POD_NAME, else the host name].
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
    },
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
        Command::Run {
            http_listen,
            namespace,
            no_leader_election,
            lease_namespace,
            lease_name,
            lease_duration,
            identity,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,kube=warn".into()),
                )
                .init();
            let identity = identity
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .context("no identity: set --identity or POD_NAME")?;
            let lease = if no_leader_election {
                None
            } else {
                Some(pgwolf_controller::lease::LeaseConfig {
                    namespace: lease_namespace
                        .context("leader election needs --lease-namespace or POD_NAMESPACE")?,
                    name: lease_name,
                    identity: identity.clone(),
                    lease_duration: std::time::Duration::from_secs(lease_duration.max(2)),
                })
            };
            let opts = run::Options {
                http_listen,
                namespace,
                lease,
                identity,
            };
            pgwolf::tls::install_default_provider();
            tokio::runtime::Runtime::new()?.block_on(async {
                let client = kube::Client::try_default().await.context(
                    "connecting to the Kubernetes API (in-cluster config or kubeconfig)",
                )?;
                run::run(client, opts).await
            })?;
        }
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
