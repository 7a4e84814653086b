//! ListOffsets: earliest (-2: the log start offset), latest (-1: the high watermark, the end a
//! consumer can read), max timestamp (-3), or the first offset at or after a timestamp.
//!
//! Timestamp lookups are batch-precise: they return the base offset of the first batch whose
//! max timestamp is at or after the target, and for -3 the base offset of the batch holding
//! the largest timestamp.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
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
        MAX_TIMESTAMP => {
            let found = cluster.max_timestamp(tp).await?;
            Ok(found.map_or((-1, -1), |(offset, ts)| (offset.0, ts.0)))
        }
        ts if ts >= 0 => {
            let found = cluster.offset_for_timestamp(tp, TimestampMs(ts)).await?;
            Ok(found.map_or((-1, -1), |(offset, ts)| (offset.0, ts.0)))
        }
        _ => Err(ApiError::new(ResponseError::InvalidRequest)),
    }
}
