//! DescribeClientQuotas: the quotas set on the entities a filter matches (user and client-id
//! entities and their defaults; see `shoal_quotas::Filter` for the match rules). A bad filter
//! fails the whole request (INVALID_REQUEST with the reason), as in Kafka.

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

use super::str_bytes;
use crate::cluster::Cluster;
use crate::error_map::quota_error;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: DescribeClientQuotasRequest,
    _version: i16,
) -> DescribeClientQuotasResponse {
    let components = request.components.iter().map(|c| {
        (
            c.entity_type.as_str(),
            c.match_type,
            c._match.as_ref().map(|m| m.as_str()),
        )
    });
    let filter = match shoal_quotas::Filter::from_components(components, request.strict) {
        Ok(filter) => filter,
        Err(error) => {
            let error = quota_error(&error);
            return DescribeClientQuotasResponse::default()
                .with_error_code(error.code.code())
                .with_error_message(error.message.as_deref().map(str_bytes))
                .with_entries(None);
        }
    };
    let entries = cluster
        .client_quotas(&filter)
        .into_iter()
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .components()
                        .into_iter()
                        .map(|(entity_type, name)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(entity_type))
                                .with_entity_name(name.map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(kind, value)| {
                            ValueData::default()
                                .with_key(str_bytes(kind.key()))
                                .with_value(value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}
