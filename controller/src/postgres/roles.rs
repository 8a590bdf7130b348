//! `spec.users` in PostgreSQL, idempotently: each user a LOGIN role with
//! the declared attributes and, as its password, the SCRAM verifier from
//! its Secret (the very string pgwolf's auth file holds, which SCRAM
//! pass-through needs); each listed database created when missing, owned
//! by the first user that lists it; the other users that list it may
//! connect, use temporary tables and create schemas there.
//!
//! Read what is, plan the difference (pure), run it. A converged cluster
//! plans nothing, so a reconcile does not rewrite roles it need not touch.
//! Statements carry verifiers: they are never logged, only their
//! summaries are.

use crate::api::{PostgresClusterSpec, RoleOption, UserSpec};
use crate::secrets::{Credentials, ADMIN_USER, MONITOR_USER};

/// Built-in roles the controller's own roles are members of: the
/// exporter reads statistics through pg_monitor and can do nothing else.
const MEMBERSHIPS: [(&str, &str); 1] = [(MONITOR_USER, "pg_monitor")];
use std::collections::BTreeMap;

/// One statement and a description of it without secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Step {
    pub sql: String,
    pub summary: String,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

/// A role as pg_authid has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    pub password: Option<String>,
    pub attributes: Attributes,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub login: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub inherit: bool,
}

impl Attributes {
    fn wanted(options: &[RoleOption]) -> Attributes {
        let has = |o| options.contains(&o);
        Attributes {
            login: true,
            createdb: has(RoleOption::CreateDb),
            createrole: has(RoleOption::CreateRole),
            replication: has(RoleOption::Replication),
            bypassrls: has(RoleOption::BypassRls),
            inherit: !has(RoleOption::NoInherit),
        }
    }

    fn sql(&self) -> String {
        let flag = |on: bool, name: &str| {
            if on {
                name.to_string()
            } else {
                format!("NO{name}")
            }
        };
        [
            flag(self.login, "LOGIN"),
            flag(self.createdb, "CREATEDB"),
            flag(self.createrole, "CREATEROLE"),
            flag(self.replication, "REPLICATION"),
            flag(self.bypassrls, "BYPASSRLS"),
            flag(self.inherit, "INHERIT"),
        ]
        .join(" ")
    }
}

/// What exists now, for the declared names only.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    pub roles: BTreeMap<String, Role>,
    /// Database → owner.
    pub databases: BTreeMap<String, String>,
    /// (user, database) pairs where the user already has CONNECT,
    /// TEMPORARY and CREATE.
    pub privileged: std::collections::BTreeSet<(String, String)>,
    /// (member, role) pairs of [`MEMBERSHIPS`] already granted.
    pub members: std::collections::BTreeSet<(String, String)>,
}

/// The statements that bring `existing` to the declared users.
pub fn plan(users: &[UserSpec], credentials: &Credentials, existing: &Existing) -> Vec<Step> {
    let mut steps = Vec::new();
    for user in users {
        let Some(credential) = credentials.users.get(&user.name) else {
            continue;
        };
        let name = quote_ident(&user.name);
        let wanted = Attributes::wanted(&user.options);
        let password = quote_literal(&credential.verifier);
        match existing.roles.get(&user.name) {
            None => steps.push(Step {
                sql: format!("CREATE ROLE {name} {} PASSWORD {password}", wanted.sql()),
                summary: format!(
                    "CREATE ROLE {name} {} PASSWORD (its verifier)",
                    wanted.sql()
                ),
            }),
            Some(role) => {
                if role.attributes != wanted {
                    steps.push(Step {
                        sql: format!("ALTER ROLE {name} {}", wanted.sql()),
                        summary: format!("ALTER ROLE {name} {}", wanted.sql()),
                    });
                }
                if role.password.as_deref() != Some(credential.verifier.as_str()) {
                    steps.push(Step {
                        sql: format!("ALTER ROLE {name} PASSWORD {password}"),
                        summary: format!("ALTER ROLE {name} PASSWORD (its verifier)"),
                    });
                }
            }
        }
    }
    for (member, role) in MEMBERSHIPS {
        let wanted = users.iter().any(|u| u.name == member);
        let key = (member.to_string(), role.to_string());
        if wanted && !existing.members.contains(&key) {
            let sql = format!("GRANT {} TO {}", quote_ident(role), quote_ident(member));
            steps.push(Step {
                summary: sql.clone(),
                sql,
            });
        }
    }
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for user in users {
        for db in &user.databases {
            owners.entry(db.as_str()).or_insert(user.name.as_str());
        }
    }
    for (db, owner) in &owners {
        if !existing.databases.contains_key(*db) {
            let sql = format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(db),
                quote_ident(owner)
            );
            steps.push(Step {
                summary: sql.clone(),
                sql,
            });
        }
    }
    for user in users {
        for db in &user.databases {
            let owner = existing
                .databases
                .get(db)
                .map(String::as_str)
                .or(owners.get(db.as_str()).copied());
            let key = (user.name.clone(), db.clone());
            if owner == Some(user.name.as_str()) || existing.privileged.contains(&key) {
                continue;
            }
            let sql = format!(
                "GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}",
                quote_ident(db),
                quote_ident(&user.name)
            );
            steps.push(Step {
                summary: sql.clone(),
                sql,
            });
        }
    }
    steps
}

