//! Credential sources: where a user's secret comes from. Never logs secrets.

pub mod hba;
mod secret;
mod userlist;

pub use secret::{ScramVerifier, Secret};
pub use userlist::{AuthFile, AuthFileError};
