//! OffsetForLeaderEpoch: a single node leads every partition with epoch 0 and stamps every
//! batch with it, so the epoch history is one entry: epoch 0 from the log start on.
//!
//! Per partition, as Kafka's leader answers:
//! - `current_leader_epoch` (the client's view of the leader epoch; negative: not given)
//!   above 0 is UNKNOWN_LEADER_EPOCH (the client knows a newer leader than us); 0 matches.
//! - requested `leader_epoch` 0 (the latest): end offset = the high watermark, epoch 0. A
//!   consumer can only have read below the high watermark, so its position validates.
//! - requested epoch larger than the latest, or undefined (-1): no error, epoch -1 and end
//!   offset -1 (UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET).

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::topic_name;
use crate::cluster::{ApiError, Cluster, TopicPartition};

/// The leader epoch of every partition on a single node.
pub const LEADER_EPOCH: i32 = 0;
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
    if current > LEADER_EPOCH {
        return Err(ApiError::with_message(
            ResponseError::UnknownLeaderEpoch,
            format!("leader epoch {current} is newer than this broker's {LEADER_EPOCH}"),
        ));
    }
    if requested != LEADER_EPOCH {
        // Larger than the latest epoch, or undefined: no end offset to give.
        return Ok((UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
    }
    let offsets = cluster.offsets(tp).await?;
    Ok((LEADER_EPOCH, offsets.high_watermark.0))
}
