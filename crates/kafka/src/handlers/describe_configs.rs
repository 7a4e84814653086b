//! DescribeConfigs: topic resources list every topic config this broker knows, with the value
//! set on the topic (source DYNAMIC_TOPIC_CONFIG) or the default (DEFAULT_CONFIG); broker
//! resources (name: this node's id, or empty) list the broker's settings, read-only.
//! `configuration_keys` narrows the list; unknown keys are left out, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::cluster::{ApiError, Cluster, ConfigEntry};

/// Kafka `ConfigResource.Type`.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let node_id = cluster.broker().node_id;
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => cluster.topic_configs(&name).ok_or_else(|| {
                    ApiError::with_message(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )
                }),
                RESOURCE_BROKER if name.is_empty() || name == node_id.to_string() => {
                    Ok(cluster.broker_configs())
                }
                RESOURCE_BROKER => Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    format!("this is broker {node_id}, not {name}"),
                )),
                other => Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match entries {
                Ok(entries) => {
                    let configs = entries
                        .into_iter()
                        .filter(|entry| {
                            resource
                                .configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == entry.name))
                        })
                        .map(|entry| config_entry(entry, &request, version))
                        .collect();
                    result.with_configs(configs)
                }
                Err(error) => result
                    .with_error_code(error.code.code())
                    .with_error_message(error.message.as_deref().map(str_bytes)),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn config_entry(
    entry: ConfigEntry,
    request: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResourceResult {
    let synonyms = if request.include_synonyms {
        entry
            .synonyms
            .iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(&s.name))
                    .with_value(s.value.as_deref().map(str_bytes))
                    .with_source(s.source)
            })
            .collect()
    } else {
        Vec::new()
    };
    let result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&entry.name))
        .with_value(entry.value.as_deref().map(str_bytes))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source)
        .with_is_sensitive(entry.sensitive)
        .with_synonyms(synonyms);
    if version >= 3 {
        // Documentation is kept only where a config behaves differently here than in Kafka;
        // null tells the client there is none.
        let documentation = entry
            .documentation
            .as_deref()
            .filter(|_| request.include_documentation)
            .map(str_bytes);
        result
            .with_config_type(entry.config_type)
            .with_documentation(documentation)
    } else {
        result
    }
}
