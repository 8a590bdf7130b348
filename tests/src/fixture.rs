//! [`Fixture`]: PostgreSQL with user `app` (password `app-secret`) owning
//! database `appdb`, and pgwolf in front of it serving `appdb`.
//!
//! The generated config leaves the server login to the auth file's entry for
//! the client's user (no `user`/`password` in the database entry), the
//! common PgBouncer set-up: the userlist holds the plaintext password.

use crate::clients::{self, psql, PgbenchRun};
use crate::postgres::{PgOptions, PgServer};
use crate::proxy::Pgwolf;
use std::process::Output;
use tokio_postgres::Client;

pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-secret";
pub const APP_DB: &str = "appdb";

/// pgwolf's `pool_mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// What a fixture starts with.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    pub pool_mode: PoolMode,
    pub pool_size: u32,
    /// `auth_type` in pgwolf's config.
    pub auth_type: String,
    /// Extra top-level TOML lines, e.g. `shutdown_timeout = "3s"`.
    pub extra_settings: String,
    pub pg: PgOptions,
}

impl FixtureOptions {
    pub fn new(pool_mode: PoolMode, pool_size: u32) -> Self {
        FixtureOptions {
            pool_mode,
            pool_size,
            auth_type: "scram-sha-256".to_string(),
            extra_settings: String::new(),
            pg: PgOptions::default(),
        }
    }

    /// Add a top-level setting line.
    pub fn setting(mut self, line: &str) -> Self {
        self.extra_settings.push_str(line);
        self.extra_settings.push('\n');
        self
    }

    pub fn auth_type(mut self, auth_type: &str) -> Self {
        self.auth_type = auth_type.to_string();
        self
    }
}

pub struct Fixture {
    pub opts: FixtureOptions,
    // Field order is drop order: the proxy goes before the server it fronts.
    pub proxy: Pgwolf,
    pub pg: PgServer,
}

impl Fixture {
    pub async fn new(pool_mode: PoolMode, pool_size: u32) -> Fixture {
        Fixture::with(FixtureOptions::new(pool_mode, pool_size)).await
    }

    pub async fn with(opts: FixtureOptions) -> Fixture {
        let pg = PgServer::start_with(opts.pg.clone());
        pg.create_user(APP_USER, APP_PASSWORD).await;
        pg.create_db(APP_DB, APP_USER).await;
        let toml = config_toml(&opts, pg.port(), "");
        let proxy = Pgwolf::start(&toml, &userlist(&[(APP_USER, APP_PASSWORD)]));
        Fixture { opts, proxy, pg }
    }

    /// The config this fixture started with, plus `more` appended (e.g. more
    /// `[databases.x]` tables), for [`Pgwolf::rewrite_config`].
    pub fn config_with(&self, more: &str) -> String {
        config_toml(&self.opts, self.pg.port(), more)
    }

    /// A `[databases.NAME]` table for this fixture's server.
    pub fn database_entry(&self, name: &str, dbname: &str) -> String {
        database_entry(
            name,
            self.pg.port(),
            dbname,
            self.opts.pool_mode,
            self.opts.pool_size,
        )
    }

    pub fn port(&self) -> u16 {
        self.proxy.port()
    }

    /// `app` to `appdb` through pgwolf.
    pub async fn connect(&self) -> Client {
        clients::connect(self.port(), APP_USER, APP_PASSWORD, APP_DB).await
    }

    pub async fn try_connect(&self) -> Result<Client, tokio_postgres::Error> {
        clients::try_connect(self.port(), APP_USER, APP_PASSWORD, APP_DB).await
    }

    /// `app` to `appdb` on PostgreSQL directly, bypassing pgwolf.
    pub async fn connect_direct(&self) -> Client {
        clients::connect(self.pg.port(), APP_USER, APP_PASSWORD, APP_DB).await
    }

    /// psql as `app` to `appdb` through pgwolf.
    pub fn psql(&self, sql: &str) -> Output {
        psql(self.port(), APP_USER, APP_PASSWORD, APP_DB, sql)
    }

    /// pgbench as `app` to `appdb` through pgwolf.
    pub fn pgbench(&self, args: &[&str]) -> PgbenchRun {
        clients::pgbench(self.port(), APP_USER, APP_PASSWORD, APP_DB, args)
    }

    /// `pgbench -i -q -s SCALE` straight against PostgreSQL, so a benchmark
    /// through pgwolf starts from known tables.
    pub fn pgbench_init_direct(&self, scale: u32) {
        let run = clients::pgbench(
            self.pg.port(),
            APP_USER,
            APP_PASSWORD,
            APP_DB,
            &["-i", "-q", "-s", &scale.to_string()],
        );
        assert!(run.success, "pgbench -i failed:\n{}", run.output());
    }
}

/// A PgBouncer-style userlist: `"user" "secret"` per line.
pub fn userlist(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(u, p)| {
            format!(
                "\"{}\" \"{}\"\n",
                u.replace('"', "\"\""),
                p.replace('"', "\"\"")
            )
        })
        .collect()
}

/// A `[databases.NAME]` table pointing at 127.0.0.1:`pg_port`.
pub fn database_entry(name: &str, pg_port: u16, dbname: &str, mode: PoolMode, size: u32) -> String {
    format!(
        "\n[databases.{name}]\nhost = \"127.0.0.1\"\nport = {pg_port}\ndbname = \"{dbname}\"\npool_mode = \"{}\"\npool_size = {size}\n",
        mode.as_str()
    )
}

fn config_toml(opts: &FixtureOptions, pg_port: u16, more: &str) -> String {
    format!(
        "auth_type = \"{auth}\"\npool_mode = \"{mode}\"\ndefault_pool_size = {size}\n{extra}{db}{more}",
        auth = opts.auth_type,
        mode = opts.pool_mode.as_str(),
        size = opts.pool_size,
        extra = opts.extra_settings,
        db = database_entry(APP_DB, pg_port, APP_DB, opts.pool_mode, opts.pool_size),
    )
}

impl Fixture {
    /// `app` to database `db` through pgwolf.
    pub async fn try_connect_to(&self, db: &str) -> Result<Client, tokio_postgres::Error> {
        clients::try_connect(self.port(), APP_USER, APP_PASSWORD, db).await
    }
}
