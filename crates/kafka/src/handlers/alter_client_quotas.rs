//! AlterClientQuotas: sets and removes `producer_byte_rate`, `consumer_byte_rate` and
//! `request_percentage` on user and client-id entities and their defaults. Each entry is
//! answered alone: a malformed entity, an unknown or unsupported key (`ip` entities,
//! `controller_mutation_rate`) or a bad value gets INVALID_REQUEST with the reason and changes
//! nothing; the others are applied (persisted and on every core) unless `validate_only`.

use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use shoal_quotas::{QuotaEntity, QuotaKind, QuotaOp};

use super::str_bytes;
use crate::cluster::{ApiError, Cluster};
use crate::error_map::quota_error;

pub async fn handle<C: Cluster>(
    cluster: &C,
    request: AlterClientQuotasRequest,
    _version: i16,
) -> AlterClientQuotasResponse {
    let mut outcomes: Vec<Option<Result<(), ApiError>>> = Vec::with_capacity(request.entries.len());
    let mut valid = Vec::new();
    for entry in &request.entries {
        let parsed = parse(entry);
        match parsed {
            Ok(change) => {
                valid.push(change);
                outcomes.push(None);
            }
            Err(error) => outcomes.push(Some(Err(quota_error(&error)))),
        }
    }
    let mut applied = cluster
        .alter_client_quotas(valid, request.validate_only)
        .await
        .into_iter();
    let entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let outcome = outcome.or_else(|| applied.next()).unwrap_or_else(|| {
                Err(ApiError::with_message(
                    kafka_protocol::error::ResponseError::UnknownServerError,
                    "no outcome for this entry",
                ))
            });
            let answer = EntryData::default().with_entity(
                entry
                    .entity
                    .iter()
                    .map(|e| {
                        EntityData::default()
                            .with_entity_type(e.entity_type.clone())
                            .with_entity_name(e.entity_name.clone())
                    })
                    .collect(),
            );
            match outcome {
                Ok(()) => answer,
                Err(error) => answer
                    .with_error_code(error.code.code())
                    .with_error_message(error.message.as_deref().map(str_bytes)),
            }
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

fn parse(
    entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> shoal_quotas::Result<(QuotaEntity, Vec<QuotaOp>)> {
    let entity = QuotaEntity::from_components(
        entry
            .entity
            .iter()
            .map(|e| (e.entity_type.as_str(), e.entity_name.as_deref())),
    )?;
    let mut ops = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let kind = QuotaKind::from_key(op.key.as_str())?;
        ops.push((kind, (!op.remove).then_some(op.value)));
    }
    Ok((entity, ops))
}
