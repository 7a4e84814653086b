//! What handlers need from the broker: metadata and per-partition operations.
//!
//! The server implements [`Cluster`] once per core. A call names a partition; the
//! implementation runs it on the core that owns that partition (locally, or as a message over
//! the core mesh) and returns the result here. Handlers issue the calls for all partitions of a
//! request at once, so a request touching partitions on several cores is split, routed and
//! reassembled without the handler knowing about cores.

use std::collections::BTreeMap;
use std::fmt;

use kafka_protocol::error::ResponseError;
use shoal_model::{Offset, TimestampMs};
use shoal_storage::{Appended, LogOffsets, ReadBatches};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A Kafka error code with an optional message for the client.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(code: ResponseError) -> ApiError {
        ApiError {
            code,
            message: None,
        }
    }

    pub fn with_message(code: ResponseError, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: Some(message.into()),
        }
    }
}

/// Why the core (or, later, the node) that owns some work gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The owner could not be reached.
    Unreachable,
    /// The owner dropped the work without answering (it is stopping).
    Dropped,
    /// No answer within the call's timeout (the work may still complete).
    TimedOut,
}

/// Whose work went unanswered: that decides which retriable code a client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A partition's owner (produce, fetch, offsets, DeleteRecords, ...).
    Partition,
    /// The metadata owner (CreateTopics, DeleteTopics, configs, producer ids).
    Controller,
    /// A consumer group's coordinator.
    Coordinator,
}

/// What a producer's `acks` asks an append to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: in memory, no answer is sent anyway.
    None,
    /// acks=1: the leader has it as the topic's durability says (fsync by default).
    Leader,
    /// acks=all: so has every in-sync replica: a majority of a replicated partition's group
    /// (the Raft commit, which counts the leader's own sync); the leader alone for one replica.
    All,
}

impl Acks {
    /// From the request's `acks` field (-1 all, 0 none, anything else the leader).
    pub fn from_request(acks: i16) -> Acks {
        match acks {
            0 => Acks::None,
            -1 => Acks::All,
            _ => Acks::Leader,
        }
    }

    /// The wait of a log that is not replicated.
    pub fn wait(self) -> shoal_storage::Wait {
        match self {
            Acks::None => shoal_storage::Wait::Buffered,
            Acks::Leader | Acks::All => shoal_storage::Wait::Durable,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub cluster_id: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    /// Kafka topic id (a UUID), as 16 bytes.
    pub id: [u8; 16],
    pub partitions: i32,
    /// Explicitly set topic configs (defaults are not listed).
    pub configs: BTreeMap<String, String>,
    /// The leader epoch of each partition, by partition index.
    pub leader_epochs: Vec<i32>,
    /// Partitions without a leader (a failed or full disk, corruption, or their node is
    /// fenced), ascending.
    pub offline: Vec<i32>,
    /// The node of each partition (its leader), by partition index (empty: every partition
    /// on this broker, as on a one-node cluster; -1: no leader known).
    pub nodes: Vec<i32>,
    /// The replica nodes of each partition, by partition index (empty, or an empty entry:
    /// the partition's node alone).
    pub replicas: Vec<Vec<i32>>,
    /// The in-sync replicas of each replicated partition, as its leader reported them (an
    /// empty entry: the partition's node alone).
    pub isr: Vec<Vec<i32>>,
    /// How produced batches are checked and rewritten, from the topic's configs.
    pub produce: ProducePolicy,
}

/// Kafka `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Kafka `compression.type` of a topic, with the codec's level where it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicCompression {
    /// Keep what the producer sent.
    Producer,
    Uncompressed,
    /// `compression.gzip.level`: 1..=9, or -1 for the codec's default.
    Gzip(i32),
    Snappy,
    /// `compression.lz4.level`: 1..=17.
    Lz4(u32),
    /// `compression.zstd.level`: -131072..=22.
    Zstd(i32),
}

/// The rules a topic's configs set for produced batches (Kafka's LogValidator inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducePolicy {
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future.
    pub timestamp_after_max_ms: i64,
    pub compression: TopicCompression,
    /// `min.insync.replicas`: acks=all needs this many in-sync replicas.
    pub min_insync_replicas: i32,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
}

