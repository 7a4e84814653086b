//! AlterConfigs: replaces the whole set of a topic's explicitly set configs (configs left out
//! return to their defaults). The cluster validates the new set, persists it and applies it to
//! the topic's open logs; `validate_only` stops after validation. Broker configs are
//! read-only here (INVALID_REQUEST).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::cluster::{ApiError, Cluster, ConfigChange};

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut checked = Vec::with_capacity(request.resources.len());
    let mut changes = Vec::new();
    for resource in &request.resources {
        let name = resource.resource_name.to_string();
        let outcome =
            check_resource(resource.resource_type, &name, &request.resources).and_then(|()| {
                let mut configs = BTreeMap::new();
                for config in &resource.configs {
                    let key = config.name.to_string();
                    // A null value sets nothing: the config keeps its default.
                    let Some(value) = &config.value else { continue };
                    if configs.insert(key.clone(), value.to_string()).is_some() {
                        return Err(ApiError::with_message(
                            ResponseError::InvalidRequest,
                            format!("config {key} listed twice"),
                        ));
                    }
                }
                Ok(configs)
            });
        match outcome {
            Ok(configs) => {
                changes.push((name, ConfigChange::Replace(configs)));
                checked.push(None);
            }
            Err(error) => checked.push(Some(error)),
        }
    }
    let applied = cluster
        .alter_topic_configs(changes, request.validate_only)
        .await;
    let responses = request
        .resources
        .iter()
        .zip(merge_outcomes(checked, applied))
        .map(|(resource, outcome)| {
            let entry = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => entry,
                Err(error) => entry
                    .with_error_code(error.code.code())
                    .with_error_message(error.message.as_deref().map(str_bytes)),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// Per resource, in request order: its early refusal, or else the cluster's outcome for the
/// next change that was sent (changes were sent only for resources not refused early).
pub(crate) fn merge_outcomes(
    checked: Vec<Option<ApiError>>,
    applied: Vec<Result<(), ApiError>>,
) -> Vec<Result<(), ApiError>> {
    let mut applied = applied.into_iter();
    checked
        .into_iter()
        .map(|early| match early {
            Some(error) => Err(error),
            None => applied
                .next()
                .unwrap_or_else(|| Err(ApiError::new(ResponseError::UnknownServerError))),
        })
        .collect()
}

/// Checks the resource type and that the resource is named once.
pub(crate) fn check_resource<R>(resource_type: i8, name: &str, all: &[R]) -> Result<(), ApiError>
where
    R: ResourceRef,
{
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                "broker configs are read-only; set them in the config file or flags",
            ))
        }
        other => {
            return Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            ))
        }
    }
    let listed = all
        .iter()
        .filter(|r| r.kind() == resource_type && r.name() == name)
        .count();
    if listed > 1 {
        return Err(ApiError::with_message(
            ResponseError::InvalidRequest,
            format!("resource {name} listed twice"),
        ));
    }
    Ok(())
}

/// The type and name of a resource in either alter request.
pub(crate) trait ResourceRef {
    fn kind(&self) -> i8;
    fn name(&self) -> &str;
}

impl ResourceRef for kafka_protocol::messages::alter_configs_request::AlterConfigsResource {
    fn kind(&self) -> i8 {
        self.resource_type
    }
    fn name(&self) -> &str {
        &self.resource_name
    }
}

impl ResourceRef
    for kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource
{
    fn kind(&self) -> i8 {
        self.resource_type
    }
    fn name(&self) -> &str {
        &self.resource_name
    }
}
