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
    plan_delete_topic, plan_group_placement, plan_partition_leader,
};
pub use record::{
    DecodeError, EncodeError, GroupAssignment, PartitionAssignment, QuotaOps, Record, Registration,
    Replica, RECORD_VERSION, RECORD_VERSION_MIN,
};
pub use snapshot::SNAPSHOT_VERSION;

/// Bytes of a topic id that name its partitions' Raft groups.
pub const GROUP_ID_PREFIX_BYTES: usize = 6;

/// The first [`GROUP_ID_PREFIX_BYTES`] of a topic id, as a number. No two topics share one
/// (placement refuses such an id), and none is 0 (the controller's own group).
pub fn group_prefix(topic_id: &[u8; 16]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&topic_id[..GROUP_ID_PREFIX_BYTES]);
    u64::from_be_bytes(bytes)
}

/// The Raft group id of a replicated partition: the topic's group prefix and the partition
/// (below 2^16: [`limits::PARTITIONS_PER_TOPIC_MAX`] is smaller). Never 0, the controller's.
pub fn partition_group(topic_id: &[u8; 16], partition: u32) -> u64 {
    assert!(
        partition < 1 << 16,
        "partition {partition} above the group id's 16 bits"
    );
    (group_prefix(topic_id) << 16) | u64::from(partition)
}

/// The partition a group id of [`partition_group`] names, with its topic's prefix.
pub fn group_partition(group: u64) -> (u64, u32) {
    (group >> 16, (group & 0xFFFF) as u32)
}

const _: () = assert!(limits::PARTITIONS_PER_TOPIC_MAX < 1 << 16);
pub use state::{Applied, Broker, ClusterState, Topic};
