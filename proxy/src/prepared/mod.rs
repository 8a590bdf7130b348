//! Protocol-level named prepared statements across pooled server
//! connections (issue 4), sans-I/O: the pieces the pump will drive.
//!
//! - [`message`]: Parse/Bind/Describe/Close decoded just far enough to read
//!   and replace a statement name.
//! - [`statements`]: each client's names, each server connection's bounded
//!   LRU cache of statements prepared as `pgwolf_<id>`, pool-wide counters.
//! - [`rewrite`]: one client message as the server in hand needs it:
//!   renamed, prepared first where this server lacks it, or answered by
//!   pgwolf (a Parse the server has, a Close of a name).
//! - [`responses`]: the queue of answers in flight, which hides the answers
//!   to pgwolf's own requests and puts pgwolf's answers in their place,
//!   honouring the server's skip-to-Sync after an error.
//! - [`deallocate`]: SQL `DEALLOCATE name` of a protocol-level statement,
//!   answered by pgwolf.
//!
//! The pump drives them through `client::pump_prepared`.

pub mod deallocate;
pub mod message;
pub mod responses;
pub mod rewrite;
pub mod statements;
