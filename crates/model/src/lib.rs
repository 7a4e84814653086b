//! Identifiers and named limits shared by every Shoal crate.
//!
//! Everything here is plain data (`Copy`, no I/O). Newtypes keep offsets, terms, partition ids
//! and shard ids from being mixed up with each other or with byte counts.

pub mod constants;

use std::fmt;

/// A Kafka offset: the position of a record in one partition's log. Offsets are dense and
/// assigned by the partition's owner only (see `shoal_storage::Log::append`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl Offset {
    /// The offset `count` records after this one.
    #[must_use]
    pub fn plus(self, count: i64) -> Offset {
        assert!(count >= 0, "offsets only move forward");
        Offset(self.0 + count)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The leader epoch (Raft term) stamped into every stored batch's `partitionLeaderEpoch`
/// field. A single node uses term 0 until replication lands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub i32);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Raft log index: the position of an entry in a replicated partition's log. In a
/// replicated `shoal_storage::Log` one entry is one stored batch, so indexes are dense
/// batch ordinals (the first entry of a fresh log is 1; index 0 is raft-rs's empty prefix).
/// Kafka offsets are dense too, but neither is derived from the other by arithmetic: an
/// internal entry (a new leader's empty entry, a configuration change) takes an index and no
/// offset, and a data entry takes one index for all of its records' offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RaftIndex(pub u64);

impl RaftIndex {
    /// The index `count` entries after this one.
    #[must_use]
    pub fn plus(self, count: u64) -> RaftIndex {
        RaftIndex(self.0.checked_add(count).expect("raft indexes fit in u64"))
    }
}

impl fmt::Display for RaftIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A partition index within a topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(pub i32);

/// The index of a core (one glommio executor) in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

/// A wall-clock timestamp in milliseconds since the Unix epoch, as Kafka stores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimestampMs(pub i64);

/// A node (one `shoal` process) of a cluster, as Kafka's `broker.id` / `node.id`: the id
/// clients see in Metadata. A node started without cluster settings is node 0 of a one-node
/// cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub i32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
