//! `pgwolf convert`: a pgbouncer.ini as the pgwolf.toml that runs the same.
//! Only settings whose value differs from pgwolf's default are written
//! (the ini import already turned PgBouncer's own defaults into explicit
//! values where they differ), and the settings PgBouncer has and pgwolf
//! lacks head the file as comments. Paths stay as the ini has them, so the
//! TOML file resolves them the same way next to it. Pure, like the parsers.

use super::load::ConfigError;
use super::{pgbouncer_ini, validate, Config};
use std::path::Path;

/// The TOML text for the ini text `text` read from `path`.
pub fn ini_to_toml(text: &str, path: &Path) -> Result<String, ConfigError> {
    let (config, warnings) = pgbouncer_ini::from_ini_str(text, path)?;
    validate(&config)?;
    let mut out = format!(
        "# pgwolf.toml converted from {} by `pgwolf convert`.\n",
        path.display()
    );
    for w in &warnings {
        out.push_str("# ");
        out.push_str(&w.replace('\n', "\n# "));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&minimal_toml(&config)?);
    Ok(out)
}

/// `config` as TOML with only what differs from `Config::default()`, keys
/// sorted.
pub fn minimal_toml(config: &Config) -> Result<String, ConfigError> {
    let invalid = |e: toml::ser::Error| ConfigError::Invalid {
        key: "(all)".into(),
        message: format!("cannot be written as TOML: {e}"),
    };
    let mut table = toml::Table::try_from(config).map_err(invalid)?;
    let defaults = toml::Table::try_from(Config::default()).map_err(invalid)?;
    table.retain(|k, v| defaults.get(k) != Some(v));
    // Each entry of these tables without what its type's default says;
    // a cluster's defaults are its provider's.
    for (key, kind) in [
        ("databases", Entry::Database),
        ("users", Entry::User),
        ("clusters", Entry::Cluster),
    ] {
        if let Some(toml::Value::Table(entries)) = table.get_mut(key) {
            for (_, entry) in entries.iter_mut() {
                if let toml::Value::Table(e) = entry {
                    if let Some(d) = entry_defaults(kind, e) {
                        e.retain(|k, v| k == "provider" || d.get(k) != Some(v));
                    }
                }
            }
        }
    }
    toml::to_string(&sorted(table)).map_err(invalid)
}

#[derive(Clone, Copy)]
enum Entry {
    Database,
    User,
    Cluster,
}

/// An entry of `kind` with nothing set (a cluster: only its provider), as
/// a table; None if that does not deserialize.
fn entry_defaults(kind: Entry, entry: &toml::Table) -> Option<toml::Table> {
    let mut bare = toml::Table::new();
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(
        t: toml::Table,
    ) -> Option<toml::Table> {
        let v: T = toml::Value::Table(t).try_into().ok()?;
        toml::Table::try_from(v).ok()
    }
    match kind {
        Entry::Database => round::<super::DatabaseConfig>(bare),
        Entry::User => round::<super::UserConfig>(bare),
        Entry::Cluster => {
            bare.insert("provider".into(), entry.get("provider")?.clone());
            round::<super::ClusterConfig>(bare)
        }
    }
}

/// Sorted at every depth: toml keeps insertion order when a crate in the
/// build turns on `preserve_order`, and the output must not depend on it.
fn sorted(table: toml::Table) -> toml::Table {
    let mut entries: Vec<(String, toml::Value)> = table.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::Table(t) => (k, toml::Value::Table(sorted(t))),
            other => (k, other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "\
[databases]
app = host=10.0.0.5 port=5432 dbname=app_prod pool_size=40
reports = host=replica.internal dbname=app_prod pool_mode=session max_db_connections=10
* = host=10.0.0.5

[users]
batch = pool_mode=statement pool_size=2

[pgbouncer]
listen_addr = *
listen_port = 6432
auth_type = scram-sha-256
auth_file = userlist.txt
admin_users = postgres
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
server_reset_query = DISCARD ALL
logfile = /var/log/pgbouncer/pgbouncer.log
";

    #[test]
    fn the_converted_file_loads_as_the_ini_does() {
        let path = Path::new("/etc/pgbouncer/pgbouncer.ini");
        let text = ini_to_toml(INI, path).unwrap();
        let (from_ini, _) = pgbouncer_ini::from_ini_str(INI, path).unwrap();
        let from_toml = super::super::from_toml_str(&text, Path::new("pgwolf.toml")).unwrap();
        assert_eq!(from_toml, from_ini, "{text}");
        assert!(
            text.contains("logfile"),
            "unsupported settings named: {text}"
        );
        assert!(text.contains("[databases.app]"), "{text}");
        // Only what differs from pgwolf's defaults, in entries too.
        assert!(!text.contains("server_check_delay"), "{text}");
        let cluster = "[pgwolf]\n[clusters.main]\nprovider = \"patroni\"\n\
                       patroni_urls = [\"http://h:8008\"]\n[pgbouncer]\nauth_type = trust\n";
        let text = ini_to_toml(cluster, path).unwrap();
        assert!(!text.contains("poll_interval"), "{text}");
        assert!(text.contains("provider = \"patroni\""), "{text}");
        let (from_ini, _) = pgbouncer_ini::from_ini_str(cluster, path).unwrap();
        let back = super::super::from_toml_str(&text, Path::new("pgwolf.toml")).unwrap();
        assert_eq!(back, from_ini, "{text}");
    }
}
