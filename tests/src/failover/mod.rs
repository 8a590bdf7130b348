//! The clients and figures of the lost-node scenarios (issue 21), for
//! the tests in `tests/tests/lost_node.rs` and the side-by-side report
//! (`scripts/failover-report`): a Patroni cluster on hosts of its own
//! ([`crate::netns`]) behind a pooler, pgwolf or PgBouncer ([`Pooler`]),
//! with writers, readers and a long transaction running through it
//! ([`Load`]) while a fault takes the primary away ([`lose_the_primary`])
//! or leaves it in place ([`ride_out`]).
//!
//! - `load.rs`: the clients and what each kind saw ([`Writes`]).
//! - `front.rs`: the pooler in front ([`Front`], [`cluster_behind`]).
//! - `primary_loss.rs`: faults that take the primary away ([`PrimaryLoss`]).
//! - `outage.rs`: faults that keep it ([`Outage`]).

mod front;
mod load;
mod outage;
mod primary_loss;

pub use front::{cluster_behind, Front, Pooler};
pub use load::{described, Load, LongAnswer, Writes, LONG_TX_VALUE};
pub use outage::{ride_out, Outage};
pub use primary_loss::{cut_from_peers, leader_per_others, lose_the_primary, PrimaryLoss};
