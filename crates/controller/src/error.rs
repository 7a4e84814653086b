//! Typed errors. None becomes a Kafka error code here: the server's `error_map` does that, and
//! each variant's comment names the code it is meant to map to.

use shoal_model::{NodeId, ShardId};
use thiserror::Error;

use crate::limits::{
    ADDRESS_BYTES_MAX, BROKERS_MAX, CONFIGS_PER_TOPIC_MAX, CONFIG_NAME_BYTES_MAX,
    CONFIG_VALUE_BYTES_MAX, CORES_PER_BROKER_MAX, PARTITIONS_PER_CLUSTER_MAX,
    PARTITIONS_PER_TOPIC_MAX, PRODUCER_IDS_PER_BLOCK_MAX, REPLICATION_FACTOR_MAX, TOPICS_MAX,
    TOPIC_NAME_BYTES_MAX,
};

/// Why a committed record changed nothing (but the version). Deterministic: every node
/// gets the same error for the same log.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApplyError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic {name} already exists")]
    TopicExists { name: String },
    /// Another topic has the id (a random id collided): the proposer retries with a new one.
    #[error("the topic id is already used by topic {by}")]
    TopicIdInUse { by: String },
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {name} does not exist")]
    UnknownTopic { name: String },
    /// The topic was deleted and created again since the plan: UNKNOWN_TOPIC_ID.
    #[error("topic {name} has another id than the record names")]
    TopicIdMismatch { name: String },
    /// A racing CreatePartitions grew the topic first: INVALID_PARTITIONS.
    #[error("topic {name} has {current} partitions, the record expected {expected}")]
    PartitionCountChanged {
        name: String,
        expected: u32,
        current: u32,
    },
    #[error("broker {node} is not registered")]
    UnknownBroker { node: NodeId },
    /// The broker registered again (or never had this epoch): the record is about an older
    /// incarnation and is ignored.
    #[error("broker {node} epoch {broker_epoch} is not its current epoch {current}")]
    StaleBrokerEpoch {
        node: NodeId,
        broker_epoch: u64,
        current: u64,
    },
    /// New partitions and coordinators go to unfenced brokers only; the broker was fenced
    /// between plan and apply. Retriable: a new plan picks another broker.
    #[error("broker {node} is fenced")]
    BrokerFenced { node: NodeId },
    #[error("broker {node} has {cores} cores, core {} does not exist", core.0)]
    CoreOutOfRange {
        node: NodeId,
        core: ShardId,
        cores: u32,
    },
    /// The 63-bit producer id space is used up.
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    /// A deposed leader's report, or one that lost a race with a newer term.
    #[error(
        "{name}-{partition}: leader epoch {leader_epoch} is older than the recorded {current}"
    )]
    StaleLeaderEpoch {
        name: String,
        partition: u32,
        leader_epoch: i32,
        current: i32,
    },
    #[error("invalid record: {0}")]
    Invalid(Invalid),
    /// A quota change its entity's quotas refuse (a bad value, the entity limit).
    #[error("client quotas: {0}")]
    Quota(shoal_quotas::Error),
    /// POLICY_VIOLATION or INVALID_PARTITIONS, by limit.
    #[error("limit exceeded: {0}")]
    Limit(Limit),
}

/// A record no correct proposer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Invalid {
    #[error("node id {0} is negative")]
    NegativeNodeId(NodeId),
    #[error("a broker has no cores")]
    NoCores,
    #[error("the topic name is empty")]
    EmptyTopicName,
    #[error("the topic id is all zeros (Kafka's null id)")]
    NilTopicId,
    #[error("no partitions")]
    NoPartitions,
    #[error("a partition has no replicas")]
    NoReplicas,
    #[error("node {0} holds two replicas of one partition")]
    DuplicateReplicaNode(NodeId),
    #[error("leader epoch {0} is negative")]
    NegativeLeaderEpoch(i32),
    #[error("zero producer ids requested")]
    NoProducerIds,
    #[error("no group partitions placed")]
    NoGroupAssignments,
    #[error("group partition {0} does not exist")]
    GroupPartitionOutOfRange(u32),
    #[error("group partition {0} is placed twice")]
    DuplicateGroupPartition(u32),
    #[error("partition {0} does not exist")]
    UnknownPartition(u32),
    #[error("partition {0} has one replica: it has no Raft group to elect a leader")]
    NotReplicated(u32),
    #[error("node {0} is not a replica of the partition")]
    NotAReplica(NodeId),
    #[error("the in-sync replicas must start with the leader {0}")]
    IsrWithoutLeader(NodeId),
    #[error("a new partition names a leader or in-sync replicas (they are reported, not placed)")]
    LeaderPlaced,
}

/// A limit of [`crate::limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Limit {
    #[error("at most {BROKERS_MAX} brokers")]
    Brokers,
    #[error("at most {CORES_PER_BROKER_MAX} cores per broker")]
    CoresPerBroker,
    #[error("addresses and racks of at most {ADDRESS_BYTES_MAX} bytes")]
    AddressBytes,
    #[error("at most {TOPICS_MAX} topics")]
    Topics,
    #[error("topic names of at most {TOPIC_NAME_BYTES_MAX} bytes")]
    TopicNameBytes,
    #[error("at most {PARTITIONS_PER_TOPIC_MAX} partitions per topic")]
    PartitionsPerTopic,
    #[error("at most {PARTITIONS_PER_CLUSTER_MAX} partitions in the cluster")]
    PartitionsPerCluster,
    #[error("at most {REPLICATION_FACTOR_MAX} replicas per partition")]
    ReplicationFactor,
    #[error("at most {CONFIGS_PER_TOPIC_MAX} configs per topic")]
    ConfigsPerTopic,
    #[error("config names of at most {CONFIG_NAME_BYTES_MAX} bytes")]
    ConfigNameBytes,
    #[error("config values of at most {CONFIG_VALUE_BYTES_MAX} bytes")]
    ConfigValueBytes,
    #[error("at most {PRODUCER_IDS_PER_BLOCK_MAX} producer ids per block")]
    ProducerIdsPerBlock,
}

