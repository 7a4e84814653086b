//! DeleteTopics: removes topics by name (versions up to 5; topic ids arrive in version 6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{str_bytes, topic_name};
use crate::cluster::Cluster;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let names: Vec<String> = request
        .topic_names
        .iter()
        .map(|n| n.0.to_string())
        .collect();
    let outcomes = cluster.delete_topics(names.clone()).await;
    let responses = names
        .iter()
        .zip(outcomes)
        .map(|(name, outcome)| {
            let entry = DeletableTopicResult::default().with_name(Some(topic_name(name)));
            match outcome {
                Ok(()) => entry,
                Err(error) => {
                    let entry = entry.with_error_code(error.code.code());
                    if version >= 5 {
                        entry.with_error_message(error.message.as_deref().map(str_bytes))
                    } else {
                        entry
                    }
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
