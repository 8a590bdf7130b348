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
        Command::Run => run(cli.config),
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
    shutdown::load_auth(&loaded.config).context("auth_file")?;
    println!("{}: OK", path.display());
    Ok(())
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let loaded = config::load(&path)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let auth = shutdown::load_auth(&loaded.config).context("auth_file")?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if loaded.config.worker_threads > 0 {
        rt.worker_threads(loaded.config.worker_threads as usize);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        let listeners = listener::bind(&loaded.config.listen).await?;
        let slots = Arc::new(ClientSlots::new(loaded.config.max_client_conn));
        let app = App::new(loaded.config, auth);
        let tracker = TaskTracker::new();
        tokio::spawn(app.clone().maintenance());
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
