//! Produce: appends each partition's record batch on the core that owns the partition, all
//! partitions concurrently, and answers once every append completed as `acks` asks
//! (acks=0: no response at all; acks=1 and acks=-1: the topic's durability, fsync by default).
//!
//! Each batch is first checked and rewritten as the topic's configs say (`records.rs`, Kafka's
//! LogValidator): refusals carry per-record `record_errors` (KIP-467) from v8. acks=-1 needs
//! `min.insync.replicas` in-sync replicas (NOT_ENOUGH_REPLICAS before anything is written). A
//! batch with the transactional attribute fails the whole request with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka's request-level gate does: this broker has
//! no transactions, so no transactional producer is authorized.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{str_bytes, topic_name};
use crate::cluster::{Acks, ApiError, Cluster, NewTopic, TopicInfo, TopicPartition};
use crate::records::{self, Rejected};

/// How one partition's produce ended.
enum Outcome {
    Appended {
        appended: shoal_storage::Appended,
        log_append_time_ms: i64,
    },
    Failed(ApiError),
    Rejected(Rejected),
}

impl From<ApiError> for Outcome {
    fn from(error: ApiError) -> Outcome {
        Outcome::Failed(error)
    }
}

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let wait = Acks::from_request(acks);
    let transactional = request.transactional_id.is_some()
        || request.topic_data.iter().any(|topic| {
            topic.partition_data.iter().any(|data| {
                data.records
                    .as_ref()
                    .is_some_and(|batch| records::is_transactional(batch))
            })
        });
    let now_ms = cluster.now_ms();
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
                    let outcome = if !(-1..=1).contains(&acks) {
                        ApiError::new(ResponseError::InvalidRequiredAcks).into()
                    } else if transactional {
                        let reason = "transactions are not supported: no transactional producer is authorized";
                        ApiError::with_message(
                            ResponseError::TransactionalIdAuthorizationFailed,
                            reason,
                        )
                        .into()
                    } else {
                        match (partitions, data.records) {
                            (Ok(topic), Some(batch)) if (0..topic.partitions).contains(&tp.partition) => {
                                append(cluster, &tp, &topic, batch.to_vec(), acks, wait, now_ms).await
                            }
                            (Ok(_), Some(_)) => {
                                ApiError::new(ResponseError::UnknownTopicOrPartition).into()
                            }
                            (Ok(_), None) => ApiError::with_message(
                                ResponseError::InvalidRecord,
                                "a produce request needs a record batch per partition",
                            )
                            .into(),
                            (Err(error), _) => error.into(),
                        }
                    };
                    partition_response(tp.partition, outcome, version)
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

/// Checks, rewrites and appends one partition's batch.
async fn append<C: Cluster>(
    cluster: &C,
    tp: &TopicPartition,
    topic: &TopicInfo,
    batch: Vec<u8>,
    acks: i16,
    wait: Acks,
    now_ms: i64,
) -> Outcome {
    let policy = &topic.produce;
    let in_sync = cluster.in_sync_replicas(tp);
    if acks == -1 && in_sync < policy.min_insync_replicas {
        let message = format!(
            "the {in_sync} in-sync replica(s) cannot satisfy min.insync.replicas={}",
            policy.min_insync_replicas
        );
        return ApiError::with_message(ResponseError::NotEnoughReplicas, message).into();
    }
    let prepared = match records::prepare(batch, policy, now_ms) {
        Ok(prepared) => prepared,
        Err(rejected) => return Outcome::Rejected(rejected),
    };
    match cluster.append(tp, prepared.batch, wait).await {
        Ok(appended) => Outcome::Appended {
            appended,
            log_append_time_ms: prepared.log_append_time_ms,
        },
        Err(error) => error.into(),
    }
}

/// The topic, creating it if auto-creation is on.
async fn ensure_topic<C: Cluster>(cluster: &C, name: &str) -> Result<TopicInfo, ApiError> {
    if let Some(topic) = cluster.topic(name) {
        return Ok(topic);
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
        Some(Ok(topic)) => Ok(topic),
        Some(Err(error)) if error.code == ResponseError::TopicAlreadyExists => cluster
            .topic(name)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition)),
        Some(Err(error)) => Err(error),
        None => Err(ApiError::new(ResponseError::UnknownServerError)),
    }
}

fn partition_response(index: i32, outcome: Outcome, version: i16) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_log_append_time_ms(-1);
    let (error, record_errors) = match outcome {
        Outcome::Appended {
            appended,
            log_append_time_ms,
        } => {
            let response = response
                .with_base_offset(appended.base_offset.0)
                .with_log_append_time_ms(log_append_time_ms);
            return if version >= 5 {
                response.with_log_start_offset(appended.log_start.0)
            } else {
                response
            };
        }
        Outcome::Failed(error) => (error, Vec::new()),
        Outcome::Rejected(rejected) => (
            ApiError::with_message(rejected.code, rejected.message),
            rejected.record_errors,
        ),
    };
    // Kafka answers -1 for the base offset and log start offset of a failed partition.
    let response = response
        .with_error_code(error.code.code())
        .with_base_offset(-1)
        .with_log_start_offset(-1);
    if version < 8 {
        return response;
    }
    let record_errors = record_errors
        .into_iter()
        .map(|(batch_index, message)| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(batch_index)
                .with_batch_index_error_message(Some(str_bytes(&message)))
        })
        .collect();
    response
        .with_error_message(error.message.as_deref().map(str_bytes))
        .with_record_errors(record_errors)
}