/// A broken invariant of a [`crate::ClusterState`]: a bug when found after an apply, a corrupt
/// or foreign snapshot when found on restore.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum InvariantError {
    #[error("broker {node} is stored under node id {key}")]
    BrokerKey { key: NodeId, node: NodeId },
    #[error("broker {node}: {error}")]
    Broker { node: NodeId, error: ApplyError },
    #[error("broker {node} has epoch {broker_epoch}, beyond the applied index {applied_index}")]
    BrokerEpochAhead {
        node: NodeId,
        broker_epoch: u64,
        applied_index: u64,
    },
    #[error("topic {name}: {error}")]
    Topic { name: String, error: ApplyError },
    #[error("topics {first} and {second} have the same id")]
    DuplicateTopicId { first: String, second: String },
    #[error("group partition {partition}: {error}")]
    GroupPartition { partition: u32, error: ApplyError },
    #[error("{found} group partitions are placed, there are {expected}")]
    GroupPartitionCount { found: usize, expected: usize },
    #[error("the next producer id {0} is negative")]
    NegativeProducerId(i64),
    #[error("the cluster id is longer than its limit")]
    ClusterIdBytes,
    #[error("{0}")]
    Limit(Limit),
}

/// Why a snapshot could not be restored.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot of {bytes} bytes is larger than the {max} byte limit")]
    TooLarge { bytes: usize, max: usize },
    #[error("snapshot of {bytes} bytes is shorter than its header")]
    Truncated { bytes: usize },
    #[error("snapshot format {found} is not supported (this node knows 1..={known})")]
    UnsupportedVersion { found: u16, known: u16 },
    #[error("malformed snapshot: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("broker {0} appears twice in the snapshot")]
    DuplicateBroker(NodeId),
    #[error("snapshot breaks an invariant: {0}")]
    Invalid(#[from] InvariantError),
}

/// Why new replicas could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PlacementError {
    /// Every broker is fenced (or none registered yet): retriable, brokers come back.
    #[error("no unfenced broker to place replicas on")]
    NoUnfencedBrokers,
    /// INVALID_REPLICATION_FACTOR, as Kafka answers when the factor exceeds the brokers.
    #[error(
        "replication factor {replication_factor} needs more than the {unfenced} unfenced brokers"
    )]
    NotEnoughBrokers {
        replication_factor: usize,
        unfenced: usize,
    },
    /// INVALID_REPLICATION_FACTOR.
    #[error("replication factor {0} is outside 1..={REPLICATION_FACTOR_MAX}")]
    ReplicationFactor(usize),
    /// INVALID_PARTITIONS.
    #[error("at most {PARTITIONS_PER_TOPIC_MAX} partitions may be placed at once")]
    TooManyPartitions(u32),
}

/// Why the leader will not propose a change. Each variant's comment names the Kafka code.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlanError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic {name} already exists")]
    TopicExists { name: String },
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {name} does not exist")]
    UnknownTopic { name: String },
    /// The caller's random topic id collided (or was the null id): it draws another.
    #[error("the topic id is unusable (null or taken)")]
    TopicIdUnusable,
    /// INVALID_TOPIC_EXCEPTION. Only emptiness and length are checked here; the server
    /// checks the characters (`shoal_kafka::topic_name`).
    #[error("topic name must be 1..={TOPIC_NAME_BYTES_MAX} bytes")]
    TopicNameBytes,
    /// INVALID_PARTITIONS. The caller replaces -1 (the broker default) before planning.
    #[error("partition count {0} must be 1..={PARTITIONS_PER_TOPIC_MAX}")]
    InvalidPartitions(i32),
    /// INVALID_PARTITIONS, with Kafka's wording.
    #[error(
        "topic currently has {current} partitions, which is higher than the requested {requested}"
    )]
    PartitionsNotIncreased { current: u32, requested: i32 },
    /// INVALID_REPLICATION_FACTOR (0, or below -1).
    #[error("replication factor {0} must be -1 (the default) or at least 1")]
    InvalidReplicationFactor(i16),
    /// NoUnfencedBrokers is retriable (REQUEST_TIMED_OUT); the others INVALID_REPLICATION_FACTOR
    /// or INVALID_PARTITIONS.
    #[error("{0}")]
    Placement(PlacementError),
    /// POLICY_VIOLATION (INVALID_PARTITIONS for the partition limits).
    #[error("limit exceeded: {0}")]
    Limit(Limit),
    /// The node id is registered by a broker with another incarnation that still heartbeats:
    /// DUPLICATE_BROKER_REGISTRATION.
    #[error("node {0} is registered by another running process")]
    DuplicateBrokerRegistration(NodeId),
    #[error("broker {node} is not registered")]
    UnknownBroker { node: NodeId },
    /// The registration breaks a rule every record is held to (see [`ApplyError`]).
    #[error("{0}")]
    Invalid(Invalid),
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    /// The record would be refused when applied (a stale leader report).
    #[error("{0}")]
    Refused(ApplyError),
}

impl PlanError {
    /// Whether the same request may succeed later without change (Kafka's retriable codes).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            PlanError::Placement(PlacementError::NoUnfencedBrokers)
        )
    }
}

impl From<PlacementError> for PlanError {
    fn from(error: PlacementError) -> PlanError {
        PlanError::Placement(error)
    }
}

impl From<Limit> for PlanError {
    fn from(limit: Limit) -> PlanError {
        PlanError::Limit(limit)
    }
}
