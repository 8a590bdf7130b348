//! `auth_query`: the secret of a user the auth file does not list, looked
//! up in PostgreSQL through a pooled connection of `auth_user` (to
//! `auth_dbname`, or the client's database), and kept `auth_cache_ttl`,
//! or less when the lookup says when the password expires.
//! A SCRAM verifier found this way also logs pgwolf in to the server as
//! the user (pass-through), so the user's password is stored nowhere.
//!
//! An unknown user and a failed lookup both yield no secret: the client
//! then goes through a full exchange against a throwaway verifier and is
//! refused like a wrong password, learning nothing.

use crate::app::App;
use crate::auth::Secret;
use std::time::{Duration, Instant};

/// Runs before the lookup, in the same implicit transaction (one simple
/// Query), so it holds for the lookup alone and the pooled connection
/// keeps its own setting. Whatever search_path the connection has (a role
/// default, a SET by a client of `auth_user`, a startup parameter), an
/// unqualified name in `auth_query` then resolves to the catalog, never
/// to a look-alike in a schema a user can write (PgBouncer's
/// CVE-2025-12819).
const FIXED_SEARCH_PATH: &str = "SET LOCAL search_path = pg_catalog, pg_temp; ";

/// `name` as a string literal that means the same whatever
/// standard_conforming_strings says: E'' with quotes and backslashes doubled.
fn literal(name: &str) -> String {
    format!("E'{}'", name.replace('\\', "\\\\").replace('\'', "''"))
}

/// The secret of `user` from auth_query; None without an `auth_user`, for
/// an unknown user, or when the lookup fails (logged, without the secret).
pub async fn secret_for(app: &App, user: &str, db: &str) -> Option<Secret> {
    let cfg = app.config.load_full();
    let auth_user = cfg.auth_user.as_deref()?;
    if let Some(hit) = app.looked_up.get(user) {
        if Instant::now() < hit.1 {
            return hit.0.clone();
        }
    }
    let dbname = cfg.auth_dbname.as_deref().unwrap_or(db);
    if crate::config::ADMIN_DATABASES.contains(&dbname) {
        return None;
    }
    let Some(pool) = app.pool_for(dbname, auth_user) else {
        tracing::warn!(
            db = dbname,
            "auth_query: no such database for the lookup (auth_dbname)"
        );
        return None;
    };
    let mut lease = match pool.checkout().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(db = dbname, auth_user, error = %e, "auth_query: no server connection for the lookup");
            app.forget_failed_wildcard_pool(&pool);
            return None;
        }
    };
    // A client logged in as auth_user may have left its startup settings
    // on this connection: the lookup runs without them (RESET in the same
    // round trip, before SET LOCAL search_path).
    let reset = lease.conn().params.reset_extras().unwrap_or_default();
    let sql = format!(
        "{reset}{FIXED_SEARCH_PATH}{}",
        cfg.auth_query.replace("$1", &literal(user))
    );
    let (secret, valid_for) = match lease.conn().query_row(&sql).await {
        Ok(row) => {
            lease.release();
            found(row, cfg.auth_cache_ttl)
        }
        Err(e) => {
            // The query's own error (a missing function, no privilege)
            // leaves the connection at ReadyForQuery; anything else breaks it.
            // A failed implicit transaction undid the RESETs too: then the
            // connection's settings are no longer known, and it goes.
            if matches!(e, crate::server::ServerError::Server { .. }) && reset.is_empty() {
                lease.release();
            } else {
                lease.discard();
            }
            tracing::warn!(db = dbname, auth_user, error = %e, "auth_query failed");
            return None;
        }
    };
    remember(app, &cfg, user, &secret, Instant::now() + valid_for);
    secret
}