impl Default for ProducePolicy {
    /// Kafka 4.x's topic defaults.
    fn default() -> ProducePolicy {
        ProducePolicy {
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            compression: TopicCompression::Producer,
            min_insync_replicas: 1,
            compacted: false,
        }
    }
}

/// What OffsetForLeaderEpoch answers for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The partition's current leader epoch (to fence a caller's `current_leader_epoch`).
    pub current_epoch: i32,
    /// The largest epoch at or below the requested one (-1: none).
    pub epoch: i32,
    /// Where that epoch ends: the next epoch's start, or the log end (-1: none).
    pub end_offset: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub partitions: i32,
    /// -1: the broker default; anything else than 1 is refused on a single node.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// Where a config value comes from (Kafka `ConfigSource`).
pub mod config_source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// Kafka `ConfigType`, reported from DescribeConfigs v3.
pub mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
}

/// One config of a topic or the broker, as DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// A `config_source` constant.
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    /// A `config_type` constant.
    pub config_type: i8,
    /// The entry itself and the values it overrides, highest precedence first.
    pub synonyms: Vec<ConfigSynonym>,
    /// What the config does here, where that differs from Kafka (e.g. accepted and inert).
    pub documentation: Option<String>,
}

/// One change of an IncrementalAlterConfigs request (Kafka `OpType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    Delete,
    /// Add the values (comma-separated) to a list config.
    Append(String),
    /// Remove the values (comma-separated) from a list config.
    Subtract(String),
}

/// How a topic's configs change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    /// AlterConfigs: the new, complete set of explicitly set configs.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: operations on the current set, in order.
    Incremental(Vec<(String, ConfigOp)>),
}

/// The data directory as DescribeLogDirs reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogDirInfo {
    /// Absolute path.
    pub path: String,
    /// Size and free space (for unprivileged users) of its file system; `None` if unknown.
    pub total_bytes: Option<u64>,
    pub usable_bytes: Option<u64>,
}

/// What a Fetch response's bytes earned under its client's `consumer_byte_rate` quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchThrottle {
    /// The throttle time for the response, in ms (0: none).
    pub ms: i32,
    /// Whether the data goes out: the bytes were counted. If not, the response goes out
    /// empty with the throttle time (KIP-219).
    pub send_data: bool,
}

pub trait Cluster {
    /// This broker.
    fn broker(&self) -> BrokerInfo;
    /// Every live broker of the cluster (this one included), by node id.
    fn brokers(&self) -> Vec<BrokerInfo> {
        vec![self.broker()]
    }
    /// The broker coordinating a consumer group; `None` while it has none (its node is
    /// fenced and the controller has not moved it yet).
    fn group_coordinator(&self, group_id: &str) -> Option<BrokerInfo> {
        let _ = group_id;
        Some(self.broker())
    }
    /// A consistent snapshot of all topics.
    fn topics(&self) -> Vec<TopicInfo>;
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// The topic with this id (Metadata v12+ asks by id).
    fn topic_by_id(&self, id: [u8; 16]) -> Option<TopicInfo> {
        self.topics().into_iter().find(|topic| topic.id == id)
    }
    /// Whether Metadata and Produce create unknown topics (`auto.create.topics.enable`).
    fn auto_create_topics(&self) -> bool;
    /// The broker's wall clock, in ms since the epoch (timestamp checks, LogAppendTime).
    fn now_ms(&self) -> i64;
    /// This core's fetch sessions (KIP-227); `None`: every fetch is sessionless. Borrowed
    /// only between awaits.
    fn fetch_sessions(&self) -> Option<&std::cell::RefCell<crate::fetch_session::FetchSessions>> {
        None
    }
    /// The most bytes one Fetch of this client may return under its `consumer_byte_rate`
    /// quota (Kafka's `getMaxValueInQuotaWindow`; Shoal's is one sample's worth); `None`: no
    /// quota applies.
    fn fetch_quota_bytes_max(&self, client_id: &str) -> Option<usize> {
        let _ = client_id;
        None
    }
    /// Counts a Fetch response of `bytes` against the client's `consumer_byte_rate` quota.
    async fn fetch_throttle(&self, client_id: &str, bytes: usize) -> FetchThrottle {
        let _ = (client_id, bytes);
        FetchThrottle {
            ms: 0,
            send_data: true,
        }
    }
    /// The quotas set on the entities `filter` matches (DescribeClientQuotas).
    fn client_quotas(
        &self,
        filter: &shoal_quotas::Filter,
    ) -> Vec<(
        shoal_quotas::QuotaEntity,
        Vec<(shoal_quotas::QuotaKind, f64)>,
    )> {
        let _ = filter;
        Vec::new()
    }
    /// Changes quotas: each entry checked alone, and applied (persisted, on every core) unless
    /// `validate_only` (AlterClientQuotas).
    async fn alter_client_quotas(
        &self,
        entries: Vec<(shoal_quotas::QuotaEntity, Vec<shoal_quotas::QuotaOp>)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let _ = validate_only;
        entries
            .iter()
            .map(|_| {
                Err(ApiError::with_message(
                    ResponseError::UnsupportedVersion,
                    "client quotas are not served here",
                ))
            })
            .collect()
    }
    /// In-sync replicas of a partition (1 on a single node), for `min.insync.replicas`.
    fn in_sync_replicas(&self, tp: &TopicPartition) -> i32 {
        let _ = tp;
        1
    }

