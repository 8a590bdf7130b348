//! Credential sources: where a user's secret comes from. Never logs secrets.

pub mod hba;
mod userlist;

// The secret forms and their SCRAM math live with the exchanges that use
// them (protocol); auth is where a user's secret comes from.
pub(crate) use crate::protocol::secret::hmac_sha256;
pub use crate::protocol::secret::{ScramVerifier, Secret};
pub use userlist::{AuthFile, AuthFileError};
