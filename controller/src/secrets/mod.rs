//! Credentials: the passwords of the cluster's roles and their SCRAM
//! verifiers. Generated once and then read back from the Secrets that hold
//! them, so a reconcile never rotates a password by accident. No I/O: the
//! reconciler hands in what it found.
//!
//! Why the verifier is stored beside the password: pgwolf authenticates a
//! client against the verifier in its auth file and logs in to PostgreSQL
//! with the ClientKey that proof yields, which only works when PostgreSQL
//! holds the very same verifier (same salt and iterations). So the role's
//! password is set in PostgreSQL as this verifier, and it must not be
//! re-salted on every reconcile.

mod credential;
pub mod tls;

pub use credential::{Credential, KEY_PASSWORD, KEY_VERIFIER};

use crate::api::PostgresClusterSpec;
use rand::Rng;
use std::collections::BTreeMap;

/// Patroni's superuser, Spilo's default name.
pub const SUPERUSER: &str = "postgres";
/// Patroni's replication user, Spilo's default name.
pub const REPLICATION_USER: &str = "standby";
/// Spilo's admin role (it defaults the password to a well-known string, so
/// one is always generated).
pub const ADMIN_USER: &str = "admin";
/// The pooler's own login: its admin console user (PAUSE/RESUME during a
/// rollout).
pub const POOLER_USER: &str = "pgwolf";
/// The exporter's role (`spec.monitoring`): member of pg_monitor, nothing else.
pub const MONITOR_USER: &str = "pgwolf_monitor";

/// Every credential one cluster needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Credentials {
    pub superuser: Credential,
    pub replication: Credential,
    pub admin: Credential,
    pub pooler: Credential,
    /// The exporter's login, with `spec.monitoring.exporter` only.
    pub monitor: Option<Credential>,
    /// Declared users by name.
    pub users: BTreeMap<String, Credential>,
    /// The certificates the controller issued; None when `spec.tls` names
    /// the user's own Secrets.
    pub tls: Option<tls::IssuedTls>,
}

impl Credentials {
    /// The credential of each role: the one `existing` returns for it (read
    /// from its Secret), else a new one.
    pub fn resolve<R: Rng>(
        spec: &PostgresClusterSpec,
        existing: impl Fn(&str) -> Option<Credential>,
        rng: &mut R,
    ) -> Credentials {
        let mut get =
            |user: &str| existing(user).unwrap_or_else(|| Credential::generate(user, rng));
        Credentials {
            superuser: get(SUPERUSER),
            replication: get(REPLICATION_USER),
            admin: get(ADMIN_USER),
            pooler: get(POOLER_USER),
            monitor: spec
                .monitoring
                .as_ref()
                .is_some_and(|m| m.exporter)
                .then(|| get(MONITOR_USER)),
            users: spec
                .users
                .iter()
                .map(|u| (u.name.clone(), get(&u.name)))
                .collect(),
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn spec() -> PostgresClusterSpec {
        serde_json::from_value(serde_json::json!({"users": [{"name": "app"}, {"name": "report"}]}))
            .unwrap()
    }

    #[test]
    fn existing_credentials_are_kept_and_missing_ones_made() {
        let mut rng = StdRng::seed_from_u64(1);
        let first = Credentials::resolve(&spec(), |_| None, &mut rng);
        assert_eq!(first.users.len(), 2);
        let app = first.users["app"].clone();
        // Only `app` is found again: it stays, `report` is new.
        let second = Credentials::resolve(
            &spec(),
            |user| (user == "app").then(|| app.clone()),
            &mut rng,
        );
        assert_eq!(second.users["app"], app);
        assert_ne!(
            second.users["report"].password,
            first.users["report"].password
        );
        assert_ne!(second.superuser.password, first.superuser.password);
    }

    #[test]
    fn every_role_gets_its_own_password() {
        let c = Credentials::resolve(&spec(), |_| None, &mut StdRng::seed_from_u64(2));
        let mut all = vec![
            &c.superuser.password,
            &c.replication.password,
            &c.admin.password,
            &c.pooler.password,
        ];
        all.extend(c.users.values().map(|u| &u.password));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