    async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, ApiError>>;
    async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<(), ApiError>>;

    /// Appends a producer's batch and answers as `acks` asks (see [`Acks`]).
    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Vec<u8>,
        acks: Acks,
    ) -> Result<Appended, ApiError>;
    async fn read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadBatches, ApiError>;
    async fn offsets(&self, tp: &TopicPartition) -> Result<LogOffsets, ApiError>;
    async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError>;
    /// The batch holding the largest timestamp, as (its base offset, that timestamp).
    async fn max_timestamp(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<(Offset, TimestampMs)>, ApiError>;
    /// The end of leader epoch `requested` in the partition's epoch history.
    async fn epoch_end_offset(
        &self,
        tp: &TopicPartition,
        requested: i32,
    ) -> Result<EpochEndOffset, ApiError>;
    /// A producer id never handed out before, also across restarts (InitProducerId).
    async fn allocate_producer_id(&self) -> Result<i64, ApiError>;
    /// The idempotent producers a partition knows (DescribeProducers).
    async fn describe_producers(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<shoal_storage::ProducerInfo>, ApiError>;
    /// Returns once any watched partition's high watermark passes its offset, or after
    /// `timeout_ms`, whichever is first.
    async fn wait_for_data(&self, watches: Vec<(TopicPartition, Offset)>, timeout_ms: u64);

    /// DeleteRecords: moves the log start offset up to `before` (-1: the high watermark) and
    /// returns the new log start (the low watermark).
    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> Result<Offset, ApiError>;
    /// Grows each topic to the given partition count (never shrinks).
    async fn create_partitions(
        &self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>>;
    /// Every config a topic has (set or default); `None` for an unknown topic.
    fn topic_configs(&self, topic: &str) -> Option<Vec<ConfigEntry>>;
    /// The broker's (read-only) settings.
    fn broker_configs(&self) -> Vec<ConfigEntry>;
    /// Changes topic configs: validated, persisted and applied to the open logs.
    async fn alter_topic_configs(
        &self,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>>;
    async fn log_dir(&self) -> LogDirInfo;
    /// Bytes stored by one partition.
    async fn partition_size(&self, tp: &TopicPartition) -> Result<u64, ApiError>;

    /// Consumer groups: runs `op` on the core that coordinates `group_id`.
    async fn group(&self, group_id: &str, op: shoal_groups::GroupOp) -> shoal_groups::GroupReply {
        let _ = group_id;
        shoal_groups::GroupReply::failed(&op, ResponseError::CoordinatorNotAvailable)
    }
    /// ListGroups: the groups of every core.
    async fn list_groups(&self) -> Vec<shoal_groups::GroupListing> {
        Vec::new()
    }
}
