//! The `[pgwolf]` section of a pgbouncer.ini: pgwolf's own settings in
//! TOML, laid over what the ini imports (pgbouncer_ini.rs). A section
//! PgBouncer itself would refuse, so such a file is pgwolf's.

use super::Config;

/// The `[pgwolf]` section: pgwolf's own settings in TOML (anything a
/// pgwolf.toml can say, `[clusters.NAME]` tables included), up to the next
/// PgBouncer section header. Returns the text without it (its lines left
/// blank, so line numbers stay) and, if present, its first line's number
/// and its TOML.
pub(super) fn split(text: &str) -> (String, Option<(usize, String)>) {
    let is_header = |line: &str, names: &[&str]| {
        let t = line.trim();
        names.iter().any(|n| t == format!("[{n}]"))
    };
    let mut ini = String::with_capacity(text.len());
    let mut toml: Option<(usize, String)> = None;
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        if is_header(line, &["pgwolf"]) {
            inside = true;
            toml.get_or_insert((i + 2, String::new()));
            ini.push('\n');
            continue;
        }
        if inside && is_header(line, &["pgbouncer", "databases", "users", "peers"]) {
            inside = false;
        }
        if inside {
            if let Some((_, t)) = toml.as_mut() {
                t.push_str(line);
                t.push('\n');
            }
            ini.push('\n');
        } else {
            ini.push_str(line);
            ini.push('\n');
        }
    }
    (ini, toml)
}

/// `toml_text` over the imported config: a setting replaces the ini's, a
/// table (`[databases.NAME]`, `[clusters.NAME]`) merges key by key.
pub(super) fn overlay(cfg: Config, toml_text: &str) -> Result<Config, String> {
    let over: toml::Table = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    let mut base = toml::Table::try_from(&cfg).map_err(|e| e.to_string())?;
    merge(&mut base, over);
    toml::Value::Table(base)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn a_pgwolf_section_adds_what_only_pgwolf_has() {
        let ini = "\
[databases]
app = host=10.0.0.5 dbname=app

[pgwolf]
http_listen = \"127.0.0.1:9930\"
server_check_delay = \"5s\"

[clusters.main]
provider = \"patroni\"
patroni_urls = [\"http://10.0.0.5:8008\"]

[databases.app]
cluster = \"main\"

[pgbouncer]
auth_type = trust
default_pool_size = 7
";
        let (cfg, _) = super::super::pgbouncer_ini::from_ini_str(ini, Path::new("p.ini")).unwrap();
        assert_eq!(cfg.http_listen, "127.0.0.1:9930");
        assert_eq!(cfg.server_check_delay, Duration::from_secs(5));
        assert_eq!(cfg.default_pool_size, 7, "the [pgbouncer] after it is read");
        assert!(cfg.clusters.contains_key("main"));
        let app = &cfg.databases["app"];
        assert_eq!(app.cluster.as_deref(), Some("main"));
        assert_eq!(app.dbname.as_deref(), Some("app"), "merged, not replaced");

        let bad = "[pgwolf]\nno_such_setting = 1\n[pgbouncer]\nauth_type = trust\n";
        let err = super::super::pgbouncer_ini::from_ini_str(bad, Path::new("p.ini"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[pgwolf]") && err.contains("no_such_setting"),
            "{err}"
        );
    }
}
