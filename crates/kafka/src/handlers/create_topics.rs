//! CreateTopics: validates names, partition counts, replication factor (at most the live
//! brokers; one on a single node) and manual assignments (this node only), then asks the
//! cluster to create the topics.
//! Config keys and values are validated by the cluster (it knows which topic configs exist).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::cluster::{ApiError, Cluster, NewTopic, TopicInfo};
use crate::topic_name as names;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let node_id = cluster.broker().node_id;
    let brokers = cluster.brokers().len();
    let mut results = Vec::with_capacity(request.topics.len());
    let mut valid = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let checked = check(&topic, node_id, brokers).and_then(|()| {
            if seen.insert(name.clone()) {
                Ok(())
            } else {
                Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    "topic listed twice",
                ))
            }
        });
        match checked {
            Ok(()) => {
                let configs: BTreeMap<String, String> = topic
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                    })
                    .collect();
                let partitions = if topic.assignments.is_empty() {
                    topic.num_partitions
                } else {
                    topic.assignments.len() as i32
                };
                valid.push(NewTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor: topic.replication_factor,
                    configs,
                });
                results.push((name, None));
            }
            Err(error) => results.push((name, Some(Err(error)))),
        }
    }
    let mut created = cluster
        .create_topics(valid, request.validate_only)
        .await
        .into_iter();
    let topics = results
        .into_iter()
        .map(|(name, early)| {
            let outcome = early
                .or_else(|| created.next())
                .unwrap_or_else(|| Err(ApiError::new(ResponseError::UnknownServerError)));
            result_entry(&name, outcome, version)
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn check(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    node_id: i32,
    brokers: usize,
) -> Result<(), ApiError> {
    names::validate(&topic.name.0)
        .map_err(|reason| ApiError::with_message(ResponseError::InvalidTopicException, reason))?;
    names::check_not_internal(&topic.name.0)
        .map_err(|reason| ApiError::with_message(ResponseError::InvalidRequest, reason))?;
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            let reason =
                "both manual assignments and partition count / replication factor were given";
            return Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                reason,
            ));
        }
        let on_this_node = topic
            .assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node_id);
        if !on_this_node {
            return Err(ApiError::with_message(
                ResponseError::InvalidReplicaAssignment,
                format!("only broker {node_id} exists"),
            ));
        }
        return Ok(());
    }
    if topic.num_partitions == 0 || topic.num_partitions < -1 {
        return Err(ApiError::with_message(
            ResponseError::InvalidPartitions,
            "partition count must be positive",
        ));
    }
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        let reason = format!(
            "replication factor {} must be -1 (the default) or at least 1",
            topic.replication_factor
        );
        return Err(ApiError::with_message(
            ResponseError::InvalidReplicationFactor,
            reason,
        ));
    }
    let wanted = usize::try_from(topic.replication_factor).unwrap_or(1);
    if wanted > brokers {
        // Kafka's wording (ReplicationControlManager).
        let reason = format!(
            "Unable to replicate the partition {wanted} time(s): The target replication factor \
             of {wanted} cannot be reached because only {brokers} broker(s) are registered."
        );
        return Err(ApiError::with_message(
            ResponseError::InvalidReplicationFactor,
            reason,
        ));
    }
    Ok(())
}

fn result_entry(
    name: &str,
    outcome: Result<TopicInfo, ApiError>,
    version: i16,
) -> CreatableTopicResult {
    let entry = CreatableTopicResult::default().with_name(topic_name(name));
    match outcome {
        Ok(topic) => {
            let mut entry = entry;
            if version >= 5 {
                let configs = topic
                    .configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                            .with_config_source(1)
                    })
                    .collect();
                entry = entry
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(1)
                    .with_configs(Some(configs));
            }
            if version >= 7 {
                entry = entry.with_topic_id(Uuid::from_bytes(topic.id));
            }
            entry
        }
        Err(error) => {
            let entry = entry.with_error_code(error.code.code());
            let entry = if version >= 1 {
                entry.with_error_message(error.message.as_deref().map(str_bytes))
            } else {
                entry
            };
            if version >= 5 {
                entry.with_num_partitions(-1).with_replication_factor(-1)
            } else {
                entry
            }
        }
    }
}
