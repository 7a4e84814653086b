//! ListOffsets: earliest (-2: the log start offset), latest (-1: the high watermark, the end a
//! consumer can read), max timestamp (-3), or the first offset at or after a timestamp.
//!
//! Timestamp lookups are record-precise, as in Kafka: storage finds the first batch whose max
//! timestamp is at or after the target (through the time index), and the batch is decoded to
//! find the first record at or after it that is not below the log start offset (DeleteRecords
//! may have cut the batch); if that batch holds no such record the search goes on with the
//! next batches. For -3, the first record carrying the largest timestamp.
//!
//! The leader epoch (v4+) is Kafka's: the current epoch for LATEST, the oldest epoch for
//! EARLIEST, the epoch of the batch holding the record for -3 and timestamp lookups; -1 with
//! offset and timestamp -1 when no record matches. `current_leader_epoch` other than -1 is
//! checked first (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, KIP-320).

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use shoal_model::{Offset, TimestampMs};

use super::{check_leader_epoch, topic_name, NO_EPOCH};
use crate::cluster::{ApiError, Cluster, TopicPartition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// What a lookup found: (offset, timestamp, leader epoch), each -1 when nothing matched.
type Found = (i64, i64, i32);
const NOT_FOUND: Found = (-1, -1, -1);

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let lookups = topic.partitions.iter().map(|p| {
            let tp = TopicPartition {
                topic: name.clone(),
                partition: p.partition_index,
            };
            let (timestamp, current) = (p.timestamp, p.current_leader_epoch);
            async move {
                let result = lookup(cluster, &tp, timestamp, current).await;
                let response =
                    ListOffsetsPartitionResponse::default().with_partition_index(tp.partition);
                match result {
                    Ok((offset, ts, epoch)) => {
                        let response = response.with_offset(offset).with_timestamp(ts);
                        if version >= 4 {
                            response.with_leader_epoch(epoch)
                        } else {
                            response
                        }
                    }
                    Err(error) => response
                        .with_error_code(error.code.code())
                        .with_offset(-1)
                        .with_timestamp(-1),
                }
            }
        });
        let partitions = join_all(lookups).await;
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp, epoch) per the Kafka rules.
async fn lookup<C: Cluster>(
    cluster: &C,
    tp: &TopicPartition,
    timestamp: i64,
    current_epoch: i32,
) -> Result<Found, ApiError> {
    match cluster.topic(&tp.topic) {
        Some(topic) if (0..topic.partitions).contains(&tp.partition) => {}
        _ => return Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
    }
    let offsets = cluster.offsets(tp).await?;
    if current_epoch != NO_EPOCH {
        check_leader_epoch(current_epoch, offsets.leader_epoch)?;
    }
    match timestamp {
        LATEST => Ok((offsets.high_watermark.0, -1, offsets.leader_epoch.0)),
        EARLIEST => Ok((offsets.log_start.0, -1, offsets.log_start_epoch.0)),
        MAX_TIMESTAMP => match cluster.max_timestamp(tp).await? {
            Some((base, max)) => first_record(cluster, tp, base, RecordWanted::Max(max.0)).await,
            None => Ok(NOT_FOUND),
        },
        ts if ts >= 0 => match cluster.offset_for_timestamp(tp, TimestampMs(ts)).await? {
            Some((base, _)) => first_record(cluster, tp, base, RecordWanted::AtOrAfter(ts)).await,
            None => Ok(NOT_FOUND),
        },
        _ => Err(ApiError::new(ResponseError::InvalidRequest)),
    }
}

#[derive(Clone, Copy)]
enum RecordWanted {
    /// The first record whose timestamp is at or after this.
    AtOrAfter(i64),
    /// The first record carrying this (the largest) timestamp.
    Max(i64),
}

/// Storage finds the batch; the record inside it is found by decoding the batch (decompressing
/// it if needed), as Kafka answers with record precision. Records below the log start are not
/// served, so they are never an answer: the search continues with the next batch where the
/// first one holds no visible match (for -3, the largest visible timestamp of that batch).
async fn first_record<C: Cluster>(
    cluster: &C,
    tp: &TopicPartition,
    base: Offset,
    wanted: RecordWanted,
) -> Result<Found, ApiError> {
    let mut from = base;
    loop {
        let page = cluster.read(tp, from, 1).await?;
        let Some(batch) = page.batches.into_iter().next() else {
            return Ok(NOT_FOUND);
        };
        let next = shoal_storage::validate_batch(&batch)
            .map(|header| header.next_offset())
            .map_err(|defect| {
                ApiError::with_message(ResponseError::CorruptMessage, defect.describe())
            })?;
        let mut bytes = batch;
        let records = match RecordBatchDecoder::decode(&mut bytes) {
            Ok(set) => set.records,
            Err(error) => {
                let message = format!("cannot decode the batch at {from}: {error}");
                return Err(ApiError::with_message(
                    ResponseError::CorruptMessage,
                    message,
                ));
            }
        };
        let visible: Vec<_> = records
            .iter()
            .filter(|r| r.offset >= page.log_start.0)
            .collect();
        let found = match wanted {
            RecordWanted::AtOrAfter(ts) => visible.iter().find(|r| r.timestamp >= ts),
            RecordWanted::Max(max) => visible
                .iter()
                .find(|r| r.timestamp == max)
                .or_else(|| visible.iter().max_by_key(|r| (r.timestamp, -r.offset))),
        };
        if let Some(record) = found {
            let epoch = if record.partition_leader_epoch >= 0 {
                record.partition_leader_epoch
            } else {
                -1
            };
            return Ok((record.offset, record.timestamp, epoch));
        }
        if matches!(wanted, RecordWanted::Max(_)) {
            return Ok(NOT_FOUND);
        }
        from = next;
    }
}
