//! Produce: appends each partition's record batch on the core that owns the partition, all
//! partitions concurrently, and answers once every append completed as `acks` asks
//! (acks=0: no response at all; acks=1 and acks=-1: the topic's durability, fsync by default).

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use shoal_storage::Wait;

use super::{str_bytes, topic_name};
use crate::cluster::{ApiError, Cluster, NewTopic, TopicPartition};

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let wait = if acks == 0 {
        Wait::Buffered
    } else {
        Wait::Durable
    };
    let transactional = request.transactional_id.is_some();
    let names: Vec<String> = request
        .topic_data
        .iter()
        .map(|topic| topic.name.0.to_string())
        .collect();
    // Topics are resolved (and auto-created) together, then every partition of every topic is
    // appended at once: a request for k topics waits for one round of syncs, not k.
    let counts = join_all(names.iter().map(|name| ensure_topic(cluster, name))).await;
    let appends = request
        .topic_data
        .into_iter()
        .zip(names.iter().zip(counts))
        .map(|(topic, (name, partitions))| {
            let appends = topic.partition_data.into_iter().map(move |data| {
                let tp = TopicPartition {
                    topic: name.clone(),
                    partition: data.index,
                };
                let partitions = partitions.clone();
                async move {
                    let result = if !(-1..=1).contains(&acks) {
                        Err(ApiError::new(ResponseError::InvalidRequiredAcks))
                    } else if transactional {
                        let reason = "transactions are not supported";
                        Err(ApiError::with_message(
                            ResponseError::TransactionalIdAuthorizationFailed,
                            reason,
                        ))
                    } else {
                        match (partitions, data.records) {
                            (Ok(count), Some(records)) if (0..count).contains(&tp.partition) => {
                                cluster.append(&tp, records.to_vec(), wait).await
                            }
                            (Ok(_), Some(_)) => {
                                Err(ApiError::new(ResponseError::UnknownTopicOrPartition))
                            }
                            (Ok(_), None) => Err(ApiError::with_message(
                                ResponseError::CorruptMessage,
                                "no records",
                            )),
                            (Err(error), _) => Err(error),
                        }
                    };
                    partition_response(tp.partition, result, version)
                }
            });
            join_all(appends)
        });
    let per_topic = join_all(appends).await;
    let topics = names
        .iter()
        .zip(per_topic)
        .map(|(name, partition_responses)| {
            TopicProduceResponse::default()
                .with_name(topic_name(name))
                .with_partition_responses(partition_responses)
        })
        .collect();
    (acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

/// The topic's partition count, creating the topic if auto-creation is on.
async fn ensure_topic<C: Cluster>(cluster: &C, name: &str) -> Result<i32, ApiError> {
    if let Some(topic) = cluster.topic(name) {
        return Ok(topic.partitions);
    }
    if !cluster.auto_create_topics() {
        return Err(ApiError::new(ResponseError::UnknownTopicOrPartition));
    }
    let new_topic = NewTopic {
        name: name.to_string(),
        partitions: -1,
        replication_factor: -1,
        configs: Default::default(),
    };
    match cluster.create_topics(vec![new_topic], false).await.pop() {
        Some(Ok(topic)) => Ok(topic.partitions),
        Some(Err(error)) if error.code == ResponseError::TopicAlreadyExists => cluster
            .topic(name)
            .map(|t| t.partitions)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition)),
        Some(Err(error)) => Err(error),
        None => Err(ApiError::new(ResponseError::UnknownServerError)),
    }
}

fn partition_response(
    index: i32,
    result: Result<shoal_storage::Appended, ApiError>,
    version: i16,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_log_append_time_ms(-1);
    match result {
        Ok(appended) => {
            let response = response.with_base_offset(appended.base_offset.0);
            if version >= 5 {
                response.with_log_start_offset(appended.log_start.0)
            } else {
                response
            }
        }
        Err(error) => {
            // Kafka answers -1 for the log start offset of a failed partition.
            let response = response
                .with_error_code(error.code.code())
                .with_base_offset(-1)
                .with_log_start_offset(-1);
            if version >= 8 {
                response.with_error_message(error.message.as_deref().map(str_bytes))
            } else {
                response
            }
        }
    }
}
