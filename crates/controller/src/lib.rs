//! The cluster metadata state machine, free of any runtime: records in, state out.
//!
//! Data flow. The controller leader turns an admin request into a [`Record`] with a `plan_*`
//! function (or [`Liveness`], for broker sessions), encodes it ([`Record::encode`]) and
//! proposes it to the controller Raft group. Every node applies each committed entry, in log
//! order and on core 0, with [`ClusterState::apply`] (or [`ClusterState::advance`] for an
//! entry without a record), then publishes the new version (`applied_index`) to its other
//! cores as an immutable snapshot. The [`Applied`] result tells the node what to do (open or
//! drop logs) and the proposer what to answer; an [`ApplyError`] is a record that raced with
//! another and changed nothing. [`ClusterState::to_snapshot_bytes`] lets the log be
//! truncated; a node that falls behind restores with [`ClusterState::from_snapshot_bytes`].
//!
//! Nothing here does I/O, reads a clock or draws a random number: time and new ids are passed
//! in, so the simulator runs the same code deterministically.

mod apply;
mod check;
mod error;
mod ids;
pub mod limits;
mod liveness;
mod place;
mod plan;
mod record;
mod snapshot;
mod state;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;

pub use error::{
    ApplyError, Invalid, InvariantError, Limit, PlacementError, PlanError, SnapshotError,
};
pub use liveness::{Heartbeat, HeartbeatReply, Liveness};
pub use place::place;
pub use plan::{
    plan_allocate_producer_ids, plan_alter_configs, plan_create_partitions, plan_create_topic,
    plan_delete_topic, plan_group_placement,
};
pub use record::{
    DecodeError, EncodeError, GroupAssignment, PartitionAssignment, Record, Registration, Replica,
    RECORD_VERSION,
};
pub use snapshot::SNAPSHOT_VERSION;
pub use state::{Applied, Broker, ClusterState, Topic};
