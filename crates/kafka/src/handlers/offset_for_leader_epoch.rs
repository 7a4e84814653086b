//! OffsetForLeaderEpoch: where a leader epoch ends in a partition's epoch history, as Kafka's
//! `LeaderEpochFileCache.endOffsetFor` answers (consumers validate their position with it after
//! a leader change, KIP-320; followers truncate by it, KIP-101/279).
//!
//! Per partition:
//! - `current_leader_epoch` other than -1 is checked first: older than the partition's epoch is
//!   FENCED_LEADER_EPOCH, newer is UNKNOWN_LEADER_EPOCH.
//! - requested epoch = the current one: (that epoch, the log end offset), for consumers and
//!   followers alike (Kafka does not use the high watermark here);
//! - an older epoch: (the largest epoch at or below it, the start of the next epoch); below the
//!   whole history: (the requested epoch, the start of the oldest known one);
//! - newer than the current epoch, or -1: no error, epoch -1 and end offset -1.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{check_leader_epoch, topic_name, NO_EPOCH};
use crate::cluster::{ApiError, Cluster, TopicPartition};

const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let known = cluster.topic(&name).map(|t| t.partitions);
        let lookups = topic.partitions.iter().map(|p| {
            let tp = TopicPartition {
                topic: name.clone(),
                partition: p.partition,
            };
            let (current, requested) = (p.current_leader_epoch, p.leader_epoch);
            async move {
                let result = match known {
                    Some(count) if (0..count).contains(&tp.partition) => {
                        end_offset(cluster, &tp, current, requested).await
                    }
                    _ => Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
                };
                let entry = EpochEndOffset::default().with_partition(tp.partition);
                match result {
                    Ok((epoch, offset)) => entry.with_leader_epoch(epoch).with_end_offset(offset),
                    Err(error) => entry
                        .with_error_code(error.code.code())
                        .with_leader_epoch(UNDEFINED_EPOCH)
                        .with_end_offset(UNDEFINED_EPOCH_OFFSET),
                }
            }
        });
        let partitions = join_all(lookups).await;
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// (epoch, end offset) for a known partition.
async fn end_offset<C: Cluster>(
    cluster: &C,
    tp: &TopicPartition,
    current: i32,
    requested: i32,
) -> Result<(i32, i64), ApiError> {
    let found = cluster.epoch_end_offset(tp, requested).await?;
    if current != NO_EPOCH {
        check_leader_epoch(current, shoal_model::Term(found.current_epoch))?;
    }
    Ok((found.epoch, found.end_offset))
}
