//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on a topic's configs. The
//! cluster applies the operations to the current set on the metadata owner (so concurrent
//! changes do not lose each other), validates, persists and applies the result. APPEND and
//! SUBTRACT only work on list configs (INVALID_REQUEST otherwise); broker configs are
//! read-only (INVALID_REQUEST).

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{check_resource, merge_outcomes};
use super::str_bytes;
use crate::cluster::{ApiError, Cluster, ConfigChange, ConfigOp};

/// Kafka `AlterConfigOp.OpType`.
pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
pub const OP_APPEND: i8 = 2;
pub const OP_SUBTRACT: i8 = 3;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut checked = Vec::with_capacity(request.resources.len());
    let mut changes = Vec::new();
    for resource in &request.resources {
        let name = resource.resource_name.to_string();
        let outcome =
            check_resource(resource.resource_type, &name, &request.resources).and_then(|()| {
                let mut seen = BTreeSet::new();
                let mut ops = Vec::with_capacity(resource.configs.len());
                for config in &resource.configs {
                    let key = config.name.to_string();
                    if !seen.insert(key.clone()) {
                        return Err(ApiError::with_message(
                            ResponseError::InvalidRequest,
                            format!("config {key} listed twice"),
                        ));
                    }
                    let value = config.value.as_ref().map(|v| v.to_string());
                    let op = match (config.config_operation, value) {
                        (OP_DELETE, _) => ConfigOp::Delete,
                        (OP_SET, Some(value)) => ConfigOp::Set(value),
                        (OP_APPEND, Some(value)) => ConfigOp::Append(value),
                        (OP_SUBTRACT, Some(value)) => ConfigOp::Subtract(value),
                        (OP_SET | OP_APPEND | OP_SUBTRACT, None) => {
                            return Err(ApiError::with_message(
                                ResponseError::InvalidRequest,
                                format!("config {key}: the operation needs a value"),
                            ))
                        }
                        (other, _) => {
                            return Err(ApiError::with_message(
                                ResponseError::InvalidRequest,
                                format!("config {key}: unknown operation {other}"),
                            ))
                        }
                    };
                    ops.push((key, op));
                }
                Ok(ops)
            });
        match outcome {
            Ok(ops) => {
                changes.push((name, ConfigChange::Incremental(ops)));
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