/// The roles the controller keeps: `spec.users`, the admin role
/// (CREATEDB, CREATEROLE, no database of its own), whose password is in
/// `<cluster>-admin-credentials`, and with `spec.monitoring.exporter` the
/// exporter's `pgwolf_monitor` (pg_monitor only). Spilo images made that role themselves;
/// the instance image leaves roles to the controller.
pub fn managed(
    spec: &PostgresClusterSpec,
    credentials: &Credentials,
) -> (Vec<UserSpec>, Credentials) {
    let own = |name: &str, options: Vec<RoleOption>| UserSpec {
        name: name.to_string(),
        databases: Vec::new(),
        options,
        secret_name: None,
    };
    let mut all = spec.users.to_vec();
    all.push(own(
        ADMIN_USER,
        vec![RoleOption::CreateDb, RoleOption::CreateRole],
    ));
    let mut credentials = credentials.clone();
    credentials
        .users
        .insert(ADMIN_USER.to_string(), credentials.admin.clone());
    if let Some(monitor) = credentials.monitor.clone() {
        all.push(own(MONITOR_USER, Vec::new()));
        credentials.users.insert(MONITOR_USER.to_string(), monitor);
    }
    (all, credentials)
}

/// Reads what exists (needs a superuser: pg_authid), plans, runs each
/// step; returns the steps run.
pub async fn ensure(
    client: &tokio_postgres::Client,
    users: &[UserSpec],
    credentials: &Credentials,
) -> Result<Vec<Step>, tokio_postgres::Error> {
    let existing = read(client, users).await?;
    let steps = plan(users, credentials, &existing);
    for step in &steps {
        // CREATE DATABASE cannot run in a transaction block; each step is
        // its own simple-protocol statement.
        client.batch_execute(&step.sql).await?;
    }
    Ok(steps)
}

pub async fn read(
    client: &tokio_postgres::Client,
    users: &[UserSpec],
) -> Result<Existing, tokio_postgres::Error> {
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let dbs: Vec<&str> = users
        .iter()
        .flat_map(|u| u.databases.iter().map(String::as_str))
        .collect();
    let mut existing = Existing::default();
    for row in client
        .query(
            "SELECT rolname, rolpassword, rolcanlogin, rolcreatedb, rolcreaterole, \
                    rolreplication, rolbypassrls, rolinherit \
             FROM pg_authid WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?
    {
        existing.roles.insert(
            row.get(0),
            Role {
                password: row.get(1),
                attributes: Attributes {
                    login: row.get(2),
                    createdb: row.get(3),
                    createrole: row.get(4),
                    replication: row.get(5),
                    bypassrls: row.get(6),
                    inherit: row.get(7),
                },
            },
        );
    }
    for row in client
        .query(
            "SELECT datname::text, pg_get_userbyid(datdba)::text FROM pg_database \
             WHERE datname = ANY($1)",
            &[&dbs],
        )
        .await?
    {
        existing.databases.insert(row.get(0), row.get(1));
    }
    for row in client
        .query(
            "SELECT r.rolname::text, d.datname::text FROM pg_roles r, pg_database d \
             WHERE r.rolname = ANY($1) AND d.datname = ANY($2) \
               AND has_database_privilege(r.oid, d.oid, 'CONNECT, TEMPORARY, CREATE')",
            &[&names, &dbs],
        )
        .await?
    {
        existing.privileged.insert((row.get(0), row.get(1)));
    }
    for row in client
        .query(
            "SELECT m.rolname::text, r.rolname::text FROM pg_auth_members a \
             JOIN pg_roles m ON m.oid = a.member JOIN pg_roles r ON r.oid = a.roleid \
             WHERE m.rolname = ANY($1)",
            &[&names],
        )
        .await?
    {
        existing.members.insert((row.get(0), row.get(1)));
    }
    Ok(existing)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{test_cluster, test_credentials};

    #[test]
    fn a_new_cluster_plans_roles_then_databases_then_grants() {
        let c = test_cluster("main");
        let creds = test_credentials(&c);
        let steps = plan(&c.spec.users, &creds, &Existing::default());
        let summaries: Vec<&str> = steps.iter().map(|s| s.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "CREATE ROLE \"alice\" LOGIN NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD (its verifier)",
                "CREATE ROLE \"reporter\" LOGIN NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD (its verifier)",
                "CREATE DATABASE \"app\" OWNER \"alice\"",
                "CREATE DATABASE \"reports\" OWNER \"reporter\"",
                "GRANT CONNECT, TEMPORARY, CREATE ON DATABASE \"app\" TO \"reporter\"",
            ]
        );
        // The verifier goes into the SQL and nowhere else.
        let verifier = &creds.users["alice"].verifier;
        assert!(steps[0].sql.contains(verifier.as_str()));
        assert!(steps.iter().all(|s| !s.summary.contains(verifier.as_str())));
        assert!(!format!("{steps:?}").contains(verifier.as_str()));
    }
}
