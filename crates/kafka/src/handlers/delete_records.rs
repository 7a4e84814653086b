//! DeleteRecords: moves each partition's log start offset (the low watermark) up to the
//! requested offset, on the partition's owner core; -1 means the high watermark. Whole
//! segments below the new start are deleted; reads below it fail with OFFSET_OUT_OF_RANGE.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::topic_name;
use crate::cluster::{ApiError, Cluster, TopicPartition};

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let known = cluster.topic(&name).map(|t| t.partitions);
        let deletes = topic.partitions.iter().map(|p| {
            let tp = TopicPartition {
                topic: name.clone(),
                partition: p.partition_index,
            };
            let before = p.offset;
            async move {
                let result = match known {
                    Some(count) if (0..count).contains(&tp.partition) => {
                        cluster.delete_records(&tp, before).await
                    }
                    _ => Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
                };
                let entry =
                    DeleteRecordsPartitionResult::default().with_partition_index(tp.partition);
                match result {
                    Ok(low_watermark) => entry.with_low_watermark(low_watermark.0),
                    Err(error) => entry
                        .with_low_watermark(-1)
                        .with_error_code(error.code.code()),
                }
            }
        });
        let partitions = join_all(deletes).await;
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