/// The secret in a lookup's row (its second column) and how long it may
/// be reused: `ttl`, or less when a third column gives the seconds until
/// the password expires (the default query's, from `VALID UNTIL`). A row
/// that says the password has expired yields no secret.
fn found(row: Option<crate::server::Row>, ttl: Duration) -> (Option<Secret>, Duration) {
    let mut columns = row.unwrap_or_default().into_iter().skip(1);
    let secret = columns.next().flatten().filter(|s| !s.is_empty());
    let expires_in = columns
        .next()
        .flatten()
        .and_then(|s| s.trim().parse::<f64>().ok());
    match expires_in {
        Some(s) if s <= 0.0 || s.is_nan() => (None, ttl),
        // Past what a Duration holds: as good as never.
        Some(s) => (
            secret.map(|s| Secret::parse(&s)),
            Duration::try_from_secs_f64(s).map_or(ttl, |d| d.min(ttl)),
        ),
        None => (secret.map(|s| Secret::parse(&s)), ttl),
    }
}

/// Remembers the result within `auth_cache_max_entries`. A found secret
/// is always kept (the user's pool is made from it, and SCRAM pass-through
/// needs it), making room by dropping expired entries, then the oldest;
/// the lack of one is kept only while there is room, so random user names
/// cannot grow the cache or push real users out.
fn remember(
    app: &App,
    cfg: &crate::config::Config,
    user: &str,
    secret: &Option<Secret>,
    until: Instant,
) {
    let max = cfg.auth_cache_max_entries.max(1);
    let cache = &app.looked_up;
    if cache.len() >= max && !cache.contains_key(user) {
        let now = Instant::now();
        cache.retain(|_, (_, until)| *until > now);
        if cache.len() >= max && secret.is_none() {
            return;
        }
        while cache.len() >= max {
            let oldest = cache
                .iter()
                .min_by_key(|e| (e.value().0.is_some(), e.value().1))
                .map(|e| e.key().clone());
            match oldest {
                Some(name) => cache.remove(&name),
                None => break,
            };
        }
    }
    cache.insert(user.to_string(), (secret.clone(), until));
}

#[cfg(test)]
mod tests {
    use super::{found, literal};
    use std::time::Duration;

    fn row(cols: &[Option<&str>]) -> Option<crate::server::Row> {
        Some(cols.iter().map(|c| c.map(str::to_string)).collect())
    }

    #[test]
    fn the_expiry_column_bounds_the_cache_and_refuses_expired_passwords() {
        let ttl = Duration::from_secs(10);
        let v = "md5e8a48653851e28c69d0506508fb27fc5";
        let (s, d) = found(row(&[Some("u"), Some(v)]), ttl);
        assert!(s.is_some());
        assert_eq!(d, ttl, "no third column: the TTL");
        let (s, d) = found(row(&[Some("u"), Some(v), None]), ttl);
        assert!(s.is_some());
        assert_eq!(d, ttl, "NULL: the password does not expire");
        let (s, d) = found(row(&[Some("u"), Some(v), Some("2.500000")]), ttl);
        assert!(s.is_some());
        assert_eq!(
            d,
            Duration::from_millis(2500),
            "expires before the TTL ends"
        );
        let (_, d) = found(row(&[Some("u"), Some(v), Some("1e300")]), ttl);
        assert_eq!(d, ttl);
        for expired in ["0", "-3.2", "NaN"] {
            let (s, _) = found(row(&[Some("u"), Some(v), Some(expired)]), ttl);
            assert!(s.is_none(), "{expired}: an expired password is no secret");
        }
        assert!(found(row(&[Some("u"), Some("")]), ttl).0.is_none());
        assert!(found(row(&[Some("u"), None]), ttl).0.is_none());
        assert!(found(None, ttl).0.is_none());
    }

    #[test]
    fn literals_cannot_break_out() {
        assert_eq!(literal("app"), "E'app'");
        assert_eq!(literal("o'brien"), "E'o''brien'");
        assert_eq!(literal("a\\'; DROP"), "E'a\\\\''; DROP'");
    }
}
