//! The `pgwolf` binary: CLI, logging, runtime.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use pgwolf::app::App;
use pgwolf::listener::{self, ClientSlots};
use pgwolf::{config, shutdown};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

#[derive(Parser)]
#[command(
    name = "pgwolf",
    version,
    about = "PostgreSQL connection pooler that follows the primary"
)]
struct Cli {
    /// Config file: TOML, or PgBouncer's pgbouncer.ini.
    #[arg(short, long, global = true, default_value = "pgwolf.toml")]
    config: PathBuf,
    /// Log line format.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the config file and exit non-zero naming the first problem.
    Check,
    /// Print the pgwolf.toml equivalent to a pgbouncer.ini: only settings
    /// that differ from pgwolf's defaults, PgBouncer settings pgwolf does
    /// not have as comments at the top.
    Convert {
        /// The pgbouncer.ini to convert.
        ini: PathBuf,
    },
    /// Planned switchover of a Patroni cluster through a running pgwolf's
    /// admin console: new transactions wait, running ones finish, Patroni
    /// switches over, and they resume on the new primary with no error.
    /// The password is read from PGPASSWORD.
    Switchover {
        /// The cluster (`[clusters.NAME]`); optional when only one is configured.
        #[arg(long)]
        cluster: Option<String>,
        /// The member to promote; Patroni picks one when omitted.
        #[arg(long)]
        to: Option<String>,
        /// pgwolf's listen address; defaults to the config's first `listen`.
        #[arg(long)]
        admin: Option<String>,
        /// An `admin_users` user.
        #[arg(long, env = "PGUSER", default_value = "postgres")]
        user: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Convert { ini } => convert(&ini),
        Command::Run => run(cli.config),
        Command::Switchover {
            cluster,
            to,
            admin,
            user,
        } => switchover(&cli.config, cluster, to, admin, user),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgwolf: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGWOLF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let loaded = config::load(path)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    shutdown::load_auth(&loaded.config).context("auth_file or auth_hba_file")?;
    pgwolf::tls::TlsSetup::load(&loaded.config)?;
    println!("{}: OK", path.display());
    Ok(())
}

fn convert(ini: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(ini).with_context(|| format!("reading {}", ini.display()))?;
    print!("{}", config::ini_to_toml(&text, ini)?);
    Ok(())
}

fn switchover(
    config_path: &std::path::Path,
    cluster: Option<String>,
    to: Option<String>,
    admin: Option<String>,
    user: String,
) -> anyhow::Result<()> {
    let addr = match admin {
        Some(a) => a,
        None => config::load(config_path)?
            .config
            .listen
            .first()
            .cloned()
            .context("no listen address in the config; pass --admin host:port")?,
    };
    let (host, port) = config::split_host_port(&addr)
        .with_context(|| format!("--admin `{addr}` is not host:port"))?;
    let secret = std::env::var("PGPASSWORD")
        .ok()
        .map(pgwolf::auth::Secret::Plain);
    let mut command = String::from("SWITCHOVER");
    if let Some(c) = &cluster {
        command.push(' ');
        command.push_str(c);
    }
    if let Some(m) = &to {
        command.push_str(" TO ");
        command.push_str(m);
    }
    let target = pgwolf::server::ServerTarget {
        host,
        port,
        dbname: "pgwolf".into(),
        user,
        secret,
        client_keys: None,
        startup: vec![("application_name".into(), "pgwolf switchover".into())],
        tls: Default::default(),
        connect_timeout: std::time::Duration::from_secs(10),
        login_timeout: std::time::Duration::from_secs(10),
        tcp: Default::default(),
        dns: Default::default(),
        balance: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut conn = pgwolf::server::connect(&target, 0, Vec::new())
            .await
            .with_context(|| format!("admin console at {addr}"))?;
        let new = conn.query_value(&command).await?;
        println!(
            "switched over: the primary is now {}",
            new.as_deref().unwrap_or("?")
        );
        conn.terminate().await;
        Ok(())
    })
}

/// One thread runs tokio's current-thread scheduler: the same single thread
/// as a one-worker multi-thread runtime, without its cross-thread queues,
/// atomics and worker wake-ups (see docs/benchmarks.md, "Runtime shape").
fn runtime(worker_threads: u32) -> std::io::Result<tokio::runtime::Runtime> {
    if worker_threads == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        rt.worker_threads(worker_threads as usize);
    }
    rt.enable_all().build()
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let loaded = config::load(&path)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let auth = shutdown::load_auth(&loaded.config).context("auth_file or auth_hba_file")?;
    let tls = pgwolf::tls::TlsSetup::load(&loaded.config)?;
    let rt = runtime(loaded.config.worker_threads)?;
    rt.block_on(async move {
        let listeners = listener::bind(&loaded.config).await?;
        let slots = Arc::new(ClientSlots::new(loaded.config.max_client_conn));
        let http = match loaded.config.http_listen.as_str() {
            "" => None,
            addr => Some(
                pgwolf::http::bind(addr)
                    .await
                    .with_context(|| format!("http_listen {addr}"))?,
            ),
        };
        let app = App::new(loaded.config, auth);
        app.tls.store(Arc::new(tls));
        if let Some(l) = http {
            tracing::info!(addr = %l.local_addr()?, "http listening (/metrics, /healthz, /readyz, /topology)");
            tokio::spawn(pgwolf::http::serve(app.clone(), l));
        }
        let tracker = TaskTracker::new();
        tokio::spawn(app.clone().maintenance());
        tokio::spawn(app.clone().wait_janitor());
        for l in listeners {
            tokio::spawn(listener::accept_loop(
                app.clone(),
                l,
                slots.clone(),
                tracker.clone(),
            ));
        }
        shutdown::wait_for_drain(&app, &path, &slots).await?;
        shutdown::drain(app, tracker).await;
        Ok(())
    })
}
