//! `auth_query`: the secret of a user the auth file does not list, looked
//! up in PostgreSQL through a pooled connection of `auth_user` (to
//! `auth_dbname`, or the client's database), and kept `auth_cache_ttl`.
//! A SCRAM verifier found this way also logs pgwolf in to the server as
//! the user (pass-through), so the user's password is stored nowhere.
//!
//! An unknown user and a failed lookup both yield no secret: the client
//! then goes through a full exchange against a throwaway verifier and is
//! refused like a wrong password, learning nothing.

use crate::app::App;
use crate::auth::Secret;
use std::time::Instant;

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
        if hit.1.elapsed() < cfg.auth_cache_ttl {
            return hit.0.clone();
        }
    }
    let dbname = cfg.auth_dbname.as_deref().unwrap_or(db);
    if crate::admin::DATABASES.contains(&dbname) {
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
            return None;
        }
    };
    let sql = cfg.auth_query.replace("$1", &literal(user));
    let secret = match lease.conn().query_row(&sql).await {
        Ok(row) => {
            lease.release();
            row.and_then(|r| r.into_iter().nth(1).flatten())
                .filter(|s| !s.is_empty())
                .map(|s| Secret::parse(&s))
        }
        Err(e) => {
            // The query's own error (a missing function, no privilege)
            // leaves the connection at ReadyForQuery; anything else breaks it.
            if matches!(e, crate::server::ServerError::Server { .. }) {
                lease.release();
            } else {
                lease.discard();
            }
            tracing::warn!(db = dbname, auth_user, error = %e, "auth_query failed");
            return None;
        }
    };
    remember(app, &cfg, user, &secret);
    secret
}

/// Remembers the result within `auth_cache_max_entries`. A found secret
/// is always kept (the user's pool is made from it, and SCRAM pass-through
/// needs it), making room by dropping expired entries, then the oldest;
/// the lack of one is kept only while there is room, so random user names
/// cannot grow the cache or push real users out.
fn remember(app: &App, cfg: &crate::config::Config, user: &str, secret: &Option<Secret>) {
    let max = cfg.auth_cache_max_entries.max(1);
    let cache = &app.looked_up;
    if cache.len() >= max && !cache.contains_key(user) {
        let ttl = cfg.auth_cache_ttl;
        cache.retain(|_, (_, at)| at.elapsed() < ttl);
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
    cache.insert(user.to_string(), (secret.clone(), Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_cannot_break_out() {
        assert_eq!(literal("app"), "E'app'");
        assert_eq!(literal("o'brien"), "E'o''brien'");
        assert_eq!(literal("a\\'; DROP"), "E'a\\\\''; DROP'");
    }
}
