//! DescribeProducers: the idempotent producers each requested partition knows, read on the
//! partition's owner core.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{str_bytes, topic_name};
use crate::cluster::{ApiError, Cluster, TopicPartition};

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let lookups = topic.partition_indexes.iter().map(|&partition| {
            let tp = TopicPartition {
                topic: name.clone(),
                partition,
            };
            async move {
                let known = cluster
                    .topic(&tp.topic)
                    .is_some_and(|t| (0..t.partitions).contains(&tp.partition));
                let result = if known {
                    cluster.describe_producers(&tp).await
                } else {
                    Err(ApiError::new(ResponseError::UnknownTopicOrPartition))
                };
                let response = PartitionResponse::default().with_partition_index(partition);
                match result {
                    Ok(producers) => response.with_active_producers(
                        producers
                            .into_iter()
                            .map(|p| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(p.producer_id))
                                    .with_producer_epoch(i32::from(p.epoch))
                                    .with_last_sequence(p.last_sequence)
                                    .with_last_timestamp(p.last_append_ms)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(-1)
                            })
                            .collect(),
                    ),
                    Err(error) => response
                        .with_error_code(error.code.code())
                        .with_error_message(error.message.as_deref().map(str_bytes)),
                }
            }
        });
        let partitions = join_all(lookups).await;
        topics.push(
            TopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
