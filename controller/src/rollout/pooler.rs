//! PAUSE and RESUME on each pooler pod, through pgwolf's admin console
//! (the virtual database `pgwolf`, as the pooler's own admin user). While
//! paused, clients' new transactions wait in the pooler instead of failing
//! against a primary that is stepping down.

use std::time::Duration;
use tokio_postgres::config::SslMode;

#[derive(Clone, Debug)]
pub struct Console {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The password is in the Config, never in the message.
    #[error("{command} on the pooler at {host}:{port}: {detail}")]
    Command {
        command: &'static str,
        host: String,
        port: u16,
        detail: String,
    },
}

/// PAUSE returns once the pooler's running transactions ended (as
/// PgBouncer's does), so `timeout` bounds that wait too.
pub async fn pause(console: &Console, timeout: Duration) -> Result<(), Error> {
    run(console, "PAUSE", timeout).await
}

pub async fn resume(console: &Console, timeout: Duration) -> Result<(), Error> {
    run(console, "RESUME", timeout).await
}

async fn run(console: &Console, command: &'static str, timeout: Duration) -> Result<(), Error> {
    let fail = |detail: String| Error::Command {
        command,
        host: console.host.clone(),
        port: console.port,
        detail,
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host(&console.host)
        .port(console.port)
        .user(&console.user)
        .password(&console.password)
        .dbname("pgwolf")
        .application_name("pgwolf-controller")
        // The controller's poolers take only TLS; prefer keeps a plain
        // pgwolf (a test, a sidecar) reachable.
        .ssl_mode(SslMode::Prefer)
        .connect_timeout(timeout);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(crate::postgres::connect::unverified());
    let work = async {
        let (client, connection) = config.connect(tls).await?;
        let driver = tokio::spawn(connection);
        let result = client.simple_query(command).await.map(drop);
        drop(client);
        let _ = driver.await;
        result
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(fail(describe(&e))),
        Err(_) => Err(fail(format!("no answer within {timeout:?}"))),
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
