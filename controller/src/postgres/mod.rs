//! What the controller does inside PostgreSQL: the declared users and
//! their databases (`roles`), and what it reads there: WAL archiving's
//! health (`archive`). Spilo itself sets the superuser, replication
//! and admin passwords from the pod environment.

pub mod archive;
pub mod connect;
pub mod roles;
