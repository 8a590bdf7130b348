//! Credential sources: where a user's secret comes from. Never logs secrets.

pub mod hba;
mod secret;
mod userlist;

pub(crate) use secret::hmac_sha256;
pub use secret::{ScramVerifier, Secret};
pub use userlist::{AuthFile, AuthFileError};
