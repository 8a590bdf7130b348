//! What the controller does inside PostgreSQL: the declared users and
//! their databases (`roles`). Spilo itself sets the superuser, replication
//! and admin passwords from the pod environment.

pub mod connect;
pub mod roles;
