//! CreatePartitions: grows topics to a new partition count (counts only increase). Manual
//! assignments are accepted when every new partition is placed on this node alone; the
//! cluster places new partitions on cores, persists and opens them.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{str_bytes, topic_name};
use crate::cluster::{ApiError, Cluster};

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let node_id = cluster.broker().node_id;
    let mut names = BTreeSet::new();
    let duplicates: BTreeSet<String> = request
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|name| !names.insert(name.clone()))
        .collect();
    let mut results: Vec<(String, Option<Result<(), ApiError>>)> = Vec::new();
    let mut valid = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let checked = if duplicates.contains(&name) {
            Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                "topic listed twice",
            ))
        } else {
            check(cluster, topic, node_id)
        };
        match checked {
            Ok(()) => {
                valid.push((name.clone(), topic.count));
                results.push((name, None));
            }
            Err(error) => results.push((name, Some(Err(error)))),
        }
    }
    let mut done = cluster
        .create_partitions(valid, request.validate_only)
        .await
        .into_iter();
    let results = results
        .into_iter()
        .map(|(name, early)| {
            let outcome = early
                .or_else(|| done.next())
                .unwrap_or_else(|| Err(ApiError::new(ResponseError::UnknownServerError)));
            let entry = CreatePartitionsTopicResult::default().with_name(topic_name(&name));
            match outcome {
                Ok(()) => entry,
                Err(error) => entry
                    .with_error_code(error.code.code())
                    .with_error_message(error.message.as_deref().map(str_bytes)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// Checks what can be checked before the controller: the topic exists, the count grows,
/// manual assignments name one new partition each, all on this node.
fn check<C: Cluster>(
    cluster: &C,
    topic: &CreatePartitionsTopic,
    node_id: i32,
) -> Result<(), ApiError> {
    let Some(current) = cluster.topic(&topic.name.0) else {
        return Err(ApiError::with_message(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {} does not exist", topic.name.0.as_str()),
        ));
    };
    if topic.count <= current.partitions {
        return Err(invalid_count(current.partitions, topic.count));
    }
    // Null asks the broker to place the partitions; so does an empty list.
    if let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) {
        let added = (topic.count - current.partitions) as usize;
        if assignments.len() != added {
            return Err(ApiError::with_message(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "{} assignments for {added} new partitions",
                    assignments.len()
                ),
            ));
        }
        let on_this_node = assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node_id);
        if !on_this_node {
            return Err(ApiError::with_message(
                ResponseError::InvalidReplicaAssignment,
                format!("only broker {node_id} exists"),
            ));
        }
    }
    Ok(())
}

/// The error for a partition count that does not grow the topic.
pub fn invalid_count(current: i32, requested: i32) -> ApiError {
    let reason = if requested == current {
        format!("topic already has {current} partitions")
    } else {
        format!("topic has {current} partitions, more than the requested {requested}; partitions cannot be removed")
    };
    ApiError::with_message(ResponseError::InvalidPartitions, reason)
}
