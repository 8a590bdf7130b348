//! `spec.users`: application roles, their databases and their Secrets.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Roles the controller and Spilo own; a declared user may not take them.
pub const RESERVED_USERS: [&str; 5] = ["postgres", "standby", "admin", "pgwolf", "pgwolf_monitor"];

/// A login role, the databases it owns, and where its credentials go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// Role name: lower case letters, digits and `_`, not starting with a
    /// digit or `pg_`, not ending with `_credentials` (the controller's own
    /// Secrets are `<cluster>-<role>-credentials`), and not one of postgres,
    /// standby, admin, pgwolf, pgwolf_monitor.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    #[x_kube(validation = Rule::new("!(self in ['postgres', 'standby', 'admin', 'pgwolf', 'pgwolf_monitor']) && !self.startsWith('pg_') && !self.endsWith('_credentials')").message("this role name is reserved: not postgres, standby, admin, pgwolf or pgwolf_monitor, not pg_*, not *_credentials"))]
    pub name: String,
    /// Databases this role may connect to and create objects in. Each is
    /// created when missing, owned by the first user that lists it; the
    /// first one is the Secret's `dbname`. Default none.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "set"), inner(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$")))]
    #[x_kube(validation = Rule::new("self.all(d, !(d in ['template0', 'template1', 'pgwolf', 'pgbouncer']))").message("template0, template1, pgwolf and pgbouncer are reserved database names"))]
    pub databases: Vec<String>,
    /// Role attributes besides LOGIN. SUPERUSER is deliberately not offered.
    /// Default none.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub options: Vec<RoleOption>,
    /// Name of the Secret that receives the credentials and connection
    /// strings. Default `<cluster>-<name>` (with `_` as `-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub secret_name: Option<String>,
}

/// PostgreSQL role attributes a declared user may have.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum RoleOption {
    #[serde(rename = "CREATEDB")]
    CreateDb,
    #[serde(rename = "CREATEROLE")]
    CreateRole,
    #[serde(rename = "REPLICATION")]
    Replication,
    #[serde(rename = "BYPASSRLS")]
    BypassRls,
    #[serde(rename = "NOINHERIT")]
    NoInherit,
}
