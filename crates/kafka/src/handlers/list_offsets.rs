//! ListOffsets: earliest (-2: the log start offset), latest (-1: the high watermark, the end a
//! consumer can read), max timestamp (-3), or the first offset at or after a timestamp.
//!
//! Timestamp lookups are record-precise, as in Kafka: storage finds the first batch whose max
//! timestamp is at or after the target (through the time index), and the batch is decoded to
//! find the first record at or after it; for -3, the first record with the largest timestamp.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use shoal_model::TimestampMs;

use super::topic_name;
use crate::cluster::{ApiError, Cluster, TopicPartition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

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
            let timestamp = p.timestamp;
            async move {
                let result = lookup(cluster, &tp, timestamp).await;
                let response =
                    ListOffsetsPartitionResponse::default().with_partition_index(tp.partition);
                match result {
                    Ok((offset, ts)) => {
                        let response = response.with_offset(offset).with_timestamp(ts);
                        if version >= 4 {
                            response.with_leader_epoch(0)
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

/// (offset, timestamp) per the Kafka rules; -1/-1 when no record matches a timestamp.
async fn lookup<C: Cluster>(
    cluster: &C,
    tp: &TopicPartition,
    timestamp: i64,
) -> Result<(i64, i64), ApiError> {
    match cluster.topic(&tp.topic) {
        Some(topic) if (0..topic.partitions).contains(&tp.partition) => {}
        _ => return Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
    }
    match timestamp {
        LATEST => Ok((cluster.offsets(tp).await?.high_watermark.0, -1)),
        EARLIEST => Ok((cluster.offsets(tp).await?.log_start.0, -1)),
        MAX_TIMESTAMP => match cluster.max_timestamp(tp).await? {
            Some((base, max)) => record_in_batch(cluster, tp, base, RecordWanted::Max(max.0)).await,
            None => Ok((-1, -1)),
        },
        ts if ts >= 0 => match cluster.offset_for_timestamp(tp, TimestampMs(ts)).await? {
            Some((base, _)) => {
                record_in_batch(cluster, tp, base, RecordWanted::AtOrAfter(ts)).await
            }
            None => Ok((-1, -1)),
        },
        _ => Err(ApiError::new(ResponseError::InvalidRequest)),
    }
}

enum RecordWanted {
    /// The first record whose timestamp is at or after this.
    AtOrAfter(i64),
    /// The first record carrying the batch's largest timestamp.
    Max(i64),
}

/// Storage finds the batch; the record inside it is found by decoding the batch (decompressing
/// it if needed), as Kafka answers with record precision.
async fn record_in_batch<C: Cluster>(
    cluster: &C,
    tp: &TopicPartition,
    base: shoal_model::Offset,
    wanted: RecordWanted,
) -> Result<(i64, i64), ApiError> {
    let page = cluster.read(tp, base, 1).await?;
    let Some(batch) = page.batches.into_iter().next() else {
        return Ok((-1, -1));
    };
    let mut bytes = batch;
    let records = match RecordBatchDecoder::decode(&mut bytes) {
        Ok(set) => set.records,
        Err(error) => {
            let message = format!("cannot decode the batch at {base}: {error}");
            return Err(ApiError::with_message(
                ResponseError::CorruptMessage,
                message,
            ));
        }
    };
    let found = records.iter().find(|r| match wanted {
        RecordWanted::AtOrAfter(ts) => r.timestamp >= ts,
        RecordWanted::Max(max) => r.timestamp == max,
    });
    Ok(found.map_or((-1, -1), |r| (r.offset, r.timestamp)))
}
