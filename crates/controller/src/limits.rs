//! Named limits of the cluster metadata. Every collection the state holds is bounded here, so
//! a record, a snapshot and the work of planning stay bounded too. `apply` enforces them (a
//! record beyond a limit is a no-op), so a buggy or racing proposer cannot grow the state past
//! them.

/// Brokers a cluster may register (Kafka has no limit; this bounds placement work per
/// partition and the snapshot).
pub const BROKERS_MAX: usize = 256;

/// Cores (glommio executors) one broker may report.
pub const CORES_PER_BROKER_MAX: u32 = 1024;

/// Longest advertised host, RPC address or rack name, in bytes (a DNS name is at most 253).
pub const ADDRESS_BYTES_MAX: usize = 255;

/// Topics in the cluster.
pub const TOPICS_MAX: usize = 10_000;

/// Longest topic name, in bytes (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Partitions of one topic (the single-node controller used the same bound: it keeps a typo
/// from creating a million directories).
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;

/// Partitions of all topics together.
pub const PARTITIONS_PER_CLUSTER_MAX: usize = 200_000;

/// Replicas of one partition. `plan_create_topic` accepts only 1 until replication lands; the
/// state and placement already handle more.
pub const REPLICATION_FACTOR_MAX: usize = 7;

/// Config entries of one topic.
pub const CONFIGS_PER_TOPIC_MAX: usize = 128;

/// Longest config name, in bytes.
pub const CONFIG_NAME_BYTES_MAX: usize = 255;

/// Longest config value, in bytes.
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;

/// Producer ids one `AllocateProducerIds` record may reserve.
pub const PRODUCER_IDS_PER_BLOCK_MAX: u32 = 1_000_000;

/// Internal partitions consumer groups are hashed onto. Must equal the server's
/// `groups::GROUP_PARTITIONS` (fixed: changing it moves every group).
pub const GROUP_PARTITIONS: u32 = 16;

/// Largest encoded record, in bytes.
pub const RECORD_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Largest encoded snapshot, in bytes.
pub const SNAPSHOT_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Upper bound of one encoded `PartitionAssignment` (with `REPLICATION_FACTOR_MAX` replicas of
/// the longest ids, a leader and a full ISR) plus its separating comma, in bytes: see
/// `record::tests`.
pub(crate) const ASSIGNMENT_BYTES_MAX: usize =
    13 + REPLICATION_FACTOR_MAX * 39 + 29 + 1 + 22 + 8 + REPLICATION_FACTOR_MAX * 12;

/// Upper bound of a topic's encoded configs: JSON may escape a byte as six (`\u0001`).
pub(crate) const CONFIGS_BYTES_MAX: usize =
    CONFIGS_PER_TOPIC_MAX * ((CONFIG_NAME_BYTES_MAX + CONFIG_VALUE_BYTES_MAX) * 6 + 6);

const _: () = assert!(REPLICATION_FACTOR_MAX <= BROKERS_MAX);
const _: () = assert!(PARTITIONS_PER_TOPIC_MAX as usize <= PARTITIONS_PER_CLUSTER_MAX);
const _: () = assert!(GROUP_PARTITIONS >= 1);
// The largest CreateTopic record (every partition, every config at its longest) fits a record,
// with 64 KiB left for the name, id and framing.
const _: () = assert!(
    PARTITIONS_PER_TOPIC_MAX as usize * ASSIGNMENT_BYTES_MAX + CONFIGS_BYTES_MAX + 64 * 1024
        <= RECORD_BYTES_MAX
);
const _: () = assert!(RECORD_BYTES_MAX < SNAPSHOT_BYTES_MAX);

/// Longest cluster id, in bytes (Kafka's are 22-character base64 UUIDs).
pub const CLUSTER_ID_BYTES_MAX: usize = 64;
