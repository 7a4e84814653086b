//! Typed messages between cores. Every call that crosses cores is one of these, sent over the
//! glommio channel mesh to the owner core, with a oneshot channel for the answer. Payloads are
//! `Send` (bytes, plain data, `Arc` snapshots); per-core state never crosses.

use std::sync::Arc;

use futures::channel::oneshot;
use shoal_kafka::cluster::{ApiError, ConfigChange, NewTopic, TopicInfo, TopicPartition};
use shoal_model::{Offset, TimestampMs};
use shoal_storage::{Appended, LogOffsets, ReadBatches, Wait};

use crate::metadata::Snapshot;

pub(crate) type Reply<T> = oneshot::Sender<T>;

pub(crate) enum ShardMsg {
    /// Data plane: to the partition's owner.
    Append {
        tp: TopicPartition,
        batch: Vec<u8>,
        wait: Wait,
        reply: Reply<Result<Appended, ApiError>>,
    },
    Read {
        tp: TopicPartition,
        offset: Offset,
        max_bytes: usize,
        reply: Reply<Result<ReadBatches, ApiError>>,
    },
    Offsets {
        tp: TopicPartition,
        reply: Reply<Result<LogOffsets, ApiError>>,
    },
    OffsetForTimestamp {
        tp: TopicPartition,
        ts: TimestampMs,
        reply: Reply<Result<Option<(Offset, TimestampMs)>, ApiError>>,
    },
    MaxTimestamp {
        tp: TopicPartition,
        reply: Reply<Result<Option<(Offset, TimestampMs)>, ApiError>>,
    },
    /// Answers when the partition's high watermark passes `offset`, or after the timeout.
    WaitForData {
        tp: TopicPartition,
        offset: Offset,
        timeout_ms: u64,
        reply: Reply<()>,
    },
    /// DeleteRecords: `before` -1 means the high watermark.
    DeleteRecords {
        tp: TopicPartition,
        before: i64,
        reply: Reply<Result<Offset, ApiError>>,
    },
    PartitionSize {
        tp: TopicPartition,
        reply: Reply<Result<u64, ApiError>>,
    },
    /// Control plane: to core 0, the metadata owner.
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
        reply: Reply<Vec<Result<TopicInfo, ApiError>>>,
    },
    DeleteTopics {
        names: Vec<String>,
        reply: Reply<Vec<Result<(), ApiError>>>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
        reply: Reply<Vec<Result<(), ApiError>>>,
    },
    AlterTopicConfigs {
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
        reply: Reply<Vec<Result<(), ApiError>>>,
    },
    /// From core 0 to partition owners.
    OpenLogs {
        topic: String,
        partitions: Vec<i32>,
        reply: Reply<()>,
    },
    DropLogs {
        topic: String,
        partitions: Vec<i32>,
        reply: Reply<()>,
    },
    /// The topic's configs changed (already in this core's snapshot): apply them to its logs.
    ApplyTopicConfig { topic: String, reply: Reply<()> },
    /// Idempotent producers: an id from core 0; a partition's producers from its owner.
    AllocateProducerId { reply: Reply<Result<i64, ApiError>> },
    DescribeProducers {
        tp: TopicPartition,
        reply: Reply<Result<Vec<shoal_storage::ProducerInfo>, ApiError>>,
    },
    /// From core 0 to every core: the new metadata version.
    Metadata {
        snapshot: Arc<Snapshot>,
        reply: Reply<()>,
    },
    /// Consumer groups: to the group's coordinator core (`groups::core_of`).
    Group {
        op: shoal_groups::GroupOp,
        reply: Reply<shoal_groups::GroupReply>,
    },
    /// ListGroups: to every core.
    ListGroups {
        reply: Reply<Vec<shoal_groups::GroupListing>>,
    },
}
